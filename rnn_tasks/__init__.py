"""Pure PyTorch recurrent models: specs, data, models, training, checkpoints, sampling.

Nothing in this package knows about queues, Redis or Prometheus.
"""
