#!/usr/bin/env python3
"""Generate a deterministic set of synthetic test images for the image-preprocess example.

    python make_images.py --count 1000 --out data/raw [--seed 0]

Writes COUNT images of varied sizes (64-1024 px per side), about 60% JPEG and 40% PNG,
spread over a few subdirectories: OUT/set-00/img-00000.jpg, OUT/set-01/img-00001.png, ...
The same seed gives the same files, byte for byte. Needs only Pillow.
"""

import argparse
import random
import sys
import time
from pathlib import Path

from PIL import Image, ImageDraw

MIN_SIDE = 64
MAX_SIDE = 1024
JPEG_SHARE = 0.6
IMAGES_PER_SET = 100
MAX_SETS = 10


def positive_int(text):
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=positive_int, required=True, help="number of images")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    # argparse exits with status 2 on bad arguments, with a usage message.
    return parser.parse_args(argv)


def random_color(rng):
    return (rng.randrange(256), rng.randrange(256), rng.randrange(256))


def gradient(rng, width, height):
    """A linear gradient between two random colours, built without per-pixel Python loops."""
    start, end = random_color(rng), random_color(rng)
    horizontal = rng.random() < 0.5
    length = width if horizontal else height
    # A 1-pixel-thick strip of `length` pixels, resized (stretched) to the full image.
    strip = Image.new("RGB", (length, 1))
    strip.putdata(
        [
            tuple(s + (e - s) * i // max(length - 1, 1) for s, e in zip(start, end))
            for i in range(length)
        ]
    )
    if not horizontal:
        strip = strip.transpose(Image.Transpose.ROTATE_90)
    return strip.resize((width, height), Image.Resampling.NEAREST)


def draw_shapes(rng, image):
    draw = ImageDraw.Draw(image)
    width, height = image.size
    for _ in range(rng.randint(3, 12)):
        x0, x1 = sorted((rng.randrange(width), rng.randrange(width)))
        y0, y1 = sorted((rng.randrange(height), rng.randrange(height)))
        box = (x0, y0, x1, y1)
        shape = rng.choice(("rectangle", "ellipse", "line"))
        color = random_color(rng)
        if shape == "rectangle":
            draw.rectangle(box, fill=color)
        elif shape == "ellipse":
            draw.ellipse(box, fill=color)
        else:
            draw.line(box, fill=color, width=rng.randint(1, 8))


def make_image(rng, index, sets):
    width = rng.randint(MIN_SIDE, MAX_SIDE)
    height = rng.randint(MIN_SIDE, MAX_SIDE)
    image = gradient(rng, width, height)
    draw_shapes(rng, image)
    is_jpeg = rng.random() < JPEG_SHARE
    rel = Path(f"set-{index % sets:02d}") / f"img-{index:05d}.{'jpg' if is_jpeg else 'png'}"
    return rel, image, is_jpeg


def save(image, path, is_jpeg):
    # Explicit save parameters so the bytes do not depend on Pillow's defaults.
    if is_jpeg:
        image.save(path, format="JPEG", quality=85, optimize=False, progressive=False,
                   subsampling=2)
    else:
        # compress_level 1: fast, and still deterministic.
        image.save(path, format="PNG", optimize=False, compress_level=1)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.out.exists() and not args.out.is_dir():
        print(f"make_images.py: --out {args.out}: exists and is not a directory", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    sets = min(MAX_SETS, max(1, -(-args.count // IMAGES_PER_SET)))
    started = time.monotonic()
    jpegs = pngs = total_bytes = 0
    for index in range(args.count):
        rel, image, is_jpeg = make_image(rng, index, sets)
        path = args.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        save(image, path, is_jpeg)
        total_bytes += path.stat().st_size
        if is_jpeg:
            jpegs += 1
        else:
            pngs += 1
    elapsed = time.monotonic() - started
    dirs = "subdirectory" if sets == 1 else "subdirectories"
    print(
        f"made {args.count} images ({jpegs} JPEG, {pngs} PNG, {total_bytes / 1e6:.1f} MB) "
        f"in {sets} {dirs} of {args.out} in {elapsed:.1f} s (seed {args.seed})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
