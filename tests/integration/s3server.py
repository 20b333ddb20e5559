"""A real S3 server on loopback for tests: moto's ThreadedMotoServer on a free port.

`s3` points the AWS variables (AWS_ENDPOINT_URL, credentials, region) at it, creates a
bucket and yields; the server is stopped after the test. tests/integration/conftest.py
imports the fixture, so every integration test can ask for `s3`.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest


@dataclass
class S3Server:
    endpoint: str
    bucket: str
    server: Any  # moto.server.ThreadedMotoServer

    def client(self) -> Any:
        """A plain boto3 client, to look at or tamper with the bucket behind rnnq's back."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def url(self, prefix: str = "rnnq") -> str:
        return f"s3://{self.bucket}/{prefix}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    found = S3Server(endpoint=endpoint, bucket=f"rnnq-{uuid.uuid4().hex[:8]}", server=server)
    try:
        found.client().create_bucket(Bucket=found.bucket)
        yield found
    finally:
        server.stop()
