#!/usr/bin/env bash
# The whole test suite: Rust tests (numerics through tract), then the
# cross-checks of converted real models with onnx.checker, onnx's reference
# evaluator and ONNX Runtime. Needs scripts/setup.sh to have run once.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --release --locked

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for v in half full; do
  ./target/release/fusec convert testdata/ppocr_mobile_v2_cls.onnx --variant "$v" -o "$out/ppocr.$v.onnx"
done
.venv/bin/python scripts/check_onnx.py --shape 1,3,48,192 --expect-out 1,2 --reference \
  testdata/ppocr_mobile_v2_cls.onnx "$out/ppocr.half.onnx" "$out/ppocr.full.onnx"
echo "cross-checks: 3 passed, 0 failed"
