#!/usr/bin/env python3
"""Benchmark: the cycle-level simulator against SCALE-Sim, and sweeps.

1. All of MobileNetV2 (the `fusec zoo` network) on a 64x64 array, OS dataflow,
   64 KB per SRAM, 10 words per cycle of DRAM bandwidth (SCALE-Sim's USER
   mode): `fusec simulate --topology ... --config ...` on SCALE-Sim's own
   inputs (whole process, median of runs), and SCALE-Sim v3 on the same
   topology and configuration, with its depthwise layers de-duplicated
   (one channel simulated, times the channel count) and, with --native, in
   its per-channel form. Prints both times and the ratio. SCALE-Sim runs with
   --scalesim (its venv: bash scripts/scalesim_env.sh; 3 to 5 minutes per run
   de-duplicated); without it, the times recorded in
   testdata/scalesim/calc_64x64.json are used.
2. `fusec sweep` of MobileNetV2 over 1,836 configurations (17 array shapes x
   2 hardware kinds x 3 dataflows x 6 SRAM sizes x 3 variants).
3. Peak memory (max RSS) of both fusec runs.

Targets: >= 100x faster than SCALE-Sim de-duplicated, >= 1000x against its
per-channel form, < 1 s for the network, < 10 s for 1,000 configurations.

usage: python3 bench/bench_sim.py [--runs N] [--scalesim] [--native]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import timed  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FUSEC = os.path.join(ROOT, "target", "release", "fusec")
TOPO = os.path.join(ROOT, "testdata", "scalesim", "mobilenet_v2.csv")
SCALESIM_PY = os.path.join(ROOT, "bench", ".venv-scalesim", "bin", "python")


def write_cfg(path, sram_kb, bw):
    with open(path, "w") as f:
        f.write(f"""[general]
run_name = bench

[architecture_presets]
ArrayHeight = 64
ArrayWidth = 64
IfmapSramSzkB = {sram_kb}
FilterSramSzkB = {sram_kb}
OfmapSramSzkB = {sram_kb}
IfmapOffset = 0
FilterOffset = 10000000
OfmapOffset = 20000000
Bandwidth = {bw}
Dataflow = os
MemoryBanks = 1

[run_presets]
InterfaceBandwidth = USER
""")


def max_rss_mb(cmd):
    """Peak resident memory of one run of `cmd` (MB), measured in a fresh child."""
    probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", probe] + cmd, check=True, capture_output=True, text=True).stdout
    return int(out.strip()) / 1024


def scalesim_seconds(native, d):
    out = os.path.join(d, "scalesim.json")
    cmd = [SCALESIM_PY, os.path.join(ROOT, "scripts", "scalesim_compare.py"), TOPO, "--array", "64", "--dataflow", "os", "--sram-kb", "64", "--bw", "10", "--json", out]
    if native:
        cmd.append("--native")
    t0 = time.time()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.time() - t0
    return json.load(open(out))["os"]["scalesim_seconds"], wall


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--scalesim", action="store_true", help="run SCALE-Sim now (else use the recorded times)")
    ap.add_argument("--native", action="store_true", help="also run SCALE-Sim per channel (about 6 minutes, 10 GB)")
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet"], check=True, cwd=ROOT)
    with tempfile.TemporaryDirectory() as d:
        cfg = os.path.join(d, "user64.cfg")
        write_cfg(cfg, 64, 10)
        sim = [FUSEC, "simulate", "--topology", TOPO, "--config", cfg, "--format", "json"]
        med, mn = timed(sim, a.runs)
        rss = max_rss_mb(sim)
        print(f"fusec simulate, MobileNetV2 64x64 OS, 64 KB SRAMs, 10 words/cycle (SCALE-Sim's inputs): median {med:.1f} ms (min {mn:.1f}), peak {rss:.0f} MB; target < 1 s: {'met' if med < 1000 else 'NOT met'}")
        if a.scalesim:
            s, wall = scalesim_seconds(False, d)
            print(f"SCALE-Sim v3, depthwise de-duplicated: {s:.1f} s simulating ({wall:.1f} s with start-up) -> fusec {1000 * s / med:.0f}x faster (target >= 100x)")
            if a.native:
                s, wall = scalesim_seconds(True, d)
                print(f"SCALE-Sim v3, per channel (its native form): {s:.1f} s -> fusec {1000 * s / med:.0f}x faster (target >= 1000x)")
        else:
            rec = json.load(open(os.path.join(ROOT, "testdata", "scalesim", "calc_64x64.json")))["models"]["mobilenet_v2"]
            s = min(rec[df]["scalesim_seconds"] for df in ("os", "ws", "is"))
            print(f"SCALE-Sim v3 (recorded, CALC mode, de-duplicated, fastest dataflow): {s:.0f} s -> fusec {1000 * s / med:.0f}x faster (target >= 100x); --scalesim runs it now")
        base = os.path.join(d, "mnv2.onnx")
        subprocess.run([FUSEC, "zoo", "mobilenet-v2", "-o", base], check=True, stdout=subprocess.DEVNULL)
        arrays = ",".join(f"{r}x{c}" for r, c in [(8, 8), (16, 16), (32, 32), (64, 64), (128, 128), (256, 256), (16, 32), (32, 16), (32, 64), (64, 32), (64, 128),
                                                  (128, 64), (128, 256), (256, 128), (8, 32), (32, 8), (48, 48)])
        sweep = [FUSEC, "sweep", base, "--arrays", arrays, "--hw", "systolic,fuse", "--dataflow", "os,ws,is", "--sram-kb", "32,64,128,256,512,none",
                 "--variants", "baseline,half,full", "--quiet", "--format", "json", "-o", os.path.join(d, "sweep.json")]
        med, mn = timed(sweep, max(3, a.runs // 3))
        n = len(json.load(open(os.path.join(d, "sweep.json"))))
        rss = max_rss_mb(sweep)
        print(f"fusec sweep, MobileNetV2, {n} configurations: median {med / 1000:.2f} s (min {mn / 1000:.2f}), peak {rss:.0f} MB; target 1,000 in < 10 s: {'met' if med * 1000 / n < 10000 else 'NOT met'}")


if __name__ == "__main__":
    main()
