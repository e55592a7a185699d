#!/usr/bin/env bash
# Relative figures on lavapipe (a CPU Vulkan device: NOT GPU figures) for the GPU-readiness work
# of issue 21: the WGSL matmul at every tile shape with trusted shader modules (the default) and
# with naga's runtime checks (COLLAPSE_CHECKED_SHADERS=1), and the cube matmul both ways, at one
# size small enough for lavapipe. Writes results/gpu-prep/matmul-lavapipe.csv and prints it.
# Usage: bash scripts/results-gpu-prep.sh   (needs `cargo build --release` first)
set -euo pipefail
cd "$(dirname "$0")/.."
C=${COLLAPSE_BIN:-target/release/collapse}
out=results/gpu-prep
mkdir -p "$out"
size=${SIZE:-256}
tiles=$(COLLAPSE_MATMUL_TILE=? "$C" bench matmul --backends wgsl --sizes 64 --no-records \
  --out /tmp/gp-tile.csv --force 2>&1 | sed -n 's/.*choose one of //p' | tr -d ',' || true)
[ -n "$tiles" ] || { echo "could not list the matmul tiles (no adapter?)"; exit 1; }
{
  echo "# lscpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(date -u +%F); $(git rev-parse --short HEAD)"
  echo "# command: bash scripts/results-gpu-prep.sh (SIZE=$size; bench matmul --reps 5, median)"
  echo "backend,tile,checks,shape,ms,gflops"
  for checks in 0 1; do
    for tile in $tiles; do
      COLLAPSE_MATMUL_TILE=$tile COLLAPSE_CHECKED_SHADERS=$checks "$C" bench matmul --backends wgsl \
        --sizes "$size" --reps 5 --out /tmp/gp-mm.csv --force --no-records > /dev/null 2>&1
      python3 - "$tile" "$checks" <<'PY'
import csv, sys
for r in csv.DictReader(open("/tmp/gp-mm.csv")):
    if r["backend"] == "wgsl":
        c = "checked" if sys.argv[2] == "1" else "trusted"
        print(f"wgsl,{sys.argv[1]},{c},{r['shape']},{float(r['seconds']) * 1e3:.3f},{float(r['gflops']):.2f}")
PY
    done
    COLLAPSE_CHECKED_SHADERS=$checks "$C" bench matmul --backends cube --sizes "$size" --reps 5 \
      --out /tmp/gp-mm.csv --force --no-records > /dev/null 2>&1
    python3 - "$checks" <<'PY'
import csv, sys
for r in csv.DictReader(open("/tmp/gp-mm.csv")):
    if r["backend"] == "cube":
        c = "checked" if sys.argv[1] == "1" else "trusted"
        print(f"cube,64x64k16_4x4,{c},{r['shape']},{float(r['seconds']) * 1e3:.3f},{float(r['gflops']):.2f}")
PY
  done
} | tee "$out/matmul-lavapipe.csv"
