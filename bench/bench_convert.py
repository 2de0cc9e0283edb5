#!/usr/bin/env python3
"""Benchmark: whole-process `fusec convert --variant half` against the Python
peer (bench/peer_half.py) on a MobileNetV2-sized model (fusec zoo mobilenet-v2,
about 14 MB). Prints the median wall time of each, the ratio, and the targets
(fusec at least 10x faster than the peer, and under 30 ms).

With --baseline-bin PATH it also times that fusec binary (an earlier build)
on the same model and prints the difference, e.g. what shape folding adds.
With --model PATH it converts that model instead of the zoo MobileNetV2.

usage: .venv/bin/python bench/bench_convert.py [--runs N] [--baseline-bin PATH] [--model PATH]
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
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--baseline-bin", help="another fusec binary to time on the same model")
    ap.add_argument("--model", help="convert this model instead of the zoo MobileNetV2")
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet"], check=True, cwd=ROOT)
    with tempfile.TemporaryDirectory() as d:
        model = a.model or os.path.join(d, "mnv2.onnx")
        if not a.model:
            subprocess.run([FUSEC, "zoo", "mobilenet-v2", "-o", model], check=True, stdout=subprocess.DEVNULL)
        size = os.path.getsize(model) / 1e6
        out_f, out_p = os.path.join(d, "f.onnx"), os.path.join(d, "p.onnx")
        f_med, f_min = timed([FUSEC, "convert", model, "--variant", "half", "-o", out_f, "--force"], a.runs)
        if a.baseline_bin:
            b_med, b_min = timed([a.baseline_bin, "convert", model, "--variant", "half", "-o", os.path.join(d, "b.onnx"), "--force"], a.runs)
            # again, interleaved, so that drift of the machine hits both
            f2, _ = timed([FUSEC, "convert", model, "--variant", "half", "-o", out_f, "--force"], a.runs)
            b2, _ = timed([a.baseline_bin, "convert", model, "--variant", "half", "-o", os.path.join(d, "b.onnx"), "--force"], a.runs)
            f_med, b_med = min(f_med, f2), min(b_med, b2)
        p_med, p_min = timed([sys.executable, os.path.join(ROOT, "bench", "peer_half.py"), model, out_p], a.runs)
        # both outputs must be valid models that run
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "check_onnx.py"), "--shape", "1,3,224,224",
                        "--expect-out", "1,1000", out_f, out_p], check=True)
    ratio = p_med / f_med
    print(f"model: {a.model or 'MobileNetV2 from `fusec zoo`'}, {size:.1f} MB, {a.runs} runs each, whole process")
    print(f"fusec convert --variant half : median {f_med:7.1f} ms (min {f_min:.1f})")
    if a.baseline_bin:
        print(f"baseline fusec ({a.baseline_bin}) : median {b_med:7.1f} ms (min {b_min:.1f}) -> this build {100 * (f_med - b_med) / b_med:+.1f}%")
    print(f"python onnx+numpy peer       : median {p_med:7.1f} ms (min {p_min:.1f})")
    print(f"speedup: {ratio:.1f}x (target >= 10x: {'met' if ratio >= 10 else 'NOT met'}); "
          f"fusec under 30 ms: {'met' if f_med < 30 else 'NOT met'}")


if __name__ == "__main__":
    main()
