"""What the classifier benchmarks of select share: paths and running fusec."""

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
