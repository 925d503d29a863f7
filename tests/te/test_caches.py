"""te.caches: sysfs parsing on a fake tree, the fallbacks, sizes in target strings, the cost model."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from te import caches
from te.caches import CONSERVATIVE, Caches, KiB, MiB, format_size, parse_size, read_sysfs
from te.target import host, parse


def fake_cpu(root: Path, entries: list[tuple[int, str, str, str]], siblings: str = "0") -> Path:
    """A sysfs cpu0 directory whose cache/index<i> hold (level, type, size, shared_cpu_list)."""
    cpu = root / "cpu0"
    for i, (level, kind, size, shared) in enumerate(entries):
        d = cpu / "cache" / f"index{i}"
        d.mkdir(parents=True)
        for name, text in (("level", str(level)), ("type", kind), ("size", size), ("shared_cpu_list", shared)):
            (d / name).write_text(text + "\n")
    (cpu / "topology").mkdir(parents=True)
    (cpu / "topology" / "thread_siblings_list").write_text(siblings + "\n")
    return cpu


def test_sysfs_of_an_emerald_rapids_vm(tmp_path):
    cpu = fake_cpu(tmp_path, [(1, "Data", "48K", "0"), (1, "Instruction", "32K", "0"),
                              (2, "Unified", "2048K", "0"), (3, "Unified", "307200K", "0-1")])
    assert read_sysfs(cpu) == Caches(48 * KiB, 2 * MiB, 150 * MiB)


def test_sysfs_l3_is_shared_among_cores_not_smt_threads(tmp_path):
    # 8 cores of 2 threads share 32 MiB (a Zen 4 CCD): 4 MiB per core
    cpu = fake_cpu(tmp_path, [(1, "Data", "32K", "0,8"), (2, "Unified", "1024K", "0,8"),
                              (3, "Unified", "32768K", "0-15")], siblings="0,8")
    assert read_sysfs(cpu) == Caches(32 * KiB, 1 * MiB, 4 * MiB)


@pytest.mark.parametrize("entries", [
    [(1, "Data", "48K", "0")],                                             # no L2
    [(1, "Data", "48K", "0"), (2, "Unified", "lots", "0")],                # unreadable size
    [(1, "Instruction", "32K", "0"), (2, "Unified", "2048K", "0")],        # no data L1
])
def test_sysfs_without_usable_sizes_gives_none(tmp_path, entries):
    assert read_sysfs(fake_cpu(tmp_path, entries)) is None
    assert read_sysfs(tmp_path / "missing") is None


def test_host_falls_back_to_sysconf_then_conservative(monkeypatch):
    monkeypatch.setattr(caches, "read_sysfs", lambda *a: None)
    caches.host_caches.cache_clear()
    try:
        monkeypatch.setattr(caches, "read_sysconf", lambda: Caches(48 * KiB, 1280 * KiB, 2 * MiB))
        assert caches.host_caches() == Caches(48 * KiB, 1280 * KiB, 2 * MiB)
        caches.host_caches.cache_clear()
        monkeypatch.setattr(caches, "read_sysconf", lambda: None)
        assert caches.host_caches() == CONSERVATIVE == Caches(32 * KiB, 1 * MiB, 8 * MiB)
    finally:
        caches.host_caches.cache_clear()


def test_sysconf_agrees_with_sysfs_on_this_machine():
    from_cpuid, from_sysfs = caches.read_sysconf(), read_sysfs()
    if from_cpuid is None or from_sysfs is None:
        pytest.skip("this machine lacks glibc's cache sizes or sysfs's")
    assert (from_cpuid.l1d, from_cpuid.l2) == (from_sysfs.l1d, from_sysfs.l2)


@pytest.mark.parametrize("text, n", [("48K", 48 * KiB), ("1.25M", 1280 * KiB), ("2MiB", 2 * MiB),
                                     ("32768", 32768), ("1G", 1 << 30)])
def test_sizes_parse_and_print_back(text, n):
    assert parse_size(text) == n
    assert parse_size(format_size(n)) == n


def test_host_target_carries_its_caches_and_round_trips():
    h = host()
    assert h.caches == caches.host_caches()
    assert parse(str(h)) == h
    native = parse("llvm -mcpu=native -l2=1M")
    assert native.caches == dataclasses.replace(h.caches, l2=1 * MiB)


def test_a_cross_target_takes_given_sizes_or_conservative_ones():
    t = parse("llvm -mcpu=znver4 -l1d=48K -l2=1.25M")
    assert t.caches == Caches(48 * KiB, 1280 * KiB, CONSERVATIVE.l3)
    assert parse(str(t)) == t
    plain = parse("llvm -mcpu=znver4")
    assert plain.caches == CONSERVATIVE and str(plain) == "llvm -mcpu=znver4"
    # the sizes decide defaults only: the ISA key records are matched by ignores them
    assert t.isa == plain.isa


@pytest.mark.parametrize("text, says", [("llvm -mcpu=znver4 -l2=big", "write a size like"),
                                        ("llvm -mcpu=znver4 -l1d=1K", "at least 4K"),
                                        ("llvm -mcpu=znver4 -l4=1M", "cache sizes -l1d=, -l2=, -l3=")])
def test_bad_sizes_are_refused_in_one_line(text, says):
    with pytest.raises(ValueError, match=says) as e:
        parse(text)
    assert "\n" not in str(e.value) and text in str(e.value)


def test_levels_and_reread_cycles():
    c = Caches(48 * KiB, 2 * MiB, 150 * MiB)
    # a working set stays in a level that it fills at most three quarters of
    assert [c.level(b) for b in (36 * KiB, 37 * KiB, 1.5 * MiB, 1.6 * MiB, 112 * MiB, 113 * MiB)] == [0, 1, 1, 2, 2, 3]
    # a MiB re-read from L2 (64 bytes a cycle) and one from memory (16)
    assert c.reread_cycles([(MiB, MiB), (MiB, 120 * MiB)]) == MiB / 64 + MiB / 16
    assert c.loop_cycles(64.0 * 1000, 16, []) == 1000      # 2 FMA units x 16 lanes x 2 flops a cycle
