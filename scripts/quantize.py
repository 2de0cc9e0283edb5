#!/usr/bin/env python3
"""Quantize a float ONNX model to INT8 with ONNX Runtime, as deployment tools do:
static quantization, per-channel int8 weights, uint8 activations, in QDQ form
(QuantizeLinear/DequantizeLinear around float ops) and in QOperator form
(QLinearConv, com.microsoft QLinearAdd, ...).

    .venv/bin/python scripts/quantize.py MODEL.onnx --out-dir DIR [--shape 1,3,48,192]
        [--calib data.npz] [--samples 16]

writes DIR/NAME.qdq.onnx and DIR/NAME.qop.onnx. Models below opset 13 are
first converted to opset 13 (per-channel DequantizeLinear needs it), then
ONNX Runtime's pre-processing folds BatchNormalization and constants.
Calibration: --samples inputs drawn (fixed seed) from the array `x` (N, C, H, W)
in --calib, as `fusec eval --data ... --save-inputs calib.npz` writes it, or
uniform noise in [-1, 1] of --shape; the output is the same on every run.

The bundled fixtures testdata/quant/ppocr_cls.{qdq,qop}.onnx come from
    .venv/bin/python scripts/quantize.py testdata/ppocr_mobile_v2_cls.onnx \\
        --out-dir testdata/quant --name ppocr_cls --shape 1,3,48,192
"""
import argparse
import os
import tempfile

import numpy as np
import onnx
from onnx import version_converter
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process


METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}


class Reader(CalibrationDataReader):
    def __init__(self, name, batches):
        self.it = iter([{name: b} for b in batches])

    def get_next(self):
        return next(self.it, None)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--name", help="output name stem (default: the model's file name)")
    ap.add_argument("--shape", default="1,3,224,224", help="input shape for noise calibration")
    ap.add_argument("--calib", help=".npz with an array x of calibration inputs")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--method", choices=["minmax", "entropy", "percentile"], default="minmax",
                    help="activation range calibration (ONNX Runtime's CalibrationMethod)")
    args = ap.parse_args()

    m = onnx.load(args.model)
    input_name = m.graph.input[0].name
    opset = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
    if opset < 13:
        m = version_converter.convert_version(m, 13)
    if args.calib:
        x = np.load(args.calib)["x"].astype(np.float32)
        # a fixed random subset: `fusec eval --save-inputs` writes samples in data order
        x = x[np.sort(np.random.default_rng(0).permutation(len(x))[: args.samples])]
        batches = [x[i : i + 1] for i in range(len(x))]
    else:
        shape = [int(v) for v in args.shape.split(",")]
        rng = np.random.default_rng(0)
        batches = [rng.uniform(-1, 1, shape).astype(np.float32) for _ in range(args.samples)]
    name = args.name or os.path.splitext(os.path.basename(args.model))[0]
    os.makedirs(args.out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        up = os.path.join(tmp, "up.onnx")
        pre = os.path.join(tmp, "pre.onnx")
        onnx.save(m, up)
        quant_pre_process(up, pre, skip_symbolic_shape=True)
        for fmt, tag in [(QuantFormat.QDQ, "qdq"), (QuantFormat.QOperator, "qop")]:
            out = os.path.join(args.out_dir, f"{name}.{tag}.onnx")
            quantize_static(pre, out, Reader(input_name, batches), quant_format=fmt, per_channel=True,
                            weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                            calibrate_method=METHODS[args.method])
            print(out)


if __name__ == "__main__":
    main()
