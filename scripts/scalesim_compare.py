#!/usr/bin/env python3
"""Run SCALE-Sim v3 on a topology CSV, layer by layer, and print per-layer
numbers as JSON; optionally the same for `fusec simulate --topology` and a
side-by-side table.

SCALE-Sim's command line ignores some flags and wants a layout file, so this
drives its Python API (scalesim.scale_sim.scalesim) with a generated .cfg.
A depthwise layer (`DP` in its name) is one SCALE-Sim layer per channel; with
--dedup (the default) one channel is simulated and its numbers multiplied by
the channel count (every channel is the same layer); --native runs every
channel as SCALE-Sim does.

Runs in bench/.venv-scalesim (bash scripts/scalesim_env.sh).

usage: scalesim_compare.py TOPOLOGY.csv --array 64 --dataflow os [--sram-kb 64 --bw 10]
                           [--native] [--fusec target/release/fusec] [--json OUT]
"""
import argparse
import configparser
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time


def write_cfg(path, rows, cols, df, sram_kb, bw):
    c = configparser.ConfigParser()
    c.optionxform = str
    c["general"] = {"run_name": "fusec_compare"}
    c["architecture_presets"] = {
        "ArrayHeight": str(rows), "ArrayWidth": str(cols),
        "IfmapSramSzkB": str(sram_kb or 1 << 20), "FilterSramSzkB": str(sram_kb or 1 << 20), "OfmapSramSzkB": str(sram_kb or 1 << 20),
        "IfmapOffset": "0", "FilterOffset": "10000000", "OfmapOffset": "20000000",
        "Bandwidth": str(bw), "Dataflow": df, "MemoryBanks": "1", "ReadRequestBuffer": "32", "WriteRequestBuffer": "32",
    }
    c["layout"] = {"IfmapCustomLayout": "False", "IfmapSRAMBankBandwidth": str(bw), "IfmapSRAMBankNum": "1", "IfmapSRAMBankPort": "2",
                   "FilterCustomLayout": "False", "FilterSRAMBankBandwidth": str(bw), "FilterSRAMBankNum": "1", "FilterSRAMBankPort": "2"}
    c["run_presets"] = {"InterfaceBandwidth": "USER" if sram_kb else "CALC", "UseRamulatorTrace": "False"}
    c["sparsity"] = {"SparsitySupport": "false", "SparseRep": "ellpack_block", "OptimizedMapping": "false", "BlockSize": "8", "RandomNumberGeneratorSeed": "40"}
    with open(path, "w") as f:
        c.write(f)


def read_topology(path):
    rows = []
    with open(path) as f:
        next(f)
        for line in f:
            parts = [p.strip() for p in line.strip().split(",")]
            if len(parts) >= 8 and parts[0]:
                rows.append([parts[0]] + [int(x) for x in parts[1:8]])
    return rows


def run_scalesim(rows, cfg, native):
    """Per layer: SCALE-Sim's numbers (a depthwise layer summed over its channels)."""
    from scalesim.scale_sim import scalesim
    d = tempfile.mkdtemp()
    topo = os.path.join(d, "topo.csv")
    plan = []  # (layer name, SCALE-Sim rows it expands into, multiplier)
    with open(topo, "w") as f:
        f.write("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n")
        for r in rows:
            name, h, w, fh, fw, c, m, s = r
            if "DP" in name and not native:
                f.write(f"{name.replace('DP', 'dp')}, {h}, {w}, {fh}, {fw}, 1, {m}, {s},\n")
                plan.append((name, 1, c))
            else:
                f.write(f"{name}, {h}, {w}, {fh}, {fw}, {c}, {m}, {s},\n")
                plan.append((name, c if "DP" in name else 1, 1))
    s = scalesim(save_disk_space=True, verbose=False, config=cfg, topology=topo, layout=topo)
    t0 = time.time()
    with contextlib.redirect_stdout(io.StringIO()):
        s.run_scale(top_path=d)
    elapsed = time.time() - t0
    layers = s.runner.single_layer_sim_object_list
    out, i = [], 0
    for name, n, mult in plan:
        acc = None
        for l in layers[i:i + n]:
            comp = l.get_compute_report_items()
            det = l.get_detail_report_items()
            v = {"total_cycles": comp[1], "stall_cycles": comp[2], "compute_cycles": comp[1] - comp[2], "mapping_efficiency": comp[4] / 100,
                 "sram_ifmap_reads": det[2], "sram_filter_reads": det[5], "sram_ofmap_writes": det[8],
                 "dram_ifmap_reads": det[11], "dram_filter_reads": det[14], "dram_ofmap_writes": det[17]}
            acc = v if acc is None else {k: acc[k] + v[k] for k in v}
        i += n
        out.append({"name": name, **{k: (v * mult if k != "mapping_efficiency" else v) for k, v in acc.items()}})
    return out, elapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("topology")
    ap.add_argument("--array", type=int, default=64)
    ap.add_argument("--dataflow", default="os")
    ap.add_argument("--sram-kb", type=int, help="SRAM per buffer in KB (USER bandwidth mode); none: unlimited (CALC)")
    ap.add_argument("--bw", type=int, default=10, help="DRAM words per cycle per buffer in USER mode")
    ap.add_argument("--native", action="store_true", help="simulate every depthwise channel, as SCALE-Sim does")
    ap.add_argument("--fusec", help="also run this fusec binary and compare")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    rows = read_topology(a.topology)
    d = tempfile.mkdtemp()
    res = {"topology": os.path.basename(a.topology), "array": a.array, "dataflow": a.dataflow, "sram_kb": a.sram_kb, "bw": a.bw, "native": a.native}
    for df in a.dataflow.split(","):
        cfg = os.path.join(d, f"{df}.cfg")
        write_cfg(cfg, a.array, a.array, df, a.sram_kb, a.bw)
        layers, secs = run_scalesim(rows, cfg, a.native)
        entry = {"scalesim_seconds": secs, "scalesim": layers}
        if a.fusec:
            t0 = time.time()
            out = subprocess.run([a.fusec, "simulate", "--topology", a.topology, "--config", cfg, "--format", "json"], check=True, capture_output=True, text=True).stdout
            entry["fusec_seconds"] = time.time() - t0
            fl = json.loads(out)["layers"]
            entry["fusec"] = [{k: l[k] for k in ("name", "compute_cycles", "stall_cycles", "total_cycles", "mapping_efficiency", "sram_ifmap_reads", "sram_filter_reads",
                                                 "sram_ofmap_writes", "dram_ifmap_reads", "dram_filter_reads", "dram_ofmap_writes")} for l in fl]
            sc, fu = layers, entry["fusec"]
            same = sum(1 for x, y in zip(sc, fu) if x["compute_cycles"] == y["compute_cycles"])
            tot = lambda ls, k: sum(l[k] for l in ls)
            print(f"{df}: compute cycles equal on {same}/{len(sc)} layers; totals scalesim/fusec:")
            for k in ("compute_cycles", "stall_cycles", "sram_ifmap_reads", "sram_filter_reads", "sram_ofmap_writes", "dram_ifmap_reads", "dram_filter_reads", "dram_ofmap_writes"):
                x, y = tot(sc, k), tot(fu, k)
                print(f"  {k:20s} {x:>14,} {y:>14,}  {'' if x == 0 else f'{100 * (y - x) / x:+.2f}%'}")
            print(f"  time: SCALE-Sim {secs:.2f} s, fusec {entry['fusec_seconds']:.3f} s ({secs / entry['fusec_seconds']:.0f}x)")
        res[df] = entry
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
