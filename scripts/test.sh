#!/usr/bin/env bash
# The test command: prepares the tools (scripts/setup.sh), builds every binary (the
# integration tests start `concurrent` and `concurrent-worker`), then runs all tests.
# Extra arguments go to `cargo test`, e.g. `scripts/test.sh -p concurrent-scheduler`.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

bash scripts/setup.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh

echo "test: cargo build --workspace --bins"
cargo build --workspace --bins
echo "test: cargo test --workspace $*"
cargo test --workspace "$@"
