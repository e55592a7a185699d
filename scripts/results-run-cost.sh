#!/usr/bin/env bash
# Where a `collapse run` spends its time on the shape of issue 18 (Shumailov's GMM: 1000
# samples, 200 generations, 4 replicates, replace, cpu32), from the run's own timing line
# ("done in T s (fits F s, metrics M s, checkpoints C s in N commits, plots P s)"), REPS times
# per thread count. "fits" is the bare trajectory (each generation's pool and EM fit, what
# `experiment::simulate` computes); the rest is what a run directory adds.
# Writes results/run-cost/timings.csv and machine.txt.
#   scripts/results-run-cost.sh [REPS]     (about 10 s on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
reps="${1:-5}"
cargo build --release --bin collapse
c="$PWD/target/release/collapse"
R=results/run-cost
mkdir -p "$R"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
{
  echo "# $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD)"
  lscpu | grep -E '^(Model name|Thread|Core|Socket|L2 cache|L3 cache)'
} > "$R/machine.txt"
echo "threads,rep,total_s,fits_s,metrics_s,checkpoints_s,commits,plots_s" > "$R/timings.csv"
for t in 1 "$(nproc)"; do
  for rep in $(seq 1 "$reps"); do
    line=$($c --threads "$t" run --model gmm --truth shumailov-gmm --samples 1000 --generations 200 \
      --replicates 4 --policy replace --seed 1 --backend cpu32 --out "$work/t$t-$rep" 2>&1 | grep '^done in')
    echo "$line" | sed -E 's/^done in ([0-9.]+) s \(fits ([0-9.]+) s, metrics ([0-9.]+) s, checkpoints ([0-9.]+) s in ([0-9]+) commits?, plots ([0-9.]+) s\).*/'"$t,$rep"',\1,\2,\3,\4,\5,\6/' >> "$R/timings.csv"
  done
done
cat "$R/timings.csv"
