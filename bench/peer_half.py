#!/usr/bin/env python3
"""The Python peer of `fusec convert --variant half`: the same rewrite with the
onnx package and numpy (load, find depthwise convs, Split -> 1xK / Kx1 -> Concat
with centre-row / centre-column weights, save). Used by bench_convert.py.

usage: peer_half.py IN.onnx OUT.onnx
"""
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper


def main(src: str, dst: str) -> None:
    m = onnx.load(src)
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    opset = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
    new_nodes, new_inits, dead = [], [], set()
    for n in g.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        w = inits.get(n.input[1]) if n.op_type == "Conv" and len(n.input) > 1 else None
        group = attrs.get("group", 1)
        if w is None or group <= 1 or w.dims[0] != group or w.dims[1] != 1 or min(w.dims[2:]) <= 1:
            new_nodes.append(n)
            continue
        wt = numpy_helper.to_array(w)
        c, _, kh, kw = wt.shape
        c1, c2 = (c + 1) // 2, c // 2
        pads = list(attrs.get("pads", [0, 0, 0, 0]))
        strides = list(attrs.get("strides", [1, 1]))
        ch, cw = (kh - 1) // 2, (kw - 1) // 2
        base, y = n.name or n.output[0], n.output[0]
        row_w = numpy_helper.from_array(np.ascontiguousarray(wt[:c1, :, ch:ch + 1, :]), f"{base}.row.w")
        col_w = numpy_helper.from_array(np.ascontiguousarray(wt[c1:, :, :, cw:cw + 1]), f"{base}.col.w")
        new_inits += [row_w, col_w]
        split_in = [n.input[0]]
        split_attrs = {"axis": 1}
        if opset >= 13:
            sizes = numpy_helper.from_array(np.array([c1, c2], dtype=np.int64), f"{base}.split")
            new_inits.append(sizes)
            split_in.append(sizes.name)
        else:
            split_attrs["split"] = [c1, c2]
        new_nodes.append(helper.make_node("Split", split_in, [f"{y}.a", f"{y}.b"], name=f"{base}.split", **split_attrs))
        row_pads = [pads[0] - ch, pads[1], pads[2] - (kh - 1 - ch), pads[3]]
        col_pads = [pads[0], pads[1] - cw, pads[2], pads[3] - (kw - 1 - cw)]
        new_nodes.append(helper.make_node("Conv", [f"{y}.a", row_w.name], [f"{y}.row"], name=f"{base}.row",
                                          group=c1, kernel_shape=[1, kw], strides=strides, pads=row_pads))
        new_nodes.append(helper.make_node("Conv", [f"{y}.b", col_w.name], [f"{y}.col"], name=f"{base}.col",
                                          group=c2, kernel_shape=[kh, 1], strides=strides, pads=col_pads))
        new_nodes.append(helper.make_node("Concat", [f"{y}.row", f"{y}.col"], [y], name=f"{base}.concat", axis=1))
        dead.add(w.name)
    del g.node[:]
    g.node.extend(new_nodes)
    keep = [t for t in g.initializer if t.name not in dead]
    del g.initializer[:]
    g.initializer.extend(keep + new_inits)
    onnx.save(m, dst)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
