"""Artifacts in an S3-compatible bucket: `RNNQ_ARTIFACTS=s3://bucket/prefix`.

The same methods as the local directory (`workers.artifacts.ArtifactStore`), over
s3fs. The endpoint and credentials come from the usual AWS sources, read by botocore
itself: AWS_ENDPOINT_URL (MinIO, Ceph, moto...), AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, ~/.aws, instance roles.

An S3 PUT is atomic: an object is either absent or whole, so `put_bytes` and
`put_file` need no temporary name. What S3 lacks is rename; conditional puts take its
place (If-None-Match: * creates only if absent, If-Match: <etag> replaces only the
version the writer read), supported by AWS S3 since 2024, MinIO and moto. A server
without them answers 501, which becomes an ArtifactError naming the operation.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from rnn_tasks.spec import SpecError, check_artifact_key
from workers.artifacts import ArtifactError


class _Missing(ArtifactError):
    """No object under that key."""


class S3ArtifactStore:
    """Keys under `s3://bucket/prefix/`; keys are checked exactly as on disk."""

    def __init__(self, url: str, fs: Any = None) -> None:
        if not url.startswith("s3://"):
            raise ArtifactError(f"not an s3:// URL: {url!r}")
        self.url = url.rstrip("/")
        bucket, _, prefix = self.url.removeprefix("s3://").partition("/")
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        if fs is None:
            import s3fs

            # No instance cache: each store resolves the AWS variables of its process
            # (a test or a forked pool child may have changed them).
            fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)
        self.fs = fs

    # --- keys --------------------------------------------------------------------

    def object_key(self, key: str) -> str:
        """The S3 object key of an artifact key (checked like a local path)."""
        try:
            check_artifact_key("artifact", key)
        except SpecError as exc:
            raise ArtifactError(str(exc)) from None
        return self.prefix + key

    def _path(self, key: str) -> str:
        return f"{self.bucket}/{self.object_key(key)}"

    def location(self, key: str) -> str:
        return f"s3://{self._path(key)}"

    def local_path(self, key: str) -> Path:
        raise ArtifactError(f"{self.location(key)} is in an object store and has no local path; use get_file/put_file")

    # --- reads and writes ---------------------------------------------------------

    def _call(self, method: str, key: str, **kwargs: Any) -> Any:
        """One S3 call on s3fs's event loop. A missing object becomes ArtifactError; so
        does a server that does not implement a conditional header (501)."""
        from fsspec.asyn import sync

        async def call() -> Any:
            response = await self.fs._call_s3(method, Bucket=self.bucket, Key=self.object_key(key), **kwargs)
            if method == "get_object":  # read the body here, on the loop that owns the connection
                async with response["Body"] as body:
                    response["Body"] = bytes(await body.read())
            return response

        try:
            return sync(self.fs.loop, call)
        except FileNotFoundError:
            raise _Missing(f"no artifact {key!r} in {self.url}") from None
        except OSError as exc:
            if _code(exc) in ("NotImplemented", "501"):
                conditions = ", ".join(sorted(kwargs.keys() - {"Body"})) or "no condition"
                raise ArtifactError(f"{self.url}: the object store cannot {method} with {conditions}") from exc
            raise

    def put_bytes(self, key: str, data: bytes) -> None:
        self._call("put_object", key, Body=data)

    def get_bytes(self, key: str) -> bytes:
        return self.get_tagged(key)[0]

    def exists(self, key: str) -> bool:
        self.object_key(key)  # an invalid key is an error, not "absent"
        try:
            self._call("head_object", key)
        except _Missing:
            return False
        return True

    def put_file(self, key: str, path: Path) -> None:
        """Upload a local file (multipart when large; the object appears only when whole)."""
        self.object_key(key)
        self.fs.put_file(str(path), self._path(key))

    def get_file(self, key: str, dest: Path) -> Path:
        """Download to the file `dest`, through a temporary name beside it."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
        os.close(fd)
        try:
            try:
                self.fs.get_file(self._path(key), tmp)
            except FileNotFoundError:
                raise ArtifactError(f"no artifact {key!r} in {self.url}") from None
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return dest

    def copy_out(self, key: str, dest: Path) -> Path:
        return self.get_file(key, Path(dest) / key.rsplit("/", 1)[-1])

    def delete(self, key: str) -> None:
        """Remove one object (nothing happens if it is not there)."""
        if self.exists(key):
            self.fs.rm(self._path(key))

    def delete_prefix(self, prefix: str) -> None:
        """Remove the object `prefix` and every object under `prefix/` (never `prefix*`)."""
        head = self.object_key(prefix)
        paths = [f"{self.bucket}/{head}"] if self.exists(prefix) else []
        paths += self.fs.find(f"{self.bucket}/{head}/")
        if paths:
            self.fs.rm(paths)

    # --- conditional writes -------------------------------------------------------

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create `key` unless it exists (If-None-Match: *); False if it did."""
        try:
            self._call("put_object", key, Body=data, IfNoneMatch="*")
        except FileExistsError:
            return False
        except OSError as exc:
            if _code(exc) in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                return False
            raise
        return True

    def get_tagged(self, key: str) -> tuple[bytes, str]:
        """The object and its ETag, read in one request (so the tag is the data's)."""
        response = self._call("get_object", key)
        return response["Body"], str(response["ETag"])

    def put_if_match(self, key: str, data: bytes, tag: str) -> bool:
        """Replace `key` only if its ETag is still `tag` (If-Match); False otherwise."""
        try:
            self._call("put_object", key, Body=data, IfMatch=tag)
        except _Missing:
            return False  # deleted since it was read: the tag is stale too
        except OSError as exc:
            if _code(exc) in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                return False
            raise
        return True


def _code(exc: BaseException) -> str | None:
    """The S3 error code behind an exception s3fs translated (from botocore's ClientError)."""
    cause = exc.__cause__ or exc.__context__
    response = getattr(cause, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        return str(error.get("Code") or response.get("ResponseMetadata", {}).get("HTTPStatusCode"))
    return None
