"""ShuffleNet's grouped convs per layer: tilewise int8 (QDQ) against tilewise fp32, 2 threads.

    python bench/int8_grouped.py                  # every distinct grouped conv of the light model
    python bench/int8_grouped.py --repeat 20      # longer timings

Each distinct grouped (not depthwise) Conv of the onnx package's ShuffleNet is built alone by the
model compiler twice, as the fp32 Conv and as its QDQ form (frontends.quant_auto.conv_layer:
per-tensor, u8 activations, int8 weights, a bias), and the anchor kernels are timed as
`tilewise quantize --auto` times them (quant_auto.time_layer: the int8 form's QuantizeLinear of
its fp32 input left out).  The kernel column names the implementation the registry picks for
the int8 workload.  Timings on a shared machine are rough.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections import Counter

import onnx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import env_note, table                         # noqa: E402
from frontends import zoo                                  # noqa: E402
from frontends.quant_auto import conv_layer, time_layer    # noqa: E402
from te.ops import registry                                # noqa: E402
from te.target import host                                 # noqa: E402


def grouped_convs(model: onnx.ModelProto) -> Counter:
    """(input shape, weight shape, group, strides, pads) of each grouped, not depthwise, Conv: how many."""
    m = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: tuple(d.dim_value for d in v.type.tensor_type.shape.dim)
              for v in [*m.graph.value_info, *m.graph.input]}
    weights = {t.name: tuple(t.dims) for t in m.graph.initializer}
    found = Counter()
    for n in m.graph.node:
        a = {x.name: onnx.helper.get_attribute_value(x) for x in n.attribute}
        group = a.get("group", 1)
        if n.op_type == "Conv" and 1 < group < weights[n.input[1]][0]:
            found[(shapes[n.input[0]], weights[n.input[1]], group, tuple(a.get("strides", (1, 1))),
                   tuple(a.get("pads", (0, 0, 0, 0))))] += 1
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=10, help="timings per kernel (the median is kept)")
    a = ap.parse_args()
    target = host()
    rows = []
    total32 = total8 = 0.0
    for (x, w, group, strides, pads), count in grouped_convs(zoo.light_model("shufflenet")).items():
        layer = conv_layer(f"g{group}_{w[0]}x{w[1]}_{x[2]}", x, w, group, strides, pads)
        t32, t8 = time_layer(layer, target, repeat=a.repeat)
        wl = registry.ConvWorkload(x, w, strides, pads, (1, 1), group, "uint8")
        total32, total8 = total32 + count * t32, total8 + count * t8
        rows.append([f"{w[0]}x{w[1]} g{group} at {x[2]}x{x[3]}", count, f"{t32 * 1e6:.1f}", f"{t8 * 1e6:.1f}",
                     f"{t8 / t32:.2f}x", registry.select(wl, target).name])
    rows.append(["all (x count)", "", f"{total32 * 1e6:.0f}", f"{total8 * 1e6:.0f}", f"{total8 / total32:.2f}x", ""])
    print(table(["conv", "in model", "fp32 us", "int8 us", "int8 / fp32", "int8 kernel"], rows, "lrrrrl"))
    print(env_note())


if __name__ == "__main__":
    main()
