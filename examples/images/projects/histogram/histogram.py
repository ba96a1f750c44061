#!/usr/bin/env python3
"""For every image under --input-dir, write <relative path>.json under --output-dir with the
image's width, height, mean brightness and per-channel RGB histogram (--bins buckets each).

When MLFLOW_RUN_ID is set (as the Concurrent worker does), log the metrics `images` (count)
and `mean_brightness` (mean over the images) to that run with MlflowClient, which leaves the
run's status alone: the worker ends the run itself. Without MLFLOW_RUN_ID, mlflow is never
imported.

Files that are not images (by extension) are skipped with a message on stderr. An image that
cannot be read is reported on stderr and makes the exit status 1.
"""

import argparse
import json
import os
import sys
from pathlib import Path

from PIL import Image

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
# ITU-R 601-2 luma, the weights of Pillow's convert("L").
LUMA = (0.299, 0.587, 0.114)


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Write RGB histograms of a directory of images.")
    parser.add_argument("--input-dir", type=Path, required=True)
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--bins", type=int, default=16, help="buckets per channel (1..256)")
    args = parser.parse_args(argv)
    if not 1 <= args.bins <= 256:
        parser.error(f"--bins must be in 1..256, got {args.bins}")
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


def bucket(counts, bins):
    """Sums 256 per-value counts into `bins` buckets; value v goes to bucket v * bins // 256."""
    buckets = [0] * bins
    for value, count in enumerate(counts):
        buckets[value * bins // 256] += count
    return buckets


def describe(path, bins):
    with Image.open(path) as image:
        width, height = image.size
        rgb = image.convert("RGB")
        full = rgb.histogram()  # 768 counts: 256 for R, then G, then B
    pixels = width * height
    channels = {}
    brightness = 0.0
    for index, (name, weight) in enumerate(zip("RGB", LUMA)):
        counts = full[index * 256:(index + 1) * 256]
        channels[name] = bucket(counts, bins)
        brightness += weight * sum(v * c for v, c in enumerate(counts)) / pixels
    return {
        "width": width,
        "height": height,
        "bins": bins,
        "mean_brightness": round(brightness, 4),
        "histogram": channels,
    }


def log_metrics(run_id, images, mean_brightness):
    import time

    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    now = int(time.time() * 1000)
    metrics = [Metric("images", images, now, 0)]
    if images:
        metrics.append(Metric("mean_brightness", mean_brightness, now, 0))
    MlflowClient().log_batch(run_id, metrics=metrics)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    brightness = []
    skipped = failed = 0
    for rel in files_under(args.input_dir):
        if rel.suffix.lower() not in IMAGE_EXTENSIONS:
            print(f"histogram: skipping {rel}: not an image", file=sys.stderr)
            skipped += 1
            continue
        try:
            summary = describe(args.input_dir / rel, args.bins)
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            print(f"histogram: cannot read {rel}: {err}", file=sys.stderr)
            failed += 1
            continue
        target = args.output_dir / rel.with_name(rel.name + ".json")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(summary, sort_keys=True) + "\n")
        brightness.append(summary["mean_brightness"])
    mean_brightness = sum(brightness) / len(brightness) if brightness else 0.0
    print(f"histogram: {len(brightness)} images, mean brightness {mean_brightness:.2f}, "
          f"{skipped} skipped, {failed} failed")
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if run_id:
        log_metrics(run_id, len(brightness), mean_brightness)
        print(f"histogram: logged metrics to MLflow run {run_id}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
