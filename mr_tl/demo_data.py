"""python -m mr_tl.demo_data OUT_DIR: a small labelled image set that needs no download.

No real photo collection ships with a Python package we can use, so the
demo generates one: each class is a kind of object (circle, square,
triangle, star, ring, cross, stripes, checkerboard, dots, crescent) drawn
with random size, position, rotation and colours on a noisy, randomly
tinted background, saved as JPEG (a few as PNG) in Caltech-256's layout::

    OUT_DIR/000.circle/000_0000.jpg ...

The classes do not differ in colour or position, so a raw-pixel classifier
does poorly while ImageNet features separate them: a fair test of transfer
learning.  Same seed, same bytes.
"""

import argparse
import io
import math
import os
import shutil
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from mr_tl.cli import run_command
from mr_tl.errors import OutputExists
from mr_tl.seeding import rng

CLASSES = ("circle", "square", "triangle", "star", "ring", "cross", "stripes", "checkerboard", "dots",
           "crescent")


def _colour(g, avoid=None, contrast=200):
    while True:
        c = tuple(int(v) for v in g.integers(0, 256, 3))
        if avoid is None or sum(abs(a - b) for a, b in zip(c, avoid)) > contrast:
            return c


def _polygon(cx, cy, radius, n, angle, inner=None):
    points = []
    steps = n * (2 if inner else 1)
    for i in range(steps):
        r = inner if inner and i % 2 else radius
        a = angle + 2 * math.pi * i / steps
        points.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return points


def draw_image(kind, g, size=160, hard=False):
    """One image of class ``kind`` drawn from generator ``g``.

    ``hard``: a small, low-contrast object among random strokes on a noisier
    background, so that even ImageNet features leave room for a better
    optimizer to show (used by bench/scaling.py).
    """
    background = _colour(g)
    noise = g.normal(0, 45 if hard else 18, (size, size, 3))
    base = np.clip(np.asarray(background, dtype=np.float64) + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(base, "RGB")
    draw = ImageDraw.Draw(image)
    if hard:
        for _ in range(int(g.integers(3, 7))):
            x0, y0, x1, y1 = (float(v) for v in g.uniform(0, size, 4))
            draw.line((x0, y0, x1, y1), fill=_colour(g, avoid=background, contrast=60),
                      width=int(g.integers(1, 4)))
    fg = _colour(g, avoid=background, contrast=90 if hard else 200)
    r = float(g.uniform(0.09, 0.18) * size if hard else g.uniform(0.18, 0.34) * size)
    cx = float(g.uniform(r, size - r))
    cy = float(g.uniform(r, size - r))
    angle = float(g.uniform(0, 2 * math.pi))
    box = (cx - r, cy - r, cx + r, cy + r)
    if kind == "circle":
        draw.ellipse(box, fill=fg)
    elif kind == "square":
        draw.polygon(_polygon(cx, cy, r * 1.2, 4, angle), fill=fg)
    elif kind == "triangle":
        draw.polygon(_polygon(cx, cy, r * 1.2, 3, angle), fill=fg)
    elif kind == "star":
        draw.polygon(_polygon(cx, cy, r * 1.2, 5, angle, inner=r * 0.5), fill=fg)
    elif kind == "ring":
        draw.ellipse(box, outline=fg, width=max(3, int(r * 0.25)))
    elif kind == "cross":
        w = r * 0.35
        for a in (angle, angle + math.pi / 2):
            dx, dy = math.cos(a), math.sin(a)
            px, py = -dy * w / 2, dx * w / 2
            draw.polygon([(cx - dx * r + px, cy - dy * r + py), (cx + dx * r + px, cy + dy * r + py),
                          (cx + dx * r - px, cy + dy * r - py), (cx - dx * r - px, cy - dy * r - py)], fill=fg)
    elif kind == "stripes":
        period = int(g.integers(10, 22))
        layer = Image.new("L", (size * 2, size * 2), 0)
        ld = ImageDraw.Draw(layer)
        for x in range(0, size * 2, period):
            ld.rectangle((x, 0, x + period // 2 - 1, size * 2), fill=255)
        layer = layer.rotate(math.degrees(angle), resample=Image.BILINEAR).crop(
            (size // 2, size // 2, size // 2 + size, size // 2 + size))
        image.paste(Image.new("RGB", (size, size), fg), (0, 0), layer)
    elif kind == "checkerboard":
        cell = int(g.integers(12, 26))
        layer = Image.new("L", (size, size), 0)
        ld = ImageDraw.Draw(layer)
        for y in range(0, size, cell):
            for x in range(0, size, cell):
                if (x // cell + y // cell) % 2 == 0:
                    ld.rectangle((x, y, x + cell - 1, y + cell - 1), fill=255)
        image.paste(Image.new("RGB", (size, size), fg), (0, 0), layer)
    elif kind == "dots":
        for _ in range(int(g.integers(12, 30))):
            x, y = g.uniform(0, size, 2)
            d = float(g.uniform(3, 7))
            draw.ellipse((x - d, y - d, x + d, y + d), fill=fg)
    elif kind == "crescent":
        draw.ellipse(box, fill=fg)
        off = r * 0.55
        draw.ellipse((cx - r + off * math.cos(angle), cy - r + off * math.sin(angle),
                      cx + r + off * math.cos(angle), cy + r + off * math.sin(angle)), fill=background)
    else:
        raise ValueError("unknown class %r" % kind)
    if g.uniform() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(float(g.uniform(0.3, 1.2))))
    return image


def generate(out_dir, classes=CLASSES, per_class=40, seed=0, size=160, hard=False):
    """Write ``per_class`` images of each class; returns the number written."""
    written = 0
    for index, kind in enumerate(classes):
        folder = os.path.join(out_dir, "%03d.%s" % (index, kind))
        os.makedirs(folder, exist_ok=True)
        for i in range(per_class):
            g = rng(seed, "demo-hard" if hard else "demo", kind, i)
            image = draw_image(kind, g, size, hard)
            buf = io.BytesIO()
            # a few PNGs among the JPEGs, as in any real collection
            if i % 10 == 9:
                image.save(buf, "PNG", optimize=False)
                name = "%03d_%04d.png" % (index, i)
            else:
                image.save(buf, "JPEG", quality=90)
                name = "%03d_%04d.jpg" % (index, i)
            with open(os.path.join(folder, name), "wb") as f:
                f.write(buf.getvalue())
            written += 1
    return written


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m mr_tl.demo_data", description=__doc__.split("\n")[0],
                                epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir")
    p.add_argument("--classes", type=int, default=len(CLASSES), help="number of classes (max %d)" % len(CLASSES))
    p.add_argument("--per-class", type=int, default=40, help="images per class (default 40)")
    p.add_argument("--size", type=int, default=160, help="image side in pixels (default 160)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace OUT_DIR (all of it) if it exists")
    p.add_argument("--hard", action="store_true",
                   help="small low-contrast objects among random strokes (a harder task, for benchmarks)")
    args = p.parse_args(argv)
    if not 1 <= args.classes <= len(CLASSES):
        p.error("--classes must be between 1 and %d" % len(CLASSES))
    run_command(_generate_command, args)


def _generate_command(args):
    if os.path.lexists(args.out_dir) and (not os.path.isdir(args.out_dir) or os.listdir(args.out_dir)):
        if not args.overwrite:
            raise OutputExists("%s already exists (use --overwrite to replace it, or choose another folder)"
                               % args.out_dir)
        if not os.path.isdir(args.out_dir) or os.path.islink(args.out_dir):
            raise OutputExists("%s exists and is not a folder: not replaced" % args.out_dir)
        shutil.rmtree(args.out_dir)
    n = generate(args.out_dir, CLASSES[:args.classes], args.per_class, args.seed, args.size, args.hard)
    print("wrote %d images of %d classes to %s" % (n, args.classes, args.out_dir))


if __name__ == "__main__":
    main(sys.argv[1:])
