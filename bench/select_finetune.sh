#!/usr/bin/env bash
# Automatic layer selection against the paper-style choice and all layers, each
# after the same fine-tune (#29's must-show on the PP-OCR classifier):
#   paper-style: Half on the first half of the depthwise layers (0-5 of 11);
#   auto: `fusec select --target-speedup S` at the paper-style set's speedup S,
#         costs on the 1,000 shared lines (`--calib`);
#   all: Half on every depthwise layer.
# Each is fine-tuned with the defaults (20 epochs, augmentation, labels) on the
# shared lines and evaluated on the 400 held-out lines in other fonts and words
# (bash scripts/heldout_data.sh). Prints speedup (64x64), params and held-out top-1.
# About 6 minutes per model on the 2-core machine.
# usage: bash bench/select_finetune.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench-out/select}
mkdir -p "$out"
fusec=./target/release/fusec
cls=testdata/ppocr_mobile_v2_cls.onnx
data=../shared/data/textlines/labels.tsv
held=bench-out/heldout/lines/labels.tsv
[ -f "$held" ] || bash scripts/heldout_data.sh
json() { .venv/bin/python -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
paper=$($fusec select $cls --calib $data --preprocess ppocr-cls --mark 0-5 --json | json "d['marks'][0]['predicted_speedup']")
$fusec select $cls --calib $data --preprocess ppocr-cls --target-speedup "$paper" --save-preset "$out/auto.toml" --force --json > "$out/auto.json"
$fusec convert $cls --variant half --layers 0-5 -o "$out/paper.onnx" --force > /dev/null
$fusec convert $cls --variant half --layers "$out/auto.toml" -o "$out/auto.onnx" --force > /dev/null
$fusec convert $cls --variant half -o "$out/all.onnx" --force > /dev/null
orig=$($fusec eval $cls --data $held --task rot180 --preprocess ppocr-cls --json | json "d['top1']")
echo "| model | layers | speedup (64x64) | params | held-out top-1 |"
echo "|---|---|---|---|---|"
echo "| original | - | 1.000x | - | $orig |"
for m in paper auto all; do
  $fusec finetune "$out/$m.onnx" --teacher $cls --data $data --task rot180 --preprocess ppocr-cls \
    --quiet -o "$out/$m.tuned.onnx" --force > /dev/null
  acc=$($fusec eval "$out/$m.tuned.onnx" --data $held --task rot180 --preprocess ppocr-cls --json | json "d['top1']")
  rep=$($fusec report "$out/$m.tuned.onnx" --baseline $cls --input-shape 1,3,48,192 --format json | json "'%.3fx' % d['speedup']")
  params=$($fusec inspect "$out/$m.tuned.onnx" --json | json "d['totals']['params']")
  layers=$(.venv/bin/python -c "import onnx; m=onnx.load('$out/$m.onnx'); print(next(p.value for p in m.metadata_props if p.key=='fusec.converted').count(',')+1)")
  echo "| $m | $layers | $rep | $params | $acc |"
done
