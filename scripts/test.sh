#!/usr/bin/env bash
# The test command: prepares the tools (scripts/setup.sh), builds every binary (the
# integration tests start `concurrent` and `concurrent-worker`, and the static worker), then
# runs all tests.
# Extra arguments go to `cargo test`, e.g. `scripts/test.sh -p concurrent-scheduler`.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

bash scripts/setup.sh
# A CI build is never rebuilt incrementally: its incremental caches would only take disk.
if [[ -n ${CI:-} ]]; then export CARGO_INCREMENTAL=0; fi
# shellcheck source=scripts/env.sh
source scripts/env.sh

echo "test: cargo build --workspace --bins"
cargo build --workspace --bins
# The static binaries (own target dir; worker/tests/worker_static.rs runs the worker in a bare
# root) and the `concurrent` image built from them with buildah and checked, then removed.
echo "test: scripts/build-image.sh concurrent:test"
bash scripts/build-image.sh concurrent:test
buildah --storage-driver vfs rmi concurrent:test >/dev/null
echo "test: cargo test --workspace $*"
mkdir -p target
cargo test --workspace "$@" 2>&1 | tee target/test-output.log

# The benchmark harness on small counts, so that it cannot rot (figures are not asserted:
# speed targets live in BENCHMARKS.md). Skipped when arguments select particular tests.
if [[ $# -eq 0 ]]; then
  echo "test: BENCH_PROFILE=debug benches/e2e.sh --quick"
  BENCH_PROFILE=debug bash benches/e2e.sh --quick --out target/bench/e2e-quick.md
fi

# One closing line with the totals of every test binary.
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "%d passed, %d failed\n", passed, failed }' \
  target/test-output.log
