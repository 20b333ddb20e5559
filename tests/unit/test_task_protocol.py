"""Every kind implements the one Task protocol, and the worker finds it by name."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

from rnn_tasks import task
from rnn_tasks.classify import task as classify
from rnn_tasks.forecast import task as forecast
from rnn_tasks.lm import task as lm
from rnn_tasks.spec import TASKS, SpecError, train_spec_class
from rnn_tasks.transcribe import task as transcribe
from rnn_tasks.translate import task as translate

# mypy checks each module against the protocol here: a missing entry point or a changed
# signature fails the type check, not a job at run time.
MODULES: dict[str, task.Task] = {"lm": lm, "classify": classify, "forecast": forecast, "translate": translate,
                                 "transcribe": transcribe}


def test_every_task_has_a_module_and_a_spec_with_its_submit_check() -> None:
    assert set(MODULES) == set(TASKS)
    for name, module in MODULES.items():
        assert task.lookup(name) is module
        spec = train_spec_class(name)
        assert spec.TASK == name
        check = inspect.getmodule(spec).check_inputs  # type: ignore[union-attr]
        assert list(inspect.signature(check).parameters) == ["spec", "files"]
        for entry in ("train", "predict", "evaluate"):
            assert callable(getattr(module, entry)), (name, entry)


def test_predict_and_evaluate_options_are_request_fields() -> None:
    from rnn_tasks.spec import EvalSpec, PredictSpec

    for name in TASKS:
        spec = train_spec_class(name)
        assert set(spec.PREDICT_OPTIONS) <= set(PredictSpec.__dataclass_fields__), name
        assert set(spec.EVAL_OPTIONS) <= set(EvalSpec.__dataclass_fields__), name
    assert [name for name in TASKS if train_spec_class(name).GENERATES] == ["lm"]


def test_only_the_language_model_generates() -> None:
    assert task.generator("lm") is lm
    for name in ("classify", "forecast", "translate", "transcribe"):
        with pytest.raises(SpecError) as err:
            task.generator(name)
        assert err.value.field == "source" and name in err.value.message


def test_an_unknown_task_is_refused_naming_the_field() -> None:
    with pytest.raises(SpecError) as err:
        task.lookup("speech")
    assert err.value.field == "task"


def test_options_pass_only_what_is_set_and_taken() -> None:
    request = {"beam": 4, "max_len": None, "format": "csv", "lm": None}
    assert task.options(request, train_spec_class("translate").PREDICT_OPTIONS) == {"beam": 4}
    assert task.options(request, train_spec_class("forecast").PREDICT_OPTIONS) == {}


def test_a_task_on_the_shared_loop_loads_no_other_task() -> None:
    # The loop owns what every task needs (callbacks, metrics, lr schedule, checkpoint names):
    # training a forecaster imports neither the language model nor the HF tokenizers.
    code = ("import sys, rnn_tasks.forecast.task; "
            "print(sorted(m for m in sys.modules if m.startswith(('rnn_tasks.lm', 'rnn_tasks.tokenizer', 'tokenizers'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
