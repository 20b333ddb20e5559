"""A worker node's cache of content-addressed inputs, so a dataset is downloaded once.

Input files are stored under their SHA-256 (`inputs/<sha256>`, see workers.artifacts;
jobs submitted by earlier versions put LM corpora at `corpora/<sha256>.txt`, still read). The key is therefore a checksum: every read
is verified against it, and a node keeps verified copies by hash:

    <cache>/ab/ab12...ef        one verified file per hash, shared by every pool process
    <cache>/ab/.ab12...ef.lock  held while one process downloads; the others wait for it

Nothing is ever rewritten in place (download to a temporary name, verify, rename), so a
reader sees a whole, verified file or none. A local-directory store is read in place
(no copy), but verified all the same.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import tempfile
from pathlib import Path

from workers.artifacts import ArtifactError, ArtifactStore, LocalArtifactStore

_CONTENT_KEY = re.compile(r"^(?:corpora|inputs)/([0-9a-f]{64})(?:\.txt)?$")
_CHUNK = 1 << 20


def content_hash(key: str) -> str:
    """The SHA-256 a content-addressed key names; ArtifactError for any other key."""
    match = _CONTENT_KEY.match(key)
    if match is None:
        raise ArtifactError(f"artifact {key!r} is not content-addressed (corpora/<sha256>.txt or inputs/<sha256>)")
    return match.group(1)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def cached_input(store: ArtifactStore, key: str, cache_dir: Path) -> Path:
    """A local, verified copy of a content-addressed artifact.

    The first call on a node downloads it into `cache_dir`; later calls, from any
    process on the node, read the cached copy (verified again, so a damaged cache entry
    is fetched anew rather than trained on). Raises ArtifactError when the stored object
    does not hash to its key.
    """
    expected = content_hash(key)
    if isinstance(store, LocalArtifactStore):
        path = store.local_path(key)
        if not path.is_file():
            raise ArtifactError(f"no artifact {key!r} under {store.root}")
        _verify(path, expected, key)
        return path
    target = Path(cache_dir) / expected[:2] / expected
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{expected}.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one download per node; the others wait, then hit
        if target.is_file():
            if file_sha256(target) == expected:
                return target
            target.unlink()  # damaged on this node: fetch it again
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{expected}.", suffix=".tmp")
        os.close(fd)
        try:
            store.get_file(key, Path(tmp))
            _verify(Path(tmp), expected, key)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return target


def read_input(store: ArtifactStore, key: str, cache_dir: Path) -> bytes:
    """The bytes of a content-addressed artifact, through the node's cache."""
    return cached_input(store, key, cache_dir).read_bytes()


def _verify(path: Path, expected: str, key: str) -> None:
    actual = file_sha256(path)
    if actual != expected:
        raise ArtifactError(f"artifact {key!r} is corrupt: its content hashes to sha256 {actual[:16]}..., "
                            f"its key says {expected[:16]}...; re-submit the input")
