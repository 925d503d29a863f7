"""tilewise info, --version and every --help, from a subprocess."""
from __future__ import annotations

import json

import pytest

COMMANDS = ["info", "tune", "build", "run", "bench", "logs", "demo"]


def test_top_level_help_lists_every_command(cli):
    r = cli("--help")
    assert r.code == 0
    for c in COMMANDS:
        assert c in r.out
    assert "examples:" in r.out


@pytest.mark.parametrize("command", COMMANDS + ["logs show", "logs best", "logs merge", "logs stats"])
def test_every_subcommand_explains_itself_with_an_example(cli, command):
    r = cli(*command.split(), "--help")
    assert r.code == 0, r.err
    assert "usage: tilewise " + command in r.out
    assert "example" in r.out
    assert "tilewise " + command.split()[0] in r.out.split("example", 1)[1]


def test_version(cli):
    r = cli("--version")
    assert r.code == 0 and r.out.startswith("tilewise ")


def test_info_measures_once_then_uses_the_cache(cli, tmp_path):
    env = {"TILEWISE_CACHE_DIR": str(tmp_path / "fresh-cache"), "TILEWISE_NUM_THREADS": "2"}
    first = cli("info", env=env)
    assert first.code == 0, first.err
    for what in ("CPU", "ISA key", "target", "threads", "fp32 peak", "bandwidth"):
        assert what in first.out
    from te.peak_int8 import available
    for kind in ("vnni", "amx"):
        assert (f"{kind.upper()} " in first.out.split("int8 peak", 1)[-1]) == available(kind)
    assert "llvm -mcpu=" in first.out
    assert "2 (TILEWISE_NUM_THREADS" in first.out
    assert "just measured" in first.out
    cache = tmp_path / "fresh-cache" / "machine.json"
    assert cache.exists()
    data = json.loads(cache.read_text())
    (isa, entry), = data.items()
    assert isa.startswith("x86_64") and entry["peak_gflops"]["1"] > 0 and entry["bandwidth_gbs"] > 0

    again = cli("info", "--json", env=env)
    assert again.code == 0, again.err
    facts = json.loads(again.out)
    assert facts["measurement_cached"] is True
    assert facts["isa"] == isa and facts["threads"] == 2
    assert facts["peak_gflops_1_thread"] == pytest.approx(entry["peak_gflops"]["1"])
    for kind, gops in facts["int8_peak_gops"].items():      # cached too
        assert gops == pytest.approx(entry["int8_peak_gops"][kind]["2"]) and gops > 0
    assert facts["target"].startswith("llvm -mcpu=")


def test_a_peak_measured_by_an_older_kernel_is_measured_again(tmp_path, monkeypatch):
    """machine.json keeps the peak kernel's revision: a peak an earlier kernel measured (on AVX2
    its 16 chains spilled: 40% of the true peak) is not trusted."""
    from te import machine
    from te.target import host
    from tilewise import ceilings
    monkeypatch.setenv("TILEWISE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(machine, "peak_gflops", lambda n: 100.0 * n)
    monkeypatch.setattr(machine, "bandwidth_gbs", lambda: 30.0)
    old = {"cpu": host().cpu, "peak_gflops": {"1": 1.0, "2": 2.0}, "bandwidth_gbs": 3.0, "measured_at": 1.0}
    (tmp_path / "machine.json").write_text(json.dumps({host().isa: old}))
    c = ceilings.ceilings(quiet=True)
    assert not c.cached and c.peak_gflops_1 == 100.0 and c.bandwidth_gbs == 30.0
    assert ceilings.ceilings(quiet=True).cached, "measured by this kernel: cached"


def test_peak_chains_fit_the_vector_registers():
    from te import machine
    from te.target import parse
    assert machine.chains(parse("llvm -mcpu=skylake-avx512")) == 16     # 16 of 32 registers
    assert machine.chains(parse("llvm -mcpu=haswell")) == 12            # 12 of 16: two for the operands


def test_info_without_measuring(cli):
    r = cli("info", "--no-measure")
    assert r.code == 0, r.err
    assert "fp32 peak" not in r.out and "ISA key" in r.out


def test_info_shows_the_caches_the_defaults_use(cli):
    from te.caches import format_size, host_caches
    c = host_caches()
    r = cli("info", "--no-measure")
    assert r.code == 0, r.err
    line = next(ln for ln in r.out.splitlines() if ln.startswith("caches"))
    assert f"L1d {format_size(c.l1d)}, L2 {format_size(c.l2)}, L3 {format_size(c.l3)} per core" in line
    facts = json.loads(cli("info", "--no-measure", "--json").out)
    assert facts["caches"] == {"l1d": c.l1d, "l2": c.l2, "l3": c.l3}

