"""Word and BPE tokenizers (round trips, <unk> rules, JSON) and the language models built on them."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from rnn_tasks import checkpoint
from rnn_tasks.lm import task
from rnn_tasks.lm.model import LanguageModel, LMConfig
from rnn_tasks.lm.sampling import SampleOptions, generate
from rnn_tasks.lm.spec import LMSpec
from rnn_tasks.loop import BEST, LAST, Callbacks, StepMetrics
from rnn_tasks.spec import SpecError
from rnn_tasks.text import split_point
from rnn_tasks.tokenizer import (
    WORD_RE,
    BpeTokenizer,
    CharTokenizer,
    Tokenizer,
    TokenizerError,
    WordTokenizer,
    fit_tokenizer,
    tokenizer_from_json,
)

TEXT = "Hello, world! Don't (stop) now.\nSocrates said: the just man is happy; the unjust man is not.\n"


@pytest.fixture(scope="module")
def bpe(corpus_text: str) -> BpeTokenizer:
    tok = fit_tokenizer("bpe", [corpus_text], vocab_size=400)
    assert isinstance(tok, BpeTokenizer)
    return tok


@pytest.fixture(scope="module")
def corpus_text() -> str:
    from tests.support import make_corpus

    return make_corpus(5000) + TEXT


def test_all_kinds_satisfy_the_protocol(corpus_text: str) -> None:
    for kind in ("char", "word", "bpe"):
        tok = fit_tokenizer(kind, [corpus_text], vocab_size=300)
        assert isinstance(tok, Tokenizer)
        assert tok.kind == kind
    with pytest.raises(TokenizerError, match="kind"):
        fit_tokenizer("sentencepiece", ["x"])


def test_char_keeps_its_special_free_layout() -> None:
    tok = fit_tokenizer("char", ["bca", "d"])
    assert isinstance(tok, CharTokenizer)
    assert tok.encode("abcd") == [0, 1, 2, 3]
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (None, None, None, None)


def test_word_round_trip_normalises_spacing_only() -> None:
    tok = fit_tokenizer("word", [TEXT])
    out = tok.decode(tok.encode(TEXT))
    assert WORD_RE.findall(out) == WORD_RE.findall(TEXT)  # same words and marks, in order
    assert out.startswith("Hello, world! Don't (stop) now. Socrates said: the just man")


def test_word_specials_have_the_fixed_ids() -> None:
    tok = fit_tokenizer("word", [TEXT])
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)
    assert tok.decode([2, *tok.encode("just man"), 3, 0]) == "just man"  # specials dropped


def test_word_case_is_kept() -> None:
    tok = fit_tokenizer("word", ["The the THE"])
    assert len(set(tok.encode("The the THE"))) == 3


@pytest.mark.parametrize("kind", ["word", "bpe"])
def test_lowercase_folds_case_in_fitting_and_reading_and_survives_json(kind: str) -> None:
    tok = fit_tokenizer(kind, ["The the THE Great great"], vocab_size=300, lowercase=True)
    assert tok.lowercase and tok.encode("The the THE") == tok.encode("the the the")
    assert tok.encode("GREAT") == tok.encode("great") and tok.decode(tok.encode("The GREAT")) == "the great"
    again = tokenizer_from_json(tok.to_json())
    assert again.lowercase and again.encode("Great THE") == tok.encode("great the")
    if kind == "word":  # every word of the fitted text was folded before counting
        assert isinstance(tok, WordTokenizer) and set(tok.tokens[4:]) == {"the", "great"}
    kept = fit_tokenizer(kind, ["The the THE Great great"], vocab_size=300)
    assert not kept.lowercase and not tokenizer_from_json(kept.to_json()).lowercase


def test_word_tokenizers_stored_before_lowercase_existed_keep_case() -> None:
    old = json.dumps({"kind": "word", "tokens": ["<pad>", "<unk>", "<bos>", "<eos>", "The", "the"], "specials": True})
    tok = tokenizer_from_json(old)
    assert not tok.lowercase and tok.encode("The the") == [4, 5]


def test_a_character_tokenizer_refuses_lowercase() -> None:
    with pytest.raises(TokenizerError, match="word or BPE"):
        fit_tokenizer("char", ["Abc"], lowercase=True)
    with pytest.raises(SpecError) as err:
        LMSpec.from_dict({"data": "inputs/x", "tokenizer": "char", "lowercase": True})
    assert err.value.field == "lowercase"


def test_rare_words_become_unk() -> None:
    tok = fit_tokenizer("word", ["a a a b b c"], min_freq=2)
    assert isinstance(tok, WordTokenizer)
    unk = tok.unk_id
    assert tok.encode("a b c d") == [tok.encode("a")[0], tok.encode("b")[0], unk, unk]
    assert tok.unknown("a c d c") == ["c", "d"]
    assert len(tok) == 4 + 2


def test_max_vocab_keeps_the_most_frequent() -> None:
    tok = fit_tokenizer("word", ["x x x x y y y z z w"], max_vocab=2)
    ids = tok.encode("x y z w")
    assert ids[2] == ids[3] == tok.unk_id
    assert tok.unk_id not in ids[:2]
    assert len(tok) == 4 + 2


def test_word_without_specials_still_has_unk() -> None:
    tok = fit_tokenizer("word", ["a b"], specials=False)
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (None, 0, None, None)
    assert tok.encode("a q") == [1, 0]


def test_bpe_specials_and_size(bpe: BpeTokenizer) -> None:
    assert (bpe.pad_id, bpe.unk_id, bpe.bos_id, bpe.eos_id) == (0, 1, 2, 3)
    assert len(bpe) <= 400
    assert len(bpe.encode(TEXT)) < len(TEXT.encode())  # merges were learned


def test_special_token_names_in_text_are_plain_text(bpe: BpeTokenizer) -> None:
    text = "a <bos> b <pad><eos>"
    assert not {bpe.pad_id, bpe.bos_id, bpe.eos_id} & set(bpe.encode(text))
    assert bpe.decode(bpe.encode(text)) == text
    again = tokenizer_from_json(bpe.to_json())
    assert again.encode(text) == bpe.encode(text)


@settings(max_examples=200, deadline=None)
@given(text=st.text())
def test_bpe_round_trip_is_exact_on_any_unicode(bpe: BpeTokenizer, text: str) -> None:
    assert bpe.decode(bpe.encode(text)) == text


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_json_round_trip_gives_identical_encodings(kind: str, corpus_text: str) -> None:
    tok = fit_tokenizer(kind, [corpus_text], min_freq=2, vocab_size=300)
    again = tokenizer_from_json(tok.to_json())
    assert type(again) is type(tok)
    assert len(again) == len(tok)
    probe = corpus_text[:500] + (" zebra!" if kind != "char" else "")
    assert again.encode(probe) == tok.encode(probe)
    assert again.decode(tok.encode(probe)) == tok.decode(tok.encode(probe))
    assert (again.pad_id, again.unk_id, again.bos_id, again.eos_id) == (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id)


def test_corrupt_json_is_a_tokenizer_error() -> None:
    for bad in ("not json", '{"kind": "word"}', '{"kind": "morse"}', '{"kind": "bpe", "tokenizer": "{"}'):
        with pytest.raises(TokenizerError):
            tokenizer_from_json(bad)


# --- word and BPE language models end to end: train -> checkpoint -> generate / evaluate ---

LM = {"data": "corpora/test", "hidden": 48, "embed": 16, "seq_len": 16, "batch_size": 8, "lr": 0.01}
Run = tuple[dict[str, Any], Path, str, list[float]]  # result, checkpoint dir, text, validation losses


def train(spec: LMSpec, text: str, checkpoint_dir: Path, resume: Path | None = None,
          reports: list[StepMetrics] | None = None) -> dict[str, Any]:
    callbacks = Callbacks(on_step=reports.append) if reports is not None else None
    return task.train(spec, {"data": text.encode()}, callbacks, checkpoint_dir, resume)


@pytest.fixture(scope="module")
def word_run(tmp_path_factory: pytest.TempPathFactory, corpus_text: str) -> Run:
    # "zebra" appears only in the held-out tenth, so the tokenizer (fitted on the rest) lacks it.
    text = corpus_text * 2 + "The zebra sat on a mat.\n"
    out = tmp_path_factory.mktemp("word")
    spec = LMSpec.from_dict({**LM, "tokenizer": "word", "max_steps": 80, "eval_every": 40})
    reports: list[StepMetrics] = []
    result = train(spec, text, out, reports=reports)
    return result, out, text, [r.val_loss for r in reports if r.val_loss is not None]


def test_word_lm_learns_and_reports_perplexity(word_run: Run) -> None:
    result, _, _, evaluations = word_run
    assert result["tokenizer"] == "word" and "vocab" not in result  # a char model's characters only
    assert evaluations[-1] < evaluations[0]
    assert result["perplexity"] == pytest.approx(math.exp(result["best_val_loss"]))
    assert result["perplexity"] < 0.5 * result["vocab_size"]  # far better than guessing
    assert 0 < result["bpc"] < 8
    json.dumps(result)


def test_word_checkpoint_stores_the_tokenizer_fitted_on_training_text(word_run: Run) -> None:
    _, out, _, _ = word_run
    model, tok, _ = task.load_model(out / BEST)
    assert isinstance(tok, WordTokenizer)
    assert tok.unknown("The zebra sat") == ["zebra"]
    assert model.config.vocab_size == len(tok)


def test_word_generation_maps_unknown_prompt_words_to_unk(word_run: Run) -> None:
    _, out, _, _ = word_run
    model, tok, _ = task.load_model(out / BEST)
    opts = SampleOptions(max_tokens=12, seed=1)
    texts = generate(model, tok, ["The cat", "The quagga", "\n"], opts)
    assert len(texts) == 3 and all(texts)
    for text in texts:
        assert tok.unknown(text) == []  # decode drops <unk> rather than spelling it out
    assert texts[0].startswith(" ") or texts[0][0] in ".,"  # the continuation is spaced from the prompt
    greedy = SampleOptions(max_tokens=8, greedy=True)
    # "quagga" is read as <unk>: the same continuation as any other unseen word there
    assert generate(model, tok, ["The quagga"], greedy) == generate(model, tok, ["The okapi"], greedy)


def test_evaluate_on_the_held_out_text_matches_training(word_run: Run) -> None:
    result, out, text, _ = word_run
    held_out = text[split_point(text, 0.1, whole_words=True):]
    figures = task.evaluate(out / BEST, {"data": held_out.encode()}, "cpu")
    assert figures["loss"] == pytest.approx(result["best_val_loss"], rel=1e-5)
    assert figures["perplexity"] == pytest.approx(result["perplexity"], rel=1e-4)
    assert figures["bpc"] == pytest.approx(result["bpc"], rel=1e-4)
    assert figures["tokenizer"] == "word" and figures["tokens"] > 0 and figures["unk_rate"] > 0
    json.dumps(figures)


def test_word_resume_keeps_the_tokenizer(word_run: Run, tmp_path: Path) -> None:
    _, out, text, _ = word_run
    spec = LMSpec.from_dict({**LM, "tokenizer": "word", "max_steps": 90, "eval_every": 40})
    result = train(spec, text, tmp_path, resume=out / LAST)
    assert result["steps"] == 90
    assert checkpoint.read(tmp_path / LAST).meta["tokenizer"] == checkpoint.read(out / LAST).meta["tokenizer"]


def test_a_lowercase_word_lm_reads_every_text_folded(tmp_path: Path, corpus_text: str) -> None:
    spec = LMSpec.from_dict({**LM, "tokenizer": "word", "lowercase": True, "max_steps": 4, "eval_every": 4})
    train(spec, corpus_text, tmp_path)
    _, tok, _ = task.load_model(tmp_path / BEST)
    assert tok.lowercase and isinstance(tok, WordTokenizer) and all(t == t.lower() for t in tok.tokens)
    assert "Ball" in corpus_text and tok.unknown("BALL Ball ball") == []  # capitalised at sentence starts
    shouted = task.evaluate(tmp_path / BEST, {"data": corpus_text[:2000].upper().encode()}, "cpu")
    plain = task.evaluate(tmp_path / BEST, {"data": corpus_text[:2000].lower().encode()}, "cpu")
    assert shouted["loss"] == pytest.approx(plain["loss"], rel=1e-6) and shouted["unk_rate"] == plain["unk_rate"]


def test_bpe_lm_trains_generates_and_evaluates(tmp_path: Path, corpus_text: str) -> None:
    spec = LMSpec.from_dict({**LM, "tokenizer": "bpe", "vocab_size": 300, "max_steps": 40, "eval_every": 20})
    result = train(spec, corpus_text * 2, tmp_path)
    assert result["tokenizer"] == "bpe" and result["vocab_size"] <= 300
    assert result["best_val_loss"] < math.log(result["vocab_size"])
    assert checkpoint.read(tmp_path / BEST).format == checkpoint.FORMAT
    model, tok, _ = task.load_model(tmp_path / BEST)
    texts = generate(model, tok, ["Socrates 日本 ✓", "\n"], SampleOptions(max_tokens=10, seed=0))
    assert len(texts) == 2
    figures = task.evaluate(tmp_path / BEST, {"data": "Any text at all: ünïcödé ✓\n".encode()}, "cpu")
    assert math.isfinite(figures["loss"]) and figures["bpc"] > 0


def test_char_lm_reports_bits_per_character(tmp_path: Path, corpus_text: str) -> None:
    result = train(LMSpec.from_dict({**LM, "max_steps": 30, "eval_every": 30}), corpus_text, tmp_path)
    assert result["tokenizer"] == "char"
    assert result["bpc"] == pytest.approx(result["best_val_loss"] / math.log(2))
    assert result["vocab"] == "".join(sorted(set(corpus_text)))  # what generate's prompt check reads
    _, tok, _ = task.load_model(tmp_path / BEST)
    assert isinstance(tok, CharTokenizer)


def test_char_checkpoints_without_a_stored_tokenizer_still_load(tmp_path: Path) -> None:
    # What rnnq wrote before tokenizers were stored: format 1, a vocab string and no tokenizer_json.
    config = LMConfig(vocab_size=3, embed=4, hidden=4)
    header = {"format_version": 1, "spec": {}, "model": config.to_dict(), "vocab": "abc", "step": 1}
    weights = {f"model.{k}": v.contiguous() for k, v in LanguageModel(config).state_dict().items()}
    path = tmp_path / "old.safetensors"
    save_file(weights, str(path), metadata={"rnnq": json.dumps(header)})
    _, tok, _ = task.load_model(path)
    assert tok.encode("cab") == [2, 0, 1]
