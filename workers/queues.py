"""rnnq's queue names and which queue each job kind goes to by default. Stdlib only, so
the CLI and the exporter name queues without importing Celery."""

from __future__ import annotations

TRAIN_QUEUE = "train"
GENERATE_QUEUE = "generate"
QUEUES = (TRAIN_QUEUE, GENERATE_QUEUE)  # declared by every worker and always shown by the exporter
# Inference of every kind (sampling, batch prediction, evaluation) shares the generate queue.
KIND_QUEUES = {"train": TRAIN_QUEUE, "generate": GENERATE_QUEUE, "predict": GENERATE_QUEUE, "eval": GENERATE_QUEUE}
TASK_QUEUES = {f"rnnq.{kind}": queue for kind, queue in KIND_QUEUES.items()}  # Celery task name -> queue
