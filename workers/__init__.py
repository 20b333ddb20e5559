"""The queue side of rnnq: Celery app and tasks, job store, artifact store, settings.

Importing this package never imports torch; tasks import rnn_tasks when they run.
"""
