#!/usr/bin/env python3
"""Write the fuzz corpus of tests/robustness (testdata/fuzz/*.onnx): small models,
each with one depthwise block, that the fuzzer mutates, and the hostile shapes of
input it must also see (subgraphs, sparse initializers, duplicate names). Every
seed has an expectation in tests/robustness/fuzz.rs: the ones named seedN.onnx
convert and run, the ones named seedN-what.onnx are refused with a named error.

    .venv/bin/python scripts/fuzz_corpus.py            # rewrite testdata/fuzz
    .venv/bin/python scripts/fuzz_corpus.py --out DIR  # somewhere else

Deterministic: the same bytes on every run (numpy's seeded generator).
"""
import argparse
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class Block:
    """x[1,3,H,W] -> 1x1 conv to C -> depthwise KxK -> BN -> act [-> SE] -> 1x1 conv to 6."""

    def __init__(self, seed, c=8, h=9, w=11, k=(3, 3), stride=(1, 1), auto_pad=None, act="Relu",
                 se=False, opset=13, weights_as_constants=False, weights_through_identity=False):
        self.rng = np.random.default_rng(seed)
        self.c, self.h, self.w, self.k, self.stride = c, h, w, k, stride
        self.auto_pad, self.act, self.se, self.opset = auto_pad, act, se, opset
        self.as_constants, self.through_identity = weights_as_constants, weights_through_identity
        self.nodes, self.inits, self.n = [], [], 0

    def fresh(self, base):
        self.n += 1
        return f"{base}{self.n}"

    def weight(self, base, shape, bound=0.5):
        name = self.fresh(base)
        a = self.rng.uniform(-bound, bound, size=shape).astype(np.float32)
        if self.as_constants:
            self.nodes.append(helper.make_node("Constant", [], [name], name=name + "_const", value=numpy_helper.from_array(a, name)))
        else:
            self.inits.append(numpy_helper.from_array(a, name))
        if self.through_identity:
            alias = name + "_id"
            self.nodes.append(helper.make_node("Identity", [name], [alias], name=alias))
            return alias
        return name

    def op(self, op, inputs, **attrs):
        out = self.fresh(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out + "_n", **attrs))
        return out

    def conv(self, x, cin, cout, k, group=1, bias=True, **attrs):
        w = self.weight("w", (cout, cin // group, k[0], k[1]))
        ins = [x, w] + ([self.weight("b", (cout,))] if bias else [])
        return self.op("Conv", ins, group=group, kernel_shape=list(k), **attrs)

    def model(self):
        c, (kh, kw) = self.c, self.k
        e = self.conv("x", 3, c, (1, 1))
        attrs = {"strides": list(self.stride)}
        if self.auto_pad:
            attrs["auto_pad"] = self.auto_pad
        else:
            attrs["pads"] = [(kh - 1) // 2, (kw - 1) // 2, (kh - 1) // 2, (kw - 1) // 2]
        d = self.conv(e, c, c, self.k, group=c, bias=False, **attrs)
        scale = self.weight("gamma", (c,))
        shift = self.weight("beta", (c,))
        mean = self.weight("mean", (c,))
        var_name = self.fresh("var")
        self.inits.append(numpy_helper.from_array(self.rng.uniform(0.5, 1.5, size=(c,)).astype(np.float32), var_name))
        y = self.op("BatchNormalization", [d, scale, shift, mean, var_name])
        y = self.op(self.act, [y])
        if self.se:
            p = self.op("GlobalAveragePool", [y])
            hdn = max(c // 4, 2)
            s = self.op("Relu", [self.conv(p, c, hdn, (1, 1))])
            s = self.op("Sigmoid", [self.conv(s, hdn, c, (1, 1))])
            y = self.op("Mul", [y, s])
        out = self.conv(y, c, 6, (1, 1))
        graph = helper.make_graph(
            self.nodes, "block",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, self.h, self.w])],
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
            self.inits,
        )
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)], producer_name="fusec-fuzz-corpus")
        m.ir_version = 7
        # the output's shape, as onnx infers it (the checker wants a typed, shaped output)
        inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True).graph.output[0]
        m.graph.output[0].CopyFrom(inferred)
        return m


def depthwise_weight(m):
    """The initializer the depthwise Conv reads as its weight."""
    dw = next(n for n in m.graph.node if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute))
    return dw, next(t for t in m.graph.initializer if t.name == dw.input[1])


def with_if(m, then_reads, shape):
    """An If on a bool input `cond` beside the block: its then-branch adds `then_reads`
    (a value of the outer scope, or one nothing defines) to itself, its else-branch
    passes x through."""
    then_g = helper.make_graph([helper.make_node("Add", [then_reads, then_reads], ["t"], name="then_add")], "then", [],
                               [helper.make_tensor_value_info("t", TensorProto.FLOAT, shape)])
    else_g = helper.make_graph([helper.make_node("Identity", ["x"], ["e"], name="else_id")], "else", [],
                               [helper.make_tensor_value_info("e", TensorProto.FLOAT, shape)])
    m.graph.input.append(helper.make_tensor_value_info("cond", TensorProto.BOOL, []))
    m.graph.node.append(helper.make_node("If", ["cond"], ["branch_out"], name="branch", then_branch=then_g, else_branch=else_g))
    m.graph.output.append(helper.make_tensor_value_info("branch_out", TensorProto.FLOAT, shape))
    return m


def seeds():
    yield "seed0.onnx", Block(0, c=6, h=6, w=7, act="HardSwish", opset=14).model()
    yield "seed1.onnx", Block(1, c=4, h=5, w=5, se=True, opset=11, weights_as_constants=True).model()
    yield "seed2.onnx", Block(2, c=5, h=7, w=6, k=(5, 3), stride=(2, 1), auto_pad="SAME_UPPER", weights_through_identity=True).model()
    # a broken one: a node reads a value nothing produces
    m = Block(3, c=6, h=6, w=7).model()
    m.graph.node[1].input[0] = "nowhere"
    yield "seed3-dangling.onnx", m
    # an If whose branch reads the outer x (valid)
    yield "seed4-subgraph.onnx", with_if(Block(4, c=6, h=6, w=7).model(), "x", [1, 3, 6, 7])
    # the depthwise weight as a sparse initializer (valid; ONNX Runtime runs it)
    m = Block(5, c=6, h=6, w=7).model()
    dw, w = depthwise_weight(m)
    dense = numpy_helper.to_array(w).copy()
    dense[np.abs(dense) < 0.25] = 0.0
    flat = dense.reshape(-1)
    nz = np.flatnonzero(flat)
    m.graph.initializer.remove(w)
    m.graph.sparse_initializer.append(helper.make_sparse_tensor(
        numpy_helper.from_array(flat[nz], w.name), numpy_helper.from_array(nz.astype(np.int64), w.name + "_idx"), list(dense.shape)))
    yield "seed5-sparse.onnx", m
    # broken: an If branch reads a value nothing defines
    yield "seed6-subgraph-dangling.onnx", with_if(Block(6, c=6, h=6, w=7).model(), "ghost", [1, 3, 6, 7])
    # broken: a graph input listed twice
    m = Block(7, c=6, h=6, w=7).model()
    m.graph.input.append(m.graph.input[0])
    yield "seed7-duplicate-input.onnx", m
    # broken: a depthwise weight [C, 2, 3, 3] with group C on C channels
    m = Block(8, c=8, h=6, w=7).model()
    dw, w = depthwise_weight(m)
    m.graph.initializer.remove(w)
    m.graph.initializer.append(numpy_helper.from_array(np.full((8, 2, 3, 3), 0.1, np.float32), w.name))
    yield "seed8-channels.onnx", m


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "testdata", "fuzz"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name, m in seeds():
        with open(os.path.join(args.out, name), "wb") as f:
            f.write(m.SerializeToString(deterministic=True))
        print(name)


if __name__ == "__main__":
    main()
