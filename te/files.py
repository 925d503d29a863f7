"""Writing a file so that no reader ever sees half of it: the one way tilewise replaces a file.

A library, its C header, a compile-cache entry, a quantised model, a timing table, the cost
model, a command's outputs: each is written to a temporary file beside its destination and
renamed over it (`os.replace`, atomic within one file system), so a reader, a crash or a
second writer sees the old file or the whole new one.  The temporary file's name is unique
(`tempfile.mkstemp` creates it exclusively): two processes writing one path never share a
temporary file, and a symlink planted at a guessable name cannot redirect the write.  mkstemp
makes the file private (0600); `permissions` gives the file what a shared artefact needs.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import IO

SHARED = 0o644          # a file meant to be read by others (mkstemp's default is the owner only)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "", permissions: int | None = SHARED) -> Iterator[str]:
    """The name of a new empty temporary file beside `path`, for a writer that takes a file name
    (a linker, onnx.save); on a clean exit it gets `permissions` (None: left private) and
    replaces `path`; on an error it is removed and `path` is left as it was."""
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=os.path.dirname(os.path.abspath(path)))
    os.close(fd)
    try:
        yield tmp
        if permissions is not None:
            os.chmod(tmp, permissions)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", suffix: str = "", permissions: int | None = SHARED,
                 encoding: str | None = None) -> Iterator[IO]:
    """A file object open for writing (`mode` "w" or "wb") whose content replaces `path` when the
    block ends cleanly (atomic_path); text is UTF-8 unless `encoding` says otherwise."""
    if "b" not in mode and encoding is None:
        encoding = "utf-8"
    with atomic_path(path, suffix, permissions) as tmp, open(tmp, mode, encoding=encoding) as f:
        yield f
