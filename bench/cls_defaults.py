#!/usr/bin/env python3
"""Which `fusec finetune` defaults generalize, for the PP-OCR text-direction
classifier (0/180), measured on text unlike the training text.

Split A (chooses the defaults): train on the shared lines in DejaVu Sans faces
that contain none of the words quick, invoice, table, depthwise (262 lines);
evaluate on the shared lines in DejaVu Serif and Mono faces that contain one
of them (228 lines). Each candidate flag set fine-tunes the Half and the Full
rewrite (10 epochs) and is scored with `fusec eval` (tract).

Split B (the check): train on all 1000 shared lines with the default flags
(and the default number of epochs);
evaluate on lines in other font families and words (scripts/heldout_data.sh:
Liberation and FreeFont faces, word set "b"). Also reported: the same-font
split used before (lines 0-799 / 800-999).

usage: python3 bench/cls_defaults.py [--only-b] [--epochs N]
"""
import argparse
import csv
import json
import os
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FUSEC = os.path.join(ROOT, "target", "release", "fusec")
MODEL = os.path.join(ROOT, "testdata", "ppocr_mobile_v2_cls.onnx")
LINES = os.path.join(os.path.dirname(ROOT), "shared", "data", "textlines")
HELD = {"quick", "invoice", "table", "depthwise"}
CANDIDATES = {
    "distillation only (the old defaults)": ["--no-augment", "--no-labels"],
    "+ augmentation": ["--augment", "--no-labels"],
    "+ labels": ["--no-augment", "--labels"],
    "+ augmentation + labels (the defaults)": [],
}


def listing(path, rows):
    with open(path, "w") as f:
        f.write("file\n")
        for r in rows:
            f.write(os.path.join(LINES, r["file"]) + "\n")
    return path


def accuracy(model, data):
    out = subprocess.run([FUSEC, "eval", model, "--data", data, "--task", "rot180", "--preprocess", "ppocr-cls", "--json"], check=True, capture_output=True, text=True)
    return 100 * json.loads(out.stdout)["top1"]


def tune(student, train, extra, out, epochs):
    """Fine-tune; epochs None: the default number of epochs."""
    ep = [] if epochs is None else ["--epochs", str(epochs)]
    subprocess.run([FUSEC, "finetune", student, "--teacher", MODEL, "--data", train, "--task", "rot180", "--preprocess", "ppocr-cls",
                    "--quiet", "--force", "-o", out] + ep + extra, check=True, stdout=subprocess.DEVNULL)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only-b", action="store_true")
    ap.add_argument("--epochs", type=int, default=10, help="epochs of the split-A candidates")
    ap.add_argument("--epochs-b", type=int, default=None, help="epochs of split B and the same-font split [default: finetune's]")
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet"], check=True, cwd=ROOT)
    held = os.path.join(ROOT, "bench-out", "heldout", "lines", "labels.tsv")
    if not os.path.exists(held):
        subprocess.run(["bash", os.path.join(ROOT, "scripts", "heldout_data.sh")], check=True)
    rows = list(csv.DictReader(open(os.path.join(LINES, "labels.tsv")), delimiter="\t"))
    sans = lambda r: "Serif" not in r["font"] and "Mono" not in r["font"]
    words = lambda r: bool(set(r["text"].split()) & HELD)
    with tempfile.TemporaryDirectory() as d:
        models = {}
        for v in ("half", "full"):
            models[v] = os.path.join(d, f"{v}.onnx")
            subprocess.run([FUSEC, "convert", MODEL, "--variant", v, "-o", models[v]], check=True, stdout=subprocess.DEVNULL)
        if not a.only_b:
            train = listing(os.path.join(d, "a_train.tsv"), [r for r in rows if sans(r) and not words(r)])
            test = listing(os.path.join(d, "a_test.tsv"), [r for r in rows if not sans(r) and words(r)])
            print(f"split A: train on {sum(1 for r in rows if sans(r) and not words(r))} Sans lines without {sorted(HELD)}, "
                  f"evaluate on {sum(1 for r in rows if not sans(r) and words(r))} Serif/Mono lines with them (x2: upright and rotated)")
            print(f"  original: {accuracy(MODEL, test):.2f}%")
            for name, extra in CANDIDATES.items():
                acc = {v: accuracy(tune(models[v], train, extra, os.path.join(d, f"a_{v}.onnx"), a.epochs), test) for v in ("half", "full")}
                print(f"  {name:42s}: Half {acc['half']:.2f}%  Full {acc['full']:.2f}%")
        train = listing(os.path.join(d, "b_train.tsv"), rows)
        print(f"split B: train on all {len(rows)} shared lines with the default flags, evaluate on {held} (other fonts and words)")
        print(f"  original: {accuracy(MODEL, held):.2f}%")
        for v in ("half", "full"):
            t = tune(models[v], train, [], os.path.join(d, f"b_{v}.onnx"), a.epochs_b)
            print(f"  {v}: untrained {accuracy(models[v], held):.2f}%, fine-tuned {accuracy(t, held):.2f}%")
        same_train = listing(os.path.join(d, "s_train.tsv"), rows[:800])
        same_test = listing(os.path.join(d, "s_test.tsv"), rows[800:])
        print("same-font split (lines 0-799 / 800-999), default flags:")
        print(f"  original: {accuracy(MODEL, same_test):.2f}%")
        for v in ("half", "full"):
            t = tune(models[v], same_train, [], os.path.join(d, f"s_{v}.onnx"), a.epochs_b)
            print(f"  {v}: fine-tuned {accuracy(t, same_test):.2f}%")


if __name__ == "__main__":
    main()
