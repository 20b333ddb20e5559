"""Translation task: a synthetic language (words renamed and reversed) learnt by a tiny model.

    source  "w3 w1 w7"   ->   target  "x7 x1 x3"

Reversal needs attention to reach far positions, so a model that learns it in a few
hundred steps really uses its encoder and attention.
"""

from __future__ import annotations

import gzip
import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

from rnn_tasks import device as devices
from rnn_tasks import loop
from rnn_tasks.loop import Callbacks, StepMetrics
from rnn_tasks.spec import SpecError, train_spec_from_dict
from rnn_tasks.translate import task
from rnn_tasks.translate.data import encode_sources, pad
from rnn_tasks.translate.decode import beam_search, greedy, limits_for, translate
from rnn_tasks.translate.model import Seq2Seq, Seq2SeqConfig
from rnn_tasks.translate.spec import TranslateSpec, check_inputs, read_lines
from tests.support import init_from_refusal

WORDS = [f"w{i}" for i in range(12)]
TINY = {"data": "corpora/src", "target_data": "corpora/tgt", "tokenizer": "word", "hidden": 64, "embed": 32,
        "batch_size": 32, "lr": 0.01, "warmup_steps": 10, "dropout": 0.0, "label_smoothing": 0.0,
        "val_fraction": 0.1, "device": "cpu", "beam": 3}


def translate_synthetic(sentence: str) -> str:
    return " ".join("x" + w[1:] for w in reversed(sentence.split()))


def corpus(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    sources = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6))) for _ in range(n)]
    return sources, [translate_synthetic(s) for s in sources]


def lines(texts: list[str]) -> bytes:
    return ("\n".join(texts) + "\n").encode()


def spec(**overrides: Any) -> TranslateSpec:
    return TranslateSpec.from_dict({**TINY, **overrides})


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models gain nothing from a second thread, and on a loaded machine OpenMP's spinning
    threads make them many times slower: run this module single-threaded, then restore."""
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(devices, "configure", lambda dev: torch.set_num_threads(1))
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One short training run shared by the tests below (source gzip-compressed, target plain)."""
    sources, targets = corpus(600)
    files = {"data": gzip.compress(lines(sources)), "target": lines(targets)}
    reports: list[StepMetrics] = []
    out = tmp_path_factory.mktemp("translate")
    summary = task.train(spec(max_steps=150, eval_every=50), files, Callbacks(on_step=reports.append), out, None)
    return {"summary": summary, "reports": reports, "dir": out, "sources": sources, "targets": targets}


def test_training_lowers_the_loss_and_learns_the_language(trained: dict[str, Any]) -> None:
    summary, reports = trained["summary"], trained["reports"]
    assert summary["steps"] == 150 and summary["stopped_by"] == "max_steps"
    assert reports[-1].loss < 0.25 * reports[0].loss
    vals = [r.val_loss for r in reports if r.val_loss is not None]
    assert len(vals) == 3 and vals[-1] < vals[0]
    assert summary["metrics"]["bleu"] > 50  # greedy BLEU on the validation subset, from evaluate()
    assert summary["bleu"] > 50 and summary["chrf"] > 50 and summary["beam"] == 3
    assert summary["val_pairs"] == 60 and summary["train_pairs"] == 540 and summary["dropped_long"] == 0
    assert (trained["dir"] / loop.BEST).is_file() and (trained["dir"] / loop.LAST).is_file()


def _model(trained: dict[str, Any]) -> tuple[Seq2Seq, Any, Any]:
    loaded = task._Loaded(trained["dir"] / loop.BEST, "cpu")
    return loaded.model, loaded.src_tok, loaded.tgt_tok


def _batch(src_tok: Any, sentences: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    ids = encode_sources(src_tok, sentences)
    return pad(ids, 0), torch.tensor([len(i) for i in ids])


@pytest.mark.parametrize("trained_model", [True, False])
def test_beam_one_equals_greedy(trained: dict[str, Any], trained_model: bool) -> None:
    model, src_tok, tgt_tok = _model(trained)
    if not trained_model:  # an untrained model rarely says <eos>: exercises the step limits
        torch.manual_seed(1)
        model = Seq2Seq(model.config).eval()
    src, lengths = _batch(src_tok, trained["sources"][-40:])
    limits = limits_for(lengths, 64)
    expected = greedy(model, src, lengths, tgt_tok.bos_id, tgt_tok.eos_id, limits)
    assert beam_search(model, src, lengths, tgt_tok.bos_id, tgt_tok.eos_id, limits, 1) == expected
    assert any(len(e) == limits[i] for i, e in enumerate(expected)) != trained_model


def test_beam_search_translates_at_least_as_well_as_greedy(trained: dict[str, Any]) -> None:
    model, src_tok, tgt_tok = _model(trained)
    sources, targets = trained["sources"][-60:], trained["targets"][-60:]
    right = {}
    for beam in (1, 4):
        out = translate(model, src_tok, tgt_tok, sources, beam=beam, cap=32)
        right[beam] = sum(o == t for o, t in zip(out, targets, strict=True))
    assert right[4] >= right[1] - 2 and right[4] > 30


@pytest.mark.parametrize(("arch", "layers", "bidirectional"), [("gru", 1, True), ("lstm", 2, True),
                                                                ("gru", 1, False)])
def test_padding_does_not_change_a_sentence(arch: str, layers: int, bidirectional: bool) -> None:
    torch.manual_seed(0)
    config = Seq2SeqConfig(src_vocab=20, tgt_vocab=20, arch=arch, embed=8, hidden=16, layers=layers,
                           bidirectional=bidirectional)
    model = Seq2Seq(config).eval()
    short, longer = [5, 6, 3], [7, 8, 9, 10, 11, 12, 3]
    alone = pad([short], 0), torch.tensor([3])
    batched = pad([longer, short, longer[:5]], 0), torch.tensor([7, 3, 5])
    tgt_in = torch.tensor([[2, 9, 4]])
    with torch.no_grad():
        out_alone, final_alone = model.encoder(*alone)
        out_batch, final_batch = model.encoder(*batched)
        logits_alone = model(*alone, tgt_in)
        logits_batch = model(*batched, tgt_in.expand(3, -1))
    assert out_batch.shape[1] == 7
    torch.testing.assert_close(out_batch[1, :3], out_alone[0], rtol=0, atol=1e-6)
    assert out_batch[1, 3:].abs().max() == 0  # nothing at padding
    first = final_alone[0] if isinstance(final_alone, tuple) else final_alone
    first_batch = final_batch[0] if isinstance(final_batch, tuple) else final_batch
    torch.testing.assert_close(first_batch[:, 1], first[:, 0], rtol=0, atol=1e-6)
    torch.testing.assert_close(logits_batch[1], logits_alone[0], rtol=0, atol=1e-5)  # attention masks the padding


def test_misaligned_files_are_refused() -> None:
    sources, targets = corpus(50)
    with pytest.raises(SpecError, match=r"misaligned.*50 lines.*49") as err:
        check_inputs(spec(), {"data": lines(sources), "target": lines(targets[:-1])})
    assert err.value.field == "target_data"


def test_tsv_lines_need_exactly_one_tab() -> None:
    tsv = ["a b\tx y", "c\td\te", "f\tg"]
    with pytest.raises(SpecError, match="line 2 has 2 tabs") as err:
        check_inputs(spec(target_data=None), {"data": lines(tsv)})
    assert err.value.field == "data"
    with pytest.raises(SpecError, match="line 1 has 0 tabs"):
        check_inputs(spec(target_data=None), {"data": lines(["no tab here"] * 30)})


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(SpecError, match="UTF-8"):
        check_inputs(spec(), {"data": b"caf\xe9\n" * 30, "target": lines(["x"] * 30)})
    with pytest.raises(SpecError, match="at least 10 are needed") as err:
        check_inputs(spec(), {"data": lines(["a"] * 9), "target": lines(["b"] * 9)})
    assert err.value.field == "data"
    with pytest.raises(SpecError, match="gzip"):
        check_inputs(spec(), {"data": b"\x1f\x8bnot really", "target": lines(["b"] * 30)})


def test_gzip_and_plain_read_the_same() -> None:
    text = lines(["Un homme court.", "", "Deux chiens\r"])
    assert read_lines(gzip.compress(text), "DATA") == read_lines(text, "DATA") == ["Un homme court.", "", "Deux chiens"]
    sources, targets = corpus(40)
    tsv = gzip.compress(lines([f"{s}\t{t}" for s, t in zip(sources, targets, strict=True)]))
    check_inputs(spec(target_data=None), {"data": tsv})


def test_spec_fields() -> None:
    s = train_spec_from_dict({"task": "translate", "data": "a/b", "target_data": "a/c"})
    assert isinstance(s, TranslateSpec) and s.input_keys() == {"data": "a/b", "target": "a/c"}
    assert TranslateSpec.from_dict({"data": "a/b"}).input_keys() == {"data": "a/b"}
    assert TranslateSpec.from_json(s.to_json()) == s
    for field, value in [("target_data", "../etc"), ("tokenizer", "char"), ("beam", 0), ("teacher_forcing", 1.5),
                         ("max_len", 0), ("hidden", 33), ("joint_vocab", "yes")]:
        with pytest.raises(SpecError) as err:
            TranslateSpec.from_dict({"data": "a/b", field: value})
        assert err.value.field == field
    with pytest.raises(SpecError) as err:
        TranslateSpec.from_dict({"data": "a/b", "joint_vocab": True, "init_from": "a" * 12})
    assert err.value.field == "joint_vocab"


def test_by_default_one_vocabulary_and_one_embedding_matrix_stored_once(trained: dict[str, Any]) -> None:
    """joint_vocab and tie_embeddings (the defaults): one tokenizer fitted on both sides, one
    matrix for the encoder's and decoder's embeddings and the output layer (embed 32 < hidden
    64: a projection first), which the checkpoint stores once; and the model still learns."""
    summary = trained["summary"]
    assert summary["bleu"] > 50
    best = trained["dir"] / loop.BEST
    loaded = task._Loaded(best, "cpu")
    assert loaded.src_tok.to_json() == loaded.tgt_tok.to_json()  # fitted on both sides
    assert {"w3", "x3"} <= set(loaded.src_tok.decode(list(range(len(loaded.src_tok)))).split())
    model = loaded.model
    assert model.encoder.embed.weight is model.decoder.embed.weight is model.decoder.out.weight
    assert model.decoder.out.weight.shape == (len(loaded.tgt_tok), 32)
    assert summary["parameters"] == sum(p.numel() for p in model.parameters())
    with safe_open(str(best), framework="pt") as f:
        stored = {k for k in f.keys() if k.startswith("model.")}  # noqa: SIM118
    assert model.tied() == {"decoder.out.weight": "decoder.embed.weight",
                            "encoder.embed.weight": "decoder.embed.weight"}
    assert stored == {f"model.{k}" for k in model.state_dict() if k not in model.tied()}


def test_long_pairs_are_dropped_from_training_and_counted() -> None:
    sources, targets = corpus(100)
    problem = task.TranslateProblem(spec(max_len=4), sources, targets, torch.device("cpu"))
    expected = sum(len(s.split()) > 4 for s in sources[:90])
    assert problem.meta["dropped_long"] == expected > 0
    assert problem.meta["train_pairs"] == 90 - expected and problem.meta["val_pairs"] == 10


def test_scheduled_sampling_trains() -> None:
    sources, targets = corpus(100)
    problem = task.TranslateProblem(spec(teacher_forcing=0.5), sources, targets, torch.device("cpu"))
    batch = next(problem.epoch(torch.Generator().manual_seed(0), 0))
    loss, tokens = problem.loss(batch)
    loss.backward()
    assert math.isfinite(float(loss.detach())) and tokens == int((batch.tgt_out != 0).sum())
    assert problem.model.encoder.embed.weight.grad is not None


def test_predict_and_evaluate_round_trip(trained: dict[str, Any]) -> None:
    best: Path = trained["dir"] / loop.BEST
    sources, targets = corpus(30, seed=5)
    result = task.predict(best, gzip.compress(lines(sources)), {"beam": 2, "max_len": 20}, "cpu")
    assert result["beam"] == 2 and len(result["translations"]) == 30
    assert sum(t == r for t, r in zip(result["translations"], targets, strict=True)) > 15
    separate = task.evaluate(best, {"data": lines(sources), "target": lines(targets)}, "cpu")
    tsv = task.evaluate(best, {"data": lines([f"{s}\t{t}" for s, t in zip(sources, targets, strict=True)])}, "cpu")
    assert separate == tsv and separate["n"] == 30 and separate["beam"] == 3 and separate["bleu"] > 50
    with pytest.raises(SpecError, match="unknown option"):
        task.predict(best, lines(sources), {"temperature": 1.0}, "cpu")
    with pytest.raises(SpecError):
        task.predict(best, lines(sources), {"beam": 0}, "cpu")


def test_resume_continues_with_the_same_tokenizers(tmp_path: Path) -> None:
    sources, targets = corpus(200, seed=3)
    files = {"data": lines(sources), "target": lines(targets)}
    task.train(spec(max_steps=4, eval_every=3), files, None, tmp_path, None)  # stops mid-epoch (6 batches)
    summary = task.train(spec(max_steps=9, eval_every=3), files, None, tmp_path, tmp_path / loop.LAST)
    assert summary["steps"] == 9
    assert loop.load(tmp_path / loop.LAST)[0].meta == loop.load(tmp_path / loop.BEST)[0].meta


def test_a_run_resumed_after_the_defaults_changed_keeps_its_own_model(tmp_path: Path) -> None:
    """A job started with a vocabulary per side (the defaults before joint_vocab) and resumed
    by a worker whose defaults are one vocabulary and tied embeddings keeps its own shape."""
    sources, targets = corpus(200, seed=3)
    files = {"data": lines(sources), "target": lines(targets)}
    task.train(spec(max_steps=4, eval_every=3, joint_vocab=False, tie_embeddings=False), files, None, tmp_path, None)
    summary = task.train(spec(max_steps=9, eval_every=3), files, None, tmp_path, tmp_path / loop.LAST)
    assert summary["steps"] == 9
    model = loop.load(tmp_path / loop.LAST)[0].meta["model"]
    assert model["shared_vocab"] is False and model["tie_output"] is False


# -- the encoder from a language model (init_from, ULMFiT) ----------------------------------

LM_SHAPE: dict[str, Any] = {"arch": "gru", "embed": 8, "hidden": 16}
# A one-layer LM starts a bidirectional encoder (each direction hidden // 2 = the LM's 16);
# a deeper one a unidirectional encoder of its own shape.
BI: dict[str, Any] = {**LM_SHAPE, "layers": 1, "hidden": 32, "init_from": "a" * 12, "dropout": 0.0,
                     "joint_vocab": False}
UNI: dict[str, Any] = {**LM_SHAPE, "layers": 2, "bidirectional": False, "init_from": "a" * 12, "dropout": 0.0,
                       "joint_vocab": False}


def _train_lm(folder: Path, layers: int) -> Path:
    """The best checkpoint of a tiny word LM trained on source-language sentences."""
    from rnn_tasks.lm import task as lm_task
    from rnn_tasks.lm.spec import LMSpec

    sources, _ = corpus(300, seed=9)
    lm_spec = LMSpec(data="inputs/lm", tokenizer="word", seq_len=8, batch_size=4, max_steps=3, eval_every=3,
                     device="cpu", layers=layers, **LM_SHAPE)
    lm_task.train(lm_spec, {"data": lines(sources)}, None, folder, None)
    return folder / loop.BEST


@pytest.fixture(scope="module")
def lm1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train_lm(tmp_path_factory.mktemp("lm1"), layers=1)


@pytest.fixture(scope="module")
def lm2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train_lm(tmp_path_factory.mktemp("lm2"), layers=2)


def _from_lm(lm: Path) -> dict[str, bytes]:
    sources, targets = corpus(200, seed=3)
    return {"data": lines(sources), "target": lines(targets), "init_from": lm.read_bytes()}


def test_init_from_copies_the_lm_into_the_encoders_forward_direction(lm1: Path) -> None:
    from rnn_tasks import checkpoint
    from rnn_tasks.finetune import read_lm

    lm, lm_meta = checkpoint.load(lm1)[1], checkpoint.read(lm1).meta
    sources, targets = corpus(100, seed=3)
    problem = task.TranslateProblem(spec(**BI), sources, targets, torch.device("cpu"), lm=read_lm(lm1.read_bytes()))
    state = problem.model.state_dict()
    copied = problem.meta["init_from"]["copied"]
    assert problem.meta["init_from"]["job"] == "a" * 12
    assert set(copied) == {f"encoder.{k}" for k in lm if k.startswith(("embed.", "rnn."))}
    assert all(torch.equal(state[name], lm[name.removeprefix("encoder.")]) for name in copied)
    # The backward direction has the forward one's shapes but starts fresh: the LM reads one way.
    reverse = [k for k in state if k.startswith("encoder.rnn.") and k.endswith("_reverse")]
    assert len(reverse) == 4 and not set(reverse) & set(copied)
    assert not any(torch.equal(state[k], lm[k.removeprefix("encoder.").removesuffix("_reverse")]) for k in reverse)
    # The source side reads with the LM's tokenizer; the target side keeps its own.
    assert problem.meta["source_tokenizer"] == lm_meta["tokenizer"]
    assert problem.tgt_tok.encode("x3 x1") != [problem.tgt_tok.unk_id] * 2
    assert problem.src_tok.encode("x3 x1") == [problem.src_tok.unk_id] * 2


def test_training_from_an_lm_thaws_the_encoder_top_down(tmp_path: Path, lm2: Path) -> None:
    from rnn_tasks import checkpoint

    # unfreeze 1.0 over 6 steps with 4 groups (new, encoder rnn l1, l0, embedding): the decoder
    # trains from step 0, layer 1 from step 2, layer 0 from step 4, the embedding never.
    summary = task.train(spec(**UNI, max_steps=6, eval_every=100, warmup_steps=0, unfreeze=1.0), _from_lm(lm2),
                         None, tmp_path, None)
    lm = checkpoint.load(lm2)[1]
    mine = loop.load(tmp_path / loop.BEST)[1]
    assert summary["init_from"]["job"] == "a" * 12 and "encoder.embed.weight" in summary["init_from"]["copied"]
    torch.testing.assert_close(mine["encoder.embed.weight"], lm["embed.weight"], atol=0, rtol=0)  # frozen throughout
    assert not torch.equal(mine["encoder.rnn.weight_hh_l1"], lm["rnn.weight_hh_l1"])  # thawed at step 2
    assert not torch.equal(mine["encoder.rnn.weight_hh_l0"], lm["rnn.weight_hh_l0"])  # thawed at step 4
    optim, _ = checkpoint.load_training_state(tmp_path / loop.LAST)
    groups = (optim or {})["param_groups"]  # each group as matrices + vectors, new first
    assert len(groups) == 8
    for level in range(4):
        for g in groups[2 * level : 2 * level + 2]:
            assert g["lr"] == pytest.approx(groups[0]["lr"] / 2.6**level)


def test_a_resumed_run_keeps_its_weights_and_the_first_attempts_record(tmp_path: Path, lm1: Path) -> None:
    files = _from_lm(lm1)
    first = task.train(spec(**BI, max_steps=4, eval_every=3), files, None, tmp_path, None)
    del files["init_from"]  # the worker hands a resumed run no LM: it reads its own checkpoint
    resumed = task.train(spec(**BI, max_steps=8, eval_every=3), files, None, tmp_path, tmp_path / loop.LAST)
    assert resumed["steps"] == 8 and resumed["init_from"] == first["init_from"]
    with pytest.raises(SpecError, match="was not given") as err:  # a fresh run without it is refused
        task.train(spec(**BI, max_steps=1), files, None, tmp_path / "fresh", None)
    assert err.value.field == "init_from"


@pytest.mark.parametrize(("lm_name", "overrides", "field", "message"), [
    ("lm1", {"hidden": 16}, "hidden", r"has 8 units \(hidden // 2\).*hidden is 16"),
    ("lm1", {"hidden": 32, "bidirectional": False}, "hidden", r"is 32, the language model's \(init_from\) is 16"),
    ("lm1", {"embed": 16}, "embed", "is 8"),
    ("lm1", {"arch": "lstm"}, "arch", "'gru'"),
    ("lm1", {"layers": 2, "bidirectional": False}, "layers", r"is 2, the language model's \(init_from\) is 1"),
    ("lm2", {"layers": 2}, "bidirectional", "of 2 layers"),
])
def test_an_encoder_the_lm_does_not_fit_is_refused_naming_the_field(request: pytest.FixtureRequest, lm_name: str,
                                                                    overrides: dict[str, Any], field: str,
                                                                    message: str) -> None:
    from rnn_tasks.finetune import read_lm

    lm = read_lm(request.getfixturevalue(lm_name).read_bytes())
    sources, targets = corpus(40, seed=3)
    with pytest.raises(SpecError, match=message) as err:
        task.TranslateProblem(spec(**{**BI, **overrides}), sources, targets, torch.device("cpu"), lm=lm)
    assert err.value.field == field


def test_a_char_lm_or_another_model_is_refused_naming_init_from(trained: dict[str, Any]) -> None:
    from rnn_tasks.finetune import PretrainedLM, read_lm
    from rnn_tasks.tokenizer import CharTokenizer, fit_tokenizer
    from rnn_tasks.translate.finetune import source_tokenizer

    with pytest.raises(SpecError, match="not a language model") as err:
        read_lm((trained["dir"] / loop.BEST).read_bytes())  # a translator's checkpoint
    assert err.value.field == "init_from"
    chars = PretrainedLM({**LM_SHAPE, "layers": 1}, CharTokenizer.fit("w0 w1").to_json(), {})
    with pytest.raises(SpecError, match="character language model") as err:
        source_tokenizer(chars, fit_tokenizer("word", ["x0 x1"]))
    assert err.value.field == "init_from"


def _lm_job(task_name: str, layers: int = 1, **fields: Any) -> Any:
    from rnn_tasks.spec import TrainedModel

    return TrainedModel(id="b" * 12, spec={"data": "inputs/x", "task": task_name, "tokenizer": "word",
                                           **LM_SHAPE, "layers": layers, **fields}, result={})


@pytest.mark.parametrize(("fields", "source", "field", "message"), [
    ({"hidden": 16}, _lm_job("lm"), "hidden", r"must be 32: each direction.*hidden // 2"),
    ({"hidden": 32, "bidirectional": False}, _lm_job("lm"), "hidden", "must be 16"),
    ({"arch": "lstm"}, _lm_job("lm", tokenizer="bpe"), "arch", "'gru'"),
    ({"bidirectional": True}, _lm_job("lm", layers=2), "bidirectional", "has 2 layers"),
    ({"joint_vocab": True}, _lm_job("lm"), "joint_vocab", "reads with the language model's own tokenizer"),
    ({}, _lm_job("lm", tokenizer="char"), "init_from", "characters"),
    ({}, _lm_job("translate", hidden=32), "init_from", "not a language model"),
])
def test_init_from_conflicts_are_refused_at_submit(fields: dict[str, Any], source: Any, field: str,
                                                   message: str) -> None:
    from rnn_tasks.translate.spec import check_sources

    assert init_from_refusal(check_sources, fields, source, message) == field


def test_init_from_adopts_the_lms_shape_for_the_encoder() -> None:
    from rnn_tasks.translate.spec import check_sources

    looked_up: list[tuple[str, str]] = []

    def find(layers: int) -> Any:
        def lookup(name: str, flag: str) -> Any:
            looked_up.append((name, flag))
            return _lm_job("lm", layers=layers, tokenizer="bpe")
        return lookup

    both = TranslateSpec.from_dict({**TINY, **check_sources({"init_from": "my-lm", "tokenizer": "word"}, find(1))})
    assert looked_up == [("my-lm", "init_from")]
    assert (both.init_from, both.arch, both.embed, both.hidden, both.layers, both.bidirectional) == \
        ("b" * 12, "gru", 8, 32, 1, True)  # each direction hidden // 2 = the LM's 16
    assert both.tokenizer == "word"  # the target side's own
    assert both.joint_vocab is False  # the default (true) gives way: the source side reads with the LM's
    one = check_sources({"init_from": "my-lm", "bidirectional": False}, find(1))
    assert one["hidden"] == 16 and one["bidirectional"] is False
    deep = check_sources({"init_from": "my-lm"}, find(2))  # a 2-layer LM: one way, its own width
    assert (deep["layers"], deep["hidden"], deep["bidirectional"]) == (2, 16, False)
    assert check_sources({"hidden": 3}, find(1)) == {"hidden": 3}  # no init_from: untouched
