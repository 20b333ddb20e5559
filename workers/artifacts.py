"""Artifact store: corpora, checkpoints and generated text, addressed by key.

Keys are relative, slash-separated names that rnnq creates itself ("inputs/<sha256>",
"jobs/<job id>/best.safetensors"). Every key is checked against a strict pattern and
resolved under the root, so no key can reach outside it. The local implementation
serves a directory, which can be a shared filesystem mounted on every worker;
`workers.objectstore.S3ArtifactStore` serves an S3 bucket with the same methods.
`open_store` picks one from RNNQ_ARTIFACTS.

Publishing without rename (S3 has none): a writer uploads an immutable object under a
fresh key, then moves a small pointer with a conditional put. `put_if_absent` creates
the pointer only if nobody has; `get_tagged` reads it with its version tag and
`put_if_match` replaces it only if that tag is still current, so a stale writer cannot
overwrite a newer pointer and a reader never sees a half-written checkpoint:

    jobs/<id>/ckpt-000500.safetensors   immutable, written once (put_file)
    jobs/<id>/ckpt-001000.safetensors   immutable
    jobs/<id>/last.json                 {"key": ".../ckpt-001000..."}, moved by put_if_match
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from rnn_tasks.errors import RnnqError
from rnn_tasks.spec import SpecError, check_artifact_key


class ArtifactError(RnnqError, ValueError):
    """An artifact key is invalid or names nothing."""


class ArtifactStore(Protocol):
    def put_bytes(self, key: str, data: bytes) -> None: ...
    def get_bytes(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def copy_out(self, key: str, dest: Path) -> Path: ...
    def delete_prefix(self, prefix: str) -> None: ...
    # Whole files, for checkpoints written to (and read from) a local scratch directory.
    def put_file(self, key: str, path: Path) -> None: ...
    def get_file(self, key: str, dest: Path) -> Path: ...
    # Conditional writes: False when the condition did not hold and nothing was written.
    def put_if_absent(self, key: str, data: bytes) -> bool: ...
    def get_tagged(self, key: str) -> tuple[bytes, str]: ...
    def put_if_match(self, key: str, data: bytes, tag: str) -> bool: ...
    def location(self, key: str) -> str: ...


class LocalArtifactStore:
    """A directory tree; writes are atomic (temporary file, then rename)."""

    def __init__(self, root: Path | str) -> None:
        if isinstance(root, str) and "://" in root:  # never a directory named "s3:"
            raise ArtifactError(f"{root!r} is a URL, not a directory: open it with open_store()")
        self.root = Path(root).resolve()

    def local_path(self, key: str) -> Path:
        """Filesystem path of a key; a worker writes checkpoints there directly."""
        try:
            check_artifact_key("artifact", key)
        except SpecError as exc:
            raise ArtifactError(str(exc)) from None
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise ArtifactError(f"artifact key {key!r} escapes the artifact root")
        return path

    def put_bytes(self, key: str, data: bytes) -> None:
        path = self.local_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, data, os.replace)

    def delete(self, key: str) -> None:
        self.local_path(key).unlink(missing_ok=True)

    def get_bytes(self, key: str) -> bytes:
        path = self.local_path(key)
        if not path.is_file():
            raise ArtifactError(f"no artifact {key!r} under {self.root}")
        return path.read_bytes()

    def exists(self, key: str) -> bool:
        return self.local_path(key).is_file()

    def copy_out(self, key: str, dest: Path) -> Path:
        """Copy an artifact into the directory `dest`; a copy already there stays whole
        until the new one is (a full disk leaves the old, not half of the new)."""
        return self.get_file(key, Path(dest) / self.local_path(key).name)

    def delete_prefix(self, prefix: str) -> None:
        """Remove every artifact under a key prefix (a job's folder)."""
        path = self.local_path(prefix)
        if path == self.root:
            raise ArtifactError("refusing to delete the artifact root")
        if path.is_dir():
            shutil.rmtree(path)
        elif path.is_file():
            path.unlink()

    def put_file(self, key: str, path: Path) -> None:
        """Copy a local file in under `key`; readers see the old file or the new, whole."""
        dest = self.local_path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        _copy_atomic(Path(path), dest)

    def get_file(self, key: str, dest: Path) -> Path:
        """Copy an artifact to the file `dest` (written beside it, then renamed)."""
        src = self.local_path(key)
        if not src.is_file():
            raise ArtifactError(f"no artifact {key!r} under {self.root}")
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        _copy_atomic(src, dest)
        return dest

    def put_if_absent(self, key: str, data: bytes) -> bool:
        path = self.local_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            _write_atomic(path, data, os.link)  # link(2) fails if the name exists: an atomic create
        except FileExistsError:
            return False
        return True

    def get_tagged(self, key: str) -> tuple[bytes, str]:
        """The artifact and its version tag (a content hash, like S3's ETag)."""
        data = self.get_bytes(key)
        return data, hashlib.sha256(data).hexdigest()

    def put_if_match(self, key: str, data: bytes, tag: str) -> bool:
        """Replace `key` only if its content still has version `tag` (from get_tagged).

        Compare and replace happen under an exclusive lock on a sibling lock file, so two
        writers cannot both see the same tag and both write.
        """
        path = self.local_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.parent / f".{path.name}.lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != tag:
                return False
            _write_atomic(path, data, os.replace)
        return True

    def location(self, key: str) -> str:
        """Where a user finds the artifact: its filesystem path."""
        return str(self.local_path(key))


def _write_atomic(path: Path, data: bytes, publish: Callable[[str, Path], None]) -> None:
    """Write to a temporary name in the same directory, then publish it (rename or link)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        publish(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _copy_atomic(src: Path, dest: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def open_store(location: str | Path) -> ArtifactStore:
    """The store for RNNQ_ARTIFACTS: `s3://bucket/prefix` or a local directory.

    Settings has already refused every other URL scheme; s3fs is imported only here.
    """
    if isinstance(location, str) and location.startswith("s3://"):
        from workers.objectstore import S3ArtifactStore

        return S3ArtifactStore(location)
    return LocalArtifactStore(Path(location))


def put_input(store: ArtifactStore, data: bytes) -> str:
    """Store an input file's bytes under their content hash (CSV, TSV, gzip: as given)."""
    key = f"inputs/{hashlib.sha256(data).hexdigest()}"
    if not store.exists(key):
        store.put_bytes(key, data)
    return key


def job_key(job_id: str, name: str) -> str:
    return f"jobs/{job_id}/{name}"
