#!/usr/bin/env bash
# Regenerate results/drift/: the drift study (`collapse drift run`) on the 1-D Gaussian chain
# with M = 10 and M = 100 and on the GMM chain, and the kernel-level error table
# (`collapse drift kernels`). Each run folder holds summary.json with its full configuration.
# On this repository's 2-core machine with lavapipe for wgsl/cube: about 15 minutes.
# On a real GPU set SIZES=1000,10000,100000,1000000,10000000,100000000 for the kernel table.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin collapse
c="${COLLAPSE:-./target/release/collapse}"  # COLLAPSE: another binary
ALL=cpu64,cpu32,wgsl,cube,cpu32-naive,cpu32-kahan,cpu32-f16
SIZES="${SIZES:-1000,10000,100000,1000000}"
mkdir -p results/drift

# 1-D Gaussian, MLE, M = 10: every precision reaches the floor and σ = 0 within 700 generations.
$c drift run --model gaussian --samples 10 --generations 700 --replicates 200 --seed 0 \
  --backends "$ALL" --out results/drift/gaussian-m10 | tee results/drift/gaussian-m10.txt

# M = 100: 50× more points per reduction (naive vs pairwise vs Kahan differ), 10× slower decay.
$c drift run --model gaussian --samples 100 --generations 5000 --replicates 24 --seed 0 \
  --backends cpu64,cpu32,wgsl,cpu32-naive,cpu32-kahan,cpu32-f16 \
  --out results/drift/gaussian-m100 | tee results/drift/gaussian-m100.txt

# GMM (shumailov-gmm truth, K = 2 full, EM each generation), M = 100.
$c drift run --model gmm --samples 100 --generations 600 --replicates 24 --seed 0 \
  --backends cpu64,cpu32,wgsl,cube,cpu32-kahan,cpu32-f16 \
  --out results/drift/gmm-m100 | tee results/drift/gmm-m100.txt

# Kernel-level error vs size and input scale.
$c drift kernels --backends cpu32,wgsl,cube,cpu32-naive,cpu32-kahan --sizes "$SIZES" \
  --out results/drift/kernels.csv > results/drift/kernels.txt
$c info > results/drift/machine.txt
