#!/usr/bin/env bash
# Render evaluation data that the shared data does not contain: text lines and
# pages in other font families (Liberation, FreeFont) and with other words
# (the renderers' word set "b"), for measuring fine-tuned models on inputs
# unlike their training data. Installs the fonts (Debian packages) and Pillow
# (a venv in bench/.venv-data) if they are missing.
#
#   bash scripts/heldout_data.sh [OUT_DIR]     (default: bench-out/heldout)
#
# Writes OUT_DIR/lines (400 lines, labels.tsv: file, font, text) and
# OUT_DIR/pages (60 pages, boxes.tsv: file, x0, y0, x1, y1, text).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-bench-out/heldout}"
shared="$(cd .. && pwd)/shared/data"
fonts=/usr/share/fonts/truetype
if [ ! -d "$fonts/liberation2" ] || [ ! -d "$fonts/freefont" ]; then
    echo "installing fonts-liberation2 and fonts-freefont-ttf" >&2
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get install -y -q fonts-liberation2 fonts-freefont-ttf >/dev/null
fi
venv=bench/.venv-data
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import PIL" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "pillow>=10,<13"
fi
# every face of the two families, none of the DejaVu faces the shared data uses
glob="$fonts/[fl]*/*.ttf"
"$venv/bin/python" "$shared/make_textlines.py" "$out/lines" 400 "$glob" 101 b
"$venv/bin/python" "$shared/make_pages.py" "$out/pages" 60 "$glob" 101 b
