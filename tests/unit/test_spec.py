"""Spec validation: every bad value is rejected with the field's name; JSON round trip."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnn_tasks.lm.spec import LMSpec
from rnn_tasks.spec import GenerateSpec, SpecError, min_corpus_chars

BAD_TRAIN_VALUES = [
    ("data", "../etc/passwd"),
    ("data", "/abs/path"),
    ("task", "translate"),
    ("arch", "transformer"),
    ("layers", 0),
    ("layers", 2.5),
    ("hidden", -1),
    ("embed", 0),
    ("dropout", 1.5),
    ("dropout", "0.1"),
    ("tie_weights", "yes"),
    ("seq_len", 0),
    ("batch_size", 0),
    ("lr", -0.1),
    ("lr", 0.0),
    ("lr", float("nan")),
    ("weight_decay", -1.0),
    ("l1", -1e-5),
    ("clip", 0.0),
    ("warmup_steps", -5),
    ("min_lr_ratio", 2.0),
    ("ema", 1.0),
    ("ema", -0.5),
    ("max_steps", 0),
    ("epochs", -1.0),
    ("time_budget", 0),
    ("eval_every", 0),
    ("val_fraction", 0.0),
    ("val_fraction", 0.9),
    ("patience", 0),
    ("seed", -1),
    ("device", "tpu"),
    ("device", "cuda:x"),
    ("amp", 1),
]


@pytest.mark.parametrize(("field", "value"), BAD_TRAIN_VALUES)
def test_bad_train_value_names_the_field(field: str, value: object) -> None:
    with pytest.raises(SpecError) as info:
        LMSpec.from_dict({"data": "corpora/abc.txt", field: value})
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}:")


def test_tie_weights_needs_equal_sizes() -> None:
    with pytest.raises(SpecError, match="tie_weights"):
        LMSpec(data="corpora/a", tie_weights=True, embed=32, hidden=64)
    assert LMSpec(data="corpora/a", tie_weights=True, embed=64, hidden=64).tie_weights


def test_unknown_key_is_rejected() -> None:
    with pytest.raises(SpecError) as info:
        LMSpec.from_dict({"data": "corpora/a", "learning_rate": 0.1})
    assert info.value.field == "learning_rate"


def test_missing_required_field() -> None:
    with pytest.raises(SpecError) as info:
        LMSpec.from_dict({"arch": "gru"})
    assert info.value.field == "data"


def test_json_round_trip() -> None:
    spec = LMSpec(data="corpora/a", arch="gru", layers=2, max_steps=10, clip=None)
    again = LMSpec.from_json(spec.to_json())
    assert again == spec
    gen = GenerateSpec(source="0123456789ab", prompts=("a", "b"), top_k=5, seed=3)
    assert GenerateSpec.from_dict(json.loads(gen.to_json())) == gen


BAD_GENERATE_VALUES = [
    ("source", "not-a-job"),
    ("prompts", []),
    ("prompts", [""]),
    ("max_tokens", 0),
    ("temperature", -1.0),
    ("top_k", 0),
    ("top_p", 0.0),
    ("top_p", 1.5),
    ("seed", -3),
    ("device", "gpu"),
]


@pytest.mark.parametrize(("field", "value"), BAD_GENERATE_VALUES)
def test_bad_generate_value_names_the_field(field: str, value: object) -> None:
    with pytest.raises(SpecError) as info:
        GenerateSpec.from_dict({"source": "0123456789ab", field: value})
    assert info.value.field.split("[")[0] == field


def test_min_corpus_chars_leaves_a_window_and_a_validation_split() -> None:
    n = min_corpus_chars(64, 0.1)
    assert n - int(n * 0.1) >= 65 and int(n * 0.1) >= 2
    assert (n - 1) - int((n - 1) * 0.1) < 65 or int((n - 1) * 0.1) < 2


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=8,
)
field_names = st.sampled_from([f for f, _ in BAD_TRAIN_VALUES] + ["data", "hidden", "nonsense"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(field_names, json_values, max_size=6))
def test_any_json_object_is_a_spec_or_a_spec_error(data: dict[str, object]) -> None:
    try:
        spec = LMSpec.from_dict(data)
    except SpecError as exc:
        assert exc.field
    else:
        assert LMSpec.from_json(spec.to_json()) == spec
