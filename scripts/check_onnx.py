#!/usr/bin/env python3
"""Cross-check fusec outputs with the onnx package and ONNX Runtime.

For each model: onnx.checker (full check, with shape inference), onnx's
reference evaluator (optional), and an ONNX Runtime session on a random
input of the given shape; prints the output shapes and exits non-zero on the
first failure.

usage: check_onnx.py --shape 1,3,48,192 [--expect-out 1,2] [--reference] MODEL...
"""
import argparse
import sys

import numpy as np
import onnx
import onnxruntime as ort


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--shape", required=True, help="input shape, comma separated")
    ap.add_argument("--expect-out", help="expected shape of output 0")
    ap.add_argument("--reference", action="store_true", help="also run onnx.reference and compare with ORT")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    shape = [int(s) for s in a.shape.split(",")]
    x = np.random.default_rng(a.seed).standard_normal(shape).astype(np.float32)
    for path in a.models:
        m = onnx.load(path)
        onnx.checker.check_model(m, full_check=True)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        outs = sess.run(None, {name: x})
        got = list(outs[0].shape)
        msg = f"{path}: checker ok, ort ok, output0 {got}"
        if a.expect_out:
            want = [int(s) for s in a.expect_out.split(",")]
            if got != want:
                print(f"{path}: output shape {got}, expected {want}", file=sys.stderr)
                return 1
        if not np.all(np.isfinite(outs[0])):
            print(f"{path}: non-finite outputs", file=sys.stderr)
            return 1
        if a.reference:
            from onnx.reference import ReferenceEvaluator

            # onnx.reference is slow and not bit-faithful on every op (it disagrees with
            # ORT on the unconverted PP-OCR model too): check that it runs and agrees on shape
            ref = ReferenceEvaluator(m).run(None, {name: x})
            if list(ref[0].shape) != got or not np.all(np.isfinite(ref[0])):
                print(f"{path}: reference evaluator gave {list(ref[0].shape)}", file=sys.stderr)
                return 1
            msg += ", reference evaluator ok"
        print(msg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
