#!/usr/bin/env python3
"""Render labeled text lines the way ../shared/data/make_textlines.py does
(sizes 24-40, padding 4-12, grey levels varied), from a word list given here,
with capitals: each word is written lower case, capitalised or in capitals.

usage: render_lines.py OUT_DIR N SEED WORDS FONT_GLOB [FONT_GLOB...]
WORDS: comma-separated. Writes OUT_DIR/NNNNN.png and OUT_DIR/labels.tsv
(file, font, text), the fonts taken in turn.
"""
import glob
import os
import random
import sys

from PIL import Image, ImageDraw, ImageFont

out, n, seed, words = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split(",")
fonts = sorted(f for p in sys.argv[5:] for f in glob.glob(p))
assert fonts, f"no fonts match {sys.argv[5:]}"
rng = random.Random(seed)


def cased(w):
    r = rng.random()
    return w if r < 0.5 else w.capitalize() if r < 0.85 else w.upper()


os.makedirs(out, exist_ok=True)
rows = []
for i in range(n):
    t = " ".join(cased(rng.choice(words)) for _ in range(rng.randint(1, 5)))
    if rng.random() < 0.4:
        t += " " + str(rng.randint(0, 99999))
    fp = fonts[i % len(fonts)]
    f = ImageFont.truetype(fp, rng.choice([24, 28, 32, 40]))
    l, tp, r, b = f.getbbox(t)
    pad = rng.randint(4, 12)
    im = Image.new("L", (r - l + 2 * pad, b - tp + 2 * pad), rng.randint(200, 255))
    ImageDraw.Draw(im).text((pad - l, pad - tp), t, font=f, fill=rng.randint(0, 80))
    name = f"{i:05d}.png"
    im.save(os.path.join(out, name), optimize=True)
    rows.append(f"{name}\t{os.path.basename(fp)}\t{t}")
with open(os.path.join(out, "labels.tsv"), "w") as fh:
    fh.write("file\tfont\ttext\n" + "\n".join(rows) + "\n")
print(n, "lines in", out, "from", len(fonts), "faces")
