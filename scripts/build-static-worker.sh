#!/usr/bin/env bash
# Builds a static `concurrent-worker` (and `concurrent`) that run in any Linux image: the
# binaries the `concurrent` image carries and the init container copies into a worker Pod.
#
# musl (x86_64-unknown-linux-musl) when its Rust target is installed (or `rustup target add`
# gets it) and `musl-gcc` is on PATH (Debian: musl-tools); else glibc with
# `-C target-feature=+crt-static`. Builds into target/static (its own target dir, so the normal
# build's cache is untouched) and copies the results to target/static/bin/.
#
# Usage: scripts/build-static-worker.sh [--release] [--all]
#   (CONCURRENT_STATIC_TARGET=gnu forces the glibc build)
#   --release  optimised build (the image's); default: the debug profile (the tests')
#   --all      also build `concurrent` (the image needs both)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

profile=dev
profile_dir=debug
packages=(-p concurrent-worker)
bins=(concurrent-worker)
for arg in "$@"; do
  case "$arg" in
    --release) profile=release profile_dir=release ;;
    --all) packages+=(-p concurrent-scheduler) bins+=(concurrent) ;;
    *) echo "build-static-worker: unknown argument '$arg' (use --release, --all)" >&2; exit 2 ;;
  esac
done

log() { printf 'build-static-worker: %s\n' "$*"; }

musl=x86_64-unknown-linux-musl
gnu=x86_64-unknown-linux-gnu
target=$gnu
if [[ ${CONCURRENT_STATIC_TARGET:-} == gnu ]]; then
  :  # asked for glibc
elif command -v musl-gcc >/dev/null; then
  if rustup target list --installed 2>/dev/null | grep -qx "$musl" \
    || rustup target add "$musl" >/dev/null 2>&1; then
    target=$musl
  fi
fi

out="$REPO/target/static"
if [[ $target == "$musl" ]]; then
  log "target $target (musl-gcc for C code)"
  # musl-gcc compiles the C code (ring, aws-lc); Rust links with its own musl CRT objects
  # (musl-gcc as the linker would give a static-pie that still names an interpreter).
  export CC_x86_64_unknown_linux_musl=musl-gcc
  export CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C target-feature=+crt-static"
else
  log "target $target with crt-static (no musl target or musl-gcc here)"
  export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static"
fi

cargo build --locked --profile "$profile" --target "$target" --target-dir "$out" "${packages[@]}" --bins

mkdir -p "$out/bin"
for bin in "${bins[@]}"; do
  built="$out/$target/$profile_dir/$bin"
  if LC_ALL=C readelf -lW "$built" | grep -q 'program interpreter'; then
    echo "build-static-worker: $built needs a dynamic loader:" >&2
    LC_ALL=C readelf -lW "$built" | grep 'program interpreter' >&2
    exit 1
  fi
  cp -f "$built" "$out/bin/$bin.tmp" && mv -f "$out/bin/$bin.tmp" "$out/bin/$bin"
  log "$out/bin/$bin ($target, $profile_dir, static)"
done
