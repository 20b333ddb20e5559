"""The CLI's inputs: standard CSV and TSV files (as Python's csv module writes them),
job files that re-run a job, and --wait --json printing the finished job's record."""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cli.train import KINDS
from tests import speech
from tests.integration.conftest import Env, Worker
from tests.integration.s3server import S3Server
from tests.support import parallel, series_csv

pytestmark = pytest.mark.integration

SMALL = ["--hidden", "32", "--embed", "16", "--batch-size", "16", "--eval-every", "40", "--max-steps", "80"]


def reviews(path: Path, delimiter: str, rows: int = 300) -> Path:
    """A header and texts that hold the delimiter, commas and quotes: the writer quotes them."""
    rng = random.Random(1)
    good, bad = ["good, really good", "great", "lovely \"fun\""], ["bad, so bad", "awful", "poor; dull"]
    filler = ["the film", "a plot, slow", "the cast", "it was"]
    with path.open("w", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(["review", "sentiment"])
        for i in range(rows):
            label = "pos" if i % 2 else "neg"
            words = rng.sample(filler, 2) + [rng.choice(good if label == "pos" else bad)]
            rng.shuffle(words)
            writer.writerow([" ".join(words) + ("\tend" if delimiter == "," and i % 3 == 0 else ""), label])
    return path


CLASSIFY = ["--task", "classify", "--text-column", "review", "--label-column", "sentiment"]


IDLE = "cli-inputs-idle"  # a queue no worker reads: these jobs are only recorded and sent


@pytest.fixture(autouse=True)
def _drop_idle_messages(redis_server: str) -> Iterator[None]:
    yield
    redis.Redis.from_url(redis_server).delete(IDLE)


def _submit(env: Env, *args: str) -> dict[str, object]:
    res = env.cli("train", *args, "--queue", IDLE, "--json")
    assert res.exit_code == 0, res.output
    job_id = json.loads(res.stdout)["job_id"]
    return dict(json.loads(env.cli("status", job_id, "--json").stdout))


@pytest.mark.parametrize("name, delimiter", [("reviews.csv", ","), ("reviews.tsv", "\t")])
def test_csv_and_tsv_are_read_by_their_name(env: Env, name: str, delimiter: str) -> None:
    record = _submit(env, str(reviews(env.tmp / name, delimiter)), *CLASSIFY)
    assert record["spec"]["delimiter"] == delimiter  # type: ignore[index]


def test_a_standard_csv_under_another_name_is_sniffed(env: Env) -> None:
    data = reviews(env.tmp / "reviews.csv", ",").rename(env.tmp / "reviews.data")
    record = _submit(env, str(data), *CLASSIFY)
    assert record["state"] == "queued" and record["spec"]["delimiter"] is None  # type: ignore[index]


def test_classify_on_a_standard_csv_trains_and_predicts(env: Env, worker: Worker) -> None:
    data = reviews(env.tmp / "reviews.csv", ",")
    res = env.cli("train", str(data), *CLASSIFY, *SMALL, "--name", "csv-sentiment", "--wait", "--json")
    assert res.exit_code == 0, res.output
    record = json.loads(res.stdout)  # one line: the finished job's full record
    assert record["state"] == "succeeded" and record["kind"] == "train" and record["spec"]["task"] == "classify"
    assert record["accuracy"] > 0.9  # separable toy data: the marker words decide the label
    res = env.cli("predict", "csv-sentiment", "--text", "great, the cast", "--text", "awful, the film",
                  "--wait", "--json")
    assert res.exit_code == 0, res.output
    predicted = json.loads(res.stdout)
    assert predicted["kind"] == "predict" and predicted["spec"]["source"] == record["job_id"]
    assert [p["label"] for p in predicted["predictions"]] == ["pos", "neg"]

    # Several --input files are for speech recognisers only; a classifier's refusal names the flag.
    before = env.job_count()
    res = env.cli("predict", "csv-sentiment", "--input", str(data), "--input", str(data))
    assert res.exit_code == 2 and "--input" in res.output and "one file" in res.output, res.output
    assert env.job_count() == before


def _tsv_copy(csv_file: Path, txt_file: Path) -> Path:
    """The same table re-written as TSV under a .txt name (quoted cells stay whole)."""
    with csv_file.open(newline="") as src, txt_file.open("w", newline="") as dst:
        csv.writer(dst, delimiter="\t").writerows(csv.reader(src))
    return txt_file


def _result(env: Env, *args: str) -> dict[str, object]:
    res = env.cli(*args, "--wait", "--json")
    assert res.exit_code == 0, res.output
    return dict(json.loads(res.stdout))


def test_predict_and_eval_take_the_delimiter_from_the_content_not_the_name(env: Env, worker: Worker) -> None:
    # Trained from .csv names, so the training specs say ","; the new inputs are TSV in .txt files.
    data = reviews(env.tmp / "reviews.csv", ",", rows=120)
    trained = _result(env, "train", str(data), *CLASSIFY, *SMALL, "--max-steps", "20", "--name", "csv-trained")
    assert trained["state"] == "succeeded" and trained["spec"]["delimiter"] == ","  # type: ignore[index]
    tsv = _tsv_copy(data, env.tmp / "reviews.txt")
    figures = _result(env, "eval", "csv-trained", "--data", str(tsv))
    assert figures["state"] == "succeeded" and figures["n"] == 120, figures
    predicted = _result(env, "predict", "csv-trained", "--input", str(tsv), "--format", "csv")
    texts = [row[0] for row in csv.reader(data.open(newline=""))][1:]
    assert [p["text"] for p in predicted["predictions"]] == texts  # type: ignore[attr-defined]

    series = env.tmp / "sales.csv"
    series.write_text("month,note,sales\n" + "".join(f'{i},"week {i % 4}, {i % 3}",{10 + i % 12 + 0.1 * i:.2f}\n'
                                                      for i in range(60)))
    fast = ["--task", "forecast", "--target-column", "sales", "--lookback", "6", "--horizon", "2", "--max-steps",
            "20", "--set", "transform=diff", "--set", "ensemble=1"]
    trained = _result(env, "train", str(series), *fast, "--name", "csv-sales")
    assert trained["state"] == "succeeded" and trained["spec"]["delimiter"] == ","  # type: ignore[index]
    tsv = _tsv_copy(series, env.tmp / "sales.txt")
    forecast = _result(env, "predict", "csv-sales", "--input", str(tsv))
    assert forecast["after"] == "59" and len(forecast["forecast"]) == 2  # type: ignore[arg-type]
    from_tsv, from_csv = (_result(env, "eval", "csv-sales", "--data", str(f)) for f in (tsv, series))
    assert from_tsv["state"] == "succeeded" and from_tsv["windows"] > 40, from_tsv  # type: ignore[operator]
    assert {k: from_tsv[k] for k in ("windows", "rmse", "mae")} == {k: from_csv[k] for k in ("windows", "rmse", "mae")}


def _first_run(env: Env, kind: str) -> dict[str, object]:
    """A training job of `kind` sent with a few non-default fields."""
    if kind == "lm":
        corpus = env.tmp / "corpus.txt"
        corpus.write_text("the quick brown fox jumps over the lazy dog\n" * 300)
        return _submit(env, str(corpus), "--hidden", "24", "--seq-len", "16", "--tokenizer", "word")
    if kind == "classify":
        return _submit(env, str(reviews(env.tmp / "reviews.csv", ",")), *CLASSIFY, "--hidden", "24", "--set",
                       "token_dropout=0.1")
    if kind == "forecast":
        return _submit(env, str(series_csv(env.tmp / "series.csv")), "--task", "forecast", "--horizon", "3",
                       "--season", "12")
    if kind == "translate":
        source, target = parallel(env.tmp)
        return _submit(env, "--task", "translate", "--source", str(source), "--target-file", str(target),
                       "--tokenizer", "word")
    manifest = speech.corpus(env.tmp / "speech", 3)
    return _submit(env, str(manifest), "--task", "transcribe", "--hidden", "48", "--set", "max_seconds=20")


@pytest.mark.parametrize("kind", KINDS)
def test_status_spec_round_trips_through_a_job_file(env: Env, kind: str) -> None:
    first = _first_run(env, kind)
    res = env.cli("status", str(first["job_id"]), "--spec")
    assert res.exit_code == 0, res.output
    job_file = env.tmp / "job.yaml"
    job_file.write_text(res.stdout)
    again = _submit(env, "-f", str(job_file))
    assert again["job_id"] != first["job_id"] and again["spec"] == first["spec"]
    # flags override the file, for its kind (the file's task: line)
    tuned = _submit(env, "-f", str(job_file), "--hidden", "40")
    assert tuned["spec"] == {**first["spec"], "hidden": 40}  # type: ignore[dict-item]


def test_a_speech_job_file_re_runs_on_a_worker_and_rechecks_its_recordings(env: Env, worker: Worker) -> None:
    # The job file names the stored bundle, not the manifest: it must read as a corpus again.
    manifest = speech.corpus(env.tmp / "speech", 4)
    tiny = ["--task", "transcribe", "--hidden", "16", "--embed", "16", "--layers", "1", "--batch-size", "2",
            "--max-steps", "4", "--eval-every", "4", "--set", "n_mels=20", "--set", "subsample=4"]
    first = _result(env, "train", str(manifest), *tiny)
    assert first["state"] == "succeeded", first
    job_file = env.tmp / "asr.yaml"
    job_file.write_text(env.cli("status", str(first["job_id"]), "--spec").stdout)
    again = _result(env, "train", "-f", str(job_file))
    assert again["state"] == "succeeded" and again["spec"] == first["spec"] and again["steps"] == 4, again
    res = env.cli("train", "-f", str(job_file), "--set", "max_seconds=0.2", "--queue", IDLE)
    assert res.exit_code == 2 and "u0_0.wav" in res.output and "over the bound of 0.2 s" in res.output, res.output


def test_a_job_file_re_runs_a_job_whose_inputs_are_in_a_bucket(env: Env, s3: S3Server) -> None:
    env.vars["RNNQ_ARTIFACTS"] = s3.url("round-trip")
    corpus = env.tmp / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog\n" * 300)
    first = _submit(env, str(corpus), "--hidden", "24", "--seq-len", "16")
    job_file = env.tmp / "job.yaml"
    job_file.write_text(env.cli("status", str(first["job_id"]), "--spec").stdout)
    assert f"data: artifact:{first['spec']['data']}" in job_file.read_text()  # type: ignore[index]
    corpus.unlink()  # the stored copy is what re-runs
    again = _submit(env, "-f", str(job_file))
    assert again["spec"] == first["spec"]


def test_job_file_errors_name_the_key(env: Env) -> None:
    job_file = env.tmp / "job.yaml"
    job_file.write_text(f"task: classify\ndata: {reviews(env.tmp / 'r.csv', ',')}\nhiden: 24\n")
    res = env.cli("train", "-f", str(job_file), "--queue", IDLE)
    assert res.exit_code == 2 and "unknown key 'hiden'" in res.output and env.job_count() == 0
    job_file.write_text("task: forecast\nhorizon: 0\ndata: r.csv\n")
    res = env.cli("train", "-f", str(job_file), "--queue", IDLE)
    assert res.exit_code == 2 and "--horizon" in res.output and env.job_count() == 0
    # Read as sweep files are: a key given twice is refused by its line, not silently the last.
    job_file.write_text("task: forecast\ndata: r.csv\nhorizon: 3\nhorizon: 4\n")
    res = env.cli("train", "-f", str(job_file), "--queue", IDLE)
    assert res.exit_code == 2 and "line 4: horizon: given twice (first on line 3)" in res.output, res.output
    job_file.write_text("data: [a.txt, b.txt]\n")
    res = env.cli("train", "-f", str(job_file), "--queue", IDLE)
    assert res.exit_code == 2 and "data must be a file path, got ['a.txt', 'b.txt']" in res.output, res.output
    job_file.write_bytes(b"data: c\xe9.txt\n")  # Latin-1
    res = env.cli("train", "-f", str(job_file), "--queue", IDLE)
    assert res.exit_code == 2 and "is not UTF-8 text" in res.output and env.job_count() == 0, res.output
