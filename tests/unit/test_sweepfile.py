"""Sweep files are checked before anything is queued; every error names the line and key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from workers.sweepfile import Sweep, SweepError, load, parse

GOOD = """\
name: lr-search
base:
  data: corpus.txt
  arch: lstm
  seq_len: 64
space:
  lr: {low: 1.0e-4, high: 3.0e-2, log: true}
  hidden: {low: 32, high: 256, step: 32}
  arch: [lstm, gru]
  dropout: {low: 0.0, high: 0.5}
trials: 12
budget: {max_steps: 600}
sampler: {name: tpe, seed: 1}
pruner: {name: asha, min_resource: 100, reduction_factor: 3}
parallel: 3
"""


def _error(text: str) -> str:
    with pytest.raises(SweepError) as info:
        parse(textwrap.dedent(text), Path("/sweeps"))
    return str(info.value)


def test_a_good_file_parses_into_a_sweep() -> None:
    sweep = parse(GOOD, Path("/sweeps"))
    assert isinstance(sweep, Sweep)
    assert sweep.name == "lr-search" and sweep.task == "lm" and sweep.trials == 12 and sweep.parallel == 3
    assert sweep.inputs() == {"data": Path("/sweeps/corpus.txt")}
    assert sweep.spec_fields() == {"arch": "lstm", "seq_len": 64, "max_steps": 600}
    lr, hidden, arch, dropout = sweep.space
    assert (lr.low, lr.high, lr.log, lr.is_int) == (1e-4, 3e-2, True, False)
    assert (hidden.is_int, hidden.step, hidden.grid()) == (True, 32, [32, 64, 96, 128, 160, 192, 224, 256])
    assert arch.choices == ("lstm", "gru") and not dropout.is_int
    assert (sweep.objective, sweep.direction) == ("val_loss", "minimize")
    assert (sweep.sampler, sweep.seed, sweep.pruner) == ("tpe", 1, "asha")
    assert sweep.pruner_options == {"min_resource": 100, "reduction_factor": 3}


def test_defaults_and_directions_by_figure() -> None:
    sweep = parse("base: {data: x.csv, task: classify, text_column: '0', label_column: '1'}\n"
                  "space: {hidden: [16, 32]}\nobjective: accuracy\n")
    assert (sweep.task, sweep.objective, sweep.direction) == ("classify", "accuracy", "maximize")
    assert (sweep.trials, sweep.sampler, sweep.pruner, sweep.parallel) == (16, "tpe", "none", 2)
    assert parse("base: {data: x.csv, task: forecast}\nspace: {hidden: [16]}\nobjective: rmse\n").direction == "minimize"


def test_grid_caps_trials_at_the_grid_size() -> None:
    sweep = parse("base: {data: c.txt}\nspace:\n  hidden: {low: 32, high: 64, step: 32}\n  arch: [gru, lstm]\n"
                  "sampler: grid\ntrials: 50\n")
    assert sweep.trials == 4


@pytest.mark.parametrize(("text", "expected"), [
    ("base: {data: c.txt}\nspace: {lr: [0.1]}\nepochs: 3\n", "line 3: epochs: unknown key"),
    ("base: {data: c.txt}\n", "space: required key is missing"),
    ("base: {data: c.txt}\nspace:\n  lr: {low: 0.1, high: 0.01}\n", "line 3: space.lr: empty range"),
    ("base: {data: c.txt}\nspace:\n  hidden: []\n", "line 3: space.hidden: empty list of choices"),
    ("base: {data: c.txt}\nspace:\n  lr: {low: 0.1}\n", "line 3: space.lr: a range needs both low and high"),
    ("base: {data: c.txt}\nspace:\n  lr: {low: 0, high: 1, log: true}\n", "line 3: space.lr.low: a log range needs low > 0"),
    ("base: {data: c.txt}\nspace:\n  lr: {low: 0.1, high: 1, spacing: 2}\n", "line 3: space.lr.spacing: unknown key"),
    ("base: {data: c.txt}\nspace:\n  hiden: [8, 16]\n", "line 3: space.hiden: not a field of a lm spec"),
    ("base: {data: c.txt}\nspace:\n  data: [a, b]\n", "space.data: not a field of a lm spec that can be searched"),
    ("base: {data: c.txt}\nspace:\n  arch: [lstm, transformer]\n", "line 3: space.arch: 'transformer': must be one of"),
    ("base: {data: c.txt}\nspace:\n  dropout: {low: 0.0, high: 2.0}\n", "line 3: space.dropout: 2.0: must be in"),
    ("base: {data: c.txt}\nspace: {lr: [0.1]}\nobjective: bleu\n", "line 3: objective: the lm task does not report 'bleu'"),
    ("base: {data: c.txt}\nspace: {lr: [0.1]}\ndirection: up\n", "line 3: direction: must be minimize or maximize"),
    ("base: {data: c.txt}\nspace: {lr: [0.1]}\nsampler: bayes\n", "line 3: sampler: must be one of grid, random, tpe"),
    ("base: {data: c.txt}\nspace: {lr: [0.1]}\npruner: {name: median}\n", "line 3: pruner.name: must be one of none, asha"),
    ("base: {data: c.txt}\nspace: {lr: [0.1]}\npruner: {name: asha, eta: 3}\n", "pruner.eta: unknown option for asha"),
    ("base: {data: c.txt}\nspace: {lr: [0.1]}\nbudget: {steps: 10}\n", "line 3: budget.steps: unknown budget"),
    ("base: {data: c.txt}\nspace: {lr: [0.1]}\nbudget: {max_steps: 0}\n", "budget.max_steps: must be in"),
    ("base: {data: c.txt}\nspace: {lr: [0.1]}\ntrials: 0\n", "line 3: trials: expected an integer"),
    ("base: {data: c.txt, hiden: 3}\nspace: {lr: [0.1]}\n", "line 1: base.hiden: does not apply"),
    ("base: {arch: gru}\nspace: {lr: [0.1]}\n", "line 1: base: data: the input file is missing"),
    ("base: {data: c.txt, task: speech}\nspace: {lr: [0.1]}\n", "line 1: base.task: must be one of"),
    ("base: {data: c.txt}\nspace:\n  lr: {low: 0.1, high: 1}\nsampler: grid\n", "space.lr: the grid sampler needs"),
    ("base: {data: c.txt}\nspace: [lr]\n", "line 2: space: expected a mapping"),
    ("base: {data: c.txt\n", "not valid YAML"),
])
def test_errors_name_the_line_and_key(text: str, expected: str) -> None:
    message = _error(text)
    assert message.startswith("SWEEP_FILE: ") and expected in message, message


def test_unreadable_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(SweepError, match="cannot read"):
        load(tmp_path / "missing.yaml")


def test_prepare_checks_the_corpus_at_every_extreme_then_uploads(tmp_path: Path) -> None:
    from tests.support import make_corpus
    from workers import sweep as sweeps
    from workers.artifacts import open_store

    (tmp_path / "c.txt").write_text(make_corpus(3_000))
    store = open_store(str(tmp_path / "artifacts"))
    too_long = parse("base: {data: c.txt, hidden: 16}\nspace:\n  seq_len: [16, 100000]\n", tmp_path)
    with pytest.raises(SweepError, match=r"space.seq_len = 100000: data: .* characters"):
        sweeps.prepare(too_long, store, 10**8, 2**32)
    assert not [p for p in (tmp_path / "artifacts").rglob("*") if p.is_file()]  # nothing uploaded
    base = sweeps.prepare(parse("base: {data: c.txt, hidden: 16}\nspace: {seq_len: [16, 32]}\nbudget: {max_steps: 5}\n",
                                tmp_path), store, 10**8, 2**32)
    assert base["data"] != "c.txt" and base["hidden"] == 16 and base["max_steps"] == 5 and base["task"] == "lm"
    assert store.get_bytes(base["data"]).decode() == (tmp_path / "c.txt").read_text()
