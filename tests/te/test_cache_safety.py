"""The compile cache holds native code: entries bound to their keys, a private folder, a size bound."""
from __future__ import annotations

import logging
import os
import stat

import numpy as np
import pytest

import te
from te import cache

from .export_helpers import add_relu_func


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test gets its own compile cache, in a folder that does not exist yet."""
    monkeypatch.setenv("TILEWISE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TILEWISE_CACHE", raising=False)
    monkeypatch.delenv("TILEWISE_CACHE_MAX_MB", raising=False)


def entries() -> list[str]:
    return sorted(os.path.join(d, n) for d, _, ns in os.walk(os.path.join(cache.cache_dir(), "objects"))
                  for n in ns)


def sub_kernel():
    """Z = X - Y: the same arguments as add_relu, different code."""
    X = te.placeholder((7, 5), dtype="int32", name="X")
    Y = te.placeholder((7, 5), dtype="int32", name="Y")
    Z = te.compute((7, 5), lambda i, j: X[i, j] - Y[i, j], name="Z")
    return te.lower(te.create_schedule(Z.op), [X, Y, Z], name="add_relu")


def test_an_entry_planted_under_another_key_is_not_used(tmp_path):
    te.export_library([sub_kernel()], tmp_path / "sub.so")
    [sub_entry] = entries()
    te.export_library([add_relu_func()], tmp_path / "add.so")
    [add_entry] = [e for e in entries() if e != sub_entry]
    with open(sub_entry, "rb") as src, open(add_entry, "wb") as dst:
        dst.write(src.read())               # the subtraction's object, under the add's key
    te.export_library([add_relu_func()], tmp_path / "again.so")
    m = te.load_module(tmp_path / "again.so")
    x, y, z = np.full((7, 5), 3, np.int32), np.full((7, 5), 4, np.int32), np.zeros((7, 5), np.int32)
    m(x, y, z)
    assert (z == 7).all()


def test_the_cache_folder_is_created_private(tmp_path):
    te.export_library([add_relu_func()], tmp_path / "a.so")
    assert stat.S_IMODE(os.stat(cache.cache_dir()).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(entries()[0]).st_mode) & 0o077 == 0


def test_a_folder_others_may_write_is_not_used(tmp_path, caplog):
    os.makedirs(cache.cache_dir())
    os.chmod(cache.cache_dir(), 0o777)
    caplog.set_level(logging.WARNING, logger="te.cache")
    assert cache.default() is None and cache.default() is None
    warnings = [r.getMessage() for r in caplog.records if "compile cache" in r.getMessage()]
    assert len(warnings) == 1 and "group or others may write to it" in warnings[0]
    assert "chmod 700" in warnings[0]
    te.export_library([add_relu_func()], tmp_path / "a.so")      # builds, without the cache
    assert entries() == []


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a folder to another user")
def test_a_folder_of_another_user_is_not_used(tmp_path):
    os.makedirs(cache.cache_dir(), mode=0o700)
    os.chown(cache.cache_dir(), 12345, 12345)
    assert cache.private_dir(cache.cache_dir()).startswith("it belongs to another user")
    assert cache.default() is None


def test_least_recently_used_entries_are_evicted(tmp_path):
    c = cache.ObjectCache(str(tmp_path / "c"), limit=3200)          # three entries of 1000 bytes and a header
    keys = [cache.key(f"ir{i}") for i in range(3)]
    for n, k in enumerate(keys):
        c.put(k, bytes(1000))
        os.utime(c.path(k), (1000 + n, 1000 + n))      # put in order: 0 is the oldest
    assert c.get(keys[0]) is not None                 # now 0 is the most recently used
    c.put(cache.key("ir3"), bytes(1000))              # a fourth: evict the least recent
    assert not os.path.exists(c.path(keys[1]))
    assert all(os.path.exists(c.path(k)) for k in (keys[0], keys[2], cache.key("ir3")))


def test_the_size_bound_comes_from_the_environment(monkeypatch):
    assert cache.max_bytes() == cache.DEFAULT_MAX_MB << 20
    monkeypatch.setenv("TILEWISE_CACHE_MAX_MB", "2")
    assert cache.max_bytes() == 2 << 20
    for bad in ("lots", "-1"):
        monkeypatch.setenv("TILEWISE_CACHE_MAX_MB", bad)
        with pytest.raises(ValueError, match="TILEWISE_CACHE_MAX_MB=.* must be a size in MiB"):
            cache.max_bytes()
