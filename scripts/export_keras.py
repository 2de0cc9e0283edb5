#!/usr/bin/env python3
"""Export Keras MobileNetV2 and MobileNetV3-Small/-Large (random weights,
weights=None, 224x224, NHWC) to ONNX with tf2onnx at opset 13, as TensorFlow
users do. Runs in the TensorFlow venv (bash scripts/tf_env.sh, about 2 GB).

With --graph-only DIR it also writes each model with its float weights moved to
external data in a shared file of zeros (weights.zeros, created by the reader),
as scripts/export_reference.py does, for tests that need shapes only.

usage: bench/.venv-tf/bin/python scripts/export_keras.py OUT_DIR [--graph-only DIR]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tensorflow as tf  # noqa: E402
import tf2onnx  # noqa: E402
from graph_only import graph_only  # noqa: E402

NETS = {
    "mobilenet-v2": lambda: tf.keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3)),
    "mobilenet-v3-small": lambda: tf.keras.applications.MobileNetV3Small(weights=None, input_shape=(224, 224, 3)),
    "mobilenet-v3-large": lambda: tf.keras.applications.MobileNetV3Large(weights=None, input_shape=(224, 224, 3)),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--graph-only")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    tf.keras.utils.set_random_seed(0)
    for name, ctor in NETS.items():
        spec = (tf.TensorSpec((None, 224, 224, 3), tf.float32, name="input"),)
        path = os.path.join(a.out, f"keras-{name}.tf2onnx13.onnx")
        tf2onnx.convert.from_keras(ctor(), input_signature=spec, opset=13, output_path=path)
        if a.graph_only:
            os.makedirs(a.graph_only, exist_ok=True)
            graph_only(path, os.path.join(a.graph_only, os.path.basename(path)))
        print(path, file=sys.stderr)


if __name__ == "__main__":
    main()
