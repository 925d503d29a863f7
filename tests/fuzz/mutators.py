"""Mutations of the three untrusted inputs: ONNX files, tuning logs, exported libraries.

A mutator takes a seed file's bytes and a `random.Random` and returns the mutated bytes and a
note saying what it changed.  They draw every choice from the Random they are given, so the
hypothesis tests (`st.randoms()`) and `bench/fuzz.py` (`random.Random(seed)`) share them and a
case is reproduced from its seed.  `mutate` wraps one into a `Case`.
"""
from __future__ import annotations

import json
import random
import struct
from dataclasses import dataclass
from typing import Callable

# Values that break assumptions: zero, negative, the edges of int32/int64, large but finite.
INTS = [0, 1, -1, 2, 3, 7, 255, -(2**31), 2**31 - 1, 2**32, 2**40, 2**62, -(2**63), 2**63 - 1]
FLOATS = [float("nan"), float("inf"), -float("inf"), 0.0, -0.0, -1.0, 1e38, 1e-45, 1e308]


@dataclass(frozen=True)
class Case:
    """One fuzz input: its kind, the mutator that made it, the file's bytes and what changed."""
    kind: str            # "onnx", "log" or "lib"
    category: str        # the mutator's name
    data: bytes
    note: str
    special: str = ""    # a special file in place of data: "fifo", "dev-zero", "dev-urandom", "folder"


Mutator = Callable[[bytes, random.Random], tuple[bytes, str]]


# ---------------------------------------------------------------- bytes, any kind
def truncate(data: bytes, rnd: random.Random, cuts: list[int] | None = None) -> tuple[bytes, str]:
    """The first k bytes (k random, or one of cuts: the ends of a file's structures)."""
    k = rnd.choice(cuts) if cuts and rnd.random() < 0.5 else rnd.randrange(len(data))
    return data[:k], f"truncated to {k} of {len(data)} bytes"


def flip_bits(data: bytes, rnd: random.Random, lo: int = 0, hi: int | None = None) -> tuple[bytes, str]:
    """1 to 8 random bits flipped in data[lo:hi]."""
    hi = len(data) if hi is None else hi
    out, where = bytearray(data), []
    for _ in range(rnd.randint(1, 8)):
        pos = rnd.randrange(lo, hi)
        out[pos] ^= 1 << rnd.randrange(8)
        where.append(pos)
    return bytes(out), f"bits flipped at offsets {sorted(where)}"


def insert_bytes(data: bytes, rnd: random.Random) -> tuple[bytes, str]:
    """Random bytes (NULs, invalid UTF-8, newlines among them) inserted at a random offset."""
    pos = rnd.randrange(len(data) + 1)
    junk = rnd.choice([b"\x00", b"\xff\xfe", b"\r", b"\n\n", b"\x7fELF"]) if rnd.random() < 0.3 \
        else rnd.randbytes(rnd.choice([1, 8, 64, 4096]))
    return data[:pos] + junk + data[pos:], f"{len(junk)} byte(s) inserted at offset {pos}"


# ---------------------------------------------------------------- ONNX models
def _model(data: bytes):
    import onnx
    return onnx.load_from_string(data)


def _names(m) -> list[str]:
    g = m.graph
    return sorted({x for n in g.node for x in [*n.input, *n.output]} | {v.name for v in g.input}
                  | {v.name for v in g.output} | {t.name for t in g.initializer})


def onnx_node(data: bytes, rnd: random.Random) -> tuple[bytes, str]:
    """A graph edit on one node: its op, an input or output rewired (cycles, double writers,
    duplicate or dangling names), the node removed, duplicated, or the order reversed."""
    m = _model(data)
    nodes = m.graph.node
    k = rnd.randrange(len(nodes))
    n, names = nodes[k], _names(m)
    what = rnd.choice(["op", "input", "output", "remove", "duplicate", "reverse", "extra_input"])
    if what == "op":
        n.op_type = rnd.choice(["Foo", "", "Loop", "If", "Scan", "Conv", "MatMul", "Relu", "Reshape",
                                "Softmax", "Add", "Concat", "Gather", "Resize", "Gemm", "MaxPool"])
        note = f"node {k} op_type -> {n.op_type!r}"
    elif what == "input" and n.input:
        i = rnd.randrange(len(n.input))
        n.input[i] = rnd.choice(names + ["", "nowhere"])
        note = f"node {k} input {i} -> {n.input[i]!r}"
    elif what == "output":
        i = rnd.randrange(len(n.output))
        n.output[i] = rnd.choice(names + [""])
        note = f"node {k} output {i} -> {n.output[i]!r}"
    elif what == "remove":
        del nodes[k]
        note = f"node {k} removed"
    elif what == "duplicate":
        nodes.add().CopyFrom(n)
        note = f"node {k} duplicated at the end"
    elif what == "reverse":
        order = list(nodes)[::-1]
        del nodes[:]
        nodes.extend(order)
        note = "node order reversed"
    else:
        n.input.append(rnd.choice(names + [""]))
        note = f"node {k} extra input {n.input[-1]!r}"
    return m.SerializeToString(), note


GRAPH_DEFECTS = ("cycle", "double_writer", "unproduced_output", "unproduced_input")


def invalid_graph(data: bytes, defect: str) -> tuple[bytes, str]:
    """The seed model made invalid in one of ONNX's structural ways (GRAPH_DEFECTS)."""
    from onnx import TensorProto, helper
    m = _model(data)
    g = m.graph
    if defect == "cycle":                    # the first node reads the graph's output
        g.node[0].input[0] = g.output[0].name
    elif defect == "double_writer":          # a second node writes the first node's output
        g.node.add().CopyFrom(g.node[len(g.node) // 2])
    elif defect == "unproduced_output":
        g.output.append(helper.make_tensor_value_info("nowhere", TensorProto.FLOAT, [1]))
    else:
        g.node[-1].input[0] = "nowhere"
    return m.SerializeToString(), f"invalid graph: {defect}"


def onnx_invalid_graph(data: bytes, rnd: random.Random) -> tuple[bytes, str]:
    """One of the structural defects of invalid_graph."""
    return invalid_graph(data, rnd.choice(GRAPH_DEFECTS))


def onnx_attribute(data: bytes, rnd: random.Random) -> tuple[bytes, str]:
    """An attribute of a node set to an extreme value, given the wrong type, removed or added."""
    from onnx import AttributeProto, helper
    m = _model(data)
    k = rnd.randrange(len(m.graph.node))
    n = m.graph.node[k]
    if n.attribute and rnd.random() < 0.7:
        a = n.attribute[rnd.randrange(len(n.attribute))]
        choice = rnd.choice(["value", "type", "remove"])
        if choice == "remove":
            n.attribute.remove(a)
            return m.SerializeToString(), f"node {k} attribute {a.name} removed"
        if choice == "type":
            a.type = rnd.choice([AttributeProto.FLOAT, AttributeProto.STRING, AttributeProto.TENSOR,
                                 AttributeProto.INTS, AttributeProto.INT, AttributeProto.GRAPH])
            return m.SerializeToString(), f"node {k} attribute {a.name} type -> {a.type}"
        if a.type == AttributeProto.INTS:
            del a.ints[:]
            a.ints.extend(rnd.choice(INTS) for _ in range(rnd.randrange(6)))
            return m.SerializeToString(), f"node {k} attribute {a.name} -> {list(a.ints)}"
        a.i = rnd.choice(INTS)
        a.f = rnd.choice(FLOATS)
        return m.SerializeToString(), f"node {k} attribute {a.name} -> i={a.i} f={a.f}"
    name = rnd.choice(["group", "dilations", "strides", "pads", "auto_pad", "axis", "kernel_shape", "zzz"])
    value = rnd.choice([rnd.choice(INTS), [rnd.choice(INTS) for _ in range(rnd.randrange(5))],
                        rnd.choice(["SAME_UPPER", "VALID", "FOO", ""]), rnd.choice(FLOATS)])
    n.attribute.append(helper.make_attribute(name, value, attr_type=AttributeProto.INTS)
                       if isinstance(value, list) else helper.make_attribute(name, value))
    return m.SerializeToString(), f"node {k} attribute {name}={value!r} added"


def onnx_shape(data: bytes, rnd: random.Random) -> tuple[bytes, str]:
    """A declared shape changed: a graph input's or output's dims (extreme, symbolic, rank
    changed, removed) or an initializer's dims without its data."""
    m = _model(data)
    g = m.graph
    if rnd.random() < 0.4:
        t = g.initializer[rnd.randrange(len(g.initializer))]
        dims = list(t.dims)
        if dims and rnd.random() < 0.6:
            dims[rnd.randrange(len(dims))] = rnd.choice(INTS[:10])
        else:
            dims = dims[:-1] if dims and rnd.random() < 0.5 else dims + [rnd.choice([1, 2, 3])]
        del t.dims[:]
        t.dims.extend(dims)
        return m.SerializeToString(), f"initializer {t.name} dims -> {dims}, data unchanged"
    vi = rnd.choice(list(g.input) + list(g.output))
    shape = vi.type.tensor_type.shape
    what = rnd.choice(["dim", "param", "rank+", "rank-", "clear"])
    if what == "clear":
        vi.type.tensor_type.ClearField("shape")
    elif what == "rank+":
        shape.dim.add().dim_value = rnd.choice([1, 2, 0])
    elif what == "rank-" and shape.dim:
        del shape.dim[-1]
    elif shape.dim:
        d = shape.dim[rnd.randrange(len(shape.dim))]
        if what == "param":
            d.dim_param = rnd.choice(["N", "", "batch"])
        else:
            d.dim_value = rnd.choice(INTS[:10])
    return m.SerializeToString(), f"value {vi.name}: shape edit {what} -> {shape}".replace("\n", " ")


def onnx_dtype(data: bytes, rnd: random.Random) -> tuple[bytes, str]:
    """An element type changed: a graph input's or output's, or an initializer's (its data kept)."""
    m = _model(data)
    g = m.graph
    code = rnd.choice(list(range(0, 17)) + [21, 99])
    if rnd.random() < 0.5:
        t = g.initializer[rnd.randrange(len(g.initializer))]
        t.data_type = code
        return m.SerializeToString(), f"initializer {t.name} data_type -> {code}"
    vi = rnd.choice(list(g.input) + list(g.output))
    vi.type.tensor_type.elem_type = code
    return m.SerializeToString(), f"value {vi.name} elem_type -> {code}"


def onnx_values(data: bytes, rnd: random.Random) -> tuple[bytes, str]:
    """An initializer's values replaced: NaN/inf/huge weights, a Reshape shape of extreme
    integers, or a weight of another (bounded) shape."""
    import numpy as np
    from onnx import numpy_helper
    m = _model(data)
    g = m.graph
    i = rnd.randrange(len(g.initializer))
    t = g.initializer[i]
    a = numpy_helper.to_array(t).copy()
    what = rnd.choice(["special", "reshape", "resize"])
    if what == "special" and a.dtype.kind == "f":
        flat = a.reshape(-1)
        with np.errstate(over="ignore"):            # 1e308 becomes inf in float32, as meant
            for _ in range(rnd.randint(1, 4)):
                flat[rnd.randrange(flat.size)] = rnd.choice(FLOATS)
        note = f"initializer {t.name}: NaN/inf/extreme values written"
    elif a.dtype.kind in "iu" or what == "reshape":
        a = np.array([rnd.choice(INTS[:12]) for _ in range(rnd.randrange(5))], np.int64)
        note = f"initializer {t.name} -> {a.tolist()}"
    else:
        shape = tuple(rnd.choice([1, 2, 3, 5, 64]) for _ in range(rnd.randint(0, 4)))
        a = np.full(shape, 0.5, a.dtype)
        note = f"initializer {t.name} -> shape {shape}"
    g.initializer[i].CopyFrom(numpy_helper.from_array(a, t.name))
    return m.SerializeToString(), note


def onnx_graph(data: bytes, rnd: random.Random) -> tuple[bytes, str]:
    """A model-level edit: opset or IR version, graph outputs (removed, unproduced, an
    initializer), graph input removed, a custom domain, or an initializer's data moved to an
    external file outside the model's folder."""
    from onnx import TensorProto, helper
    m = _model(data)
    g = m.graph
    what = rnd.choice(["opset", "ir", "output", "input", "domain", "external"])
    if what == "opset":
        m.opset_import[0].version = rnd.choice([0, 1, 6, 7, 11, 18, 21, 99, 2**31])
        note = f"opset -> {m.opset_import[0].version}"
    elif what == "ir":
        m.ir_version = rnd.choice([0, 1, 3, 99, 2**40])
        note = f"ir_version -> {m.ir_version}"
    elif what == "output":
        name = rnd.choice(["", "nowhere", "x", "w", "c"])
        if rnd.random() < 0.3:
            del g.output[:]
            name = "(none)"
        else:
            g.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
        note = f"graph output {name!r} added"
    elif what == "input":
        del g.input[:]
        note = "graph inputs removed"
    elif what == "domain":
        g.node[rnd.randrange(len(g.node))].domain = rnd.choice(["com.example", "ai.onnx.ml", "x" * 300])
        note = "a node moved to another domain"
    else:
        t = g.initializer[rnd.randrange(len(g.initializer))]
        where = rnd.choice(["/etc/hostname", "../../../../../../etc/hostname", "missing.bin", "/dev/zero"])
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        del t.external_data[:]
        for key, value in (("location", where), ("offset", str(rnd.choice([0, 1, 2**40]))),
                           ("length", str(rnd.choice([4, 2**20, 2**40])))):
            e = t.external_data.add()
            e.key, e.value = key, value
        note = f"initializer {t.name}: external data at {where!r}"
    return m.SerializeToString(), note


# ---------------------------------------------------------------- tuning logs
WRONG = [None, True, False, "x", "", [], {}, [1, "a"], {"a": 1}, -1, 0, 1.5, 2**64]
NUMBER_FIELDS = ["timestamp", "error_no", "vs_default", "build_time", "run_time", "version", "costs"]


def _records(data: bytes) -> tuple[list[str], list[int]]:
    """The log's lines and the indices of its record lines."""
    lines = data.decode("utf-8").split("\n")
    return lines, [i for i, ln in enumerate(lines) if ln.startswith("{")]


def _edit_record(data: bytes, rnd: random.Random, edit: Callable[[dict], str]) -> tuple[bytes, str]:
    lines, recs = _records(data)
    i = rnd.choice(recs)
    d = json.loads(lines[i])
    note = edit(d)
    lines[i] = json.dumps(d, separators=(",", ":"))
    return "\n".join(lines).encode("utf-8"), f"line {i + 1}: {note}"


def log_field_type(data: bytes, rnd: random.Random) -> tuple[bytes, str]:
    """A record field (or a config knob, or a new key) given a value of the wrong type, or removed."""
    def edit(d: dict) -> str:
        key = rnd.choice(sorted(d) + ["config_knob", "unknown_key"])
        value = rnd.choice(WRONG)
        if key == "config_knob" and isinstance(d.get("config"), dict) and d["config"]:
            knob = rnd.choice(sorted(d["config"]))
            d["config"][knob] = value
            return f"config[{knob!r}] = {value!r}"
        if rnd.random() < 0.2:
            d.pop(key, None)
            return f"{key} removed"
        d[key] = value
        return f"{key} = {value!r}"
    return _edit_record(data, rnd, edit)


def log_numbers(data: bytes, rnd: random.Random) -> tuple[bytes, str]:
    """A numeric field (or one timing) set to a huge, tiny, negative or non-finite number."""
    values = [10**400, -(10**400), 2**63, 1e308, -1e308, float("nan"), float("inf"), -float("inf"), -0.0, -1, 1e-320]

    def edit(d: dict) -> str:
        key, value = rnd.choice(NUMBER_FIELDS), rnd.choice(values)
        if key == "costs":
            d["costs"] = list(d.get("costs") or [1e-4]) + [value]
            return f"costs += [{value!r}]"
        d[key] = value
        return f"{key} = {value!r}"
    return _edit_record(data, rnd, edit)


def log_nesting(data: bytes, rnd: random.Random) -> tuple[bytes, str]:
    """A field replaced by deeply nested lists or objects (written as text: json would refuse)."""
    lines, recs = _records(data)
    i = rnd.choice(recs)
    depth = rnd.choice([50, 1000, 10_000, 100_000])
    key = rnd.choice(["config", "costs", "workload", "isa", "error_msg"])
    nest = "[" * depth + "]" * depth if rnd.random() < 0.5 else '{"a":' * depth + "1" + "}" * depth
    d = json.loads(lines[i])
    d[key] = "@NEST@"
    lines[i] = json.dumps(d, separators=(",", ":")).replace('"@NEST@"', nest)
    return "\n".join(lines).encode("utf-8"), f"line {i + 1}: {key} nested {depth} deep"


def log_workload(data: bytes, rnd: random.Random) -> tuple[bytes, str]:
    """The workload key (a JSON [template, args] string) with another or unknown template, its
    numbers made extreme, its structure changed, or not JSON at all."""
    def edit(d: dict) -> str:
        try:
            name, args = json.loads(d["workload"])
        except (ValueError, TypeError):
            name, args = "matmul", [64, 64, 64, "float32"]
        what = rnd.choice(["template", "numbers", "structure", "text"])
        if what == "template":
            name = rnd.choice(["matmul", "dense", "conv2d_nchw", "depthwise_conv2d_nchw",
                               "conv2d_nchw_winograd", "nope", "", "__init__"])
        elif what == "numbers":
            def walk(x):
                if isinstance(x, list):
                    return [walk(v) for v in x]
                return rnd.choice([0, -1, 2**31, 10**6, 10**12, 999_983]) if isinstance(x, int) and \
                    rnd.random() < 0.5 else x
            args = walk(args)
        elif what == "structure":
            args = rnd.choice([[], "x", [[[]]], None, {"a": 1}, [args], args[:1]])
        else:
            d["workload"] = rnd.choice(["", "not json", "[", "[1,2,3]", '{"a":1}', "null"])
            return f"workload = {d['workload']!r}"
        d["workload"] = json.dumps([name, args])
        return f"workload = {d['workload'][:200]!r}"
    return _edit_record(data, rnd, edit)


def log_long_line(data: bytes, rnd: random.Random) -> tuple[bytes, str]:
    """A line of a million to twenty million characters: a long string field, or a line of
    garbage without a newline."""
    n = rnd.choice([10**6, 5 * 10**6, 2 * 10**7])
    if rnd.random() < 0.5:
        return _edit_record(data, rnd, lambda d: d.__setitem__("error_msg", "e" * n) or f"error_msg of {n} chars")
    return data + b"x" * n, f"{n} bytes appended without a newline"


def log_special(data: bytes, rnd: random.Random) -> tuple[bytes, str]:
    """Placeholder for the special files (see SPECIAL): mutate() puts the file kind in Case.special."""
    return b"", ""


SPECIAL = ["fifo", "dev-zero", "dev-urandom", "folder", "empty"]


# ---------------------------------------------------------------- libraries
@dataclass
class ElfLayout:
    """File ranges of an ELF64 little-endian shared library."""
    header: tuple[int, int]
    program_headers: tuple[int, int]
    section_headers: tuple[int, int]
    sections: dict[str, tuple[int, int]]         # name -> file range (non-empty, not NOBITS)
    metadata: tuple[int, int] | None             # the metadata JSON text


def elf_layout(data: bytes) -> ElfLayout:
    """Parse the header, program and section headers of a (valid) ELF64 LE file."""
    (phoff, shoff, _, _, phentsize, phnum, shentsize, shnum, shstrndx) = struct.unpack_from("<QQIHHHHHH", data, 32)
    shdrs = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
    strtab_off = shdrs[shstrndx][4]
    sections = {}
    for sh_name, sh_type, _, _, off, size in shdrs:
        name = data[strtab_off + sh_name:data.index(b"\0", strtab_off + sh_name)].decode()
        if size and sh_type != 8:                # 8: SHT_NOBITS (.bss)
            sections[name] = (off, off + size)
    start = data.find(b'{"arch"')
    meta = (start, data.index(b"\0", start)) if start >= 0 else None
    return ElfLayout((0, 64), (phoff, phoff + phnum * phentsize), (shoff, shoff + shnum * shentsize),
                     sections, meta)


def lib_truncate(data: bytes, rnd: random.Random) -> tuple[bytes, str]:
    """The library cut short: at a random byte or at the end of one of its structures."""
    lay = elf_layout(data)
    cuts = [lay.header[1], lay.program_headers[1], len(data) - 1] + [hi for _, hi in lay.sections.values()]
    return truncate(data, rnd, [c for c in cuts if 0 < c < len(data)])


def lib_headers(data: bytes, rnd: random.Random) -> tuple[bytes, str]:
    """Bits flipped in the ELF header or program headers, or a header field set to an extreme value."""
    lay = elf_layout(data)
    if rnd.random() < 0.5:
        lo, hi = rnd.choice([lay.header, lay.program_headers])
        return flip_bits(data, rnd, lo, hi)
    fields = {"e_phoff": (32, "<Q"), "e_shoff": (40, "<Q"), "e_phnum": (56, "<H"), "e_shnum": (60, "<H"),
              "e_shstrndx": (62, "<H"), "e_machine": (18, "<H"), "e_type": (16, "<H"), "ei_class": (4, "<B")}
    name = rnd.choice(sorted(fields) + ["p_offset", "p_filesz", "p_memsz", "p_vaddr"])
    if name in fields:
        off, fmt = fields[name]
    else:
        k = rnd.randrange((lay.program_headers[1] - lay.program_headers[0]) // 56)
        off, fmt = lay.program_headers[0] + 56 * k + {"p_offset": 8, "p_vaddr": 16, "p_filesz": 32,
                                                      "p_memsz": 40}[name], "<Q"
        name = f"program header {k} {name}"
    bits = struct.calcsize(fmt) * 8
    value = rnd.choice([0, 1, 2**bits - 1, 2**(bits - 1), len(data), len(data) * 2]) % 2**bits
    out = bytearray(data)
    struct.pack_into(fmt, out, off, value)
    return bytes(out), f"{name} = {value}"


def lib_sections(data: bytes, rnd: random.Random) -> tuple[bytes, str]:
    """Bits flipped in the section headers or in any section: code, the dynamic section,
    symbols, relocations, read-only data... (the file's digest makes each of them detectable)."""
    lay = elf_layout(data)
    ranges = {"section headers": lay.section_headers, **lay.sections}
    name = rnd.choice(sorted(ranges))
    out, note = flip_bits(data, rnd, *ranges[name])
    return out, f"{name}: {note}"


def lib_metadata(data: bytes, rnd: random.Random) -> tuple[bytes, str]:
    """The metadata JSON edited in place and kept valid: a digit or a letter changed (a kernel's
    shape, the format version, a required feature, a name)."""
    lo, hi = elf_layout(data).metadata
    text = bytearray(data[lo:hi])
    digits = [i for i, c in enumerate(text) if chr(c).isdigit()]
    letters = [i for i, c in enumerate(text) if chr(c).isalpha()]
    out = bytearray(data)
    notes = []
    for _ in range(rnd.randint(1, 3)):
        if rnd.random() < 0.6:
            i = rnd.choice(digits)
            new = rnd.choice(b"0123456789".replace(bytes([text[i]]), b""))
        else:
            i = rnd.choice(letters)
            new = rnd.choice(b"abcdefghijklmnopqrstuvwxyz".replace(bytes([text[i]]), b""))
        out[lo + i] = new
        notes.append(f"{text[max(0, i - 12):i + 12].decode(errors='replace')!r}: {chr(text[i])}->{chr(new)}")
    return bytes(out), "metadata " + "; ".join(notes)


def lib_metadata_flip(data: bytes, rnd: random.Random) -> tuple[bytes, str]:
    """Bits flipped inside the metadata JSON text."""
    lo, hi = elf_layout(data).metadata
    out, note = flip_bits(data, rnd, lo, hi)
    return out, f"metadata: {note}"


def lib_foreign(data: bytes, rnd: random.Random) -> tuple[bytes, str]:
    """Not a tilewise library: random bytes behind an ELF magic, an ELF for another machine or
    class, a system shared library, or an executable."""
    import ctypes.util
    import sys
    what = rnd.choice(["magic", "machine", "class", "system", "executable"])
    if what == "magic":
        return b"\x7fELF" + rnd.randbytes(rnd.choice([0, 12, 60, 5000])), "random bytes behind an ELF magic"
    if what in ("machine", "class"):
        out = bytearray(data)
        if what == "machine":
            struct.pack_into("<H", out, 18, rnd.choice([3, 40, 183, 243]))
        else:
            out[4] = 1
        return bytes(out), f"the seed library with another e_{what}"
    path = sys.executable if what == "executable" else ctypes.util.find_library("m")
    if path and not path.startswith("/"):
        path = next((p for p in ("/lib/x86_64-linux-gnu/" + path, "/usr/lib/x86_64-linux-gnu/" + path)
                     if __import__("os").path.exists(p)), None)
    if not path:
        return data[:0], "an empty file"
    with open(path, "rb") as fh:
        return fh.read(), f"a copy of {path}"


MUTATORS: dict[str, dict[str, Mutator]] = {
    "onnx": {"truncate": truncate, "bit_flip": flip_bits, "node": onnx_node, "attribute": onnx_attribute,
             "shape": onnx_shape, "dtype": onnx_dtype, "values": onnx_values, "graph": onnx_graph,
             "invalid_graph": onnx_invalid_graph},
    "log": {"truncate": truncate, "random_bytes": insert_bytes, "field_type": log_field_type,
            "numbers": log_numbers, "nesting": log_nesting, "workload": log_workload,
            "long_line": log_long_line, "special_file": log_special},
    "lib": {"truncate": lib_truncate, "insert": insert_bytes, "headers": lib_headers, "sections": lib_sections,
            "metadata_edit": lib_metadata, "metadata_flip": lib_metadata_flip, "foreign": lib_foreign},
}
KINDS = tuple(MUTATORS)


def mutate(kind: str, category: str, seed: bytes, rnd: random.Random) -> Case:
    """One case of a kind: the seed mutated by the named mutator, drawing on rnd."""
    if kind == "log" and category == "special_file":
        special = rnd.choice(SPECIAL)
        return Case(kind, category, b"", f"the log is a {special}", special)
    data, note = MUTATORS[kind][category](seed, rnd)
    return Case(kind, category, data, note)
