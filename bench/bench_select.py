#!/usr/bin/env python3
"""Benchmark: whole-process `fusec select` on MobileNetV3-Large from the zoo
(gain only: 15 layers each converted alone and costed on 64x64, the 2^15-set
front, a 2x target, the chosen set converted and costed), and on the PP-OCR
classifier with costs measured on 64 noise inputs (11 layers run in tract).
Prints medians against the targets of the selection issue (100 ms, 10 s),
measured with --no-cache; and the classifier again with its table cached
(another target on the same model and inputs).

usage: python3 bench/bench_select.py [--runs N]
"""
import argparse
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import timed  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FUSEC = os.path.join(ROOT, "target", "release", "fusec")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet"], check=True, cwd=ROOT)
    with tempfile.TemporaryDirectory() as d:
        m = os.path.join(d, "l.onnx")
        subprocess.run([FUSEC, "zoo", "mobilenet-v3-large", "-o", m], check=True, stdout=subprocess.DEVNULL)
        s_med, s_min = timed([FUSEC, "select", m, "--samples", "0", "--json", "--no-cache"], a.runs)
        g_med, g_min = timed([FUSEC, "select", m, "--samples", "0", "--target-speedup", "2", "--json", "--no-cache"], a.runs)
        cls = os.path.join(ROOT, "testdata", "ppocr_mobile_v2_cls.onnx")
        c_med, c_min = timed([FUSEC, "select", cls, "--input-shape", "1x3x48x192", "--samples", "64", "--max-cost", "0.5", "--json", "--no-cache"], max(1, a.runs // 2))
        os.environ["FUSEC_CACHE_DIR"] = os.path.join(d, "cache")
        subprocess.run([FUSEC, "select", cls, "--input-shape", "1x3x48x192", "--samples", "64", "--json"], check=True, stdout=subprocess.DEVNULL)
        k_med, k_min = timed([FUSEC, "select", cls, "--input-shape", "1x3x48x192", "--samples", "64", "--target-speedup", "1.5", "--json"], a.runs)
    print(f"select, MobileNetV3-Large, gain only (table and front):        median {s_med:8.1f} ms (min {s_min:.1f})  target 100 ms  {'met' if s_med <= 100 else 'NOT met'}")
    print(f"  the same with a 2x target (the chosen set converted and costed): median {g_med:8.1f} ms (min {g_min:.1f})")
    print(f"select, PP-OCR classifier, costs on 64 samples:                median {c_med / 1000:8.2f} s  (min {c_min / 1000:.2f})   target 10 s  {'met' if c_med <= 10000 else 'NOT met'}")
    print(f"  the same table from the cache, another target (1.5x):         median {k_med:8.1f} ms (min {k_min:.1f})")


if __name__ == "__main__":
    main()
