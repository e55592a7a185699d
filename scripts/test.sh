#!/usr/bin/env bash
# Run every test of collapse-kernels.
# Installs the Debian packages the tests need first (Mesa's lavapipe gives wgpu a Vulkan device on
# the CPU; Slurm's slurmctld, slurmd and clients, which tests/common/slurm.rs starts as a one-node
# cluster with scripts/slurm-local.sh and leaves running: `scripts/slurm-local.sh stop` stops it):
# as root it runs apt-get itself; otherwise it says which packages to install and goes on.
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS="mesa-vulkan-drivers libvulkan1 dataset-fashion-mnist fortunes slurmctld slurmd slurm-client"
missing=$(for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing Debian packages: $missing"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  else
    echo "not root: cannot install '$missing'; run: sudo apt-get install -y --no-install-recommends $missing" >&2
    echo "(tests that need a GPU adapter or Slurm skip without them, and fail under CI=true)" >&2
  fi
fi
# Mesa warns when XDG_RUNTIME_DIR is unset; give it a private one.
if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -d "$XDG_RUNTIME_DIR" ]; then
  export XDG_RUNTIME_DIR="${TMPDIR:-/tmp}/collapse-xdg-$(id -u)"
  mkdir -p -m 0700 "$XDG_RUNTIME_DIR"
fi
exec cargo test --release "$@"
