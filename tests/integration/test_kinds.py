"""Every job kind through the real queue: train -> predict / eval, and bad input refused
at submit time with nothing queued. Data is generated here, small and learnable."""

from __future__ import annotations

import gzip
import json
import math
import re
from typing import Any

import pytest

from tests.integration.conftest import Env, Worker
from tests.support import parallel, phrase_corpus, sentiment_csv, series_csv, unigram_perplexity

pytestmark = pytest.mark.integration

SMALL = ["--hidden", "32", "--embed", "16", "--batch-size", "16", "--eval-every", "40", "--max-steps", "80"]
MT_STEPS = ["--max-steps", "400", "--eval-every", "400"]  # later flags win
LM_STEPS = ["--max-steps", "200", "--eval-every", "200"]
BLEU_FLOOR, CHRF_FLOOR = 50.0, 60.0


def run(env: Env, *args: str) -> dict[str, Any]:
    """Submit, wait, and return the job's result (`result --json`)."""
    res = env.cli(*args, "--wait", "--json")
    assert res.exit_code == 0, res.output
    first = res.stdout.splitlines()[0]
    job_id = json.loads(first if first.endswith("}") else res.stdout)["job_id"]
    result = env.cli("result", job_id, "--json")
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def refused(env: Env, *args: str) -> str:
    before = env.job_count()
    res = env.cli(*args)
    assert res.exit_code == 2, res.output
    assert env.job_count() == before  # nothing recorded, nothing queued
    return res.output


def test_classify_train_predict_eval(env: Env, worker: Worker) -> None:
    data = sentiment_csv(env.tmp / "reviews.csv")
    trained = run(env, "train", str(data), "--task", "classify", *SMALL, "--name", "sentiment")
    assert trained["state"] == "succeeded"
    # One word in four decides the label: separable, so a model that learned it is near perfect.
    assert trained["accuracy"] > 0.9 and trained["macro_f1"] > 0.9 and len(trained["confusion"]) == 2

    predicted = run(env, "predict", "sentiment", "--text", "the film was great", "--text", "a plot was awful")
    assert [p["label"] for p in predicted["predictions"]] == ["pos", "neg"]
    assert all(math.isclose(sum(p["probabilities"].values()), 1.0, rel_tol=1e-4) for p in predicted["predictions"])

    figures = run(env, "eval", "sentiment", "--data", str(data))
    assert figures["kind"] == "eval" and figures["accuracy"] > 0.9
    assert "--beam" in refused(env, "eval", "sentiment", "--data", str(data), "--beam", "2")
    # A file the model cannot read is refused at submit, read as the worker would read it.
    series = series_csv(env.tmp / "series.csv")
    out = refused(env, "eval", "sentiment", "--data", str(series))
    assert "Invalid value for --data: text_column: no column 'text' in the header" in out, out
    out = refused(env, "predict", "sentiment", "--input", str(series), "--format", "csv")
    assert "Invalid value for --input: text_column: no column 'text'" in out, out
    assert "--target-file" in refused(env, "eval", "sentiment", "--data", str(data), "--target-file", str(data))
    assert len(run(env, "predict", "sentiment", "--input", str(data), "--format", "csv")["predictions"]) > 10

    listed = json.loads(env.cli("list", "--json").stdout)
    assert {j["kind"] for j in listed} >= {"train", "predict", "eval"}


def test_classify_bad_input_is_refused_at_submit(env: Env) -> None:
    one_class = sentiment_csv(env.tmp / "one.csv", labels=("pos",))
    assert "label" in refused(env, "train", str(one_class), "--task", "classify")
    data = sentiment_csv(env.tmp / "reviews.csv")
    assert "--text-column" in refused(env, "train", str(data), "--task", "classify", "--text-column", "review")
    assert "--horizon" in refused(env, "train", str(data), "--task", "classify", "--horizon", "3")


def test_classify_starts_from_a_language_model(env: Env, worker: Worker) -> None:
    data = sentiment_csv(env.tmp / "reviews.csv")
    corpus = env.tmp / "unlabelled.txt"  # the same kind of text, without labels
    corpus.write_text("\n".join(line.rsplit(",", 1)[0] for line in data.read_text().splitlines()[1:]) + "\n")
    tiny = ["--hidden", "32", "--embed", "16", "--seq-len", "16", "--batch-size", "8"]
    lm = run(env, "train", str(corpus), "--tokenizer", "word", "--set", "lowercase=true", "--arch", "lstm", *tiny,
             *LM_STEPS, "--name", "rev-lm")
    assert lm["state"] == "succeeded" and lm["tokenizer"] == "word"

    # The default 8 epochs (184 steps), with ULMFiT's schedule: the lower layers train at lr / 2.6^k, and only
    # from a quarter of the way in.
    trained = run(env, "train", str(data), "--task", "classify", "--init-from", "rev-lm", "--batch-size", "16",
                  "--eval-every", "40", "--set", "lr_decay=2.6", "--set", "unfreeze=0.5", "--name", "from-lm")
    assert trained["state"] == "succeeded" and trained["accuracy"] > 0.9
    copied = trained["init_from"]["copied"]  # into each member of the default ensemble (members.<k>.embed.weight)
    assert trained["init_from"]["job"] == lm["job_id"] and any(n.endswith("embed.weight") for n in copied)
    assert trained["baseline_accuracy"] is not None  # TF-IDF + LR beside it, as for any classifier
    spec = json.loads(env.cli("status", "from-lm", "--json").stdout)["spec"]
    assert (spec["init_from"], spec["arch"], spec["hidden"], spec["embed"], spec["tokenizer"]) == \
        (lm["job_id"], "lstm", 32, 16, "word")  # adopted from the LM
    assert spec["bidirectional"] is True and spec["lowercase"] is True  # one LM layer; the LM folds case
    predicted = run(env, "predict", "from-lm", "--text", "the film was great", "--text", "a plot was awful",
                    "--text", "THE FILM WAS GREAT")
    assert [p["label"] for p in predicted["predictions"]] == ["pos", "neg", "pos"]
    assert predicted["predictions"][0]["probabilities"] == predicted["predictions"][2]["probabilities"]
    job_file = env.tmp / "again.yaml"  # its job file trains it again, from the same LM
    job_file.write_text(env.cli("status", "from-lm", "--spec").stdout)
    assert run(env, "train", "-f", str(job_file), "--max-steps", "5")["init_from"]["job"] == lm["job_id"]

    chars = run(env, "train", str(corpus), *tiny, "--max-steps", "5", "--eval-every", "5", "--name", "char-lm")
    assert chars["tokenizer"] == "char"
    unseen = env.tmp / "unseen.txt"
    unseen.write_text("the film was great \u20ac\n")
    out = refused(env, "eval", "char-lm", "--data", str(unseen))
    assert "Invalid value for --data: characters the model never saw in training: '\u20ac'" in out, out
    out = refused(env, "generate", "char-lm", "--prompt", "the film", "--prompt", "great \u20ac")
    assert "Invalid value for --prompt #2: characters the model never saw in training: '\u20ac'" in out, out
    for source, says in (("char-lm", "characters"), ("from-lm", "not a language model"), ("nobody", "no job")):
        output = refused(env, "train", str(data), "--task", "classify", "--init-from", source)
        assert "--init-from" in output and says in output, output
    output = refused(env, "train", str(data), "--task", "classify", "--init-from", "rev-lm", "--hidden", "64")
    assert "--hidden" in output and "32" in output, output
    assert "--init-from" in refused(env, "train", str(corpus), "--init-from", "rev-lm")  # an LM takes none


def test_forecast_train_predict_eval(env: Env, worker: Worker) -> None:
    data = series_csv(env.tmp / "series.csv")
    args = ["--task", "forecast", "--horizon", "3", "--lookback", "12", "--season", "12"]
    trained = run(env, "train", str(data), *args, *SMALL, "--name", "sales")
    assert trained["state"] == "succeeded"
    # Seasonal naive misses the trend (0.1 a month, 1.2 a season); the model must not.
    assert trained["baseline_rmse"] == pytest.approx(1.2, abs=0.01)
    assert trained["rmse"] < 0.25 * trained["baseline_rmse"] and trained["mae"] < 0.25 * trained["baseline_mae"]
    assert trained["skill"] > 0.75
    assert trained["transform"] in ("diff", "log_diff", "sdiff", "log_sdiff")  # auto, season 12 given

    predicted = run(env, "predict", "sales")  # no input: continue the training series
    assert len(predicted["forecast"]) == 3 and all(math.isfinite(v) for v in predicted["forecast"])
    assert len(predicted["holt_winters_forecast"]) == 3 and predicted["heldout"]["rmse"] == trained["rmse"]

    figures = run(env, "eval", "sales", "--data", str(data))
    assert figures["rmse"] < 0.25 * figures["baseline_rmse"] and "holt_winters_rmse" in figures

    # Refused at submit, as the worker would read them: the trained columns, enough rows
    # for the lookback (and the transform's lag) and, for eval, one whole window.
    header, *rows = data.read_text().splitlines()
    reviews = sentiment_csv(env.tmp / "reviews.csv")
    out = refused(env, "predict", "sales", "--input", str(reviews))
    assert "Invalid value for --input: time_column: no column" in out, out
    short = env.tmp / "short.csv"
    short.write_text("\n".join([header, *rows[:5]]) + "\n")
    assert "5 rows is too few: the model reads 12 rows" in refused(env, "predict", "sales", "--input", str(short))
    assert "5 rows is too few for one window" in refused(env, "eval", "sales", "--data", str(short))
    assert "--text" in refused(env, "predict", "sales", "--text", "3.5")
    enough = env.tmp / "enough.csv"  # the lookback after the transform's lag: a forecast
    enough.write_text("\n".join([header, *rows[-(12 + 12):]]) + "\n")
    assert len(run(env, "predict", "sales", "--input", str(enough))["forecast"]) == 3


def test_forecast_bad_input_is_refused_at_submit(env: Env) -> None:
    bad = env.tmp / "bad.csv"
    bad.write_text("month,value\n" + "".join(f"{i},{i}\n" for i in range(50)) + "50,n/a\n")
    out = refused(env, "train", str(bad), "--task", "forecast", "--target-column", "value")
    assert "value" in out and "n/a" in out and "52" in out  # the column, the bad value, its line
    assert "numeric" in refused(env, "train", str(bad), "--task", "forecast")  # no numeric column to pick


def test_translate_train_predict_eval(env: Env, worker: Worker) -> None:
    source, target = parallel(env.tmp)
    trained = run(env, "train", "--task", "translate", "--source", str(source), "--target-file", str(target),
                  "--tokenizer", "word", *SMALL, *MT_STEPS, "--name", "toy-mt")
    # Word for word by a six-entry lexicon: a model that learned it translates most n-grams.
    assert trained["state"] == "succeeded" and trained["bleu"] > BLEU_FLOOR and trained["chrf"] > CHRF_FLOOR

    lines = env.tmp / "new.en"
    lines.write_text("the red cat\nthe big dog sees\n")
    predicted = run(env, "predict", "toy-mt", "--input", str(lines), "--beam", "2")
    assert predicted["translations"] == ["le rouge chat", "le grand chien voit"]

    figures = run(env, "eval", "toy-mt", "--data", str(source), "--target-file", str(target))
    assert figures["bleu"] > BLEU_FLOOR and figures["chrf"] > CHRF_FLOOR


def test_translate_encoder_starts_from_a_language_model(env: Env, worker: Worker) -> None:
    source, target = parallel(env.tmp)
    corpus = env.tmp / "source.txt"  # the source language alone
    corpus.write_bytes(gzip.decompress(source.read_bytes()))
    tiny = ["--hidden", "16", "--embed", "16", "--seq-len", "16", "--batch-size", "8"]
    lm = run(env, "train", str(corpus), "--tokenizer", "word", "--arch", "gru", *tiny, "--max-steps", "20",
             "--eval-every", "20", "--name", "src-lm")
    assert lm["state"] == "succeeded" and lm["tokenizer"] == "word"

    pair = ["--task", "translate", "--source", str(source), "--target-file", str(target), "--tokenizer", "word"]
    trained = run(env, "train", *pair, "--init-from", "src-lm", "--batch-size", "16", "--max-steps", "20",
                  "--eval-every", "20", "--name", "mt-from-lm")
    copied = trained["init_from"]["copied"]
    assert trained["state"] == "succeeded" and trained["init_from"]["job"] == lm["job_id"]
    assert "encoder.embed.weight" in copied and "encoder.rnn.weight_hh_l0" in copied
    assert not any(name.endswith("_reverse") or name.startswith("decoder.") for name in copied)
    spec = json.loads(env.cli("status", "mt-from-lm", "--json").stdout)["spec"]
    assert (spec["init_from"], spec["arch"], spec["embed"], spec["layers"], spec["hidden"], spec["bidirectional"]) == \
        (lm["job_id"], "gru", 16, 1, 32, True)  # adopted from the LM: each encoder direction has its 16
    new = env.tmp / "new.en"
    new.write_text("the red cat\nthe big dog sees\n")
    assert len(run(env, "predict", "mt-from-lm", "--input", str(new))["translations"]) == 2

    chars = run(env, "train", str(corpus), *tiny, "--max-steps", "5", "--eval-every", "5", "--name", "src-chars")
    assert chars["tokenizer"] == "char"
    for lm_source, says in (("src-chars", "characters"), ("mt-from-lm", "not a language model"), ("nobody", "no job")):
        output = refused(env, "train", *pair, "--init-from", lm_source)
        assert "--init-from" in output and says in output, output
    output = refused(env, "train", *pair, "--init-from", "src-lm", "--hidden", "16")
    assert "--hidden" in output and "32" in output, output


def test_translate_misaligned_files_are_refused_at_submit(env: Env) -> None:
    source, target = parallel(env.tmp)
    target.write_text("\n".join(target.read_text().splitlines()[:-5]) + "\n")
    out = refused(env, "train", "--task", "translate", "--source", str(source), "--target-file", str(target))
    assert "300" in out and "295" in out


def test_word_language_model_generate_and_eval(env: Env, worker: Worker) -> None:
    corpus = env.tmp / "words.txt"
    text = phrase_corpus(30_000)
    corpus.write_text(text)
    trained = run(env, "train", str(corpus), "--tokenizer", "word", "--seq-len", "16", *SMALL, *LM_STEPS,
                  "--name", "wordlm")
    # Four fixed sentences: after a sentence's first word the rest is certain, so the
    # learned perplexity is a fraction of the best context-free (unigram) model's.
    unigram = unigram_perplexity(re.findall(r"\w+|[^\w\s]", text))
    assert trained["state"] == "succeeded" and trained["perplexity"] < 0.4 * unigram

    sample = run(env, "generate", "wordlm", "--prompt", "the cat", "--max-tokens", "8", "--seed", "1")
    assert len(sample["texts"]) == 1 and sample["texts"][0].strip()

    figures = run(env, "eval", "wordlm", "--data", str(corpus))
    assert figures["perplexity"] < 0.4 * unigram

    assert "generate" in refused(env, "predict", "wordlm", "--text", "the cat")
