#!/usr/bin/env python3
"""Benchmark: whole-process `fusec report` on MobileNetV3-Large (converted to
Half, with the baseline) and `fusec zoo --paper-table` (5 networks x 5 variants
built, converted and costed). Prints medians and the targets (50 ms, 2 s).

usage: python3 bench/bench_report.py [--runs N]
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
    ap.add_argument("--runs", type=int, default=10)
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet"], check=True, cwd=ROOT)
    with tempfile.TemporaryDirectory() as d:
        base, half = os.path.join(d, "l.onnx"), os.path.join(d, "h.onnx")
        subprocess.run([FUSEC, "zoo", "mobilenet-v3-large", "-o", base], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([FUSEC, "convert", base, "--variant", "half", "-o", half], check=True, stdout=subprocess.DEVNULL)
        r_med, r_min = timed([FUSEC, "report", half, "--baseline", base, "--format", "json"], a.runs)
        r1_med, r1_min = timed([FUSEC, "report", base, "--format", "json"], a.runs)
    t_med, t_min = timed([FUSEC, "zoo", "--paper-table"], max(3, a.runs // 3))
    print(f"fusec report MobileNetV3-Large Half + baseline : median {r_med:7.1f} ms (min {r_min:.1f}); target < 50 ms: {'met' if r_med < 50 else 'NOT met'}")
    print(f"fusec report MobileNetV3-Large alone           : median {r1_med:7.1f} ms (min {r1_min:.1f}); target < 50 ms: {'met' if r1_med < 50 else 'NOT met'}")
    print(f"fusec zoo --paper-table (25 models)            : median {t_med:7.1f} ms (min {t_min:.1f}); target < 2 s: {'met' if t_med < 2000 else 'NOT met'}")


if __name__ == "__main__":
    main()
