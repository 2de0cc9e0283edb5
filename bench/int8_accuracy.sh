#!/usr/bin/env bash
# Accuracy of quantized FuSe models (#26's must-show) on the PP-OCR text-direction
# classifier, held-out lines in other font families and words (bash scripts/heldout_data.sh):
#   original float; original INT8 (ONNX Runtime's quantize_static, QDQ, per-channel int8,
#   percentile calibration on 256 of the shared lines); FuSe Half fine-tuned as a float model
#   (fusec finetune defaults) and the same quantized like the original; FuSe Half converted
#   directly from the INT8 model and fine-tuned in QDQ form, with the float teacher and with
#   the INT8 one.
# The calibration method was chosen on the shared (training) lines: bench-out/int8/methods.txt.
# About 20 minutes per fine-tune on the 2-core machine (QDQ graphs train at about 2/3 of the
# float speed). Prints a Markdown table.
# usage: bash bench/int8_accuracy.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench-out/int8}
mkdir -p "$out"
fusec=./target/release/fusec
py=.venv/bin/python
cls=testdata/ppocr_mobile_v2_cls.onnx
data=../shared/data/textlines/labels.tsv
held=bench-out/heldout/lines/labels.tsv
[ -f "$held" ] || bash scripts/heldout_data.sh
pre=(--task rot180 --preprocess ppocr-cls)
top1() { $fusec eval "$1" --data "$2" "${pre[@]}" --json | $py -c "import json,sys; print('%.2f%%' % (100 * json.load(sys.stdin)['top1']))"; }

# calibration inputs: every shared line, upright and rotated, as fusec preprocesses them
[ -f "$out/calib.npz" ] || $fusec eval $cls --data $data "${pre[@]}" --save-inputs "$out/calib.npz" > /dev/null
# the calibration method, chosen on the training lines
: > "$out/methods.txt"
for m in minmax percentile; do
  $py scripts/quantize.py $cls --out-dir "$out" --name "cls.$m" --calib "$out/calib.npz" --samples 256 --method $m > /dev/null 2>&1
  echo "$m: shared lines $(top1 "$out/cls.$m.qdq.onnx" $data), held-out $(top1 "$out/cls.$m.qdq.onnx" $held)" >> "$out/methods.txt"
done
int8="$out/cls.percentile.qdq.onnx"

# FuSe Half as a float model, fine-tuned, then quantized like the original
$fusec convert $cls --variant half -o "$out/half.onnx" --force > /dev/null
[ -f "$out/half.tuned.onnx" ] || $fusec finetune "$out/half.onnx" --teacher $cls --data $data "${pre[@]}" --quiet -o "$out/half.tuned.onnx" --force > /dev/null
$py scripts/quantize.py "$out/half.tuned.onnx" --out-dir "$out" --name half.tuned.int8 --calib "$out/calib.npz" --samples 256 --method percentile > /dev/null 2>&1

# FuSe Half converted from the INT8 model, fine-tuned in QDQ form (float and INT8 teachers)
$fusec convert "$int8" --variant half -o "$out/half-from-int8.onnx" --force > /dev/null
for t in float int8; do
  teacher=$cls
  [ $t = int8 ] && teacher=$int8
  [ -f "$out/half-from-int8.$t-teacher.onnx" ] || $fusec finetune "$out/half-from-int8.onnx" --teacher "$teacher" --data $data "${pre[@]}" \
    --quiet -o "$out/half-from-int8.$t-teacher.onnx" --force > /dev/null
done

echo "| model | form | held-out top-1 |"
echo "|---|---|---|"
echo "| original | float | $(top1 $cls $held) |"
echo "| original | INT8 QDQ | $(top1 "$int8" $held) |"
echo "| FuSe Half, fine-tuned | float | $(top1 "$out/half.tuned.onnx" $held) |"
echo "| the same, quantized | INT8 QDQ | $(top1 "$out/half.tuned.int8.qdq.onnx" $held) |"
echo "| FuSe Half converted from the INT8 model, no training | INT8 QDQ | $(top1 "$out/half-from-int8.onnx" $held) |"
echo "| FuSe Half converted from the INT8 model, fine-tuned (float teacher) | INT8 QDQ | $(top1 "$out/half-from-int8.float-teacher.onnx" $held) |"
echo "| FuSe Half converted from the INT8 model, fine-tuned (INT8 teacher) | INT8 QDQ | $(top1 "$out/half-from-int8.int8-teacher.onnx" $held) |"
