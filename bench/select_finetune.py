#!/usr/bin/env python3
"""Automatic layer selection against the paper-style choice and all layers, each
after the same fine-tune (#29's must-show on the PP-OCR classifier, Half, 64x64).

For each target speedup (the all-layers Half rewrite's speedup S, S/2, the
paper-style set's speedup at S/2, and the paper's 50% hybrid's own speedup):
  auto:        `fusec select --target-speedup X --proxy-steps 20`, costs on the
               1,000 shared lines (`--calib`);
  paper-style: the depthwise layers in network order, as the paper's hybrids
               take them, the fewest first layers reaching X (at the hybrid's
               own speedup: the first half, 0-5);
  all:         every depthwise layer.
Every distinct set is converted, fine-tuned the same way (classifier recipe,
--epochs on the shared lines, seed 0) and evaluated on the 400 held-out lines
in other fonts and words (bash scripts/heldout_data.sh). Prints one table:
target, choice, layers, speedup measured whole (fusec report), params, top-1.

usage: .venv/bin/python bench/select_finetune.py [--epochs 6] [--out bench-out/select]
About 2.5 minutes per distinct set at 6 epochs on the 2-core machine.
"""

import argparse
import json
import os
import time

from cls_bench import CLS, DATA, HELD, ROOT, heldout, run, tuned_accuracy


def layer_list(layers):
    """1,2,3,5 -> "1-3, 5"."""
    out, i = [], 0
    while i < len(layers):
        j = i
        while j + 1 < len(layers) and layers[j + 1] == layers[j] + 1:
            j += 1
        out.append(str(layers[i]) if i == j else f"{layers[i]}-{layers[j]}")
        i = j + 1
    return ", ".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--proxy-steps", type=int, default=20)
    ap.add_argument("--out", default="bench-out/select")
    a = ap.parse_args()
    os.makedirs(os.path.join(ROOT, a.out), exist_ok=True)
    heldout()
    select = ["select", CLS, "--calib", DATA, "--preprocess", "ppocr-cls", "--proxy-steps", str(a.proxy_steps)]
    table = json.loads(run(*select, "--json"))["table"]
    n = sum(len(it["layers"]) for it in table["items"])
    prefixes = json.loads(run(*select, *sum((["--mark", f"0-{k}"] for k in range(n)), []), "--json"))["marks"]
    s_all = prefixes[-1]["predicted_speedup"]
    hybrid = prefixes[(n + 1) // 2 - 1]["predicted_speedup"]
    first = lambda x: next(p for p in prefixes if p["predicted_speedup"] >= x - 1e-9)
    # the fewest first layers reaching half the all-layers speedup overshoot it: auto at theirs too
    targets = [("all layers' speedup", s_all), ("half of it", s_all / 2), ("paper-style's at half", first(s_all / 2)["predicted_speedup"]), ("paper 50% hybrid's", hybrid)]
    rows = []
    for label, x in targets:
        auto = json.loads(run(*select, "--target-speedup", repr(x - 1e-9), "--json"))["choice"]["layers"]
        paper = first(x)["layers"]
        for name, layers in (("auto", auto), ("paper-style", paper), ("all", list(range(n)))):
            if name == "all" and label != targets[0][0]:
                continue
            rows.append((f"{label} ({x:.3f}x)", name, sorted(layers)))
    results = {}
    orig = json.loads(run("eval", CLS, "--data", HELD, "--task", "rot180", "--preprocess", "ppocr-cls", "--json"))["top1"]
    for _, _, layers in rows:
        key = "-".join(map(str, layers))
        if key in results:
            continue
        student = os.path.join(a.out, f"cmp{key}.onnx")
        tuned = os.path.join(a.out, f"cmp{key}.e{a.epochs}.tuned.onnx")
        t0 = time.time()
        acc = tuned_accuracy(layers, student, tuned, a.epochs)
        rep = json.loads(run("report", tuned, "--baseline", CLS, "--input-shape", "1,3,48,192", "--format", "json"))
        params = json.loads(run("inspect", tuned, "--json"))["totals"]["params"]
        results[key] = (rep["speedup"], params, acc)
        print(f"layers {layer_list(layers)}: {rep['speedup']:.3f}x, {params} params, held-out top-1 {100 * acc:.2f}% "
              f"({time.time() - t0:.0f} s)", flush=True)
    print()
    print(f"original: held-out top-1 {100 * orig:.2f}%; fine-tune: classifier recipe, {a.epochs} epochs, seed 0")
    print("| target speedup | choice | layers | speedup (64x64) | params | held-out top-1 |")
    print("|---|---|---|---|---|---|")
    for target, name, layers in rows:
        sp, params, acc = results["-".join(map(str, layers))]
        print(f"| {target} | {name} | {layer_list(layers)} | {sp:.3f}x | {params:,} | {100 * acc:.2f}% |")


if __name__ == "__main__":
    main()
