#!/usr/bin/env bash
# Build, on this (CPU) machine, everything scripts/gpu-check.sh needs on a GPU machine that has
# no Rust toolchain and no network: the release `collapse` binary (stripped, gzipped) and the
# Vulkan/GL loader .debs, all in gpu-bundle/
# (git-ignored; carry it to the GPU machine together with the checkout). About 30 MiB (the whole carry, checkout included, must stay under 64 MiB).
set -euo pipefail
cd "$(dirname "$0")/.."
out=gpu-bundle
rm -rf "$out" && mkdir -p "$out/debs"
cargo build --release --bin collapse
strip -o "$out/collapse" target/release/collapse && gzip -9 "$out/collapse"
# The GPU machine has the NVIDIA driver but may lack the Vulkan loader: bring it (amd64 .debs).
o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
mkdir -p /tmp/amd64/partial
apt-get $o update -qq
(cd "$out/debs" && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null)
git rev-parse --short HEAD > "$out/git-rev"
du -sh "$out"; ls -la "$out" "$out/debs"
