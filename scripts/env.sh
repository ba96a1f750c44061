# shellcheck shell=bash
# Sourced by the other scripts (and handy in a shell: `source scripts/env.sh`): puts the
# repo's .venv/bin (python, mlflow, nats-server; made by scripts/setup.sh) first on PATH.
# Sets no shell options, so it is safe to source interactively.

CONCURRENT_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CONCURRENT_REPO
if [[ "${PATH%%:*}" != "$CONCURRENT_REPO/.venv/bin" ]]; then
  export PATH="$CONCURRENT_REPO/.venv/bin:$PATH"
fi
# No usage reporting from the MLflow client and server started by Concurrent and the tests.
export MLFLOW_DISABLE_TELEMETRY=true
