#!/usr/bin/env bash
# The Pareto fronts of `fusec select` (Half, gain only) for the five reference
# networks of `fusec zoo` on 16x16, 64x64 and 256x256 arrays, one SVG each with
# the paper's 50% hybrid marked, and a table: the hybrid's layers and speedup
# against the fewest layers on the front reaching the same speedup.
# usage: bash bench/select_fronts.sh [OUT_DIR]   (a few seconds)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench-out/fronts}
mkdir -p "$out"
fusec=./target/release/fusec
echo "| network | array | paper 50% hybrid: layers, speedup | fewest layers on the front reaching it | all layers |"
echo "|---|---|---|---|---|"
for net in mobilenet-v1 mobilenet-v2 mnasnet-b1 mobilenet-v3-small mobilenet-v3-large; do
  $fusec zoo $net -o "$out/$net.onnx" --force > /dev/null 2>&1 || $fusec zoo $net -o "$out/$net.onnx" > /dev/null
  for a in 16 64 256; do
    $fusec select "$out/$net.onnx" --array ${a}x$a --samples 0 --mark paper-50-$net --svg "$out/$net.${a}x$a.svg" --force --json --no-cache > "$out/$net.$a.json"
    .venv/bin/python - "$out/$net.$a.json" "$net" "$a" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
base = d["table"]["baseline_cycles"]
sp = lambda g: base / max(base - g, 1)
m = d["marks"][0]
front = d["front"]
reach = next(c for c in front if sp(c["gain"]) >= m["predicted_speedup"] - 1e-9)
layers = lambda c: sum(len(d["table"]["items"][i]["layers"]) for i in c["items"])
print(f"| {sys.argv[2]} | {sys.argv[3]}x{sys.argv[3]} | {len(m['layers'])}, {m['predicted_speedup']:.3f}x | {layers(reach)}, {sp(reach['gain']):.3f}x | {layers(front[-1])}, {sp(front[-1]['gain']):.3f}x |")
PY
  done
done
