#!/usr/bin/env python3
"""Cross-check fusec outputs with the onnx package and ONNX Runtime.

For each model: onnx.checker (full check, with shape inference) and an ONNX
Runtime session on a seeded random input of the given shape (finite outputs,
expected shape). With --reference, onnx's reference evaluator runs the same
input and every output must equal ONNX Runtime's within --atol/--rtol.

The evaluator of onnx 1.23 runs BatchNormalization of opsets 9-13 in training
mode whenever the node has a `momentum` attribute (the schema default makes
that every node), so it normalises with batch statistics blended into the
running ones: onnx/onnx PR #8442. Those opsets decide the mode by the number
of outputs (one output: inference), so this script gives the evaluator a
spec-correct BatchNormalization for single-output nodes.

Prints one line per model and a count; exits 1 if any model fails.

usage: check_onnx.py --shape 1,3,48,192 [--expect-out 1,2] [--reference] MODEL...
"""
import argparse
import sys

import numpy as np
import onnx
import onnxruntime as ort


def reference_ops():
    from onnx.reference.op_run import OpRun

    class BatchNormalization(OpRun):
        op_domain = ""

        def _run(self, x, scale, bias, mean, var, epsilon=None, momentum=None, training_mode=None, spatial=None, is_test=None):
            if training_mode:
                raise NotImplementedError("training-mode BatchNormalization is not checked here")
            eps = 1e-5 if epsilon is None else epsilon
            sh = (1, -1) + (1,) * (x.ndim - 2)
            y = scale.reshape(sh) * (x - mean.reshape(sh)) / np.sqrt(var.reshape(sh) + eps) + bias.reshape(sh)
            return (y.astype(x.dtype),)

    return [BatchNormalization]


def needs_bn_fix(m: onnx.ModelProto) -> bool:
    opset = max((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return 9 <= opset <= 13 and all(len([o for o in n.output if o]) == 1 for n in m.graph.node if n.op_type == "BatchNormalization")


def check(path: str, x: np.ndarray, a) -> str:
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    outs = sess.run(None, {name: x})
    got = list(outs[0].shape)
    if a.expect_out:
        want = [int(s) for s in a.expect_out.split(",")]
        if got != want:
            raise AssertionError(f"output shape {got}, expected {want}")
    for o in outs:
        if not np.all(np.isfinite(o)):
            raise AssertionError("non-finite outputs from ONNX Runtime")
    msg = f"checker ok, ort ok, output0 {got}"
    if a.reference:
        from onnx.reference import ReferenceEvaluator

        ref = ReferenceEvaluator(m, new_ops=reference_ops() if needs_bn_fix(m) else None).run(None, {name: x})
        worst = 0.0
        for i, (r, o) in enumerate(zip(ref, outs)):
            r = np.asarray(r)
            if r.shape != o.shape:
                raise AssertionError(f"reference evaluator output {i} has shape {list(r.shape)}, ORT {list(o.shape)}")
            err = np.abs(r.astype(np.float64) - o)
            if not np.all(err <= a.atol + a.rtol * np.abs(o)):
                raise AssertionError(f"reference evaluator and ORT differ on output {i}: max |diff| {err.max():.3g}")
            worst = max(worst, float(err.max()))
        msg += f", reference evaluator = ORT (max |diff| {worst:.2g})"
    return msg


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--shape", required=True, help="input shape, comma separated")
    ap.add_argument("--expect-out", help="expected shape of output 0")
    ap.add_argument("--reference", action="store_true", help="also run onnx.reference and compare its values with ORT")
    ap.add_argument("--atol", type=float, default=1e-4)
    ap.add_argument("--rtol", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    shape = [int(s) for s in a.shape.split(",")]
    x = np.random.default_rng(a.seed).standard_normal(shape).astype(np.float32)
    passed = failed = 0
    for path in a.models:
        try:
            print(f"{path}: {check(path, x, a)}")
            passed += 1
        except Exception as e:  # one line per failing model, then go on
            print(f"{path}: FAILED: {e}", file=sys.stderr)
            failed += 1
    print(f"cross-checks: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
