"""The classify task: it learns, padding is invisible, inputs are checked, checkpoints serve predict/evaluate."""

from __future__ import annotations

import csv
import io
import math
import random
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from rnn_tasks import device as devices
from rnn_tasks.classify import metrics, table
from rnn_tasks.classify.data import TextEncoder, class_weights, encode
from rnn_tasks.classify.model import ClassifierConfig, Ensemble, TextClassifier, build
from rnn_tasks.classify.spec import ClassifySpec, check_inputs, labelled_splits
from rnn_tasks.classify.task import evaluate, predict, train
from rnn_tasks.loop import BEST, LAST, Callbacks, StepMetrics
from rnn_tasks.spec import SpecError, train_spec_from_dict
from tests.support import init_from_refusal

SMALL = {"data": "inputs/reviews", "hidden": 16, "embed": 16, "batch_size": 16, "lr": 0.01, "dropout": 0.1,
         "eval_every": 25, "warmup_steps": 5, "device": "cpu",
         "ensemble": 1}  # one network: the ensemble has its own test; five would take five times the seconds
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


def test_an_ensemble_predicts_the_mean_of_its_members_probabilities() -> None:
    texts = [t for t, _ in reviews(20, seed=4)]
    encoder = TextEncoder.fit("word", texts, lowercase=True, max_len=256)
    config = ClassifierConfig(vocab_size=len(encoder), n_classes=3, arch="lstm", embed=8, hidden=8, members=3)
    torch.manual_seed(0)
    model = build(config).eval()
    assert isinstance(model, Ensemble) and len(model.networks()) == 3
    assert not torch.equal(model.networks()[0].head.weight, model.networks()[1].head.weight)  # each its own start
    rows = encode(encoder, texts, None, torch.device("cpu"))
    with torch.no_grad():
        each = torch.softmax(model.member_logits(rows.ids, rows.lengths), -1)  # (3, B, classes)
        probs = torch.softmax(model(rows.ids, rows.lengths), -1)
    torch.testing.assert_close(probs, each.mean(0), atol=1e-6, rtol=0)
    assert not torch.allclose(each[0], each[1])  # so the mean is not any one member's
    assert isinstance(build(replace(config, members=1)), TextClassifier)  # one network: the names it always had


def test_an_ensemble_trains_every_member_and_serves_predict(tmp_path: Path) -> None:
    rows = reviews(200, seed=2)
    summary = train(_spec(epochs=10.0, ensemble=3), {"data": to_csv(rows)}, None, tmp_path, None)
    assert summary["accuracy"] > 0.8
    weights, meta = _lm_weights(tmp_path / BEST)
    assert meta["model"]["members"] == 3
    assert {k.split(".")[1] for k in weights} == {"0", "1", "2"}  # members.<k>.*, and nothing else
    assert not torch.equal(weights["members.0.head.weight"], weights["members.1.head.weight"])
    got = predict(tmp_path / BEST, b"I love this phone.\nAwful, bad service\n", {"format": "lines"}, "cpu")
    assert [p["label"] for p in got["predictions"]] == ["pos", "neg"]
    for p in got["predictions"]:
        assert sum(p["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


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


# -- starting from a language model (init_from, ULMFiT) ------------------------------------

LM_SHAPE: dict[str, Any] = {"arch": "lstm", "embed": 8, "hidden": 16, "layers": 2}
FROM_LM: dict[str, Any] = {**LM_SHAPE, "init_from": "a" * 12, "tokenizer": "word", "bidirectional": False, "lowercase": False}


@pytest.fixture(scope="module")
def word_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The best checkpoint of a tiny word LM trained on review-like text (case kept)."""
    from rnn_tasks.lm import task as lm_task
    from rnn_tasks.lm.spec import LMSpec

    folder = tmp_path_factory.mktemp("lm")
    text = "\n".join(t for t, _ in reviews(300, seed=9))
    spec = LMSpec(data="inputs/lm", tokenizer="word", seq_len=16, batch_size=4, max_steps=3, eval_every=3,
                  device="cpu", **LM_SHAPE)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(devices, "configure", lambda dev: torch.set_num_threads(1))
        lm_task.train(spec, {"data": text.encode()}, None, folder, None)
    return folder / BEST


def _lm_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from rnn_tasks import checkpoint

    ckpt, weights = checkpoint.load(path)
    return weights, ckpt.meta


def test_init_from_copies_the_lms_tokenizer_embedding_and_recurrent_layers(tmp_path: Path, word_lm: Path) -> None:
    # unfreeze 1.0 over 8 steps with 4 groups (head, rnn l1, rnn l0, embedding): the head trains
    # from step 0, rnn layer 1 from step 3, layer 0 from step 6, the embedding never.
    spec = _spec(**FROM_LM, max_steps=8, eval_every=100, unfreeze=1.0, dropout=0.0, ensemble=1)
    summary = train(spec, {"data": to_csv(reviews(120)), "init_from": word_lm.read_bytes()}, None, tmp_path, None)
    lm, lm_meta = _lm_weights(word_lm)
    mine, meta = _lm_weights(tmp_path / BEST)
    assert meta["encoder"]["tokenizer"] == lm_meta["tokenizer"] and meta["encoder"]["lowercase"] is False
    assert meta["model"]["vocab_size"] == lm["embed.weight"].shape[0]
    assert summary["init_from"]["job"] == "a" * 12 and "head.weight" not in summary["init_from"]["copied"]
    assert set(summary["init_from"]["copied"]) == {k for k in lm if k.startswith(("embed.", "rnn."))}
    torch.testing.assert_close(mine["embed.weight"], lm["embed.weight"], atol=0, rtol=0)  # frozen throughout
    assert not torch.equal(mine["rnn.weight_hh_l1"], lm["rnn.weight_hh_l1"])  # thawed at step 3
    assert not torch.equal(mine["rnn.weight_hh_l0"], lm["rnn.weight_hh_l0"])  # thawed at step 6
    assert mine["head.weight"].shape[0] == 2  # the classifier's own head, not the LM's


def test_init_from_weights_equal_the_lms_before_training(word_lm: Path) -> None:
    from rnn_tasks.classify import finetune
    from rnn_tasks.finetune import read_lm

    lm = read_lm(word_lm.read_bytes())
    spec = _spec(**FROM_LM)
    encoder = finetune.encoder(lm, spec)
    model = TextClassifier(ClassifierConfig(vocab_size=len(encoder), n_classes=3, arch="lstm", embed=8, hidden=16,
                                            layers=2, bidirectional=False))
    copied = finetune.copy_weights(model, lm)
    state = model.state_dict()
    assert copied and all(torch.equal(state[name], lm.weights[name]) for name in copied)
    assert encoder.encode("Great phone") != encoder.encode("great phone")  # the LM's case is kept

    wider = TextClassifier(ClassifierConfig(vocab_size=len(encoder), n_classes=3, arch="lstm", embed=8, hidden=32,
                                            layers=2, bidirectional=False))
    with pytest.raises(SpecError) as err:
        finetune.copy_weights(wider, lm)
    assert err.value.field == "hidden"


def test_an_ensemble_started_from_a_language_model_copies_it_into_every_member(word_lm: Path) -> None:
    from rnn_tasks.classify import finetune
    from rnn_tasks.finetune import read_lm

    lm = read_lm(word_lm.read_bytes())
    encoder = finetune.encoder(lm, _spec(**FROM_LM))
    one = TextClassifier(ClassifierConfig(vocab_size=len(encoder), n_classes=3, arch="lstm", embed=8, hidden=16,
                                          layers=2, bidirectional=False))
    two = build(replace(one.config, members=2))
    copied = finetune.copy_weights(two, lm)
    state = two.state_dict()
    assert sorted(copied) == sorted(f"members.{k}.{name}" for k in (0, 1) for name in finetune.copy_weights(one, lm))
    assert all(torch.equal(state[name], lm.weights[name.split(".", 2)[2]]) for name in copied)
    # ULMFiT's groups hold every member's layer of that level: head, rnn l1, rnn l0, embedding
    assert [len(g) for g in finetune.layer_groups(two)] == [2 * len(g) for g in finetune.layer_groups(one)]


def test_discriminative_learning_rates_per_layer_group(tmp_path: Path, word_lm: Path) -> None:
    from rnn_tasks import checkpoint

    spec = _spec(**FROM_LM, max_steps=2, eval_every=100, warmup_steps=0, lr_decay=2.6, unfreeze=0.0, ensemble=1)
    train(spec, {"data": to_csv(reviews(80)), "init_from": word_lm.read_bytes()}, None, tmp_path, None)
    optim, _ = checkpoint.load_training_state(tmp_path / LAST)
    groups = (optim or {})["param_groups"]  # head, rnn l1, rnn l0, embedding; each as matrices + vectors
    assert len(groups) == 8
    peak = groups[0]["lr"]
    for level in range(4):
        for g in groups[2 * level : 2 * level + 2]:
            assert g["lr"] == pytest.approx(peak / 2.6**level)
    sizes = [len(g["params"]) for g in groups]
    assert sizes == [1, 1, 2, 2, 2, 2, 1, 0]  # head w | b, weight_ih/hh | bias_ih/hh per layer, embedding w


def test_without_init_from_one_group_trains_at_the_full_rate(tmp_path: Path) -> None:
    from rnn_tasks import checkpoint

    train(_spec(max_steps=2, eval_every=100, warmup_steps=0), {"data": to_csv(reviews(80))}, None, tmp_path, None)
    optim, _ = checkpoint.load_training_state(tmp_path / LAST)
    groups = (optim or {})["param_groups"]
    assert len(groups) == 2 and groups[0]["lr"] == groups[1]["lr"]


def test_unfreezing_schedule_thaws_one_group_per_stage() -> None:
    from rnn_tasks import finetune
    from rnn_tasks.classify.finetune import layer_groups

    # 4 groups over the first half of training: a stage every 0.5 / 3 of progress.
    assert [finetune.thawed(4, p, 0.5) for p in (0.0, 0.16, 0.17, 0.34, 0.49, 0.5, 1.0)] == [1, 1, 2, 3, 3, 4, 4]
    assert finetune.thawed(4, 0.0, 0.0) == 4  # unfreeze 0: everything trains from the start
    assert finetune.lr_scales(3, 2.0) == [1.0, 0.5, 0.25]
    model = TextClassifier(ClassifierConfig(vocab_size=10, n_classes=2, embed=4, hidden=4, layers=3,
                                            bidirectional=False))
    groups = layer_groups(model)
    assert groups[0] == list(model.head.parameters()) and groups[-1] == [model.embed.weight]
    assert [p is model.rnn.weight_hh_l2 for p in groups[1]].count(True) == 1  # top layer first
    finetune.set_trainable(groups, 2)
    assert [all(p.requires_grad for p in g) for g in groups] == [True, True, False, False, False]
    finetune.set_trainable(groups, 5)
    assert all(p.requires_grad for p in model.parameters())


def _trained(task: str, spec: dict[str, Any]) -> Any:
    from rnn_tasks.spec import TrainedModel

    return TrainedModel(id="b" * 12, spec={"data": "inputs/x", "task": task, **spec}, result={})


@pytest.mark.parametrize(("fields", "source", "field", "message"), [
    ({"hidden": 32}, _trained("lm", {**LM_SHAPE, "tokenizer": "word"}), "hidden", "must be 16"),
    ({"tokenizer": "bpe"}, _trained("lm", {**LM_SHAPE, "tokenizer": "word"}), "tokenizer", "'word'"),
    ({"bidirectional": True}, _trained("lm", {**LM_SHAPE, "tokenizer": "word"}), "bidirectional", "has 2 layers"),
    ({"lowercase": True}, _trained("lm", {**LM_SHAPE, "tokenizer": "word"}), "lowercase", "lowercase False"),
    ({"lowercase": False}, _trained("lm", {**LM_SHAPE, "tokenizer": "bpe", "lowercase": True}), "lowercase",
     "lowercase True"),
    ({}, _trained("lm", {**LM_SHAPE, "tokenizer": "char"}), "init_from", "characters"),
    ({}, _trained("classify", LM_SHAPE), "init_from", "not a language model"),
])
def test_init_from_conflicts_are_refused_at_submit(fields: dict[str, Any], source: Any, field: str,
                                                   message: str) -> None:
    from rnn_tasks.classify.spec import check_sources

    assert init_from_refusal(check_sources, fields, source, message) == field


def test_init_from_adopts_the_lms_shape_and_tokenizer() -> None:
    from rnn_tasks.classify.spec import check_sources

    lm = _trained("lm", {**LM_SHAPE, "arch": "gru", "tokenizer": "bpe"})
    looked_up: list[tuple[str, str]] = []

    def find(name: str, flag: str) -> Any:
        looked_up.append((name, flag))
        return lm

    fields = check_sources({"init_from": "my-lm", "hidden": 16, "pooling": "mean"}, find)
    assert looked_up == [("my-lm", "init_from")]
    spec = ClassifySpec.from_dict({"data": "inputs/x", **fields})
    assert (spec.init_from, spec.arch, spec.embed, spec.hidden, spec.layers, spec.tokenizer) == \
        ("b" * 12, "gru", 8, 16, 2, "bpe")
    assert not spec.bidirectional and not spec.lowercase and spec.pooling == "mean"  # 2 layers: one way
    assert check_sources({"hidden": 3}, lambda name, flag: lm) == {"hidden": 3}  # no init_from: untouched
    one_layer = _trained("lm", {**LM_SHAPE, "layers": 1, "tokenizer": "word", "lowercase": True})
    fields = check_sources({"init_from": "my-lm"}, lambda name, flag: one_layer)
    assert "bidirectional" not in fields and fields["lowercase"] is True  # both ways by default: the backward starts fresh
    with pytest.raises(SpecError) as err:
        _spec(**{**FROM_LM, "init_from": "my-lm"})
    assert err.value.field == "init_from"


@pytest.mark.parametrize(("fields", "field"), [({"lowercase": True}, "lowercase"), ({"bidirectional": True}, "bidirectional")])
def test_a_spec_that_skipped_the_submit_check_is_refused_before_training(tmp_path: Path, word_lm: Path,
                                                                         fields: dict[str, Any], field: str) -> None:
    spec = _spec(**{**FROM_LM, **fields})  # the LM keeps case and has two layers
    with pytest.raises(SpecError) as err:
        train(spec, {"data": to_csv(reviews(40)), "init_from": word_lm.read_bytes()}, None, tmp_path, None)
    assert err.value.field == field


def test_a_bidirectional_classifier_starts_its_forward_direction_from_a_lowercase_lm(tmp_path: Path) -> None:
    from rnn_tasks.lm import task as lm_task
    from rnn_tasks.lm.spec import LMSpec

    text = "\n".join(t for t, _ in reviews(300, seed=9))
    lm_spec = LMSpec(data="inputs/lm", tokenizer="word", lowercase=True, seq_len=16, batch_size=4, max_steps=3,
                     eval_every=3, device="cpu", arch="gru", embed=8, hidden=16, layers=1)
    lm_task.train(lm_spec, {"data": text.upper().encode()}, None, tmp_path / "lm", None)
    lm, _ = _lm_weights(tmp_path / "lm" / BEST)
    spec = _spec(init_from="a" * 12, tokenizer="word", arch="gru", embed=8, hidden=16, layers=1, lowercase=True,
                 max_steps=6, eval_every=100, warmup_steps=0, dropout=0.0)
    assert spec.bidirectional
    rows = [(text.upper() if i % 2 else text, label) for i, (text, label) in enumerate(reviews(80))]
    summary = train(spec, {"data": to_csv(rows), "init_from": (tmp_path / "lm" / BEST).read_bytes()}, None,
                    tmp_path / "clf", None)
    forward = {k for k in lm if k.startswith(("embed.", "rnn."))}
    assert set(summary["init_from"]["copied"]) == forward and forward  # the backward direction is not the LM's
    mine, _ = _lm_weights(tmp_path / "clf" / BEST)
    assert {f"{k}_reverse" for k in forward if k.startswith("rnn.")} <= set(mine)
    assert all(not torch.equal(mine[k], lm[k]) for k in forward if k.startswith("rnn."))  # and it trained
    shouted, plain = predict(tmp_path / "clf" / BEST, b"GREAT PHONE\ngreat phone", {"format": "lines"},
                             "cpu")["predictions"]
    assert shouted["probabilities"] == plain["probabilities"]  # the LM's tokenizer folds case
