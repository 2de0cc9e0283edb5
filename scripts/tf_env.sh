#!/usr/bin/env bash
# The optional TensorFlow environment (bench/.venv-tf, about 2.2 GB from PyPI)
# for scripts/export_keras.py. Not needed by CI. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=bench/.venv-tf
if [ ! -x "$venv/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check tensorflow tf2onnx onnx==1.23.2
