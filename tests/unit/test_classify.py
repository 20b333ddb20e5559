"""The classify task: it learns, padding is invisible, inputs are checked, checkpoints serve predict/evaluate."""

from __future__ import annotations

import csv
import io
import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from rnn_tasks import device as devices
from rnn_tasks.classify import metrics, table
from rnn_tasks.classify.data import TextEncoder, class_weights, encode
from rnn_tasks.classify.model import ClassifierConfig, TextClassifier
from rnn_tasks.classify.spec import ClassifySpec, check_inputs, labelled_splits
from rnn_tasks.classify.task import evaluate, predict, train
from rnn_tasks.loop import BEST, LAST, Callbacks, StepMetrics
from rnn_tasks.spec import SpecError, train_spec_from_dict

SMALL = {"data": "inputs/reviews", "hidden": 16, "embed": 16, "batch_size": 16, "lr": 0.01, "dropout": 0.1,
         "eval_every": 25, "warmup_steps": 5, "device": "cpu"}
FILLER = ["the", "a", "film", "food", "phone", "it", "was", "is", "and", "then", "service", "really", "quite"]
CUES = {"pos": ["great", "good", "love"], "neg": ["bad", "awful", "hate"]}


def reviews(n: int, seed: int = 0, pos_share: float = 0.5) -> list[tuple[str, str]]:
    """Texts whose label is given away by one cue word somewhere among filler words."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = "pos" if rng.random() < pos_share else "neg"
        words = [rng.choice(FILLER) for _ in range(rng.randint(3, 9))]
        words.insert(rng.randrange(len(words) + 1), rng.choice(CUES[label]))
        rows.append((" ".join(words).capitalize() + ".", label))
    return rows


def to_csv(rows: list[tuple[str, str]], header: tuple[str, str] | None = ("text", "label")) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    if header:
        writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Models this small only pay for intra-op threads (and on a busy shared box they spin):
    train() would set one thread per core, so hold it at one here."""
    threads = torch.get_num_threads()
    monkeypatch.setattr(devices, "configure", lambda dev: torch.set_num_threads(1))
    yield
    torch.set_num_threads(threads)


def _spec(**overrides: Any) -> ClassifySpec:
    return ClassifySpec.from_dict({**SMALL, **overrides})


def test_learns_a_keyword_task(tmp_path: Path) -> None:
    reports: list[StepMetrics] = []
    spec = _spec(epochs=12.0)
    summary = train(spec, {"data": to_csv(reviews(240))}, Callbacks(on_step=reports.append), tmp_path, None)
    losses = [r.loss for r in reports if not math.isnan(r.loss)]
    assert losses[-1] < 0.5 * losses[0]
    assert summary["best_val_loss"] < 0.5 * math.log(2)
    assert summary["accuracy"] > 0.85 and summary["macro_f1"] > 0.85  # chance is 0.5
    assert summary["labels"] == ["neg", "pos"]
    conf = summary["confusion"]
    assert len(conf) == 2 and sum(map(sum, conf)) == summary["rows"]["val"]
    assert summary["metrics"]["accuracy"] == pytest.approx(summary["accuracy"])
    assert summary["tokens"] > 0 and (tmp_path / BEST).is_file() and (tmp_path / LAST).is_file()


@pytest.mark.parametrize("pooling", ["mean", "max", "last"])
@pytest.mark.parametrize(("arch", "bidirectional"), [("gru", True), ("lstm", True), ("rnn", False)])
def test_padding_never_changes_a_texts_logits(pooling: str, arch: str, bidirectional: bool) -> None:
    texts = [t for t, _ in reviews(50, seed=3)]
    encoder = TextEncoder.fit("word", texts, lowercase=True, max_len=256)
    config = ClassifierConfig(vocab_size=len(encoder), n_classes=3, arch=arch, embed=8, hidden=8, layers=2,
                              dropout=0.3, bidirectional=bidirectional, pooling=pooling)
    torch.manual_seed(0)
    model = TextClassifier(config).eval()
    short = "Great phone."
    long_ones = [" ".join(texts[:12]), " ".join(texts[12:30]), short + " " + " ".join(texts[30:40])]
    alone = encode(encoder, [short], None, torch.device("cpu"))
    crowd = encode(encoder, [long_ones[0], short, long_ones[1], long_ones[2]], None, torch.device("cpu"))
    assert crowd.ids.shape[1] > 10 * alone.ids.shape[1]
    with torch.no_grad():
        a = model(alone.ids, alone.lengths)[0]
        b = model(crowd.ids, crowd.lengths)[1]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_single_class_labels_are_refused() -> None:
    data = to_csv([(text, "pos") for text, _ in reviews(40)])
    with pytest.raises(SpecError, match="single class") as err:
        check_inputs(_spec(), {"data": data})
    assert err.value.field == "label_column"


def test_a_missing_column_names_the_field() -> None:
    with pytest.raises(SpecError, match="'review'") as err:
        check_inputs(_spec(text_column="review"), {"data": to_csv(reviews(40))})
    assert err.value.field == "text_column"
    with pytest.raises(SpecError) as err:
        check_inputs(_spec(text_column="0", label_column="3"), {"data": to_csv(reviews(40), header=None)})
    assert err.value.field == "label_column"


@pytest.mark.parametrize(("data", "field", "message"), [
    (b"text,label\n\xff\xfe,pos\n", "DATA", "UTF-8"),
    (b"text,label\na,pos\nb,neg\nc,pos\n", "DATA", "validation"),
    (b"text,label\nfine,pos\nok,\n", "label_column", "empty label"),
])
def test_bad_files_are_refused_at_submit(data: bytes, field: str, message: str) -> None:
    with pytest.raises(SpecError, match=message) as err:
        check_inputs(_spec(), {"data": data})
    assert err.value.field == field


def test_spec_checks_and_defaults() -> None:
    spec = train_spec_from_dict({"data": "inputs/x", "task": "classify", "delimiter": "\\t"})
    assert isinstance(spec, ClassifySpec) and spec.delimiter == "\t" and spec.bidirectional
    assert ClassifySpec.from_json(spec.to_json()) == spec
    cases: list[tuple[dict[str, Any], str]] = [
        ({"pooling": "sum"}, "pooling"), ({"class_weights": "auto"}, "class_weights"),
        ({"header": False}, "text_column"), ({"delimiter": ";;"}, "delimiter"),
        ({"text_column": "label"}, "label_column"), ({"max_len": 0}, "max_len"),
    ]
    for bad, field in cases:
        with pytest.raises(SpecError) as err:
            _spec(**bad)
        assert err.value.field == field


def test_headerless_tsv_with_stray_quotes_and_crlf() -> None:
    # The UCI sentiment files: sentence<TAB>label, CRLF, quotes that open but never close.
    raw = b'" I love it.  \t1\r\nBut "Storm Trooper" is bad.\t0\r\nA, b; c | d.\t1\r\n\r\nMeh.\t0'
    rows, source, _, _ = labelled_splits(_spec(text_column="0", label_column="1", val_fraction=0.5),
                                         {"data": (raw + b"\r\n") * 2 + raw})
    assert source.delimiter == "\t" and source.header is None
    assert rows.texts[:4] == ['" I love it.  ', 'But "Storm Trooper" is bad.', "A, b; c | d.", "Meh."]
    assert rows.labels[:4] == ["1", "0", "1", "0"] and len(rows.texts) == 12


def test_header_detection_and_empty_texts() -> None:
    raw = b"sentence;stars\nnice;5\n ;1\nugly;1\nfine;5\nbad;1\ngood;5\nok;5\n"
    rows, source, _, _ = labelled_splits(_spec(text_column="0", label_column="1", val_fraction=0.3),
                                         {"data": raw})
    assert source.delimiter == ";" and source.header == ["sentence", "stars"]
    assert rows.skipped == 1 and len(rows.texts) == 6
    assert table.sorted_labels(["10", "2", "1"]) == ["1", "2", "10"]


def test_split_is_seeded_and_stratified() -> None:
    labels = ["a"] * 80 + ["b"] * 20
    train_idx, val_idx = table.split_indices(labels, 0.1, seed=1)
    assert sorted(train_idx + val_idx) == list(range(100))
    assert [labels[i] for i in val_idx].count("b") == 2 and len(val_idx) == 10
    assert table.split_indices(labels, 0.1, seed=1) == (train_idx, val_idx)
    assert table.split_indices(labels, 0.1, seed=2) != (train_idx, val_idx)


def test_class_weights_come_from_the_training_split() -> None:
    data = {"data": to_csv(reviews(120, seed=5, pos_share=0.8))}
    spec = _spec(max_steps=1, val_fraction=0.25)
    rows, _, train_idx, _ = labelled_splits(spec, data)
    n_pos = sum(rows.labels[i] == "pos" for i in train_idx)
    n_neg = len(train_idx) - n_pos
    summary = train(spec, data, None, None, None)
    expected = [len(train_idx) / (2 * n_neg), len(train_idx) / (2 * n_pos)]  # classes ["neg", "pos"]
    assert summary["class_weights"] == pytest.approx(expected)
    assert summary["class_weights"][0] > 1 > summary["class_weights"][1]
    assert train(_spec(max_steps=1, class_weights="none"), data, None, None, None)["class_weights"] is None
    assert class_weights([0, 0, 0, 1], 2) == [4 / 6, 4 / 2]


def test_predict_and_evaluate_round_trip_through_the_checkpoint(tmp_path: Path) -> None:
    rows = reviews(200, seed=1)
    spec = _spec(epochs=10.0, tokenizer="char", pooling="max")
    summary = train(spec, {"data": to_csv(rows)}, None, tmp_path, None)
    best = tmp_path / BEST

    # Evaluating the validation rows alone reproduces train's held-out figures.
    labelled, _, _, val_idx = labelled_splits(spec, {"data": to_csv(rows)})
    val_rows = [(labelled.texts[i], labelled.labels[i]) for i in val_idx]
    figures = evaluate(best, {"data": to_csv(val_rows)}, "cpu")
    assert figures["n"] == len(val_idx) and figures["labels"] == ["neg", "pos"]
    assert figures["confusion"] == summary["confusion"]
    assert figures["accuracy"] == pytest.approx(summary["accuracy"]) and figures["accuracy"] > 0.8

    lines = predict(best, "I love this phone.\n\nAwful, bad service \u00e9\u2603\r\n".encode(), {"format": "lines"}, "cpu")
    got = lines["predictions"]
    assert [p["text"] for p in got] == ["I love this phone.", "Awful, bad service \u00e9\u2603"]
    for p in got:
        assert set(p["probabilities"]) == {"neg", "pos"}
        assert sum(p["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert p["label"] == max(p["probabilities"], key=p["probabilities"].get)
    from_csv = predict(best, to_csv(val_rows[:5]), {"format": "csv"}, "cpu")["predictions"]
    assert [p["text"] for p in from_csv] == [t for t, _ in val_rows[:5]]
    one_column = predict(best, b"text\nso good\nbad bad\n", {"format": "csv"}, "cpu")["predictions"]
    assert [p["text"] for p in one_column] == ["so good", "bad bad"]
    with pytest.raises(SpecError) as err:
        predict(best, b"x", {"format": "xml"}, "cpu")
    assert err.value.field == "format"


def test_tfidf_baseline_is_reported_beside_train_and_eval_figures(tmp_path: Path) -> None:
    # Fitted on the training split only; scored on validation at train time and on any file at
    # eval time from the checkpoint's JSON, with the same predictions as scikit-learn's own pipeline.
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.pipeline import make_pipeline

    rows = reviews(200, seed=2)
    spec = _spec(max_steps=3)
    summary = train(spec, {"data": to_csv(rows)}, None, tmp_path, None)
    assert summary["baseline_accuracy"] > 0.9  # one cue word decides the label: TF-IDF + LR finds it

    labelled, _, train_idx, val_idx = labelled_splits(spec, {"data": to_csv(rows)})
    pipe = make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=1000))
    pipe.fit([labelled.texts[i] for i in train_idx], [labelled.labels[i] for i in train_idx])
    val_texts = [labelled.texts[i] for i in val_idx]
    expected = [a == b for a, b in zip(pipe.predict(val_texts), [labelled.labels[i] for i in val_idx], strict=True)]
    assert summary["baseline_accuracy"] == pytest.approx(sum(expected) / len(expected))

    unseen = reviews(120, seed=3)
    unseen[0] = ("Nothing but filler here zzz qq.", "pos")  # no known word: scored all the same
    figures = evaluate(tmp_path / BEST, {"data": to_csv(unseen)}, "cpu")
    truth = [label for _, label in unseen]
    predicted = list(pipe.predict([t for t, _ in unseen]))
    assert figures["baseline_accuracy"] == pytest.approx(accuracy_score(truth, predicted))
    assert figures["baseline_macro_f1"] == pytest.approx(f1_score(truth, predicted, average="macro"))


def test_labels_unseen_in_training_count_as_errors(tmp_path: Path) -> None:
    train(_spec(max_steps=5), {"data": to_csv(reviews(60))}, None, tmp_path, None)
    figures = evaluate(tmp_path / BEST, {"data": to_csv([("so so", "meh"), ("great", "pos")])}, "cpu")
    assert figures["labels"] == ["neg", "pos", "meh"] and figures["unseen_labels"] == ["meh"]
    assert figures["confusion"][2][2] == 0 and figures["n"] == 2


def test_resume_continues_from_the_last_checkpoint(tmp_path: Path) -> None:
    data = {"data": to_csv(reviews(80))}
    first = train(_spec(max_steps=6), data, None, tmp_path, None)
    resumed = train(_spec(max_steps=12), data, None, tmp_path, tmp_path / LAST)
    assert first["steps"] == 6 and resumed["steps"] == 12


def test_metrics() -> None:
    conf = metrics.confusion([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], 4)
    assert conf[0] == [1, 1, 0, 0] and conf[2] == [1, 0, 0, 0]
    assert metrics.accuracy(conf) == pytest.approx(3 / 5)
    # F1: class 0 = 2*1/(2+2) = 0.5, class 1 = 2*2/(2+3) = 0.8, class 2 = 0; class 3 is absent and left out.
    assert metrics.macro_f1(conf) == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def test_char_encoder_maps_unseen_characters_to_unk() -> None:
    encoder = TextEncoder.fit("char", ["abc"], lowercase=False, max_len=4)
    assert len(encoder) == 5 and encoder.encode("ab\u2603cdef") == [2, 3, 1, 4]
    assert encoder.encode("") == [1]
