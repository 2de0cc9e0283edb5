#!/usr/bin/env bash
# Text lines for choosing a recognizer recipe on one split and confirming it on
# another, neither sharing a font family or a word with the training data (the
# shared lines: DejaVu, ../shared/data/make_textlines.py's word set "a") or with
# each other; words with doubled letters, a third capitalised or in capitals.
#
#   val:   Liberation and Open Sans faces, 300 lines  (choose here)
#   test:  FreeFont and URW base35 text faces, 400 lines  (confirm here)
#   train: DejaVu (the shared lines' faces) and the shared lines' words, cased the
#          same way, 1000 lines: training lines with capitals (the shared ones have none)
#
#   bash scripts/family_split.sh [OUT_DIR]     (default: bench-out/families)
#
# Installs the fonts (Debian packages) and Pillow (bench/.venv-data) if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-bench-out/families}"
tt=/usr/share/fonts/truetype
ot=/usr/share/fonts/opentype
if [ ! -d "$tt/liberation2" ] || [ ! -d "$tt/freefont" ] || [ ! -d "$tt/open-sans" ] || [ ! -d "$ot/urw-base35" ]; then
    echo "installing fonts-liberation2 fonts-freefont-ttf fonts-open-sans fonts-urw-base35" >&2
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get install -y -q fonts-liberation2 fonts-freefont-ttf fonts-open-sans fonts-urw-base35 >/dev/null
fi
venv=bench/.venv-data
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import PIL" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "pillow>=10,<13"
fi
train_words=the,quick,brown,fox,jumps,over,lazy,dog,model,compiler,depthwise,convolution,accuracy,invoice,total,amount,date,number,page,table,figure,result,value
val_words=office,coffee,summer,bottle,dinner,apple,green,little,common,happy,million,pizza,access,mirror,yellow,pepper,traffic,cotton,hello,Monday,river,garden,window
test_words=letter,butter,battery,college,middle,success,tomorrow,shell,wood,floor,cooking,dollar,annual,message,support,matter,running,village,glass,sheet,north,planet,silver,market
"$venv/bin/python" scripts/render_lines.py "$out/val" 300 303 "$val_words" "$tt/liberation2/*.ttf" "$tt/open-sans/*.ttf"
# URW's text faces (not the symbol, dingbat and script ones)
"$venv/bin/python" scripts/render_lines.py "$out/test" 400 404 "$test_words" "$tt/freefont/*.ttf" \
    "$ot/urw-base35/Nimbus*.otf" "$ot/urw-base35/[CP]0[0-9][0-9]-*.otf" "$ot/urw-base35/URW*.otf"
"$venv/bin/python" scripts/render_lines.py "$out/train" 1000 505 "$train_words" "$tt/dejavu/*.ttf"
