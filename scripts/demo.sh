#!/usr/bin/env bash
# The first command to try: makes COUNT synthetic images (default 1000), builds Concurrent,
# and runs the example DAG examples/images/dag.yaml (thumbnails, then histograms) on this
# machine, with a local nats-server and MLflow server started for the run.
#
#   scripts/demo.sh [COUNT] [concurrent run flags...]
#   scripts/demo.sh 200 --tracking none
#
# Exits with `concurrent run`'s exit code (0 success, 1 run failed, 2 invalid input, 3 a
# service could not be started).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

count=1000
if [[ $# -gt 0 && "$1" =~ ^[0-9]+$ ]]; then
  count="$1"
  shift
fi
if ((count < 1)); then
  echo "demo: COUNT must be at least 1" >&2
  exit 2
fi

bash scripts/setup.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh

# The DAG's input is file:./data/raw, relative to examples/images/dag.yaml.
raw=examples/images/data/raw
have=0
if [[ -d "$raw" ]]; then
  have="$(find "$raw" -type f \( -name '*.jpg' -o -name '*.png' \) | wc -l)"
fi
if ((have == count)); then
  echo "demo: $raw already holds $count images"
else
  if [[ -d "$raw" ]]; then
    echo "demo: $raw holds $have images, not $count: making them again"
    rm -rf -- "$raw"
  fi
  python examples/images/make_images.py --count "$count" --out "$raw"
fi

echo "demo: cargo build --release --bins"
cargo build --release --bins

echo "demo: concurrent run examples/images/dag.yaml $*"
status=0
target/release/concurrent run examples/images/dag.yaml "$@" || status=$?
echo "demo: concurrent exited with $status"
if ((status == 0)); then
  echo "demo: to compare with a plain two-process loop: scripts/baseline.sh $raw"
fi
exit "$status"
