#!/usr/bin/env bash
# The comparison for the example DAG without Concurrent or MLflow: runs the same two scripts
# (thumbnail.py, then histogram.py over the thumbnails) over the images under DIR in a plain
# loop of PROCS background processes (default 2), each running the script once over its
# contiguous share of the files, and prints the wall time of each step.
#
#   scripts/baseline.sh DIR [PROCS]
#   scripts/baseline.sh examples/images/data/raw
#
# Works in a temporary directory (symlinks to the inputs; removed at the end unless
# KEEP=1). Needs the .venv made by scripts/setup.sh (for Pillow).
set -euo pipefail

usage() {
  echo "usage: scripts/baseline.sh DIR [PROCS]" >&2
  exit 2
}

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
(($# >= 1 && $# <= 2)) || usage
[[ -d "$1" ]] || { echo "baseline: $1: not a directory" >&2; exit 2; }
DIR="$(cd "$1" && pwd)"
PROCS="${2:-2}"
if [[ ! "$PROCS" =~ ^[1-9][0-9]*$ ]]; then
  echo "baseline: PROCS must be a positive integer" >&2
  exit 2
fi

# shellcheck source=scripts/env.sh
source "$REPO/scripts/env.sh"
unset MLFLOW_RUN_ID   # histogram.py must not import or log to MLflow here
if ! python -c 'import PIL' 2>/dev/null; then
  echo "baseline: Pillow is missing; run scripts/setup.sh" >&2
  exit 1
fi

PROJECTS="$REPO/examples/images/projects"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/concurrent-baseline.XXXXXX")"
if [[ "${KEEP:-0}" == 1 ]]; then
  echo "baseline: keeping the work directory $WORK"
else
  trap 'rm -rf -- "$WORK"' EXIT
fi

# Split the images (sorted by path, as Concurrent's object partitioning does) into PROCS
# contiguous parts: WORK/in-<k>/<relative path> -> DIR/<relative path>.
images="$(python - "$DIR" "$WORK" "$PROCS" <<'PY'
import os
import sys
from pathlib import Path

src, work, procs = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
exts = {".jpg", ".jpeg", ".png"}
files = sorted(
    (Path(d) / f).relative_to(src)
    for d, _, names in os.walk(src, followlinks=True)
    for f in names
    if os.path.splitext(f)[1].lower() in exts
)
for k in range(procs):
    part = files[len(files) * k // procs : len(files) * (k + 1) // procs]
    (work / f"in-{k}").mkdir()
    for rel in part:
        link = work / f"in-{k}" / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(src / rel)
print(len(files))
PY
)"
if ((images == 0)); then
  echo "baseline: no *.jpg, *.jpeg or *.png files under $DIR" >&2
  exit 2
fi
echo "baseline: $images images under $DIR, $PROCS processes per step"

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# run_step NAME SCRIPT IN_PREFIX OUT_PREFIX ARGS...: one background process per part, wait.
run_step() {
  local name="$1" script="$2" in_prefix="$3" out_prefix="$4"
  shift 4
  local pids=() k failed=0
  for ((k = 0; k < PROCS; k++)); do
    python "$script" --input-dir "$WORK/$in_prefix-$k" --output-dir "$WORK/$out_prefix-$k" "$@" \
      >"$WORK/$name-$k.log" 2>&1 &
    pids+=("$!")
  done
  for k in "${!pids[@]}"; do
    if ! wait "${pids[$k]}"; then
      echo "baseline: $name process $k failed; its log:" >&2
      cat "$WORK/$name-$k.log" >&2
      failed=1
    fi
  done
  return "$failed"
}

t0="$(now)"
run_step thumbnails "$PROJECTS/thumbnail/thumbnail.py" in thumbs --size 128
t1="$(now)"
run_step histograms "$PROJECTS/histogram/histogram.py" thumbs hist --bins 16
t2="$(now)"

thumbs="$(find "$WORK"/thumbs-* -type f | wc -l)"
hists="$(find "$WORK"/hist-* -type f -name '*.json' | wc -l)"
echo "baseline: made $thumbs thumbnails and $hists histograms"
printf '%-12s %8s s\n' thumbnails "$(elapsed "$t0" "$t1")" histograms "$(elapsed "$t1" "$t2")" \
  total "$(elapsed "$t0" "$t2")"
