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
# fine-tuned models (a few steps of distillation on random inputs given as .npz)
.venv/bin/python -c "import numpy as np; np.savez('$out/x.npz', x=np.random.default_rng(0).standard_normal((16, 3, 48, 192)).astype(np.float32))"
for v in half full; do
  ./target/release/fusec finetune "$out/ppocr.$v.onnx" --teacher testdata/ppocr_mobile_v2_cls.onnx --data "$out/x.npz" \
    --steps 2 --batch 8 --quiet -o "$out/ppocr.$v.tuned.onnx" > /dev/null
done
.venv/bin/python scripts/check_onnx.py --shape 1,3,48,192 --expect-out 1,2 --reference \
  testdata/ppocr_mobile_v2_cls.onnx "$out/ppocr.half.onnx" "$out/ppocr.full.onnx" \
  "$out/ppocr.half.tuned.onnx" "$out/ppocr.full.tuned.onnx"
echo "cross-checks: 5 passed, 0 failed"
