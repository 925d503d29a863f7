"""The fast int8 implementations (u8 x s8 -> s32 anchors; the rest is their epilogue), registered
in te.ops.registry beside the fp32 ones:

    matmul.int8_amx       template matmul_int8_amx      int8_matmul.py  B packed (N/16, K/4, 16, 4)
    matmul.int8_vnni      template matmul_int8_vnni     int8_matmul.py  B packed (N/L, K/4, L, 4)
    matmul.int8_pmaddwd   template matmul_int8_pmaddwd  int8_matmul.py  B packed (N/L, K/2, L, 2)
    dense.int8_*          the same with W (N, K)
    conv2d.int8_gemm1x1_amx               1x1 GEMMs with C by 64        int8_conv2d.py  W tiles (K/16, C/64, 16, 64)
    conv2d.int8_direct_amx                C by 64 or padded by <= 1/3   int8_conv2d.py  W tiles (K/16, C'/64, R, S', 16, 64)
    conv2d.int8_gemm1x1_vnni / _pmaddwd   1x1 unpadded convs, any groups but depthwise  int8_conv2d.py  W (K, C/groups)
    conv2d.int8_direct_vnni / _pmaddwd    other convs of one group      int8_conv2d.py  W (K, C/G, R, S, G)
    conv2d.int8_winograd_pmaddwd          3x3 stride 1, C >= 32, OW >= 8  int8_winograd.py  U (4, 4, K/L, C/2, L, 2)
    conv2d.int8_depthwise_f32             depthwise (exact float32 FMAs)  int8_depthwise.py W (K, 1, R, S) as it is
    conv2d.int8_grouped_dense             2..8 groups: the dense kernels   int8_grouped.py   W block-diagonal, packed

vpmaddwd's weights are packed as int16 (PACKED).  Where several apply the priority decides
(AMX 30, VNNI 20, depthwise 15, Winograd on vpmaddwd 13, vpmaddwd 12, grouped 11; i8f's reference implementations are 0).
"""
from __future__ import annotations

import te
from te import tensorize
from te.target import Target

from .int8_matmul import (AMX_K, AMX_LANES, amx_tiles_in_place, define_amx_knobs, define_vector_knobs, matmul_int8,
                          pack_weight, pack_weight_numpy, packed_shape, schedule_amx, schedule_vector)
from . import int8_conv2d as ic
from . import int8_winograd as iw
from .implementations import MatmulShapes, _Conv
from .registry import register

PRIORITY = {"amx": 30, "vnni": 20, "winograd": 13, "pmaddwd": 12}
# int8 Winograd where its transforms pay (measured against the direct vpmaddwd conv)
MIN_WINOGRAD_CHANNELS, MIN_WINOGRAD_WIDTH = 32, 8
FAMILY = {"vnni": ("vpdpbusd", "vpdpbusd.256", "vpdpbusd.256vl"), "pmaddwd": ("pmaddwd", "pmaddwd.256")}
# the packed weight's type: vpmaddwd multiplies 16-bit values, so its weights are widened once
# when packed, not in every inner loop (te/tensorize_dot.py)
PACKED = {"vnni": "int8", "pmaddwd": "int16", "amx": "int8"}


def vector_intrinsic(family: str, target: Target) -> str | None:
    """The intrinsic of a family (vnni, pmaddwd) the target runs, widest first (None: none)."""
    return next((n for n in FAMILY[family] if tensorize.supports(n, target)), None)


def _matmul_args(M: int, N: int, K: int, dtype: str = "uint8") -> tuple:
    return M, N, K, dtype


class _Int8Matmul(MatmulShapes):
    """What the int8 matmul and dense implementations share: arguments (uint8 by default),
    placeholders, packing."""
    arguments = staticmethod(_matmul_args)
    packs_weight = True
    family = ""
    k_multiple = 0          # K padded with zeros to a multiple of it in the packed weight (0: none)

    def lanes_group(self, target: Target) -> tuple[int, int]:
        """Columns per vector (or tile) and k per instruction."""
        raise NotImplementedError

    def applies(self, wl, target: Target) -> bool:
        return wl.dtype == "uint8" and wl.transpose_b == self.transpose_b

    def match(self, wl, target):
        return PRIORITY[self.family] if self.applies(wl, target) else None

    def placeholders(self, wl, cfg, target, prepacked):
        L, G = self.lanes_group(target)
        w = (te.placeholder(packed_shape(wl.N, wl.K, L, G, self.k_multiple), PACKED[self.family], name="w.packed")
             if prepacked else
             te.placeholder(self.weight_shape(wl), "int8", name="w" if self.transpose_b else "B"))
        return [te.placeholder((wl.M, wl.K), "uint8", name="x" if self.transpose_b else "A"), w]

    def pack_weight(self, w, wl, cfg, target):
        return pack_weight_numpy(w, *self.lanes_group(target), self.transpose_b, PACKED[self.family], self.k_multiple)

    def packed(self, w: te.Tensor, wl, target: Target, prepacked: bool, name: str) -> te.Tensor:
        L, G = self.lanes_group(target)
        return w if prepacked else pack_weight(w, L, G, self.transpose_b, name, PACKED[self.family], self.k_multiple)


class VectorMatmul(_Int8Matmul):
    """A register tile of int32 vectors, one vpdpbusd (or vpmaddwd pair) per row, vector and k group."""

    def __init__(self, family: str, transpose_b: bool):
        self.family, self.transpose_b = family, transpose_b
        base = "dense" if transpose_b else "matmul"
        self.name, self.template = f"{base}.int8_{family}", f"{base}_int8_{family}"

    def intrin(self, target: Target) -> str | None:
        return vector_intrinsic(self.family, target)

    def lanes_group(self, target):
        intrin = tensorize.get(self.intrin(target) or FAMILY[self.family][0])
        return intrin.lanes, intrin.group

    def applies(self, wl, target):
        return (super().applies(wl, target) and self.intrin(target) is not None
                and wl.K % self.lanes_group(target)[1] == 0)

    def space(self, cfg, wl, target):
        define_vector_knobs(cfg, wl.M, wl.N, wl.K, self.lanes_group(target)[0], target)

    def compute(self, inputs, wl, cfg, target, prepacked=False, name=None):
        name = name or self.name
        a, w = inputs[:2]
        return matmul_int8(a, self.packed(w, wl, target, prepacked, name), wl.N, bm=cfg["tile_m"].val,
                           name=name, attrs={"intrin": self.intrin(target)})

    def schedule(self, s, out, final, cfg, target):
        schedule_vector(cfg, s, out, final, target, self.intrin(target))


class AmxMatmul(_Int8Matmul):
    """Up to 2 x 2 AMX tiles of C over the whole K (M of 16 or more; K padded to whole tiles
    with zeros, in the packed weight and in the kernel's copy of A)."""
    family = "amx"
    k_multiple = AMX_K

    def __init__(self, transpose_b: bool):
        self.transpose_b = transpose_b
        base = "dense" if transpose_b else "matmul"
        self.name, self.template = f"{base}.int8_amx", f"{base}_int8_amx"

    def lanes_group(self, target):
        return AMX_LANES, 4

    def applies(self, wl, target):
        return super().applies(wl, target) and tensorize.supports("amx", target) and wl.M >= AMX_LANES

    def space(self, cfg, wl, target):
        define_amx_knobs(cfg, wl.M, wl.N, wl.K, target)

    def compute(self, inputs, wl, cfg, target, prepacked=False, name=None):
        name = name or self.name
        a, w = inputs[:2]
        in_place = amx_tiles_in_place(a)
        return matmul_int8(a, self.packed(w, wl, target, prepacked, name), wl.N, name=name, attrs={"amx": True},
                           bm=cfg["tile_m"].val if in_place else 1, tile_a=not in_place)

    def schedule(self, s, out, final, cfg, target):
        schedule_amx(cfg, s, out, final, target)


class VectorConv(_Conv):
    """Pixel vectors over a packed input, weights broadcast (int8_conv2d.py); the 1x1 GEMM or direct."""

    def __init__(self, family: str, gemm: bool):
        self.family, self.gemm = family, gemm
        kind = "gemm1x1" if gemm else "direct"
        self.name, self.template = f"conv2d.int8_{kind}_{family}", f"conv2d_int8_{kind}_{family}"
        self.packs_weight = True

    def intrin(self, target: Target) -> str | None:
        return vector_intrinsic(self.family, target)

    def lanes_group(self, target: Target) -> tuple[int, int]:
        intrin = tensorize.get(self.intrin(target) or FAMILY[self.family][0])
        return intrin.lanes, intrin.group

    def match(self, wl, target):
        g = wl.geometry if wl.layout == "NCHW" else None
        # groups: the 1x1 GEMM only, one GEMM per group (int8_grouped.py runs the others)
        if (wl.dtype != "uint8" or g is None or ic.is_gemm(g) != self.gemm or g.groups != 1 and not self.gemm
                or self.intrin(target) is None):
            return None
        return PRIORITY[self.family]

    def space(self, cfg, wl, target):
        ic.define_knobs(cfg, wl.geometry, *self.lanes_group(target), target)

    def packed_shape(self, wl, cfg, target):
        return ic.packed_weight_shape(wl.geometry, self.lanes_group(target)[1])

    def placeholders(self, wl, cfg, target, prepacked):
        shape = self.packed_shape(wl, cfg, target) if prepacked else wl.w_shape
        return [te.placeholder(wl.x_shape, "uint8", name="x"),
                te.placeholder(shape, PACKED[self.family] if prepacked else "int8",
                               name="w.packed" if prepacked else "w")]

    def pack_weight(self, w, wl, cfg, target):
        return ic.pack_weight_numpy(w, wl.geometry, self.lanes_group(target)[1], PACKED[self.family])

    def compute(self, inputs, wl, cfg, target, prepacked=False, name=None):
        name = name or self.name
        x, w = inputs[:2]
        g, G = wl.geometry, self.lanes_group(target)[1]
        wp = w if prepacked else ic.pack_weight(w, g, G, name, PACKED[self.family])
        return ic.conv2d_int8(x, wp, g, G, ic.padded_columns(g, cfg), name=name,
                              attrs={"intrin": self.intrin(target)})

    def schedule(self, s, out, final, cfg, target):
        ic.schedule_conv2d_int8(cfg, s, out, final, target, self.intrin(target), self.lanes_group(target)[0])


class AmxConv1x1(VectorConv):
    """The 1x1 GEMM on AMX tiles: weight rows by the packed input (int8_conv2d.conv1x1_amx)."""

    def __init__(self):
        self.family, self.gemm, self.packs_weight = "amx", True, True
        self.name, self.template = "conv2d.int8_gemm1x1_amx", "conv2d_int8_gemm1x1_amx"

    def match(self, wl, target):
        g = wl.geometry if wl.layout == "NCHW" else None
        # C of 64 is one tile step per block: the block's set-up and epilogue then cost more than
        # its products (measured slower than VNNI), so those stay with the vector kernel
        if (wl.dtype != "uint8" or g is None or g.groups != 1 or not ic.is_gemm(g) or g.C % ic.AMX_K
                or g.C < 2 * ic.AMX_K or not tensorize.supports("amx", target)):
            return None
        return PRIORITY["amx"]

    def space(self, cfg, wl, target):
        ic.define_amx_knobs(cfg, wl.geometry)

    def packed_shape(self, wl, cfg, target):
        return ic.amx_weight_shape(wl.geometry)

    def pack_weight(self, w, wl, cfg, target):
        return ic.pack_weight_amx_numpy(w, wl.geometry)

    def compute(self, inputs, wl, cfg, target, prepacked=False, name=None):
        x, w = inputs[:2]
        w = w if prepacked else ic.pack_weight_amx(w, wl.geometry, name or self.name)
        return ic.conv1x1_amx(x, w, wl.geometry, cfg["tile_p"].val, name=name or self.name)

    def schedule(self, s, out, final, cfg, target):
        ic.schedule_conv1x1_amx(cfg, s, out, final, target)


class AmxDirectConv(AmxConv1x1):
    """Other convs on AMX: tap by tap, weight tiles by the packed input (split by column phase
    for a column stride)."""

    def __init__(self):
        self.family, self.gemm, self.packs_weight = "amx", False, True
        self.name, self.template = "conv2d.int8_direct_amx", "conv2d_int8_direct_amx"

    def match(self, wl, target):
        g = wl.geometry if wl.layout == "NCHW" else None
        if (wl.dtype != "uint8" or g is None or g.groups != 1 or ic.is_gemm(g) or (g.sw > 1 and g.dw > 1)
                or not tensorize.supports("amx", target)):
            return None
        # C padded to whole tiles with zero channels pays while it adds at most a third (48 -> 64,
        # 96 -> 128: 1.2-1.8x faster than VNNI alone; 32 -> 64 and padded column strides slower)
        Cp = -(-g.C // ic.AMX_K) * ic.AMX_K
        if Cp != g.C and (3 * Cp > 4 * g.C or g.sw > 1):
            return None
        return PRIORITY["amx"]

    def space(self, cfg, wl, target):
        ic.define_amx_direct_knobs(cfg, wl.geometry)

    def packed_shape(self, wl, cfg, target):
        return ic.amx_direct_weight_shape(wl.geometry)

    def pack_weight(self, w, wl, cfg, target):
        return ic.pack_weight_amx_direct_numpy(w, wl.geometry)

    def compute(self, inputs, wl, cfg, target, prepacked=False, name=None):
        x, w = inputs[:2]
        w = w if prepacked else ic.pack_weight_amx(w, wl.geometry, name or self.name)
        return ic.conv2d_amx(x, w, wl.geometry, cfg["tile_ow"].val, cfg["tile_oh"].val, name=name or self.name)

    def schedule(self, s, out, final, cfg, target):
        ic.schedule_conv2d_amx(cfg, s, out, final, target)


class WinogradConv(VectorConv):
    """3x3 stride-1 convs by integer Winograd F(2x2, 3x3) on vpmaddwd (int8_winograd.py): exact,
    2.25x fewer multiplies than the direct conv; where there is no VNNI."""

    def __init__(self):
        self.family, self.gemm, self.packs_weight = "pmaddwd", False, True
        self.name, self.template = "conv2d.int8_winograd_pmaddwd", "conv2d_int8_winograd_pmaddwd"

    def match(self, wl, target):
        g = wl.geometry if wl.layout == "NCHW" else None
        if (wl.dtype != "uint8" or g is None or not iw.fits(g) or g.C < MIN_WINOGRAD_CHANNELS
                or g.OW < MIN_WINOGRAD_WIDTH or self.intrin(target) is None):
            return None
        return PRIORITY["winograd"]

    def space(self, cfg, wl, target):
        iw.define_knobs(cfg, wl.geometry, self.lanes_group(target)[0], target)

    def packed_shape(self, wl, cfg, target):
        return iw.weight_shape(wl.geometry, self.lanes_group(target)[0])

    def pack_weight(self, w, wl, cfg, target):
        return iw.transform_weight_numpy(w, wl.geometry, self.lanes_group(target)[0])

    def compute(self, inputs, wl, cfg, target, prepacked=False, name=None):
        name = name or self.name
        x, w = inputs[:2]
        L = self.lanes_group(target)[0]
        u = w if prepacked else iw.transform_weight(w, wl.geometry, L, name)
        return iw.conv2d_winograd_int8(x, u, wl.geometry, cfg["tile_p"].val, name=name,
                                       attrs={"intrin": self.intrin(target)})

    def schedule(self, s, out, final, cfg, target):
        iw.schedule(cfg, s, out, final, target, self.intrin(target))


register(WinogradConv())
register(AmxConv1x1())
register(AmxDirectConv())
for _gemm in (True, False):
    for _family in ("vnni", "pmaddwd"):
        register(VectorConv(_family, _gemm))
for _tb in (False, True):
    for _impl in (AmxMatmul(_tb), VectorMatmul("vnni", _tb), VectorMatmul("pmaddwd", _tb)):
        register(_impl)

from . import int8_depthwise  # noqa: E402,F401  (registers conv2d.int8_depthwise_f32)
from . import int8_grouped  # noqa: E402,F401  (registers conv2d.int8_grouped_dense)
