#!/usr/bin/env bash
# Regenerate results/verify-add/ (issue 20): on cpu32, this machine's cores.
#  1. add:3 generation 0 alone (the accuracy target: >= 90% held-out in <= 10 minutes), into
#     results/verify-add/add3-gen0/ (metrics.csv, summary.json, eval/ predictions).
#  2. spec.toml: verifiers none / oracle / noisy:0.1 / noisy:0.3 / confidence:0.5 under replace
#     and accumulate on add:2, 3 replicates, 8 generations; collected with 95% CIs and plotted.
#  3. noisy-spec.toml: noisy:P for P = 0 .. 0.5 under replace (verifier quality as a dial).
# The run directories go to runs/verify-add/ (not committed). About 35 minutes on 2 cores.
#   scripts/results-verify-add.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin collapse
c="$PWD/target/release/collapse"
R=results/verify-add
W="${VERIFY_WORK:-runs/verify-add}"
rm -rf "$W" "$R/add3-gen0" "$R/grid" "$R/noisy"
mkdir -p "$W" "$R/grid" "$R/noisy"
{
  echo "# $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD)"
  lscpu | grep -E '^(Model name|Thread|Core|Socket)'
} > "$R/machine.txt"

$c run --model task --task add:3 --generations 0 --samples 20000 --replicates 1 --task-eval 500 \
  --lm-width 128 --lm-layers 2 --lm-heads 4 --lm-context 12 --lm-steps 4000 --lm-batch 64 \
  --lm-lr 0.003 --backend cpu32 --no-plots --out "$W/add3-gen0" 2>&1 | tee "$W/add3-gen0.log"
mkdir -p "$R/add3-gen0"
cp "$W/add3-gen0/metrics.csv" "$W/add3-gen0/summary.json" "$R/add3-gen0/"
cp -r "$W/add3-gen0/eval" "$R/add3-gen0/"
grep '^done in' "$W/add3-gen0.log" > "$R/add3-gen0/time.txt"

for s in grid noisy; do
  spec="$R/spec.toml"; [ "$s" = noisy ] && spec="$R/noisy-spec.toml"
  $c sweep plan "$spec" --out "$W/$s"
  t0=$(date +%s)
  $c sweep run "$W/$s" --jobs "$(nproc)"
  echo "$s: $(( $(date +%s) - t0 )) s for $(ls "$W/$s/jobs" | wc -l) jobs on $(nproc) cores" >> "$R/machine.txt"
  $c sweep collect "$W/$s"
  cp "$W/$s/collected_summary.csv" "$R/$s/"
  gzip -9n -c "$W/$s/collected.csv" > "$R/$s/collected.csv.gz"
  $c plot "$W/$s" --out "$R/$s/plots"
done
# One job's audit files, for reading: replace + noisy:0.3, replicate 0.
mkdir -p "$R/audit-replace-noisy0.3"
j=$(awk -F, '$3=="replace" && $4=="noisy:0.3" {print $1}' "$W/grid/jobs.csv")
cp -r "$W/grid/jobs/$(printf %05d "$j")/pools" "$W/grid/jobs/$(printf %05d "$j")/eval" "$R/audit-replace-noisy0.3/"
find "$R/audit-replace-noisy0.3" -name '*-r[12].tsv' -delete
