"""Every job kind through the real queue: train -> predict / eval, and bad input refused
at submit time with nothing queued. Data is generated here, small and learnable."""

from __future__ import annotations

import gzip
import json
import math
import random
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_corpus
from tests.integration.conftest import Env, Worker

pytestmark = pytest.mark.integration

SMALL = ["--hidden", "32", "--embed", "16", "--batch-size", "16", "--eval-every", "40", "--max-steps", "80"]


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


def sentiment_csv(path: Path, rows: int = 400, labels: tuple[str, ...] = ("pos", "neg")) -> Path:
    rng = random.Random(0)
    good, bad, filler = ["good", "great", "lovely"], ["bad", "awful", "poor"], ["the", "film", "was", "a", "plot"]
    lines = ["text,label"]
    for i in range(rows):
        label = labels[i % len(labels)]
        words = rng.sample(filler, 3) + [rng.choice(good if label == labels[0] else bad)]
        rng.shuffle(words)
        lines.append(f"{' '.join(words)},{label}")
    path.write_text("\n".join(lines) + "\n")
    return path


def series_csv(path: Path, n: int = 240) -> Path:
    lines = ["month,value"] + [f"{i},{10 + 5 * math.sin(2 * math.pi * i / 12) + 0.1 * i:.4f}" for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def parallel(tmp: Path, n: int = 300) -> tuple[Path, Path]:
    """A toy language pair: each word maps to a fixed other word, order kept."""
    rng = random.Random(1)
    lexicon = {"cat": "chat", "dog": "chien", "red": "rouge", "big": "grand", "the": "le", "sees": "voit"}
    src, tgt = [], []
    for _ in range(n):
        words = [rng.choice(list(lexicon)) for _ in range(rng.randint(2, 5))]
        src.append(" ".join(words))
        tgt.append(" ".join(lexicon[w] for w in words))
    source, target = tmp / "src.en.gz", tmp / "tgt.fr"
    source.write_bytes(gzip.compress(("\n".join(src) + "\n").encode()))
    target.write_text("\n".join(tgt) + "\n")
    return source, target


def test_classify_train_predict_eval(env: Env, worker: Worker) -> None:
    data = sentiment_csv(env.tmp / "reviews.csv")
    trained = run(env, "train", str(data), "--task", "classify", *SMALL, "--name", "sentiment")
    assert trained["state"] == "succeeded"
    assert 0.0 <= trained["accuracy"] <= 1.0 and "macro_f1" in trained and len(trained["confusion"]) == 2

    predicted = run(env, "predict", "sentiment", "--text", "a good film", "--text", "an awful plot")
    labels = [p["label"] for p in predicted["predictions"]]
    assert len(labels) == 2 and set(labels) <= {"pos", "neg"}
    assert all(math.isclose(sum(p["probabilities"].values()), 1.0, rel_tol=1e-4) for p in predicted["predictions"])

    figures = run(env, "eval", "sentiment", "--data", str(data))
    assert figures["kind"] == "eval" and 0.0 <= figures["accuracy"] <= 1.0
    assert "--beam" in refused(env, "eval", "sentiment", "--data", str(data), "--beam", "2")

    listed = json.loads(env.cli("list", "--json").stdout)
    assert {j["kind"] for j in listed} >= {"train", "predict", "eval"}


def test_classify_bad_input_is_refused_at_submit(env: Env) -> None:
    one_class = sentiment_csv(env.tmp / "one.csv", labels=("pos",))
    assert "label" in refused(env, "train", str(one_class), "--task", "classify")
    data = sentiment_csv(env.tmp / "reviews.csv")
    assert "--text-column" in refused(env, "train", str(data), "--task", "classify", "--text-column", "review")
    assert "--horizon" in refused(env, "train", str(data), "--task", "classify", "--horizon", "3")


def test_forecast_train_predict_eval(env: Env, worker: Worker) -> None:
    data = series_csv(env.tmp / "series.csv")
    args = ["--task", "forecast", "--horizon", "3", "--lookback", "12", "--season", "12"]
    trained = run(env, "train", str(data), *args, *SMALL, "--name", "sales")
    assert trained["state"] == "succeeded"
    for key in ("mae", "rmse", "baseline_mae", "baseline_rmse", "holt_winters_rmse"):
        assert trained[key] >= 0.0
    assert trained["transform"] in ("diff", "log_diff", "sdiff", "log_sdiff")  # auto, season 12 given

    predicted = run(env, "predict", "sales")  # no input: continue the training series
    assert len(predicted["forecast"]) == 3 and all(math.isfinite(v) for v in predicted["forecast"])
    assert len(predicted["holt_winters_forecast"]) == 3 and predicted["heldout"]["rmse"] == trained["rmse"]

    figures = run(env, "eval", "sales", "--data", str(data))
    assert figures["rmse"] >= 0.0 and "baseline_rmse" in figures and "holt_winters_rmse" in figures


def test_forecast_bad_input_is_refused_at_submit(env: Env) -> None:
    bad = env.tmp / "bad.csv"
    bad.write_text("month,value\n" + "".join(f"{i},{i}\n" for i in range(50)) + "50,n/a\n")
    out = refused(env, "train", str(bad), "--task", "forecast", "--target-column", "value")
    assert "value" in out and "n/a" in out and "52" in out  # the column, the bad value, its line
    assert "numeric" in refused(env, "train", str(bad), "--task", "forecast")  # no numeric column to pick


def test_translate_train_predict_eval(env: Env, worker: Worker) -> None:
    source, target = parallel(env.tmp)
    trained = run(env, "train", "--task", "translate", "--source", str(source), "--target-file", str(target),
                  "--tokenizer", "word", *SMALL, "--name", "toy-mt")
    assert trained["state"] == "succeeded" and 0.0 <= trained["bleu"] <= 100.0 and "chrf" in trained

    lines = env.tmp / "new.en"
    lines.write_text("the red cat\nthe big dog sees\n")
    predicted = run(env, "predict", "toy-mt", "--input", str(lines), "--beam", "2")
    assert len(predicted["translations"]) == 2

    figures = run(env, "eval", "toy-mt", "--data", str(source), "--target-file", str(target))
    assert 0.0 <= figures["bleu"] <= 100.0 and "chrf" in figures


def test_translate_misaligned_files_are_refused_at_submit(env: Env) -> None:
    source, target = parallel(env.tmp)
    target.write_text("\n".join(target.read_text().splitlines()[:-5]) + "\n")
    out = refused(env, "train", "--task", "translate", "--source", str(source), "--target-file", str(target))
    assert "300" in out and "295" in out


def test_word_language_model_generate_and_eval(env: Env, worker: Worker) -> None:
    corpus = env.tmp / "words.txt"
    corpus.write_text(make_corpus(30_000))
    trained = run(env, "train", str(corpus), "--tokenizer", "word", "--seq-len", "16", *SMALL, "--name", "wordlm")
    assert trained["state"] == "succeeded" and trained["perplexity"] > 1.0

    sample = run(env, "generate", "wordlm", "--prompt", "The cat", "--max-tokens", "8", "--seed", "1")
    assert len(sample["texts"]) == 1 and sample["texts"][0].strip()

    figures = run(env, "eval", "wordlm", "--data", str(corpus))
    assert figures["perplexity"] > 1.0 and figures["bpc"] > 0.0

    assert "generate" in refused(env, "predict", "wordlm", "--text", "the cat")
