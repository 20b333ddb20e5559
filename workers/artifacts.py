"""Artifact store: corpora, checkpoints and generated text, addressed by key.

Keys are relative, slash-separated names that rnnq creates itself ("corpora/<sha256>",
"jobs/<job id>/best.safetensors"). Every key is checked against a strict pattern and
resolved under the root, so no key can reach outside it. The local implementation
serves a directory, which can be a shared filesystem mounted on every worker; an
object store would implement the same few methods.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Protocol

from rnn_tasks.spec import SpecError, check_artifact_key


class ArtifactError(ValueError):
    """An artifact key is invalid or names nothing."""


class ArtifactStore(Protocol):
    def put_bytes(self, key: str, data: bytes) -> None: ...
    def get_bytes(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def put_file(self, key: str, path: Path) -> None: ...
    def get_file(self, key: str, dest: Path) -> Path: ...
    def delete(self, key: str) -> None: ...
    def local_path(self, key: str) -> Path: ...
    def copy_out(self, key: str, dest: Path) -> Path: ...
    def delete_prefix(self, prefix: str) -> None: ...


class LocalArtifactStore:
    """A directory tree; writes are atomic (temporary file, then rename)."""

    def __init__(self, root: Path) -> None:
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
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def put_file(self, key: str, path: Path) -> None:
        """Store a local file under key (copied to a temporary name, then renamed)."""
        dest = self.local_path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
        os.close(fd)
        try:
            shutil.copyfile(path, tmp)
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def get_file(self, key: str, dest: Path) -> Path:
        """Copy the artifact to a local file (whole, or not at all)."""
        src = self.local_path(key)
        if not src.is_file():
            raise ArtifactError(f"no artifact {key!r} under {self.root}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
        return dest

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
        src = self.local_path(key)
        if not src.is_file():
            raise ArtifactError(f"no artifact {key!r} under {self.root}")
        dest.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy2(src, dest / src.name))


    def delete_prefix(self, prefix: str) -> None:
        """Remove every artifact under a key prefix (a job's folder)."""
        path = self.local_path(prefix)
        if path == self.root:
            raise ArtifactError("refusing to delete the artifact root")
        if path.is_dir():
            shutil.rmtree(path)
        elif path.is_file():
            path.unlink()


def put_corpus(store: ArtifactStore, text: str) -> str:
    """Store a corpus as UTF-8 under its content hash; the same text is stored once."""
    data = text.encode("utf-8")
    key = f"corpora/{hashlib.sha256(data).hexdigest()}.txt"
    if not store.exists(key):
        store.put_bytes(key, data)
    return key


def put_input(store: ArtifactStore, data: bytes) -> str:
    """Store an input file's bytes under their content hash (CSV, TSV, gzip: as given)."""
    key = f"inputs/{hashlib.sha256(data).hexdigest()}"
    if not store.exists(key):
        store.put_bytes(key, data)
    return key


def job_key(job_id: str, name: str) -> str:
    return f"jobs/{job_id}/{name}"
