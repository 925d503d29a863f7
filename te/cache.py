"""The compile cache: object files on disk, keyed by a hash of the LLVM IR and the target.

Re-exporting a model whose kernels did not change then skips optimisation and code emission.
Entries are written atomically (a temporary file, then os.replace) and carry a header with
their length and sha256, so an entry that is corrupt or was cut short is ignored, removed and
rebuilt -- never loaded.  The directory is TILEWISE_CACHE_DIR, else ~/.cache/tilewise;
TILEWISE_CACHE=0 turns the cache off.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import struct
import tempfile

log = logging.getLogger(__name__)

MAGIC = b"TWOBJ001"
_HEADER = struct.Struct("<8sQ32s")      # magic, payload length, sha256 of the payload


def cache_dir() -> str:
    """Where cached objects live: TILEWISE_CACHE_DIR, else ~/.cache/tilewise."""
    return os.environ.get("TILEWISE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tilewise")


def enabled() -> bool:
    """False when TILEWISE_CACHE is 0/off/no."""
    return os.environ.get("TILEWISE_CACHE", "1").strip().lower() not in ("0", "off", "no", "false")


def key(*parts: str) -> str:
    """A cache key: the sha256 of the parts (IR text, target string, versions...)."""
    h = hashlib.sha256()
    for p in parts:
        data = p.encode("utf-8")
        h.update(struct.pack("<Q", len(data)))      # length-prefixed, so parts cannot run together
        h.update(data)
    return h.hexdigest()


class ObjectCache:
    """Object files by key, in one directory (two-character fan-out, like git's objects)."""

    def __init__(self, directory: str | None = None):
        self.directory = directory or cache_dir()
        self.hits = 0
        self.misses = 0

    def path(self, k: str) -> str:
        """The file that holds entry k."""
        return os.path.join(self.directory, "objects", k[:2], k + ".o")

    def get(self, k: str) -> bytes | None:
        """The payload stored under k, or None when it is missing or damaged."""
        p = self.path(k)
        try:
            with open(p, "rb") as fh:
                blob = fh.read()
        except OSError:
            self.misses += 1
            return None
        payload = _unpack(blob)
        if payload is None:
            log.warning("compile cache: ignoring damaged entry %s (it will be rebuilt)", p)
            _remove(p)
            self.misses += 1
            return None
        self.hits += 1
        return payload

    def put(self, k: str, payload: bytes) -> None:
        """Store payload under k atomically; a cache that cannot be written is only logged."""
        p = self.path(k)
        try:
            os.makedirs(os.path.dirname(p), exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(p))
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(_HEADER.pack(MAGIC, len(payload), hashlib.sha256(payload).digest()))
                    fh.write(payload)
                os.replace(tmp, p)
            except BaseException:
                _remove(tmp)
                raise
        except OSError as e:
            log.warning("compile cache: cannot write %s: %s", p, e)

    def clear(self) -> None:
        """Remove every entry."""
        shutil.rmtree(os.path.join(self.directory, "objects"), ignore_errors=True)


def _unpack(blob: bytes) -> bytes | None:
    if len(blob) < _HEADER.size:
        return None
    magic, length, digest = _HEADER.unpack_from(blob)
    payload = blob[_HEADER.size:]
    if magic != MAGIC or length != len(payload) or hashlib.sha256(payload).digest() != digest:
        return None
    return payload


def _remove(p: str) -> None:
    try:
        os.remove(p)
    except OSError:
        pass


def default() -> ObjectCache | None:
    """The cache at cache_dir(), or None when TILEWISE_CACHE turns it off."""
    return ObjectCache() if enabled() else None
