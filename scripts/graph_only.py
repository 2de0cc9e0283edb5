"""A model with every float initializer moved to external data in one shared
file of zeros (`weights.zeros`, which the reader creates, e.g. as a sparse
file): the graph and every shape stay, the weights do not. For committing
third-party or exported graphs that tests need for their shapes only.

usage: python3 scripts/graph_only.py SRC.onnx DST.onnx
"""
import sys

import onnx

ZEROS = "weights.zeros"


def graph_only(src, dst):
    """The model with every float initializer moved to a shared external file of zeros."""
    m = onnx.load(src)
    for t in m.graph.initializer:
        if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) > 0:
            n = 1
            for d in t.dims:
                n *= d
            del t.float_data[:]
            t.ClearField("raw_data")
            t.data_location = onnx.TensorProto.EXTERNAL
            del t.external_data[:]
            for k, v in (("location", ZEROS), ("offset", "0"), ("length", str(4 * n))):
                e = t.external_data.add()
                e.key, e.value = k, v
    onnx.save(m, dst)


if __name__ == "__main__":
    graph_only(sys.argv[1], sys.argv[2])
