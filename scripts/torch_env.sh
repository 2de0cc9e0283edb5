#!/usr/bin/env bash
# The optional PyTorch environment (bench/.venv-torch, about 5.5 GB of wheels
# from PyPI): exports of the reference networks (scripts/export_reference.py,
# scripts/check_exports.sh) and the PyTorch side of the training benchmark
# (bench/bench_train.py --torch). Not needed by CI. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=bench/.venv-torch
if [ ! -x "$venv/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check torch onnx2torch onnx==1.23.2 onnxscript numpy pillow
