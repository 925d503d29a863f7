"""Targets: the CPU a kernel is compiled for, spelt `llvm -mcpu=NAME -mattr=+f1,+f2`, and the
threads its parallel loops are scheduled for.

llvmlite's host CPU *name* can be wrong on virtual machines, so the host target always
carries the explicit feature string, and the ISA key used to match tuning records is built
from features, never from the name.  The thread count is not part of the target string (records
and libraries name the ISA); `host()` and `parse()` give a target this process's thread count.
The data cache sizes (te.caches) are: `-l1d=48K -l2=2M -l3=150M` after the features, written
only when they are not te.caches.CONSERVATIVE's; they size knob defaults, never the ISA key.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import re
import tempfile
from dataclasses import dataclass

from . import llvm_init
from .caches import CONSERVATIVE, OPTIONS, Caches, host_caches, parse_size
from .runtime import check_num_threads, num_threads  # the runtime loads without llvmlite

# Features that change which instructions a kernel may use; the ISA key is made of these.
ISA_FEATURES = ("sse4.2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512dq",
                "avx512vl", "avx512cd", "avx512vnni", "avx512bf16", "avx512fp16", "avx512ifma",
                "avx512vbmi", "amx-tile", "amx-int8", "amx-bf16", "avxvnni")
SPARE_VECTORS = 4           # vector registers a register tile leaves for a weight vector and broadcasts


@dataclass(frozen=True)
class Target:
    """A CPU target: LLVM cpu name and feature string, the threads its parallel loops are
    scheduled for (host() and parse() give this process's count; a Target made directly, 1 unless
    told) and its data caches per core (host(): this machine's; else te.caches.CONSERVATIVE unless told)."""
    cpu: str
    features: str = ""
    threads: int = 1
    caches: Caches = CONSERVATIVE

    def __post_init__(self):
        # frozen: the checked count (an int, whatever number type was given) is set through object
        object.__setattr__(self, "threads", check_num_threads(self.threads, f"Target({self.cpu!r}) threads"))
        if not isinstance(self.caches, Caches):
            raise TypeError(f"Target({self.cpu!r}) caches: expected a te.caches.Caches, got {self.caches!r}")

    @property
    def feature_set(self) -> frozenset[str]:
        """The enabled (+) features."""
        if self.features:
            return _enabled_in(self.features)
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

    @property
    def vector_registers(self) -> int:
        """The vector registers of the target: 32 with AVX-512, 16 with AVX/AVX2 or SSE."""
        return 32 if "avx512f" in self.feature_set else 16

    @property
    def acc_vectors(self) -> int:
        """How many accumulator vectors a register tile may hold on the target (28 of AVX-512's 32)."""
        return self.vector_registers - SPARE_VECTORS

    def __str__(self) -> str:
        s = f"llvm -mcpu={self.cpu}" + (f" -mattr={self.features}" if self.features else "")
        return s + (f" {self.caches.options()}" if self.caches != CONSERVATIVE else "")

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
    # LLVM ends the process (a fatal error, not an exception) for an unknown CPU, or for a CPU
    # without 64-bit support or SSE2 when it compiles x86-64 code, so those are refused first.
    check(cpu, features)
    if _x86_64() and "+sse2" not in features.split(",") \
            and "sse2" not in enabled_features(Target(cpu, features)):
        raise ValueError(f"target {Target(cpu, features)}: it lacks SSE2, which x86-64 code needs (floats "
                         "are passed in SSE registers); pick a 64-bit CPU, e.g. -mcpu=x86-64, and do "
                         "not turn off sse/sse2")
    return _raw_machine(cpu, features)


def _raw_machine(cpu: str, features: str):
    llvm = llvm_init.llvm()
    t = llvm.Target.from_triple(llvm.get_process_triple())
    # +64bit: the triple is 64-bit, and a 32-bit CPU name (i686, pentium4) must only tune the code
    features = ",".join(filter(None, ["+64bit" if _x86_64() else "", features]))
    return t.create_target_machine(cpu=cpu, features=features, opt=3, reloc="pic", codemodel="default")


def _x86_64() -> bool:
    return llvm_init.llvm().get_process_triple().startswith("x86_64")


@functools.lru_cache(maxsize=64)
def _enabled_in(features: str) -> frozenset[str]:
    """The + features of an LLVM feature string, parsed once per string: codegen asks a target's
    features per instruction (its lanes, its registers), and splitting the host's hundred-odd
    features each time (34 us, 3774 times) was 0.13 s of Inception-v1's 2.5 s of codegen."""
    return frozenset(f[1:] for f in features.split(",") if f.startswith("+"))


def _cpu_default_features(cpu: str) -> frozenset[str]:
    return enabled_features(Target(cpu))


# ---------------------------------------------------------------- LLVM's own CPU and feature lists
LIST_HINT = "'tilewise info --targets' lists the valid names"


@functools.lru_cache(maxsize=None)
def _llvm_help() -> tuple[frozenset[str], dict[str, str]]:
    """LLVM's CPU names and feature names (with descriptions) for this machine's architecture.

    llvmlite has no call that lists them, but LLVM prints both lists to stderr when a target
    machine is made for the CPU 'help'; that text is captured from file descriptor 2.
    """
    llvm = llvm_init.llvm()
    t = llvm.Target.from_triple(llvm.get_process_triple())
    with tempfile.TemporaryFile() as out:
        saved = os.dup(2)
        try:
            os.dup2(out.fileno(), 2)
            t.create_target_machine(cpu="help", features="")
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    cpus_part, _, feats_part = text.partition("Available features")
    entry = re.compile(r"^  (\S+)\s+- (.*)$", re.M)
    cpus = frozenset(m.group(1) for m in entry.finditer(cpus_part))
    feats = {m.group(1): m.group(2) for m in entry.finditer(feats_part)}
    if not cpus or not feats:
        raise RuntimeError("cannot read LLVM's list of CPUs and features (its -mcpu=help text changed)")
    return cpus, feats


def known_cpus() -> list[str]:
    """The CPU names LLVM knows for this architecture (valid after -mcpu=)."""
    return sorted(_llvm_help()[0])


def known_features() -> dict[str, str]:
    """The feature names LLVM knows for this architecture (valid in -mattr=), with descriptions."""
    return dict(sorted(_llvm_help()[1].items()))


def check(cpu: str, features: str) -> None:
    """Raise ValueError naming a CPU or feature LLVM does not know, before LLVM sees it."""
    cpus, feats = _llvm_help()
    if cpu not in cpus:
        close = [c for c in sorted(cpus) if c.startswith(cpu[:3])][:6] if cpu else []
        raise ValueError(f"unknown CPU -mcpu={cpu!r}" + (f" (similar: {', '.join(close)})" if close else "")
                         + f"; {LIST_HINT}")
    for f in filter(None, features.split(",")):
        if f[0] not in "+-" or f[1:] not in feats:
            raise ValueError(f"unknown CPU feature {f!r} in -mattr= (write +name or -name, e.g. "
                             f"+avx2); {LIST_HINT}")


# Features that only tune code generation and need no instruction of the CPU: LLVM's X86 names
# for them start or are spelt like this ("slow-pmullq", "fast-movbe", "prefer-256-bit", ...).
TUNING_FEATURE = re.compile(r"(fast|slow|false-deps|prefer|tuning|no-bypass-delay|use|lea|idiv[lq]|"
                            r"pad-short|harden|lvi|retpoline)-|(macrofusion|branchfusion|ermsb|fsrm|"
                            r"sbb-dep-breaking|vzeroupper|seses|soft-float|x32|tagged-globals|"
                            r"sse-unaligned-mem|faster-shift-than-shuffle|allow-light-256-bit)$")
# Features LLVM only emits for their own intrinsics, which tilewise never calls, and that the
# kernel shows in /proc/cpuinfo only when it enables them for user space (shstk appears as
# user_shstk), so requiring them would refuse a library on the very machine that built it.
SYSTEM_FEATURES = frozenset({"shstk", "uintr", "sgx", "pconfig", "kl", "widekl", "hreset",
                             "enqcmd", "ptwrite", "prefetchi", "wbnoinvd", "invpcid"})
# Mode bits of the triple, not of the CPU.
_MODE_FEATURES = frozenset({"16bit-mode", "32bit-mode", "64bit-mode"})


def enabled_features(tgt: Target) -> frozenset[str]:
    """Every feature LLVM enables for tgt: those -mcpu implies, plus -mattr's, minus its -feature.

    llvmlite cannot ask a target machine for its feature bits, so this asks LLVM's inliner,
    which refuses to inline a function whose features are not a subset of its caller's: for
    each feature f, a function needing +f is called from one with the target's features (and
    is inlined when the target has f) and from one with -f (which tells apart features that
    inlining ignores, the tuning ones).  "64bit" cannot be switched off in 64-bit mode and is
    always on here.
    """
    return _enabled_features(tgt.cpu, tgt.features)


@functools.lru_cache(maxsize=None)
def _enabled_features(cpu: str, features: str) -> frozenset[str]:
    # keyed by cpu and features alone: the thread count does not change a CPU's features
    check(cpu, features)
    llvm = llvm_init.llvm()
    names = [f for f in _llvm_help()[1] if f not in _MODE_FEATURES and f != "64bit"]
    base = "".join(f + "," for f in ["+64bit" if _x86_64() else "", features] if f)
    lines, attrs = ["@g = global i32 0"], []
    for i, f in enumerate(names):
        lines += [f"define internal void @c{i}() #{2 * i} {{ store volatile i32 0, ptr @g ret void }}",
                  f"define internal void @d{i}() #{2 * i} {{ store volatile i32 0, ptr @g ret void }}",
                  f"define void @p{i}() {{ call void @c{i}() ret void }}",
                  f"define void @q{i}() #{2 * i + 1} {{ call void @d{i}() ret void }}"]
        attrs += [f'attributes #{2 * i} = {{ "target-features"="{base}+{f}" }}',
                  f'attributes #{2 * i + 1} = {{ "target-features"="{base}-{f}" }}']
    mod = llvm.parse_assembly("\n".join(lines + attrs))
    pb = llvm.create_pass_builder(_raw_machine(cpu, features),
                                  llvm.create_pipeline_tuning_options(speed_level=1))
    pb.getModulePassManager().run(mod, pb)
    called = set(re.findall(r"call \S* ?void @([cd]\d+)\(", str(mod)))
    on = {f for i, f in enumerate(names) if f"c{i}" not in called and f"d{i}" in called}
    return frozenset(on | {"64bit"} if _x86_64() else on)


def required_features(tgt: Target) -> list[str]:
    """The CPU features a kernel built for tgt may use, every one of which the CPU must have."""
    return sorted(f for f in enabled_features(tgt)
                  if not TUNING_FEATURE.match(f) and f not in SYSTEM_FEATURES)


def has_vnni(tgt: Target) -> bool:
    """Does tgt have a VNNI int8 dot product (AVX512-VNNI or AVX-VNNI)?  Without it ONNX Runtime's
    u8 x s8 kernel adds product pairs in int16 with saturation (vpmaddubsw), tilewise's in int32."""
    return bool({"avx512vnni", "avxvnni"} & tgt.feature_set)


@functools.lru_cache(maxsize=None)
def host() -> Target:
    """This machine's CPU, with its full feature string and the process's threads (read once:
    TILEWISE_NUM_THREADS, else the CPUs this process may use)."""
    llvm = llvm_init.llvm()
    feats = llvm.get_host_cpu_features().flatten()
    return Target(llvm.get_host_cpu_name(), feats, num_threads(), host_caches())


def for_isa(isa: str, cpu: str = "") -> Target:
    """A CPU of the ISA key `isa` (Target.isa): this machine where the key is its own, else `cpu`
    (x86-64 if not given) with the features the key names, this process's threads and
    te.caches.CONSERVATIVE's caches: where a record tuned on another CPU is judged."""
    here = host()
    if isa == here.isa:
        return here
    return Target(cpu or "x86-64", ",".join("+" + f for f in isa.split("+")[1:]), here.threads)


def parse(target: "str | Target | None") -> Target:
    """A Target from None (host), a Target, or a string like 'llvm -mcpu=haswell -mattr=+avx2'
    (with the threads of this process, as the host's).  Cache sizes may follow (-l1d=32K -l2=1M
    -l3=32M); those not given are the host's for -mcpu=native or host, else te.caches.CONSERVATIVE's."""
    if target is None:
        return host()
    if isinstance(target, Target):
        return target
    parts = str(target).split()
    if not parts or parts[0] != "llvm":
        raise ValueError(f"target {target!r}: expected 'llvm [-mcpu=NAME] [-mattr=+feat,...] [-l1d=SIZE "
                         "-l2=SIZE -l3=SIZE]'")
    cpu, feats, sizes = None, "", {}
    for p in parts[1:]:
        key, eq, value = p.partition("=")
        if key == "-mcpu" and eq:
            cpu = value
        elif key == "-mattr" and eq:
            feats = value
        elif key[1:] in OPTIONS and key.startswith("-") and eq:
            sizes[key[1:]] = parse_size(value, f"target {target!r}: {key}")
        else:
            raise ValueError(f"target {target!r}: unknown option {p!r} (use -mcpu=, -mattr= and the cache "
                             f"sizes -l1d=, -l2=, -l3=)")
    base = CONSERVATIVE
    if cpu in (None, "native", "host"):
        h = host()
        cpu, feats, base = h.cpu, feats or h.features, h.caches
    try:
        check(cpu, feats)
        caches = dataclasses.replace(base, **sizes)
    except ValueError as e:
        raise ValueError(f"target {target!r}: {e}") from None
    return Target(cpu, feats, host().threads, caches)
