#!/usr/bin/env python3
"""Does `fusec select`'s predicted cost rank layer sets the way fine-tuning does?

#29 asks that the predicted cost rank 10 candidate sets of the PP-OCR
classifier's depthwise layers in the order of their held-out accuracy after
the same fine-tune (Spearman >= 0.8). This script:

1. measures the per-layer table once (`fusec select --calib` on the shared
   training lines, Half, 64x64): each layer's normalized output error and
   top-1 agreement with only that layer rewritten;
2. draws 10 distinct layer sets (seeded; 2 to 9 of the 11 layers) and predicts
   each set's cost as the solver does, the sum of its layers' costs (and,
   for --max-drop, the sum of their agreement drops);
3. converts each set (Half), fine-tunes it with the classifier recipe for
   --epochs epochs on the 1,000 shared lines, and evaluates top-1 on the 400
   held-out lines in other fonts and words (bash scripts/heldout_data.sh);
4. prints the table and Spearman's rho between -predicted cost and accuracy.

usage: .venv/bin/python bench/select_ranking.py [--epochs 6] [--out bench-out/ranking]
About 2.5 minutes per set at 6 epochs on the 2-core machine.
"""

import argparse
import json
import os
import random
import time

from cls_bench import CLS, DATA, HELD, ROOT, heldout, run, tuned_accuracy


def ranks(xs):
    """Ranks 1..n, ties averaged."""
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    r = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return r


def spearman(a, b):
    ra, rb = ranks(a), ranks(b)
    n = len(a)
    ma, mb = sum(ra) / n, sum(rb) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va = sum((x - ma) ** 2 for x in ra) ** 0.5
    vb = sum((y - mb) ** 2 for y in rb) ** 0.5
    return cov / (va * vb)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--sets", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench-out/ranking")
    ap.add_argument("--proxy-steps", default="0,20,60", help="costs measured untrained (0) and after these --proxy-steps")
    a = ap.parse_args()
    os.makedirs(os.path.join(ROOT, a.out), exist_ok=True)
    heldout()
    proxies = [int(p) for p in a.proxy_steps.split(",")]
    tables = {}
    for p in proxies:
        t0 = time.time()
        tables[p] = json.loads(run("select", CLS, "--calib", DATA, "--preprocess", "ppocr-cls", "--proxy-steps", str(p), "--json"))["table"]
        print(f"table with --proxy-steps {p}: {time.time() - t0:.1f} s", flush=True)
    table = tables[proxies[0]]
    items = {tuple(it["layers"]): it for it in table["items"]}
    layers = sorted(l for it in table["items"] for l in it["layers"])
    rng = random.Random(a.seed)
    sets = []
    while len(sets) < a.sets:
        k = rng.randint(2, min(9, len(layers)))
        s = tuple(sorted(rng.sample(layers, k)))
        if s not in sets:
            sets.append(s)
    rows = []
    for s in sets:
        cost = sum(items[(l,)]["cost"] for l in s)
        drop = sum(100 * (1 - items[(l,)]["agreement"]) for l in s)
        gain = sum(items[(l,)]["gain"] for l in s)
        name = "-".join(map(str, s))
        student = os.path.join(a.out, f"set{name}.onnx")
        tuned = os.path.join(a.out, f"set{name}.tuned.onnx")
        t0 = time.time()
        acc = tuned_accuracy(s, student, tuned, a.epochs)
        rep = json.loads(run("report", tuned, "--baseline", CLS, "--input-shape", "1,3,48,192", "--format", "json"))
        rows.append((s, cost, drop, gain, rep["speedup"], acc))
        print(f"set {list(s)}: predicted cost {cost:.3f}, drop {drop:.1f} pts, speedup {rep['speedup']:.3f}x, "
              f"held-out top-1 {100 * acc:.2f}% ({time.time() - t0:.0f} s)", flush=True)
    print()
    print("| layers | predicted cost | predicted drop (pts) | speedup (64x64) | held-out top-1 |")
    print("|---|---|---|---|---|")
    for s, cost, drop, gain, sp, acc in sorted(rows, key=lambda r: r[1]):
        print(f"| {','.join(map(str, s))} | {cost:.3f} | {drop:.1f} | {sp:.3f}x | {100 * acc:.2f}% |")
    accs = [r[5] for r in rows]
    rho_cost = spearman([-r[1] for r in rows], accs)
    rho_drop = spearman([-r[2] for r in rows], accs)
    rho_speed = spearman([-r[4] for r in rows], accs)
    rho_proxy = {}
    for p, t in tables.items():
        its = {tuple(it["layers"]): it for it in t["items"]}
        rho_proxy[p] = spearman([-sum(its[(l,)]["cost"] for l in r[0]) for r in rows], accs)
    print()
    print(f"Spearman(-predicted cost, held-out top-1) = {rho_cost:.3f} (target >= 0.8)")
    print(f"Spearman(-predicted drop, held-out top-1) = {rho_drop:.3f}")
    print(f"Spearman(-speedup, held-out top-1) = {rho_speed:.3f} (what the set's size alone predicts)")
    for p, r in rho_proxy.items():
        print(f"Spearman(-predicted cost with --proxy-steps {p}, held-out top-1) = {r:.3f}")
    with open(os.path.join(ROOT, a.out, "ranking.json"), "w") as f:
        json.dump({"epochs": a.epochs, "rows": [dict(layers=list(s), cost=c, drop=d, gain=g, speedup=sp, top1=acc) for s, c, d, g, sp, acc in rows],
                   "spearman_cost": rho_cost, "spearman_drop": rho_drop, "spearman_speedup": rho_speed,
                   "spearman_proxy": {str(p): r for p, r in rho_proxy.items()}}, f, indent=1)


if __name__ == "__main__":
    main()
