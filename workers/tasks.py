"""Thin Celery tasks: job id in, the job's runner does the work. Sent by name."""

from __future__ import annotations

from celery import Task

from workers import runner
from workers.app import app


@app.task(name="rnnq.train", bind=True)
def train(self: Task, job_id: str) -> None:
    runner.run("train", job_id, self.request.hostname or "unknown")


@app.task(name="rnnq.generate", bind=True)
def generate(self: Task, job_id: str) -> None:
    runner.run("generate", job_id, self.request.hostname or "unknown")


@app.task(name="rnnq.predict", bind=True)
def predict(self: Task, job_id: str) -> None:
    runner.run("predict", job_id, self.request.hostname or "unknown")


@app.task(name="rnnq.eval", bind=True)
def evaluate(self: Task, job_id: str) -> None:
    runner.run("eval", job_id, self.request.hostname or "unknown")
