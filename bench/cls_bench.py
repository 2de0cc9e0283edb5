"""What the classifier benchmarks of select share: paths and running fusec."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FUSEC = os.path.join(ROOT, "target", "release", "fusec")
CLS = "testdata/ppocr_mobile_v2_cls.onnx"
DATA = "../shared/data/textlines/labels.tsv"
HELD = "bench-out/heldout/lines/labels.tsv"


def run(*args):
    """fusec ARGS from the repository's root; its stdout, or exit naming the command."""
    r = subprocess.run([FUSEC, *args], cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"fusec {' '.join(args)} failed:\n{r.stderr}")
    return r.stdout


def heldout():
    """Render the held-out lines (other fonts and words) if they are missing."""
    if not os.path.exists(os.path.join(ROOT, HELD)):
        subprocess.run(["bash", "scripts/heldout_data.sh"], cwd=ROOT, check=True)


def tuned_accuracy(layers, student, tuned, epochs):
    """The classifier with `layers` rewritten (Half) to `student`, fine-tuned
    `epochs` epochs on the shared lines to `tuned` (kept: an existing one is
    reused), and its top-1 on the held-out lines."""
    run("convert", CLS, "--variant", "half", "--layers", ",".join(map(str, layers)), "-o", student, "--force")
    if not os.path.exists(os.path.join(ROOT, tuned)):
        run("finetune", student, "--teacher", CLS, "--data", DATA, "--task", "rot180", "--preprocess", "ppocr-cls",
            "--epochs", str(epochs), "--seed", "0", "--quiet", "-o", tuned, "--force")
    return json.loads(run("eval", tuned, "--data", HELD, "--task", "rot180", "--preprocess", "ppocr-cls", "--json"))["top1"]
