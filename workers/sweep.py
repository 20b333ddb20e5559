"""Hyperparameter sweeps: an Optuna study whose trials are ordinary rnnq training jobs.

The study lives in the same Redis, in its own Optuna journal (keys `rnnq:optuna:sweep:<name>:*`), or
in Optuna's RDB storage where RNNQ_SWEEP_STORAGE names a database.
Beside it rnnq keeps (prefix "rnnq:"):

    rnnq:sweeps                zset   sweep names by creation time
    rnnq:sweeps:active         set    sweeps not yet over: what the reaper looks at
    rnnq:sweep:<name>          hash   config (the checked sweep file, inputs uploaded),
                                      base (the base spec), state (running | finished |
                                      cancelled | deleting), created_at
    rnnq:sweep:<name>:trials   hash   Optuna trial number -> job id ('' when the sampled
                                      spec was invalid and no job was made)
    rnnq:sweep:<name>:told     set    trial numbers whose end the study has been told
    rnnq:sweep:<name>:lock     string held by whoever advances the sweep (a token, with a TTL)

Who does what:

    submit (CLI)    checks the file, uploads the inputs, creates the study (the file's
                    `enqueue` points waiting in it), then advance()
    advance()       under the sweep's lock: tells the study how every finished trial job
                    ended, then asks for new trials and submits a job for each until
                    `parallel` are queued or running or `trials` have been asked
    a worker        reports each evaluation's figure to the trial and stops the job when
                    the pruner says so (state succeeded, stopped_by pruned; workers.pruning);
                    after a trial job ends it calls advance()
    the reaper      calls advance() on every sweep with work to do, each pass: what repairs
                    an advance lost with its process, and trials failed by the reaper itself

Reading a sweep (list, leaderboard, best trial, plots) is workers.sweepboard; ending one
early (cancel, delete) is workers.sweepend.

The job record is the truth and the study follows it: a trial is told only once its job
has ended (Optuna's journal storage has no heartbeat; rnnq's lease and reaper keep the
job honest, and so the study). A job resumed after a worker loss keeps its record, so
its trial number: it continues the same trial, never a new one.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from rnn_tasks.spec import SpecError, train_spec_class
from workers import settings as settings_mod
from workers import submit as submitter
from workers.artifacts import ArtifactError, ArtifactStore, put_input
from workers.errors import ConfigError, InvalidJob, JobNotFound, RnnqError
from workers.jobstore import FINAL_STATES, Job, JobStore
from workers.queues import TRAIN_QUEUE
from workers.sweepfile import ARTIFACT, INPUT_FIELDS, Param, Sweep

if TYPE_CHECKING:
    import optuna

log = logging.getLogger("rnnq.sweep")

_P = "rnnq:sweep:"
SWEEPS = "rnnq:sweeps"
ACTIVE = "rnnq:sweeps:active"
JOURNAL_DELETE_BATCH = 1000  # journal entries deleted per command
OPTUNA_PREFIX = "rnnq:optuna"  # each sweep's journal: rnnq:optuna:sweep:<name>:log_number, ...:log:<n>
# (sweeps recorded before per-sweep journals share one: rnnq:optuna:log_number, rnnq:optuna:log:<n>)
HALF_MADE_SECONDS = 60.0  # a submit writes a sweep's record within this of taking its name
LOCK_SECONDS = 60.0  # an advance that dies holding the lock blocks others this long at most
TPE_STARTUP = 10  # Optuna's default random trials before TPE models; a short sweep uses half its trials

Send = Callable[[str, str, str], None]  # job id, kind, queue


class SweepNotFound(RnnqError):
    """No sweep with that name."""


# -- the study ----------------------------------------------------------------------------


def storage(redis_url: str, config: dict[str, Any]) -> optuna.storages.BaseStorage:
    """The sweep's study storage: its own Optuna journal in the job store's Redis (so a
    delete removes every entry; one shared journal would keep them, being append-only),
    or the RDB that RNNQ_SWEEP_STORAGE names."""
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalRedisBackend

    _quiet()  # the Redis journal is "experimental": a warning on every command that opens it
    rdb = settings_mod.resolve().sweep_storage
    if rdb:
        try:
            return RDBStorage(rdb)
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy's errors, and a URL it cannot parse
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            reason = reason.replace(rdb, settings_mod.redact(rdb))  # SQLAlchemy may quote the URL, password and all
            raise ConfigError(f"cannot open the sweep database {settings_mod.redact(rdb)}: {reason}",
                              "RNNQ_SWEEP_STORAGE") from None
    return JournalStorage(JournalRedisBackend(redis_url, prefix=journal_prefix(config)))


def journal_prefix(config: dict[str, Any]) -> str:
    """The keys of a sweep's Redis journal; sweeps recorded before "journal": "own" share one."""
    return f"{OPTUNA_PREFIX}:sweep:{config['name']}" if config.get("journal") == "own" else OPTUNA_PREFIX


def _quiet() -> None:
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _sampler(config: dict[str, Any], asked: int) -> optuna.samplers.BaseSampler:
    """The sampler, re-created by each process that asks: its seed moves on with every
    trial asked, so two processes never draw the same "random" point twice."""
    import optuna

    seed = None if config["seed"] is None else config["seed"] + asked
    if config["sampler"] == "grid":
        grid = {p["name"]: _param(p).grid() or [] for p in _space(config)}
        return optuna.samplers.GridSampler(grid, seed=seed)
    if config["sampler"] == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    startup = min(TPE_STARTUP, max(1, config["trials"] // 2))
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)


def _pruner(config: dict[str, Any]) -> optuna.pruners.BasePruner:
    import optuna

    options = dict(config["pruner_options"])
    resource = options.pop("resource", "steps")  # the reporter's unit (workers/pruning.py), not Optuna's
    if config["pruner"] == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(**options)
    if config["pruner"] == "hyperband":
        if "max_resource" not in options and resource == "steps" and config["budget"].get("max_steps"):
            options["max_resource"] = config["budget"]["max_steps"]
        return optuna.pruners.HyperbandPruner(**options)
    return optuna.pruners.NopPruner()


def _space(config: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": name, **p} for name, p in config["space"].items()]


def _param(p: dict[str, Any]) -> Param:
    if "choices" in p:
        return Param(p["name"], choices=tuple(p["choices"]))
    return Param(p["name"], low=p["low"], high=p["high"], step=p.get("step"), log=p.get("log", False),
                 is_int=p.get("int", False))


def _distributions(config: dict[str, Any]) -> dict[str, optuna.distributions.BaseDistribution]:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, Any] = {}
    for p in map(_param, _space(config)):
        if p.choices is not None:
            out[p.name] = CategoricalDistribution(list(p.choices))
        elif p.is_int:
            out[p.name] = IntDistribution(int(p.low or 0), int(p.high or 0), log=p.log, step=int(p.step or 1))
        else:
            out[p.name] = FloatDistribution(float(p.low or 0), float(p.high or 0), log=p.log, step=p.step)
    return out


def load_study(store: JobStore, name: str, config: dict[str, Any] | None = None, asked: int = 0,
               journal: optuna.storages.BaseStorage | None = None) -> optuna.Study:
    import optuna

    _quiet()
    config = config or record(store, name)["config"]
    return optuna.load_study(study_name=name, storage=journal or storage(store.url, config), sampler=_sampler(config, asked),
                             pruner=_pruner(config))


# -- records ------------------------------------------------------------------------------


def record(store: JobStore, name: str) -> dict[str, Any]:
    h = cast(dict[str, str], store.call(lambda: store.redis.hgetall(_P + name)))
    if not h:
        raise SweepNotFound(f"no sweep {name!r}")
    return {"name": name, "state": h["state"], "created_at": float(h["created_at"]),
            "config": json.loads(h["config"]), "base": json.loads(h["base"])}


def trials(store: JobStore, name: str) -> dict[int, str]:
    raw = cast(dict[str, str], store.call(lambda: store.redis.hgetall(_P + name + ":trials")))
    return {int(k): v for k, v in sorted(raw.items(), key=lambda kv: int(kv[0]))}


def told(store: JobStore, name: str) -> set[int]:
    """Trials whose end the study has been told."""
    return {int(n) for n in store.call(lambda: cast(set[str], store.redis.smembers(_P + name + ":told")))}


def in_flight(store: JobStore, name: str) -> int:
    """Trial jobs not yet told (queued, running, or ended a moment ago)."""
    done = told(store, name)
    return sum(1 for n, job_id in trials(store, name).items() if job_id and n not in done)


def names(store: JobStore) -> list[str]:
    return store.call(lambda: cast(list[str], store.redis.zrange(SWEEPS, 0, -1)))


def set_state(store: JobStore, name: str, state: str) -> None:
    store.call(lambda: store.redis.hset(_P + name, "state", state))


@contextmanager
def locked(store: JobStore, name: str, wait: float = 0.0) -> Iterator[bool]:
    """True when this caller holds the sweep's lock (nobody else is advancing it); tries
    for up to `wait` seconds."""
    key, token = _P + name + ":lock", uuid.uuid4().hex
    deadline = time.monotonic() + wait
    while True:
        held = bool(store.call(lambda: store.redis.set(key, token, nx=True, px=int(LOCK_SECONDS * 1000))))
        if held or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    try:
        yield held
    finally:
        if held:  # release only our own lock
            store.call(lambda: store.redis.eval(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
                1, key, token))


# -- submit -------------------------------------------------------------------------------


def prepare(sweep: Sweep, artifacts: ArtifactStore, max_bytes: int, worker_memory: int) -> dict[str, Any]:
    """Check the inputs against the base spec and against every extreme of the space,
    then upload them; returns the base spec (with input keys) as a dict. A refusal names
    the line of the file that set what was refused."""
    cls = train_spec_class(sweep.task)
    placeholders = {field: "pending/input" for field in INPUT_FIELDS if field in sweep.base}
    base = cls.from_dict({**sweep.spec_fields(), **placeholders, "task": sweep.task})
    with tempfile.TemporaryDirectory(prefix="rnnq-sweep-inputs-") as scratch:
        paths = {name: _local_copy(sweep, artifacts, name, where, Path(scratch))
                 for name, where in sweep.inputs().items()}
        try:
            files = submitter.check_inputs(base, paths, max_bytes, encoding=sweep.encoding, worker_memory=worker_memory)
        except (SpecError, InvalidJob) as exc:
            raise sweep.error(sweep.where(exc.field or "data"), exc.message) from None
    for p in sweep.space:
        for place, value in p.extremes():
            try:
                submitter.check_files(cls.from_dict({**base.to_dict(), p.name: value}), files)
            except (SpecError, InvalidJob) as exc:
                raise sweep.error(f"space.{p.name}", f"{value!r}: {exc.field}: {exc.message}",
                                  at=f"space.{p.name}{place}") from None
    with submitter._uploading("the input files"):
        keys = {name: put_input(artifacts, data) for name, data in files.items()}
    fields = {field: keys[name] for field, name in INPUT_FIELDS.items() if name in keys}
    return cls.from_dict({**base.to_dict(), **fields}).to_dict()


def _local_copy(sweep: Sweep, artifacts: ArtifactStore, name: str, where: Path | str, scratch: Path) -> Path:
    """An input as a local file: its path, or an `artifact:KEY` fetched from the artifact store."""
    if isinstance(where, Path):
        return where
    try:
        return artifacts.get_file(where.removeprefix(ARTIFACT), scratch / name)
    except (ArtifactError, OSError) as exc:
        raise sweep.error(sweep.where(name), f"cannot fetch {where}: {exc}") from None


def create(store: JobStore, sweep: Sweep, base: dict[str, Any], name: str, parallel: int | None,
           queue: str | None) -> dict[str, Any]:
    """Record the sweep, create its study and enqueue the file's points (the first trials
    asked take them); nothing is queued yet (advance() does that)."""
    import optuna

    _quiet()
    config = {**sweep.to_dict(), "name": name, "parallel": parallel or sweep.parallel,
              "queue": queue or sweep.queue or TRAIN_QUEUE, "journal": "own"}
    created = store.call(lambda: store.redis.zadd(SWEEPS, {name: time.time()}, nx=True))
    if not created:
        if not store.call(lambda: store.redis.exists(_P + name)):
            raise InvalidJob("--name", f"a sweep named {name!r} was left half-made by a submit that died; "
                             f"`rnnq sweep delete {name}` frees the name")
        raise InvalidJob("--name", f"a sweep named {name!r} exists; choose another --name")
    try:
        study = optuna.create_study(study_name=name, storage=storage(store.url, config),
                                    direction=cast(Any, sweep.direction), sampler=_sampler(config, 0),
                                    pruner=_pruner(config))
        for point in sweep.enqueue:  # waiting trials: the first asks take them, in order
            study.enqueue_trial(point)
        store.call(lambda: store.redis.hset(_P + name, mapping={
            "config": json.dumps(config), "base": json.dumps(base), "state": "running",
            "created_at": repr(time.time()),
        }))
        store.call(lambda: store.redis.sadd(ACTIVE, name))
    except BaseException:  # Ctrl-C, Redis or the study's database lost: the name is free again
        with suppress(Exception):
            remove_half_made(store, name, config)
        raise
    return config


def unrecorded_state(store: JobStore, name: str) -> str | None:
    """What a taken name without a record is (a submit takes the name, then writes the
    record): "creating" while its submit may still be at work, "half-made" once
    HALF_MADE_SECONDS have passed (that submit died); None when the name is free."""
    taken = store.call(lambda: store.redis.zscore(SWEEPS, name))
    if taken is None:
        return None
    return "half-made" if time.time() - float(taken) > HALF_MADE_SECONDS else "creating"


def half_made(store: JobStore, name: str) -> bool:
    """The name is taken, has no record, and the submit that took it has died."""
    return unrecorded_state(store, name) == "half-made"


def remove_half_made(store: JobStore, name: str, config: dict[str, Any]) -> None:
    """Remove what a create that did not finish made: its study, its record and its name.
    The name is freed even when the study cannot be removed (its database may be what failed)."""
    try:
        delete_study(store, name, config)
    finally:
        store.call(lambda: store.redis.delete(_P + name))
        store.call(lambda: store.redis.zrem(SWEEPS, name))


def delete_study(store: JobStore, name: str, config: dict[str, Any]) -> None:
    """Remove a sweep's Optuna study: its own journal's keys, or through Optuna (an RDB, or
    a sweep recorded before per-sweep journals, in the shared append-only journal)."""
    import optuna

    if config.get("journal") == "own" and not settings_mod.resolve().sweep_storage:
        prefix = journal_prefix(config)
        last = int(store.call(lambda: store.redis.get(f"{prefix}:log_number")) or -1)
        for start in range(last, -1, -JOURNAL_DELETE_BATCH):  # newest first: log_number goes last
            keys = [f"{prefix}:log:{n}" for n in range(start, max(start - JOURNAL_DELETE_BATCH, -1), -1)]
            store.call(partial(store.redis.delete, *keys))
        store.call(lambda: store.redis.delete(f"{prefix}:snapshot", f"{prefix}:log_number"))
        return
    try:
        optuna.delete_study(study_name=name, storage=storage(store.url, config))
    except KeyError:  # deleted already (a delete that died half-way), or never made
        pass


def default_name(sweep: Sweep, path: Path) -> str:
    return sweep.name or f"{path.stem[:50]}-{secrets.token_hex(2)}"


# -- advance ------------------------------------------------------------------------------


def advance(store: JobStore, name: str, send: Send) -> bool:
    """Tell the study how finished trials ended and top up the running trials; returns
    False when another process is advancing the sweep right now (it will do the work)."""
    with locked(store, name) as held:
        if not held:
            return False
        rec = record(store, name)
        config, known = rec["config"], trials(store, name)
        study = load_study(store, name, config, asked=len(known))
        running = _tell_finished(store, name, study, config, known, told(store, name))
        _fail_orphans(study, known)
        if rec["state"] == "running":
            while running < config["parallel"] and len(known) < config["trials"]:
                number, job_id = _submit_trial(store, name, study, config, rec["base"], send)
                known[number] = job_id
                running += bool(job_id)
            if running == 0 and len(known) >= config["trials"]:
                set_state(store, name, "finished")
                rec["state"] = "finished"
        if rec["state"] != "running" and running == 0:
            store.call(lambda: store.redis.srem(ACTIVE, name))
        return True


def _tell_finished(store: JobStore, name: str, study: optuna.Study, config: dict[str, Any], known: dict[int, str],
                   done: set[int]) -> int:
    """Tell the study about every trial whose job has ended; returns how many are still in flight."""
    in_flight = 0
    for number, job_id in known.items():
        if number in done or not job_id:
            continue
        try:
            job: Job | None = store.get(job_id)
        except JobNotFound:  # deleted by hand: the trial failed
            job = None
        if job is not None and job.state not in FINAL_STATES:
            in_flight += 1
            continue
        state, value = outcome(job, config["objective"])
        study.tell(number, value, state=state, skip_if_finished=True)  # told already: a crash before the sadd
        store.call(partial(store.redis.sadd, _P + name + ":told", number))
        log.info("sweep %s: trial %d (job %s) ended %s %s", name, number, job_id, state.name, value)
    return in_flight


def outcome(job: Job | None, objective: str) -> tuple[optuna.trial.TrialState, float | None]:
    """How a trial job's end reads to the study: completed with its figure, pruned
    (stopped by the pruner or cancelled: Optuna keeps its last reported figure) or failed."""
    from optuna.trial import TrialState

    if job is None or job.state == "failed":
        return TrialState.FAIL, None
    if job.state == "cancelled" or (job.result or {}).get("stopped_by") == "pruned":
        return TrialState.PRUNED, None
    value = figure(job.result or {}, objective)
    if value is None:
        return TrialState.FAIL, None
    return TrialState.COMPLETE, value


def figure(result: dict[str, Any], objective: str) -> float | None:
    """The objective at the trial's best checkpoint (the one generate and predict use)."""
    if objective == "val_loss":
        value = result.get("best_val_loss", result.get("val_loss"))
    else:
        value = result.get(objective, (result.get("metrics") or {}).get(objective))
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _fail_orphans(study: optuna.Study, known: dict[int, str]) -> None:
    """A trial asked by a process that died before recording its job never runs: failed."""
    import optuna

    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if t.number not in known:
            study.tell(t.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)


def _submit_trial(store: JobStore, name: str, study: optuna.Study, config: dict[str, Any], base: dict[str, Any],
                  send: Send) -> tuple[int, str]:
    """Ask for a trial and queue its job; ('' as the job id when its spec was invalid)."""
    import optuna

    trial = study.ask(_distributions(config))
    try:
        spec = train_spec_class(config["task"]).from_dict({**base, **trial.params})
    except SpecError as exc:
        log.warning("sweep %s: trial %d has an invalid spec (%s); failed", name, trial.number, exc)
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        store.call(lambda: store.redis.hset(_P + name + ":trials", str(trial.number), ""))
        store.call(lambda: store.redis.sadd(_P + name + ":told", trial.number))
        return trial.number, ""
    job = store.create("train", spec.to_dict(), config["queue"], name=trial_name(name, trial.number),
                       sweep=(name, trial.number))
    store.call(lambda: store.redis.hset(_P + name + ":trials", str(trial.number), job.id))
    try:
        send(job.id, "train", config["queue"])
    except Exception as exc:  # noqa: BLE001 - the next advance tells the study this trial failed
        store.fail_unsent(job.id, f"could not enqueue: {exc}")
    return trial.number, job.id


def trial_name(sweep: str, number: int) -> str:
    """A trial job's name: what `rnnq watch` takes and the Grafana job dashboard's sweep
    panels select on (`job_name=~"$sweep-t[0-9]+"`)."""
    return f"{sweep}-t{number}"


def needs_advance(store: JobStore, name: str) -> bool:
    """Cheap check (no Optuna): a trial job ended untold, or the sweep has room for more."""
    try:
        rec = record(store, name)
    except SweepNotFound:
        return False
    known = trials(store, name)
    done = told(store, name)
    pending = [job_id for n, job_id in known.items() if n not in done and job_id]
    states = [row["state"] for row in store.fields(pending, "state")] if pending else []
    if any(s is None or s in FINAL_STATES for s in states):
        return True
    config = rec["config"]
    return rec["state"] == "running" and len(states) < config["parallel"] and (
        len(known) < config["trials"] or not states)


def advance_all(store: JobStore, send: Send) -> None:
    """The reaper's pass over the sweeps not yet over; never raises for one sweep's trouble."""
    for name in sorted(store.call(lambda: cast(set[str], store.redis.smembers(ACTIVE)))):
        try:
            if needs_advance(store, name):
                advance(store, name, send)
        except Exception:  # one sweep's trouble never stops the reaper
            log.warning("could not advance sweep %s", name, exc_info=True)


__all__ = ["SweepNotFound", "advance", "advance_all", "create", "default_name", "figure", "in_flight", "load_study",
           "locked", "outcome", "prepare", "record", "set_state", "storage", "told", "trial_name", "trials"]
