"""Artifacts in S3, against a real S3 server on loopback (moto), and the node's input cache.

The same store tests run on the local directory, so both backends keep one contract.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest

from tests.integration.conftest import Env
from tests.integration.s3server import S3Server
from tests.support import make_corpus
from workers import settings
from workers.artifacts import ArtifactError, ArtifactStore, LocalArtifactStore, open_store, put_input
from workers.inputcache import cached_input, read_input
from workers.objectstore import S3ArtifactStore

pytestmark = pytest.mark.integration


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        return LocalArtifactStore(tmp_path / "artifacts")
    server: S3Server = request.getfixturevalue("s3")
    return open_store(settings.artifact_location(server.url("team/rnnq")))


def test_open_store_picks_the_backend(s3: S3Server, tmp_path: Path) -> None:
    assert isinstance(open_store(s3.url()), S3ArtifactStore)
    assert isinstance(open_store(tmp_path), LocalArtifactStore)
    assert isinstance(open_store(str(tmp_path)), LocalArtifactStore)


def test_bytes_round_trip_under_the_prefix(s3: S3Server) -> None:
    store = open_store(s3.url("team/rnnq"))
    store.put_bytes("jobs/abc/samples.json", b"{}")
    assert store.get_bytes("jobs/abc/samples.json") == b"{}"
    assert store.location("jobs/abc/samples.json") == f"s3://{s3.bucket}/team/rnnq/jobs/abc/samples.json"
    # The object really is in the bucket, under the prefix, and nothing else is.
    listed = s3.client().list_objects_v2(Bucket=s3.bucket)["Contents"]
    assert [obj["Key"] for obj in listed] == ["team/rnnq/jobs/abc/samples.json"]


def test_store_methods(store: ArtifactStore, tmp_path: Path) -> None:
    assert not store.exists("jobs/a1/best.safetensors")
    with pytest.raises(ArtifactError, match="no artifact"):
        store.get_bytes("jobs/a1/best.safetensors")
    store.put_bytes("jobs/a1/samples.json", b"[1]")
    assert store.exists("jobs/a1/samples.json") and store.get_bytes("jobs/a1/samples.json") == b"[1]"

    checkpoint = tmp_path / "scratch" / "best.safetensors"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b"weights" * 1000)
    store.put_file("jobs/a1/best.safetensors", checkpoint)
    got = store.get_file("jobs/a1/best.safetensors", tmp_path / "down" / "ckpt.safetensors")
    assert got == tmp_path / "down" / "ckpt.safetensors" and got.read_bytes() == checkpoint.read_bytes()
    assert [p.name for p in got.parent.iterdir()] == ["ckpt.safetensors"], "no temporary file left behind"
    with pytest.raises(ArtifactError, match="no artifact"):
        store.get_file("jobs/a1/missing", tmp_path / "down" / "missing")
    assert not (tmp_path / "down" / "missing").exists()

    out = store.copy_out("jobs/a1/best.safetensors", tmp_path / "out")
    assert out == tmp_path / "out" / "best.safetensors" and out.read_bytes() == checkpoint.read_bytes()

    # delete_prefix removes a job's folder, and never a sibling that shares its prefix.
    store.put_bytes("jobs/a1x/keep", b"k")
    store.delete_prefix("jobs/a1")
    assert not store.exists("jobs/a1/best.safetensors") and not store.exists("jobs/a1/samples.json")
    assert store.get_bytes("jobs/a1x/keep") == b"k"


@pytest.mark.parametrize("key", ["../outside", "/etc/passwd", "jobs/a/../../x", "", "a//b", "jobs/.hidden"])
def test_keys_are_checked(store: ArtifactStore, key: str) -> None:
    for call in (lambda: store.put_bytes(key, b"x"), lambda: store.exists(key), lambda: store.put_if_absent(key, b"x")):
        with pytest.raises(ArtifactError, match="not a valid artifact key"):
            call()


def test_put_if_absent_creates_once(store: ArtifactStore) -> None:
    assert store.put_if_absent("jobs/a1/last.json", b'{"step": 1}') is True
    assert store.put_if_absent("jobs/a1/last.json", b'{"step": 2}') is False
    assert store.get_bytes("jobs/a1/last.json") == b'{"step": 1}'


def test_put_if_match_refuses_a_stale_tag(store: ArtifactStore) -> None:
    store.put_if_absent("jobs/a1/last.json", b'{"step": 1}')
    _, tag = store.get_tagged("jobs/a1/last.json")
    # Two writers read the same version; the first one to write wins ...
    assert store.put_if_match("jobs/a1/last.json", b'{"step": 2}', tag) is True
    # ... and the second, holding the now stale tag, cannot overwrite the newer pointer.
    assert store.put_if_match("jobs/a1/last.json", b'{"step": 1, "stale": true}', tag) is False
    data, newer = store.get_tagged("jobs/a1/last.json")
    assert data == b'{"step": 2}' and newer != tag
    assert store.put_if_match("jobs/a1/last.json", b'{"step": 3}', newer) is True
    # A pointer that does not exist matches no tag.
    assert store.put_if_match("jobs/a1/none.json", b"{}", newer) is False
    assert not store.exists("jobs/a1/none.json")


def test_s3_conditional_puts_reach_the_server(s3: S3Server) -> None:
    # What the server saw, read back with plain boto3: one object, the winner's bytes.
    store = open_store(s3.url())
    assert store.put_if_absent("jobs/b2/last.json", b"first")
    assert not store.put_if_absent("jobs/b2/last.json", b"second")
    head = s3.client().head_object(Bucket=s3.bucket, Key="rnnq/jobs/b2/last.json")
    assert store.get_tagged("jobs/b2/last.json") == (b"first", head["ETag"])
    assert not store.put_if_match("jobs/b2/last.json", b"third", '"0123456789abcdef0123456789abcdef"')
    body = s3.client().get_object(Bucket=s3.bucket, Key="rnnq/jobs/b2/last.json")["Body"].read()
    assert body == b"first"


# --- content-addressed inputs and the node cache ---------------------------------------


def test_cache_downloads_once_per_node(s3: S3Server, tmp_path: Path) -> None:
    store = open_store(s3.url())
    key = put_input(store, ("to be or not to be\n" * 100).encode())
    cache = tmp_path / "cache"
    first = cached_input(store, key, cache)
    assert first.read_text() == "to be or not to be\n" * 100
    assert first.is_relative_to(cache)
    s3.server.stop()  # the second read must not need the server at all
    assert cached_input(store, key, cache) == first
    assert read_input(store, key, cache) == first.read_bytes()


def test_a_damaged_cache_entry_is_fetched_again(s3: S3Server, tmp_path: Path) -> None:
    store = open_store(s3.url())
    data = b"col_a,col_b\n1,2\n"
    key = put_input(store, data)
    path = cached_input(store, key, tmp_path)
    path.write_bytes(b"bit rot")
    assert cached_input(store, key, tmp_path).read_bytes() == data


def test_corrupt_object_in_the_bucket_is_refused(s3: S3Server, tmp_path: Path) -> None:
    store = open_store(s3.url())
    key = put_input(store, b"the real data")
    # Someone rewrites the object behind rnnq's back.
    s3.client().put_object(Bucket=s3.bucket, Key=f"rnnq/{key}", Body=b"tampered data")
    with pytest.raises(ArtifactError, match=r"corrupt: its content hashes to sha256 .*its key says"):
        cached_input(store, key, tmp_path / "cache")
    assert not any(p.is_file() and not p.name.endswith(".lock") for p in (tmp_path / "cache").rglob("*")), \
        "nothing unverified may stay in the cache"


def test_local_store_is_read_in_place_and_verified(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "artifacts")
    key = put_input(store, b"abc")
    assert cached_input(store, key, tmp_path / "cache") == store.local_path(key)
    assert not (tmp_path / "cache").exists()
    store.local_path(key).write_text("abd")
    with pytest.raises(ArtifactError, match="corrupt"):
        cached_input(store, key, tmp_path / "cache")


def test_only_content_addressed_keys_are_cached(s3: S3Server, tmp_path: Path) -> None:
    store = open_store(s3.url())
    store.put_bytes("jobs/a1/samples.json", b"{}")
    with pytest.raises(ArtifactError, match="not content-addressed"):
        cached_input(store, "jobs/a1/samples.json", tmp_path)
    digest = hashlib.sha256(b"never stored").hexdigest()
    with pytest.raises(ArtifactError, match="no artifact"):
        cached_input(store, f"inputs/{digest}", tmp_path)


# --- the CLI against S3 ------------------------------------------------------------------


def test_cli_context_writes_corpora_to_the_bucket(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: RNNQ_ARTIFACTS=s3://... became a local directory named "s3:" and nothing
    # reached the bucket. Now the CLI's store is the bucket.
    from cli.context import Context

    monkeypatch.setenv("RNNQ_ARTIFACTS", s3.url("x"))
    ctx = Context(redis_url="redis://127.0.0.1:1/0", artifacts=None)
    key = put_input(ctx.artifacts, b"hello bucket")
    body = s3.client().get_object(Bucket=s3.bucket, Key=f"x/{key}")["Body"].read()
    assert body == b"hello bucket"
    assert not Path("s3:").exists()


def test_rnnq_train_uploads_the_corpus_to_the_bucket(s3: S3Server, env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    # The reported failure, end to end on the CLI side: train with RNNQ_ARTIFACTS=s3://...
    # used to report success while writing to ./s3:/rnnq/x and nothing to the bucket.
    monkeypatch.chdir(env.tmp)
    corpus = env.tmp / "corpus.txt"
    corpus.write_text(make_corpus(5_000))
    env.vars["RNNQ_ARTIFACTS"] = s3.url("x")
    queue = f"s3-{uuid.uuid4().hex[:8]}"  # no worker consumes it: the message is dropped below
    result = env.cli("train", str(corpus), "--max-steps", "1", "--queue", queue)
    env.redis.delete(queue)
    assert result.exit_code == 0, result.output
    digest = hashlib.sha256(corpus.read_bytes()).hexdigest()
    body = s3.client().get_object(Bucket=s3.bucket, Key=f"x/inputs/{digest}")["Body"].read()
    assert body == corpus.read_bytes()
    assert not (env.tmp / "s3:").exists()
