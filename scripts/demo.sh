#!/usr/bin/env bash
# The main job for a new user: build `collapse`, show the GPU adapters, and run a generational
# model-collapse experiment (GMM, replace vs accumulate) with metrics and plots under runs/demo.
# Installs lavapipe's Debian packages when run as root, like scripts/test.sh.
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
"$bin" info || echo "(no GPU adapter: runs use the cpu32 backend)"
# Shumailov et al.'s GMM setting (2 components, 1000 samples per generation), 300 generations,
# 4 replicate chains, once training on the last generation only (replace) and once keeping all
# data (accumulate); then one plot per metric overlaying both. About a minute on 2 cores.
rm -rf runs/demo && mkdir -p runs/demo
for policy in replace accumulate; do
  "$bin" run --model gmm --truth shumailov-gmm --samples 1000 --generations 300 --replicates 4 \
    --policy "$policy" --out "runs/demo/$policy"
done
"$bin" plot runs/demo/replace runs/demo/accumulate --out runs/demo/plots
echo
echo "metrics: runs/demo/*/metrics.csv   summaries: runs/demo/*/summary.json   plots: runs/demo/plots/*.svg"
