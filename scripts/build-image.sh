#!/usr/bin/env bash
# Builds the `concurrent` image (Containerfile) with buildah, from the static binaries that
# scripts/build-static-worker.sh makes, then checks it: both binaries run inside it, as its
# non-root user, and the worker installs itself as a worker Pod's init container has it do.
#
# Usage: scripts/build-image.sh [--release] [TAG]     (default TAG: concurrent:dev)
# Needs buildah (Debian: apt-get install buildah) and root (vfs storage, chroot isolation: no
# daemon, no registry access; the image is FROM scratch).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

build_args=(--all)
tag=concurrent:dev
for arg in "$@"; do
  case "$arg" in
    --release) build_args+=(--release) ;;
    -*) echo "build-image: unknown option '$arg'" >&2; exit 2 ;;
    *) tag=$arg ;;
  esac
done
log() { printf 'build-image: %s\n' "$*"; }

command -v buildah >/dev/null || { echo "build-image: buildah is missing (apt-get install buildah)" >&2; exit 1; }
[[ -f /etc/ssl/certs/ca-certificates.crt ]] || { echo "build-image: no CA bundle (apt-get install ca-certificates)" >&2; exit 1; }

bash scripts/build-static-worker.sh "${build_args[@]}"

context="$REPO/target/static/image"
root="$context/rootfs"
rm -rf "$context"
mkdir -p "$root/concurrent/bin" "$root/etc/ssl/certs" "$root/tmp" "$root/var/lib/concurrent"
chmod 1777 "$root/tmp"
cp target/static/bin/concurrent target/static/bin/concurrent-worker "$root/concurrent/bin/"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
chown 65532:65532 "$root/var/lib/concurrent"
cp Containerfile "$context/"

buildah=(buildah --storage-driver vfs)
log "buildah bud -t $tag"
"${buildah[@]}" bud --isolation chroot --layers=false -f "$context/Containerfile" -t "$tag" "$context"

# Both binaries run in the image, as its user.
container="$("${buildah[@]}" from "$tag")"
trap '"${buildah[@]}" rm "$container" >/dev/null' EXIT
for bin in concurrent concurrent-worker; do
  version="$("${buildah[@]}" run --isolation chroot "$container" -- "/concurrent/bin/$bin" --version)"
  log "$bin in $tag: $version"
done
# What a worker Pod's init container runs.
"${buildah[@]}" run --isolation chroot "$container" -- /concurrent/bin/concurrent-worker --install-into /tmp/worker-bin
log "concurrent-worker --install-into works in $tag"
log "$tag: $("${buildah[@]}" inspect --format '{{.OCIv1.Config.User}} {{.OCIv1.Config.Entrypoint}} {{.OCIv1.Config.Cmd}}' "$tag")"
