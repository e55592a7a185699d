#!/usr/bin/env bash
# The main job for a new user: build `collapse`, show the adapters, draw random numbers on every
# backend and compare each with the f64 reference. (A generational run replaces this when the
# driver lands.) Installs lavapipe's Debian packages when run as root, like scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS="mesa-vulkan-drivers libvulkan1"
missing=$(for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ] && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
elif [ -n "$missing" ]; then
  echo "not root: GPU backends need 'sudo apt-get install -y $missing'" >&2
fi
if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -d "$XDG_RUNTIME_DIR" ]; then
  export XDG_RUNTIME_DIR="${TMPDIR:-/tmp}/collapse-xdg-$(id -u)"
  mkdir -p -m 0700 "$XDG_RUNTIME_DIR"
fi
cargo build --release --bin collapse
bin=target/release/collapse
"$bin" info || echo "(no GPU adapter: the wgsl and cube backends are unavailable)"
for b in cpu64 cpu32 wgsl cube; do
  echo
  "$bin" rng --backend "$b" --kind normal --count 1000000 || echo "($b unavailable)"
done
