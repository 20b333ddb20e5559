"""Queue names and which task goes to which: the one definition, importable without Celery."""

from __future__ import annotations

TRAIN_QUEUE = "train"
GENERATE_QUEUE = "generate"
# Inference of every kind (sampling, batch prediction, evaluation) shares the generate queue.
TASK_QUEUES = {"rnnq.train": TRAIN_QUEUE, "rnnq.generate": GENERATE_QUEUE, "rnnq.predict": GENERATE_QUEUE,
               "rnnq.eval": GENERATE_QUEUE}
