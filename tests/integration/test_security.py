"""Secure by default: JSON-only messages, Redis passwords and TLS end to end."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import redis
from kombu import Connection, Exchange, Producer, Queue

from tests.integration.conftest import (
    Env,
    Worker,
    free_port,
    scrape,
    start_exporter,
    start_redis,
    start_worker,
    stop,
    total,
    wait_for,
)
from tests.support import make_corpus

pytestmark = pytest.mark.integration

TINY = ["--hidden", "16", "--embed", "8", "--seq-len", "16", "--batch-size", "4", "--max-steps", "5"]


def _train_and_generate(env: Env) -> None:
    corpus = env.tmp / "c.txt"
    corpus.write_text(make_corpus(3000))
    res = env.cli("train", str(corpus), *TINY, "--wait", "--json")
    assert res.exit_code == 0, res.output
    job_id = json.loads(res.stdout.splitlines()[0])["job_id"]
    gen = env.cli("generate", job_id, "--prompt", "The", "--max-tokens", "10", "--wait", "--json")
    assert gen.exit_code == 0, gen.output
    assert len(json.loads(gen.stdout)["texts"][0]) == 10


def _exporter_reads(env: Env) -> None:
    """The cluster exporter reaches the same Redis with the same URL."""
    proc, port = start_exporter(env.vars)
    try:
        samples = scrape(port)
    finally:
        stop(proc)
    assert total(samples, "rnnq_redis_up") == 1
    assert total(samples, "rnnq_jobs", state="succeeded") == 2


def _serves_everything(env: Env, log: Path) -> None:
    """A worker, the CLI and the exporter all work through env's Redis URL."""
    w = start_worker(env.vars, log)
    try:
        _train_and_generate(env)
    finally:
        stop(w.proc)
    _exporter_reads(env)


def _private_env(env: Env, url: str) -> Env:
    variables = {**env.vars, "RNNQ_REDIS_URL": url}
    client = redis.Redis.from_url(url, decode_responses=True)
    return Env(vars=variables, redis=client, tmp=env.tmp)


def test_pickle_message_is_refused_and_the_worker_goes_on(env: Env, worker: Worker) -> None:
    evil = {"job_id": "0123456789ab"}
    with Connection(env.vars["RNNQ_REDIS_URL"]) as conn:
        producer = Producer(conn.channel(), exchange=Exchange("train"), routing_key="train", serializer="pickle")
        # Declared here too: the per-test FLUSHDB also drops kombu's routing table.
        producer.publish(evil, headers={"task": "rnnq.train", "id": "pickled-message"},
                         declare=[Queue("train", Exchange("train"), routing_key="train")])
    wait_for(lambda: "untrusted content" in worker.log.read_text(), 30, "the worker to refuse the pickle")
    _train_and_generate(env)  # the same worker still serves jobs


def test_redis_password(env: Env, tmp_path: Path) -> None:
    port = free_port()
    proc, _ = start_redis(tmp_path, "--requirepass", "s3cret-pw", port=port)
    try:
        secured = _private_env(env, f"redis://:s3cret-pw@127.0.0.1:{port}/0")
        _serves_everything(secured, tmp_path / "w.log")
        wrong = secured.cli("--redis-url", f"redis://:wrong-pw@127.0.0.1:{port}/0", "list")
        assert wrong.exit_code == 1 and "wrong-pw" not in wrong.output and "***" in wrong.output
        assert "Traceback" not in wrong.output
    finally:
        stop(proc)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make test certificates")
def test_redis_tls(env: Env, tmp_path: Path) -> None:
    def ssl_cmd(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=tmp_path, check=True, capture_output=True)

    ssl_cmd("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
            "-subj", "/CN=rnnq-test-ca")
    ssl_cmd("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (tmp_path / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ssl_cmd("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.crt", "-days", "1", "-extfile", "ext.cnf")
    port = free_port()
    url = f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=required&ssl_ca_certs={tmp_path / 'ca.crt'}"
    client = redis.Redis.from_url(url)

    def tls_up() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    proc, _ = start_redis(tmp_path, "--port", "0", "--tls-port", str(port), "--tls-cert-file", "server.crt",
                          "--tls-key-file", "server.key", "--tls-ca-cert-file", "ca.crt", "--tls-auth-clients", "no",
                          url=url, ping=tls_up)
    try:
        secured = _private_env(env, url)
        _serves_everything(secured, tmp_path / "w.log")
        # Without the CA the server's certificate is refused: one line, exit 1.
        untrusted = secured.cli("--redis-url", f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=required", "list")
        assert untrusted.exit_code == 1 and "Traceback" not in untrusted.output
    finally:
        stop(proc)
