#!/usr/bin/env python3
"""Write a thumbnail of every image under --input-dir to the same relative path under
--output-dir, in the same format, fitting in --size x --size pixels (aspect ratio kept).

Files that are not images (by extension) are skipped with a message on stderr. An image
that cannot be read or written is reported on stderr and makes the exit status 1; the
other images are still processed.
"""

import argparse
import os
import sys
from pathlib import Path

from PIL import Image

# Extension -> Pillow format name used when saving.
FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".gif": "GIF",
    ".bmp": "BMP",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
# Explicit save parameters, so outputs do not depend on Pillow's defaults.
SAVE_OPTIONS = {
    "JPEG": {"quality": 85, "optimize": False, "progressive": False},
    "PNG": {"optimize": False, "compress_level": 6},
}


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Write thumbnails of a directory of images.")
    parser.add_argument("--input-dir", type=Path, required=True)
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--size", type=int, default=128, help="max width and height (px)")
    args = parser.parse_args(argv)
    if args.size < 1:
        parser.error(f"--size must be at least 1, got {args.size}")
    if not args.input_dir.is_dir():
        parser.error(f"--input-dir {args.input_dir}: not a directory")
    return args


def files_under(root):
    """Every file under root, as paths relative to root, sorted; follows symlinked dirs."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        base = Path(dirpath).relative_to(root)
        found.extend(base / name for name in filenames)
    return sorted(found)


def thumbnail(source, target, size, fmt):
    with Image.open(source) as image:
        image.thumbnail((size, size))
        if fmt == "JPEG" and image.mode not in ("RGB", "L", "CMYK"):
            image = image.convert("RGB")
        target.parent.mkdir(parents=True, exist_ok=True)
        image.save(target, format=fmt, **SAVE_OPTIONS.get(fmt, {}))


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    made = skipped = failed = 0
    for rel in files_under(args.input_dir):
        fmt = FORMATS.get(rel.suffix.lower())
        if fmt is None:
            print(f"thumbnail: skipping {rel}: not an image", file=sys.stderr)
            skipped += 1
            continue
        try:
            thumbnail(args.input_dir / rel, args.output_dir / rel, args.size, fmt)
            made += 1
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            print(f"thumbnail: cannot process {rel}: {err}", file=sys.stderr)
            failed += 1
    print(f"thumbnail: {made} thumbnails of at most {args.size}px, "
          f"{skipped} skipped, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
