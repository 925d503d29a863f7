"""Targets: the CPU a kernel is compiled for, spelt `llvm -mcpu=NAME -mattr=+f1,+f2`.

llvmlite's host CPU *name* can be wrong on virtual machines, so the host target always
carries the explicit feature string, and the ISA key used to match tuning records is built
from features, never from the name.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

from . import llvm_init
from .runtime import num_threads  # noqa: F401  (lives in the runtime, which loads without llvmlite)

# Features that change which instructions a kernel may use; the ISA key is made of these.
ISA_FEATURES = ("sse4.2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512dq",
                "avx512vl", "avx512cd", "avx512vnni", "avx512bf16", "avx512fp16", "avx512ifma",
                "avx512vbmi", "amx-tile", "amx-int8", "amx-bf16", "avxvnni")


@dataclass(frozen=True)
class Target:
    """A CPU target: LLVM cpu name and feature string."""
    cpu: str
    features: str = ""

    @property
    def feature_set(self) -> frozenset[str]:
        """The enabled (+) features."""
        if self.features:
            return frozenset(f[1:] for f in self.features.split(",") if f.startswith("+"))
        return _cpu_default_features(self.cpu)

    @property
    def isa(self) -> str:
        """A short key naming the ISA level, e.g. 'x86_64+avx2+avx512f+...' (used to match records)."""
        fs = self.feature_set
        return "x86_64" + "".join(f"+{f}" for f in ISA_FEATURES if f in fs)

    @property
    def vector_bits(self) -> int:
        """The widest SIMD register width the target has."""
        fs = self.feature_set
        return 512 if "avx512f" in fs else 256 if "avx" in fs else 128

    def lanes(self, dtype: str = "float32") -> int:
        """How many elements of dtype fit in one vector register."""
        from .expr import DTYPE_BITS
        return self.vector_bits // max(8, DTYPE_BITS[dtype])

    def __str__(self) -> str:
        s = f"llvm -mcpu={self.cpu}"
        return s + (f" -mattr={self.features}" if self.features else "")

    def machine(self):
        """A shared llvmlite TargetMachine for this target (O3 code generation, position independent)."""
        return _shared_machine(self.cpu, self.features)

    def new_machine(self):
        """A TargetMachine of its own, for an execution engine (which takes ownership and frees it)."""
        return _new_machine(self.cpu, self.features)


@functools.lru_cache(maxsize=None)
def _shared_machine(cpu: str, features: str):
    return _new_machine(cpu, features)


def _new_machine(cpu: str, features: str):
    llvm = llvm_init.llvm()
    t = llvm.Target.from_triple(llvm.get_process_triple())
    return t.create_target_machine(cpu=cpu, features=features, opt=3, reloc="pic", codemodel="default")


@functools.lru_cache(maxsize=None)
def _cpu_default_features(cpu: str) -> frozenset[str]:
    # Features implied by common -mcpu names given without -mattr (enough for the ISA key).
    known = {
        "x86-64": set(),
        "x86-64-v2": {"sse4.2"},
        "x86-64-v3": {"sse4.2", "avx", "avx2", "fma", "f16c"},
        "haswell": {"sse4.2", "avx", "avx2", "fma", "f16c"},
        "skylake": {"sse4.2", "avx", "avx2", "fma", "f16c"},
        "x86-64-v4": {"sse4.2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512dq",
                      "avx512vl", "avx512cd"},
        "skylake-avx512": {"sse4.2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw",
                           "avx512dq", "avx512vl", "avx512cd"},
    }
    return frozenset(known.get(cpu, set()))


@functools.lru_cache(maxsize=None)
def host() -> Target:
    """This machine's CPU, with its full feature string."""
    llvm = llvm_init.llvm()
    feats = llvm.get_host_cpu_features().flatten()
    return Target(llvm.get_host_cpu_name(), feats)


def parse(target: "str | Target | None") -> Target:
    """A Target from None (host), a Target, or a string like 'llvm -mcpu=haswell -mattr=+avx2'."""
    if target is None:
        return host()
    if isinstance(target, Target):
        return target
    parts = str(target).split()
    if not parts or parts[0] != "llvm":
        raise ValueError(f"target {target!r}: expected 'llvm [-mcpu=NAME] [-mattr=+feat,...]'")
    cpu, feats = None, ""
    for p in parts[1:]:
        if p.startswith("-mcpu="):
            cpu = p[len("-mcpu="):]
        elif p.startswith("-mattr="):
            feats = p[len("-mattr="):]
        else:
            raise ValueError(f"target {target!r}: unknown option {p!r} (use -mcpu= and -mattr=)")
    if cpu in (None, "native", "host"):
        h = host()
        return Target(h.cpu, feats or h.features)
    return Target(cpu, feats)
