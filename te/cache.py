"""The compile cache: object files on disk, keyed by a hash of the LLVM IR and the target.

Re-exporting a model whose kernels did not change then skips optimisation and code emission.
Entries are written atomically (a temporary file, then os.replace) and carry a header with
their length and the sha256 of their key and payload together, so an entry that is corrupt,
cut short, or copied over another key's file is ignored, removed and rebuilt -- never loaded.
A cache entry becomes native code in a library, so the folder must be private: it is created
0700, and one that another user owns or that group/others may write is not used (one warning).
Its size is bounded: past TILEWISE_CACHE_MAX_MB (default DEFAULT_MAX_MB) the least recently used
entries are removed.  The directory is TILEWISE_CACHE_DIR, else ~/.cache/tilewise;
TILEWISE_CACHE=0 turns the cache off.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import struct
import time

from .files import atomic_write

log = logging.getLogger(__name__)

MAGIC = b"TWOBJ002"
_HEADER = struct.Struct("<8sQ32s")      # magic, payload length, sha256 of key + payload
# Objects of a whole model are a few MiB; 1 GiB holds hundreds of models' worth.
DEFAULT_MAX_MB = 1024
_warned: set[str] = set()


def cache_dir() -> str:
    """Where cached objects live: TILEWISE_CACHE_DIR, else ~/.cache/tilewise."""
    return os.environ.get("TILEWISE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tilewise")


def enabled() -> bool:
    """False when TILEWISE_CACHE is 0/off/no."""
    return os.environ.get("TILEWISE_CACHE", "1").strip().lower() not in ("0", "off", "no", "false")


def max_bytes() -> int:
    """The size bound of the cache: TILEWISE_CACHE_MAX_MB (MiB), else DEFAULT_MAX_MB."""
    env = os.environ.get("TILEWISE_CACHE_MAX_MB", "").strip()
    if not env:
        return DEFAULT_MAX_MB << 20
    try:
        mb = float(env)
    except ValueError:
        mb = -1
    if not mb >= 0:
        raise ValueError(f"TILEWISE_CACHE_MAX_MB={env!r} must be a size in MiB, e.g. 1024 "
                         "(TILEWISE_CACHE=0 turns the cache off)")
    return int(mb * 2**20)


def key(*parts: str) -> str:
    """A cache key: the sha256 of the parts (IR text, target string, versions...)."""
    h = hashlib.sha256()
    for p in parts:
        data = p.encode("utf-8")
        h.update(struct.pack("<Q", len(data)))      # length-prefixed, so parts cannot run together
        h.update(data)
    return h.hexdigest()


def private_dir(directory: str) -> str | None:
    """Why directory cannot hold the cache (another owner, writable by others), else None;
    creates it (0700) when it does not exist."""
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        st = os.lstat(directory)
    except OSError as e:
        return f"cannot create it ({e.strerror})"
    if not stat.S_ISDIR(st.st_mode):
        return "it is not a folder"
    if st.st_uid != os.getuid():
        return f"it belongs to another user (uid {st.st_uid})"
    if st.st_mode & 0o022:
        return f"group or others may write to it (mode {stat.S_IMODE(st.st_mode):o}); chmod 700 {directory}"
    return None


class ObjectCache:
    """Object files by key, in one directory (two-character fan-out, like git's objects)."""

    def __init__(self, directory: str | None = None, limit: int | None = None):
        self.directory = directory or cache_dir()
        self.limit = max_bytes() if limit is None else limit
        self.hits = 0
        self.misses = 0

    def path(self, k: str) -> str:
        """The file that holds entry k."""
        return os.path.join(self.directory, "objects", k[:2], k + ".o")

    def get(self, k: str) -> bytes | None:
        """The payload stored under k, or None when it is missing, damaged or not ours."""
        p = self.path(k)
        try:
            with open(p, "rb") as fh:
                st = os.fstat(fh.fileno())
                blob = fh.read()
        except OSError:
            self.misses += 1
            return None
        payload = _unpack(k, blob) if st.st_uid == os.getuid() else None
        if payload is None:
            log.warning("compile cache: ignoring damaged entry %s (it will be rebuilt)", p)
            _remove(p)
            self.misses += 1
            return None
        try:
            os.utime(p, (time.time(), st.st_mtime))     # the access time orders the eviction
        except OSError:
            pass
        self.hits += 1
        return payload

    def put(self, k: str, payload: bytes) -> None:
        """Store payload under k atomically; a cache that cannot be written is only logged."""
        p = self.path(k)
        try:
            os.makedirs(os.path.dirname(p), mode=0o700, exist_ok=True)
            with atomic_write(p, "wb", permissions=None) as fh:      # the cache's entries stay private
                fh.write(_HEADER.pack(MAGIC, len(payload), _digest(k, payload)))
                fh.write(payload)
        except OSError as e:
            log.warning("compile cache: cannot write %s: %s", p, e)
            return
        self.evict(keep=p)

    def evict(self, keep: str | None = None) -> int:
        """Remove the least recently used entries until the cache fits its limit; returns how many."""
        entries = []
        for d, _, names in os.walk(os.path.join(self.directory, "objects")):
            for n in names:
                try:
                    st = os.stat(os.path.join(d, n))
                except OSError:
                    continue
                entries.append((st.st_atime, st.st_size, os.path.join(d, n)))
        total = sum(e[1] for e in entries)
        removed = 0
        for _, size, p in sorted(entries):
            if total <= self.limit:
                break
            if p != keep:
                _remove(p)
                total -= size
                removed += 1
        return removed

    def clear(self) -> None:
        """Remove every entry."""
        shutil.rmtree(os.path.join(self.directory, "objects"), ignore_errors=True)


def _digest(k: str, payload: bytes) -> bytes:
    return hashlib.sha256(k.encode("ascii") + b"\0" + payload).digest()


def _unpack(k: str, blob: bytes) -> bytes | None:
    if len(blob) < _HEADER.size:
        return None
    magic, length, digest = _HEADER.unpack_from(blob)
    payload = blob[_HEADER.size:]
    if magic != MAGIC or length != len(payload) or _digest(k, payload) != digest:
        return None
    return payload


def _remove(p: str) -> None:
    try:
        os.remove(p)
    except OSError:
        pass


def default() -> ObjectCache | None:
    """The cache at cache_dir(), or None when TILEWISE_CACHE turns it off or the folder is not
    private to this user (then one warning says why)."""
    if not enabled():
        return None
    directory = cache_dir()
    problem = private_dir(directory) or private_dir(os.path.join(directory, "objects"))
    if problem:
        if directory not in _warned:
            _warned.add(directory)
            log.warning("compile cache: not using %s: %s", directory, problem)
        return None
    return ObjectCache(directory)
