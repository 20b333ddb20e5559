"""Configuration, resolved in one place: flag > environment (RNNQ_*) > default.

This is the only module that reads os.environ. Each default is documented where it is
defined.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from rnn_tasks.errors import ConfigError

# Home of the embedded local stack (Redis data, logs, PID file, default artifacts).
DEFAULT_HOME = Path.home() / ".rnnq"
# Port of the local Redis started by `rnnq up`: not 6379, so it never collides with a
# system Redis that other software relies on.
DEFAULT_LOCAL_PORT = 6390
# Largest corpus the CLI uploads (bytes). Bigger corpora belong on shared storage.
DEFAULT_MAX_CORPUS_BYTES = 1 << 30
# Memory a pool process has for preparing a language model's corpus (bytes); the CLI
# refuses, before uploading, a corpus whose preparation would need more (see
# CORPUS_MEMORY_PER_CHAR). 4 GiB holds the largest corpus the upload limit allows in
# plain or Latin-1 text; set it to a worker node's memory divided by its pool processes,
# less what the model and the torch runtime take (~0.5-1 GiB).
DEFAULT_WORKER_MEMORY_BYTES = 4 << 30
# Peak memory of a worker's corpus preparation (read, decode, fit the tokenizer, encode)
# per character of a text stored one byte a character (ASCII or Latin-1): measured by
# benchmarks/corpus_memory.py at 100 MB as char 1.89, word 2.10, bpe 2.16 bytes per
# corpus byte (2.1-2.4 per character; README, Benchmarks), with room for allocator and
# vocabulary variation. Python keeps a str at the width of its widest character, so a
# text with characters beyond U+00FF costs its extra str bytes on top
# (workers/submit.py: corpus_memory).
CORPUS_MEMORY_PER_CHAR = 3.0
# Redelivery of an unacknowledged message after this many seconds (kombu's Redis
# transport). Longer than any single job is expected to run, so a running job is not
# handed to a second worker; see README "Delivery".
DEFAULT_VISIBILITY_TIMEOUT = 12 * 3600
# A running job holds a lease in Redis, renewed every third of this many seconds; a
# job whose lease lapses is taken to have lost its worker and is queued again.
DEFAULT_LEASE_SECONDS = 30.0
# How often each worker looks for running jobs whose lease has lapsed.
DEFAULT_REAP_SECONDS = 10.0
# A job queued for this long with no message for it in the broker (a send that was
# lost or failed) gets its message again from the reaper (workers/reconcile.py).
DEFAULT_RESEND_SECONDS = 60.0
# The CLI rides out a lost Redis connection (a restart, a failover) for this long,
# retrying with backoff, before it gives up with an error.
DEFAULT_CLI_RETRY_SECONDS = 120.0
# A job whose worker is lost this many times is failed instead of queued again.
DEFAULT_MAX_WORKER_LOSSES = 3
# Worker nodes serve /metrics only when given a port (`rnnq worker --metrics-port`):
# two workers on one machine would otherwise collide. 9808 is the documented choice.
DEFAULT_METRICS_ADDR = "0.0.0.0"  # Prometheus scrapes from another machine
# The cluster exporter (`rnnq exporter`): one per cluster.
DEFAULT_EXPORTER_PORT = 9809
# Artifact stores other than a local directory, by URL scheme. s3:// covers every
# S3-compatible server (AWS, MinIO, Ceph...); endpoint and credentials come from the
# AWS variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...), which botocore reads itself.
ARTIFACT_SCHEMES = ("s3",)
# A worker node's cache of content-addressed inputs (corpora, CSVs) read from an object
# store, by SHA-256, so a node downloads a dataset once: <home>/cache/inputs.
INPUT_CACHE_DIR = "cache/inputs"
# Where sweeps keep their Optuna studies (RNNQ_SWEEP_STORAGE). Unset: Optuna's journal
# in the job store's own Redis (keys rnnq:optuna:*), nothing more to run. An SQLAlchemy
# URL (postgresql://..., mysql://..., sqlite:///path) puts them in Optuna's RDB storage
# instead, where an operator prefers a database (every worker and CLI must reach it).
DEFAULT_SWEEP_STORAGE = None
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_PREFIX = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]*(/[A-Za-z0-9_\-][A-Za-z0-9_.\-]*)*$")


@dataclass(frozen=True)
class Settings:
    redis_url: str
    artifacts: Path | str  # a local directory (Path), or an object-store URL (str, "s3://bucket/prefix")
    home: Path
    local: bool  # True when redis_url is the embedded local stack's (auto-started)
    local_port: int
    max_corpus_bytes: int
    worker_memory_bytes: int  # memory a pool process has for a corpus; submit refuses more
    visibility_timeout: int
    worker_gpus: str | None  # "0,1": pin pool process i to GPU i (set by `rnnq worker --gpus`)
    worker_device: str | None  # device for jobs that asked for "auto" (set by `rnnq worker --device`)
    lease_seconds: float
    reap_seconds: float
    resend_seconds: float
    cli_retry_seconds: float
    max_worker_losses: int
    metrics_port: int | None  # worker node's /metrics port; None: no endpoint
    metrics_addr: str
    exporter_port: int
    metrics_dir: str | None  # PROMETHEUS_MULTIPROC_DIR: where pool processes write their values
    input_cache: Path = DEFAULT_HOME / INPUT_CACHE_DIR  # RNNQ_INPUT_CACHE; resolve() puts it under home
    sweep_storage: str | None = DEFAULT_SWEEP_STORAGE  # RNNQ_SWEEP_STORAGE: an RDB URL for Optuna studies
    # RNNQ_WORKER_PROCESSES: the node's pool processes (set by `rnnq worker --concurrency`,
    # or one per GPU with --gpus); each job's CPU threads come from its share of the
    # cores (rnn_tasks.device.share_cores). 1: a job may use every core.
    worker_processes: int = 1


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else None


def _int(name: str, default: int, low: int = 1) -> int:
    """An integer variable of at least `low`; a bad value is a ConfigError naming the variable."""
    text = _env(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{text!r} is not a whole number", name) from None
    if value < low:
        raise ConfigError(f"must be at least {low}, got {value}", name)
    return value


def _float(name: str, default: float) -> float:
    """A positive, finite number of seconds; a bad value is a ConfigError naming the variable."""
    text = _env(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{text!r} is not a number", name) from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"must be a positive number, got {text!r}", name)
    return value


def _port(name: str, default: int | None) -> int | None:
    if _env(name) is None:
        return default
    value = _int(name, 0)
    if value > 65535:
        raise ConfigError(f"{value} is not a TCP port (1-65535)", name)
    return value


def resolve(redis_url: str | None = None, artifacts: str | Path | None = None) -> Settings:
    """Settings from explicit values (flags), then RNNQ_* variables, then defaults.

    A variable with a value rnnq cannot use is a ConfigError naming it (one line at the CLI).
    """
    home = Path(_env("RNNQ_HOME") or DEFAULT_HOME).expanduser()
    port = _port("RNNQ_LOCAL_PORT", DEFAULT_LOCAL_PORT) or DEFAULT_LOCAL_PORT  # never None: it has a default
    url = redis_url or _env("RNNQ_REDIS_URL")
    local = url is None
    return Settings(
        redis_url=url or f"redis://127.0.0.1:{port}/0",
        artifacts=artifact_location(artifacts or _env("RNNQ_ARTIFACTS") or home / "artifacts"),
        home=home,
        local=local,
        local_port=port,
        max_corpus_bytes=_int("RNNQ_MAX_CORPUS_BYTES", DEFAULT_MAX_CORPUS_BYTES),
        worker_memory_bytes=_int("RNNQ_WORKER_MEMORY_BYTES", DEFAULT_WORKER_MEMORY_BYTES),
        visibility_timeout=_int("RNNQ_VISIBILITY_TIMEOUT", DEFAULT_VISIBILITY_TIMEOUT),
        worker_gpus=_env("RNNQ_WORKER_GPUS"),
        worker_device=_env("RNNQ_WORKER_DEVICE"),
        lease_seconds=_float("RNNQ_LEASE_SECONDS", DEFAULT_LEASE_SECONDS),
        reap_seconds=_float("RNNQ_REAP_SECONDS", DEFAULT_REAP_SECONDS),
        resend_seconds=_float("RNNQ_RESEND_SECONDS", DEFAULT_RESEND_SECONDS),
        cli_retry_seconds=_float("RNNQ_CLI_RETRY_SECONDS", DEFAULT_CLI_RETRY_SECONDS),
        max_worker_losses=_int("RNNQ_MAX_WORKER_LOSSES", DEFAULT_MAX_WORKER_LOSSES),
        metrics_port=_port("RNNQ_METRICS_PORT", None),
        metrics_addr=_env("RNNQ_METRICS_ADDR") or DEFAULT_METRICS_ADDR,
        exporter_port=_port("RNNQ_EXPORTER_PORT", DEFAULT_EXPORTER_PORT) or DEFAULT_EXPORTER_PORT,
        metrics_dir=_env("PROMETHEUS_MULTIPROC_DIR"),
        input_cache=Path(_env("RNNQ_INPUT_CACHE") or home / INPUT_CACHE_DIR).expanduser(),
        sweep_storage=_env("RNNQ_SWEEP_STORAGE") or DEFAULT_SWEEP_STORAGE,
        worker_processes=_int("RNNQ_WORKER_PROCESSES", 1),
    )


def visible_gpus() -> list[str]:
    """CUDA_VISIBLE_DEVICES as a list of GPU ids ([] when unset): the GPUs this process may use."""
    return [v.strip() for v in (_env("CUDA_VISIBLE_DEVICES") or "").split(",") if v.strip()]


def pin_gpu(gpu: str) -> None:
    """Make this process (and CUDA, when it first initialises) see only `gpu`, numbered
    as NVML and nvidia-smi number GPUs (PCI order): CUDA's default order, fastest first,
    can differ on a node with mixed GPUs, and the metrics use NVML's."""
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu


def artifact_location(value: str | Path) -> Path | str:
    """A local directory (made absolute) or a checked `s3://bucket[/prefix]` URL.

    Any other URL scheme is refused: taken as a path, `gs://b/x` would silently become a
    directory named `gs:` under the working directory and nothing would reach the bucket.
    """
    if isinstance(value, Path):
        return value.expanduser().resolve()
    match = _SCHEME.match(value)
    if match is None:
        return Path(value).expanduser().resolve()
    scheme = match.group(1).lower()
    if scheme not in ARTIFACT_SCHEMES:
        raise ConfigError(f"RNNQ_ARTIFACTS (--artifacts) {value!r}: unsupported scheme {scheme}://; "
                          f"use a local directory or s3://bucket/prefix")
    bucket, _, prefix = value[match.end():].rstrip("/").partition("/")
    if not _BUCKET.match(bucket) or (prefix and not _PREFIX.match(prefix)) or ".." in prefix.split("/"):
        raise ConfigError(f"RNNQ_ARTIFACTS (--artifacts) {value!r}: not a valid s3://bucket/prefix "
                          "(bucket: 3-63 of a-z 0-9 . -; prefix: letters, digits, _ - . and /)")
    return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"


def export(settings: Settings) -> dict[str, str]:
    """Environment that makes a child process (a worker) resolve the same settings."""
    env = {
        "RNNQ_REDIS_URL": settings.redis_url,
        "RNNQ_ARTIFACTS": str(settings.artifacts),
        "RNNQ_HOME": str(settings.home),
        "RNNQ_INPUT_CACHE": str(settings.input_cache),
        "RNNQ_VISIBILITY_TIMEOUT": str(settings.visibility_timeout),
        "RNNQ_LEASE_SECONDS": str(settings.lease_seconds),
        "RNNQ_REAP_SECONDS": str(settings.reap_seconds),
        "RNNQ_MAX_WORKER_LOSSES": str(settings.max_worker_losses),
        "RNNQ_WORKER_PROCESSES": str(settings.worker_processes),
    }
    if settings.worker_gpus:
        env["RNNQ_WORKER_GPUS"] = settings.worker_gpus
    if settings.worker_device:
        env["RNNQ_WORKER_DEVICE"] = settings.worker_device
    if settings.metrics_port is not None:
        env["RNNQ_METRICS_PORT"] = str(settings.metrics_port)
        env["RNNQ_METRICS_ADDR"] = settings.metrics_addr
    if settings.metrics_dir:
        env["PROMETHEUS_MULTIPROC_DIR"] = settings.metrics_dir
    if settings.sweep_storage:
        env["RNNQ_SWEEP_STORAGE"] = settings.sweep_storage
    return env


def environ() -> dict[str, str]:
    """A copy of the process environment, for starting child processes."""
    return dict(os.environ)


def redact(url: str) -> str:
    """The URL with any password replaced, for messages and logs."""
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1) if "://" in url else ("", url)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0] if ":" in creds else ""
    return f"{scheme}://{user}:***@{host}" if scheme else f"{user}:***@{host}"
