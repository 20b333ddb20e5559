"""Sweep files are checked before anything is queued; every error names the line and key."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from rnn_tasks.spec import train_spec_class
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
    assert sweep.pruner_options == {"min_resource": 100, "reduction_factor": 3, "resource": "steps"}


def test_defaults_and_directions_by_figure() -> None:
    sweep = parse("base: {data: x.csv, task: classify, text_column: '0', label_column: '1'}\n"
                  "space: {hidden: [16, 32]}\nobjective: accuracy\n")
    assert (sweep.task, sweep.objective, sweep.direction) == ("classify", "accuracy", "maximize")
    assert (sweep.trials, sweep.sampler, sweep.pruner, sweep.parallel) == (16, "tpe", "none", 2)
    assert parse("base: {data: x.csv, task: forecast}\nspace: {hidden: [16]}\nobjective: rmse\n").direction == "minimize"


BASE = "base: {data: c.txt, arch: lstm}\nspace: {lr: [0.001, 0.01]}\n"


@pytest.mark.parametrize(("rest", "expected"), [
    # a time budget alone: rungs count training seconds, the first just above a ninth of the
    # budget, so no rung is at or near the end (75 s: rungs at 9 and 27, none at 81; rounded
    # down, 8, 24 and 72; 90 s: 11, 33 and 99, not 10, 30 and 90, where a trial would be
    # pruned at its last evaluation, as 180 s with 20 did)
    ("budget: {time_budget: 90}\npruner: asha\n", {"resource": "seconds", "min_resource": 11}),
    ("budget: {time_budget: 180}\npruner: asha\n", {"resource": "seconds", "min_resource": 21}),
    ("budget: {time_budget: 75}\npruner: asha\n", {"resource": "seconds", "min_resource": 9}),
    ("budget: {time_budget: 90}\npruner: {name: asha, reduction_factor: 2}\n",
     {"resource": "seconds", "min_resource": 23, "reduction_factor": 2}),
    ("budget: {time_budget: 90}\npruner: hyperband\n",
     {"resource": "seconds", "min_resource": 11, "max_resource": 90}),
    ("budget: {time_budget: 90}\npruner: {name: asha, min_resource: 5}\n", {"resource": "seconds", "min_resource": 5}),
    # steps otherwise, or when asked for; Optuna's defaults left alone
    ("budget: {max_steps: 600}\npruner: asha\n", {"resource": "steps"}),
    ("budget: {max_steps: 600, time_budget: 90}\npruner: asha\n", {"resource": "steps"}),
    ("budget: {time_budget: 90}\npruner: {name: asha, resource: steps}\n", {"resource": "steps"}),
    ("budget: {max_steps: 600, time_budget: 90}\npruner: {name: asha, resource: seconds}\n",
     {"resource": "seconds", "min_resource": 11}),
    ("budget: {time_budget: 90}\n", {}),
])
def test_pruner_rungs_count_seconds_under_a_time_budget(rest: str, expected: dict[str, Any]) -> None:
    assert parse(BASE + rest).pruner_options == expected


@pytest.mark.parametrize(("rest", "expected"), [
    ("budget: {max_steps: 600}\npruner: {name: asha, resource: seconds}\n",
     "line 4: pruner.resource: seconds needs a budget.time_budget"),
    ("budget: {time_budget: 90}\npruner: {name: asha, resource: minutes}\n",
     "line 4: pruner.resource: must be one of steps, seconds, got 'minutes'"),
])
def test_a_resource_the_budget_cannot_measure_is_refused(rest: str, expected: str) -> None:
    assert expected in _error(BASE + rest)


def test_a_combination_of_values_the_spec_refuses_is_refused_at_submit() -> None:
    # each value is valid alone; tied weights need embed == hidden, which 64 with 128 is not
    # (the refusal keeps the values it cannot do without; the rest stand at a corner that passes)
    message = _error("""\
        base:
          data: c.txt
          tie_weights: true
        space:
          embed: [64, 128]
          hidden: [64, 128]
        """)
    assert message == ("SWEEP_FILE: line 6: space.hidden: 128: tie_weights: needs embed == hidden, got 64 and 128")


def test_only_combinations_a_trial_can_draw_are_checked() -> None:
    # the base's hidden (256 by default) is never trained: the space gives it, always equal to embed
    sweep = parse("base: {data: c.txt, tie_weights: true}\nspace: {embed: [128], hidden: [128], lr: [0.001, 0.01]}\n")
    assert [p.name for p in sweep.space] == ["embed", "hidden", "lr"]


def test_a_large_space_is_checked_by_pairs() -> None:
    # 4^7 = 16,384 corners are past the cap: pairs are checked, the rest at a corner that passes
    text = "base: {data: c.txt, tie_weights: true}\nspace:\n" + "".join(
        f"  {k}: [0.05, 0.1, 0.2, 0.3]\n" for k in ("dropout", "weight_decay", "l1", "min_lr_ratio", "val_fraction"))
    assert len(parse(text + "  clip: [0.5, 1, 2, 4]\n  embed: [64]\n  hidden: [64]\n").space) == 8
    message = _error(text + "  embed: [64, 96, 128, 160]\n  hidden: [64, 96, 128, 160]\n")
    assert message == "SWEEP_FILE: line 8: space.embed: 96: tie_weights: needs embed == hidden, got 96 and 64"


ENQUEUE = """\
base: {data: c.txt, hidden: 256}
space:
  lr: {low: 1.0e-3, high: 3.0e-2, log: true}
  hidden: {low: 128, high: 768, step: 128}
  arch: [lstm, gru]
trials: 3
"""


def test_enqueued_points_take_the_base_values_and_spec_defaults() -> None:
    sweep = parse(ENQUEUE + "enqueue: [base, {lr: 0.01, arch: gru}]\n")
    base, partial = sweep.enqueue
    assert (base["hidden"], base["arch"]) == (256, "lstm")  # set by the base; arch and lr are the spec's defaults
    assert base["lr"] == next(f.default for f in dataclasses.fields(train_spec_class("lm")) if f.name == "lr")
    assert partial == {"lr": 0.01, "arch": "gru"}
    assert sweep.to_dict()["enqueue"] == [base, partial]
    assert parse(ENQUEUE).enqueue == ()  # no enqueue key: every trial is drawn


@pytest.mark.parametrize(("rest", "expected"), [
    ("enqueue: base\n", "line 7: enqueue: expected a list of points"),
    ("enqueue: [base, base, base, base]\n", "line 7: enqueue: 4 points, more than the sweep's 3 trials"),
    ("enqueue: [{lr: 0.5}]\n", "line 7: enqueue[0].lr: 0.5 is not one the space can draw (0.001 to 0.03)"),
    ("enqueue: [{hidden: 200}]\n", "enqueue[0].hidden: 200 is not one the space can draw (128 to 768 in steps of 128)"),
    ("enqueue: [{hidden: 256.0}]\n", "enqueue[0].hidden: 256.0 is not one the space can draw"),
    ("enqueue: [{arch: rnn}]\n", "enqueue[0].arch: 'rnn' is not one the space can draw (one of 'lstm', 'gru')"),
    ("enqueue: [{layers: 2}]\n", "enqueue[0].layers: not a searched field (the space has lr, hidden, arch)"),
    ("enqueue:\n  - base\n  - 3\n", "line 9: enqueue[1]: expected `base` or a mapping"),
    ("enqueue: [{}]\n", "enqueue[0]: expected `base` or a mapping"),
])
def test_bad_enqueued_points_are_refused_naming_the_line(rest: str, expected: str) -> None:
    assert expected in _error(ENQUEUE + rest)


def test_a_base_the_space_cannot_draw_is_refused_when_enqueued() -> None:
    text = ENQUEUE.replace("hidden: 256", "hidden: 100") + "enqueue: [base]\n"
    assert _error(text) == ("SWEEP_FILE: line 7: enqueue[0]: the base job's hidden, 100, "
                            "is not one the space can draw (128 to 768 in steps of 128)")
    assert "grid sampler tries every point" in _error(ENQUEUE.replace("lr: {low: 1.0e-3, high: 3.0e-2, log: true}",
                                                                      "lr: [0.01]") + "sampler: grid\nenqueue: [base]\n")


def test_grid_caps_trials_at_the_grid_size() -> None:
    sweep = parse("base: {data: c.txt}\nspace:\n  hidden: {low: 32, high: 64, step: 32}\n  arch: [gru, lstm]\n"
                  "sampler: grid\ntrials: 50\n")
    assert sweep.trials == 4


@pytest.mark.parametrize(("text", "expected"), [
    ("base: {data: c.txt}\nspace: {lr: [0.1]}\nepochs: 3\n", "line 3: epochs: unknown key"),
    ("base: {data: c.txt}\n", "space: required key is missing"),
    ("base: {data: c.txt}\nspace:\n  lr: {low: 0.1, high: 0.01}\n", "line 3: space.lr: empty range"),
    ("base: {data: c.txt}\nspace:\n  lr: {low: 0.1, high: 0.1}\n", "line 3: space.lr: empty range"),
    ("base: {data: c.txt}\nspace:\n  hidden: {low: 8.5, high: 64, type: int}\n", "line 3: space.hidden.type: an int"),
    ("base: {data: c.txt}\nspace:\n  hidden: []\n", "line 3: space.hidden: empty list of choices"),
    ("base: {data: c.txt}\nspace:\n  lr: {low: 0.1}\n", "line 3: space.lr: a range needs both low and high"),
    ("base: {data: c.txt}\nspace:\n  lr: {low: 0, high: 1, log: true}\n", "line 3: space.lr.low: a log range needs low > 0"),
    ("base: {data: c.txt}\nspace:\n  lr: {low: 0.1, high: 1, spacing: 2}\n", "line 3: space.lr.spacing: unknown key"),
    ("base: {data: c.txt}\nspace:\n  hiden: [8, 16]\n", "line 3: space.hiden: not a field of a lm spec"),
    ("base: {data: c.txt}\nspace:\n  data: [a, b]\n", "space.data: not a field of a lm spec that can be searched"),
    ("base: {data: c.csv, task: classify}\nspace:\n  init_from: [my-lm]\n", "line 3: space.init_from: not a field"),
    ("base: {data: c.csv, task: classify, init_from: my-lm}\nspace: {lr: [0.1]}\n",
     "line 1: base.init_from: a sweep cannot start from another job's model yet"),
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
    ("base: {data: c.txt\n", "line 2: not valid YAML"),
    ("# a comment\n\n- base\n- space\n", "line 3: expected a mapping"),
    ("base: {data: c.txt}\n", "line 1: space: required key is missing"),
    ("base: {data: c.txt, encoding: klingon}\nspace: {lr: [0.1]}\n", "line 1: base.encoding: unknown encoding"),
    ("base: {data: c.txt, task: transcribe}\nspace: {lr: [0.1]}\nobjective: bleu\n",
     "line 3: objective: the transcribe task does not report 'bleu' at evaluation (it reports val_loss, cer, wer)"),
])
def test_errors_name_the_line_and_key(text: str, expected: str) -> None:
    message = _error(text)
    assert message.startswith("SWEEP_FILE: ") and expected in message, message


# Every refusal names the line of the key (or value) at fault in a file laid out one key
# a line, as people write them: each case replaces one line of BLOCK.
BLOCK = """\
name: lines
base:
  data: corpus.txt
  arch: lstm
  seq_len: 64
space:
  lr:
    low: 1.0e-4
    high: 3.0e-2
    log: true
  arch:
    - lstm
    - gru
objective: val_loss
trials: 8
budget:
  max_steps: 600
sampler: tpe
pruner: asha
"""


@pytest.mark.parametrize(("line", "text", "expected"), [
    (5, "  seq_lenn: 64", "line 5: base.seq_lenn: does not apply to task lm"),  # an unknown base field
    (5, "  seq-len: -1", "line 5: base.seq_len: must be in"),  # spelled with a dash, as in a job file
    (5, "  arch: gru", "line 5: base.arch: given twice (first on line 4)"),
    (11, "  arc:", "line 11: space.arc: not a field of a lm spec"),  # an unknown space field
    (9, "    high: 1.0e-5", "line 7: space.lr: empty range: low 0.0001 is not below high 1e-05"),
    (8, "    low: -1.0", "line 8: space.lr.low: a log range needs low > 0"),
    (13, "    - transformer", "line 13: space.arch: 'transformer': must be one of lstm, gru, rnn"),
    (11, "  arch: []", "line 11: space.arch: empty list of choices"),
    (14, "objective: accuracy", "line 14: objective: the lm task does not report 'accuracy' at evaluation"),
    (15, "trials: 0", "line 15: trials: expected an integer in [1, 10000], got 0"),
    (15, "trials: -3", "line 15: trials: expected an integer in [1, 10000], got -3"),
    (17, "  steps: 600", "line 17: budget.steps: unknown budget"),
    (17, "  max_steps: 0", "line 17: budget.max_steps: must be in"),
    (18, "sampler: bayes", "line 18: sampler: must be one of grid, random, tpe, got 'bayes'"),
    (19, "pruner: median", "line 19: pruner: must be one of none, asha, hyperband, got 'median'"),
    (19, "pruners: asha", "line 19: pruners: unknown key"),
])
def test_each_refusal_names_its_line(line: int, text: str, expected: str) -> None:
    lines = BLOCK.splitlines()
    lines[line - 1] = text
    if text == "  arch: []":
        del lines[11:13]  # the list items that followed
    message = _error("\n".join(lines) + "\n")
    assert message.startswith(f"SWEEP_FILE: {expected}"), message


def test_json_files_read_as_json_and_name_their_lines() -> None:
    doc: dict[str, Any] = {"name": "lr-search", "base": {"data": "corpus.txt", "arch": "lstm", "seq_len": 64},
                           "space": {"lr": {"low": 1e-4, "high": 3e-2, "log": True},
                                     "hidden": {"low": 32, "high": 256, "step": 32},
                                     "arch": ["lstm", "gru"], "dropout": {"low": 0.0, "high": 0.5}},
                           "trials": 12, "budget": {"max_steps": 600}, "sampler": {"name": "tpe", "seed": 1},
                           "pruner": {"name": "asha", "min_resource": 100, "reduction_factor": 3}, "parallel": 3}
    text = json.dumps(doc, indent="\t")  # tabs, and 1e-4 written as JSON writes it ("0.0001") ...
    assert parse(text, Path("/sweeps")) == parse(GOOD, Path("/sweeps"))
    assert "\t" in text
    compact = parse(json.dumps(doc, separators=(",", ":")).replace("0.0001", "1e-4"), Path("/sweeps"))
    assert compact == parse(GOOD, Path("/sweeps"))  # ... or as 1e-4: a float, as in JSON
    doc["space"]["arch"] = ["lstm", "transformer"]
    text = json.dumps(doc, indent="\t")
    line = text.splitlines().index('\t\t\t"transformer"') + 1
    assert _error(text) == f"SWEEP_FILE: line {line}: space.arch: 'transformer': must be one of lstm, gru, rnn, " \
                           "got 'transformer'"


def test_yaml_exponents_are_numbers_and_tags_stay_refused() -> None:
    sweep = parse("base: {data: c.txt}\nspace:\n  lr: {low: 1e-4, high: 3E-2, log: true}\n")
    assert (sweep.space[0].low, sweep.space[0].high) == (1e-4, 3e-2)
    assert "line 2: not valid YAML" in _error("base: {data: c.txt}\nspace: !!python/object:os.system {}\n")


def test_inputs_may_be_artifacts_and_encoding_a_job_file_field() -> None:
    sweep = parse("base: {data: 'artifact:inputs/abc', encoding: latin-1}\nspace: {lr: [0.1]}\n", Path("/sweeps"))
    assert sweep.inputs() == {"data": "artifact:inputs/abc"} and sweep.encoding == "latin-1"
    assert "encoding" not in sweep.spec_fields()


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
    with pytest.raises(SweepError, match=r"line 3: space.seq_len: 100000: data: .* characters"):
        sweeps.prepare(too_long, store, 10**8, 2**32)
    missing = parse("base:\n  hidden: 16\n  data: gone.txt\nspace: {seq_len: [16]}\n", tmp_path)
    with pytest.raises(SweepError, match=r"^SWEEP_FILE: line 3: base.data: .*gone.txt does not exist$"):
        sweeps.prepare(missing, store, 10**8, 2**32)
    assert not [p for p in (tmp_path / "artifacts").rglob("*") if p.is_file()]  # nothing uploaded
    base = sweeps.prepare(parse("base: {data: c.txt, hidden: 16}\nspace: {seq_len: [16, 32]}\nbudget: {max_steps: 5}\n",
                                tmp_path), store, 10**8, 2**32)
    assert base["data"] != "c.txt" and base["hidden"] == 16 and base["max_steps"] == 5 and base["task"] == "lm"
    assert store.get_bytes(base["data"]).decode() == (tmp_path / "c.txt").read_text()


def test_prepare_takes_an_input_from_the_artifact_store(tmp_path: Path) -> None:
    # What `rnnq status JOB --spec` writes for an object store: the sweep's base may name it.
    from tests.support import make_corpus
    from workers import sweep as sweeps
    from workers.artifacts import open_store, put_input

    store = open_store(str(tmp_path / "artifacts"))
    key = put_input(store, make_corpus(3_000).encode())
    sweep = parse(f"base: {{data: 'artifact:{key}', hidden: 16}}\nspace: {{seq_len: [16, 32]}}\n", tmp_path)
    assert sweeps.prepare(sweep, store, 10**8, 2**32)["data"] == key
    gone = parse("base:\n  hidden: 16\n  data: artifact:inputs/0000\nspace: {seq_len: [16]}\n", tmp_path)
    with pytest.raises(SweepError, match=r"^SWEEP_FILE: line 3: base.data: cannot fetch artifact:inputs/0000"):
        sweeps.prepare(gone, store, 10**8, 2**32)
