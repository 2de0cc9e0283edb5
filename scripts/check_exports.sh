#!/usr/bin/env bash
# The reference networks exported from PyTorch with their weights, checked end
# to end (ResNet-50 and its FuSe variants too). Needs the PyTorch venv (bash
# scripts/torch_env.sh); about 10 minutes.
#   1. scripts/export_reference.py: 118 exports (legacy opsets 13/17, static and
#      dynamic batch; dynamo opset 18 for the baselines) and their manifest
#   2. the Rust check of tests/hw.rs on these files instead of the committed
#      weight-less graphs: per-layer cycles, MACs, params; Half/Full of every
#      baseline export convert every depthwise layer at the reference's cycles
#   3. fusec convert of every baseline export, Half and Full: onnx.checker, the
#      reference evaluator = ONNX Runtime, and the dynamic-batch ones at batch 2
# usage: scripts/check_exports.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
py=bench/.venv-torch/bin/python
[ -x "$py" ] || { echo "no PyTorch venv: run bash scripts/torch_env.sh" >&2; exit 1; }
out=${1:-$(mktemp -d)}
mkdir -p "$out/conv"
"$py" scripts/export_reference.py "$out" 2> "$out/export.log"
FUSEC_EXPORTS="$out" cargo test --release --locked --test hw pytorch_exports
for f in "$out"/*.baseline.*.onnx; do
  base=$(basename "$f" .onnx)
  dense=()
  case $base in resnet-50.*) dense=(--dense) ;; esac
  for v in half full; do
    ./target/release/fusec convert "$f" --variant "$v" "${dense[@]}" -o "$out/conv/$base.$v.onnx" --force > /dev/null
  done
done
# static exports at batch 1, dynamic-batch ones at batch 2; ResNet-50 (4 GMACs) by ONNX Runtime
# alone, the reference evaluator being too slow for it
mobile() { for f in "$out"/conv/*"$1"*.onnx; do case $(basename "$f") in resnet-50.*) ;; *) echo "$f" ;; esac; done; }
mapfile -t static < <(mobile static)
mapfile -t dynbatch < <(mobile dynbatch)
.venv/bin/python scripts/check_onnx.py --shape 1,3,224,224 --expect-out 1,1000 --reference "${static[@]}"
.venv/bin/python scripts/check_onnx.py --shape 2,3,224,224 --expect-out 2,1000 --reference "${dynbatch[@]}"
.venv/bin/python scripts/check_onnx.py --shape 1,3,224,224 --expect-out 1,1000 "$out"/conv/resnet-50*static*.onnx
.venv/bin/python scripts/check_onnx.py --shape 2,3,224,224 --expect-out 2,1000 "$out"/conv/resnet-50*dynbatch*.onnx
