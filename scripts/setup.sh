#!/usr/bin/env bash
# Set up a fresh machine: a Python venv with the cross-check tools (onnx,
# onnxruntime, numpy) in .venv, a release build of fusec, and a first run on
# the bundled PP-OCR classifier. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r scripts/requirements.txt

# all targets at once: tests then reuse the same build (dev-dependencies change feature sets)
cargo build --release --locked --all-targets

if [ "${1:-}" != "--no-demo" ]; then
  mkdir -p out
  ./target/release/fusec inspect testdata/ppocr_mobile_v2_cls.onnx
  ./target/release/fusec convert testdata/ppocr_mobile_v2_cls.onnx --variant half -o out/ppocr.fuse-half.onnx --force
  .venv/bin/python scripts/check_onnx.py --shape 1,3,48,192 --expect-out 1,2 out/ppocr.fuse-half.onnx
fi
