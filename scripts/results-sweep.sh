#!/usr/bin/env bash
# Regenerate results/sweep-gaussian/: the sweep of results/sweep-gaussian/spec.toml (900 small
# runs) run locally with `collapse sweep run`, collected, and plotted with 95% CI bands; then the
# same spec through the local one-node Slurm (scripts/slurm-local.sh), collected again, and
# compared byte for byte. Timings go to results/sweep-gaussian/timings.csv with the machine.
#   scripts/results-sweep.sh            (about 2-4 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin collapse
c="$PWD/target/release/collapse"
R=results/sweep-gaussian
W="${SWEEP_WORK:-runs/sweep-gaussian}"   # the run directories (not committed: ~900 of them)
rm -rf "$W" "$R/plots" "$R/plots-log" "$R/collected.csv.gz" "$R/collected_summary.csv" "$R/metrics_dictionary.csv"
mkdir -p "$W"
now() { date +%s.%N; }

$c sweep plan "$R/spec.toml" --out "$W/local"
t0=$(now)
$c sweep run "$W/local"
t1=$(now)
$c sweep collect "$W/local"
$c plot "$W/local" --out "$R/plots"
$c plot "$W/local" --out "$R/plots-log" --log-y >/dev/null

# The same sweep through Slurm: an array of 900 tasks, 2 at a time (one per core).
eval "$(bash scripts/slurm-local.sh start | grep '^export')"
$c sweep plan "$R/spec.toml" --out "$W/slurm"
t2=$(now)
out=$($c sweep slurm "$W/slurm" --array-limit "$(nproc)" --submit)
echo "$out"
id=$(echo "$out" | sed -n 's/.*submitted as job \([0-9]*\).*/\1/p' | head -1)
while [ -n "$(squeue -h -j "$id" 2>/dev/null)" ]; do sleep 1; done
t3=$(now)
$c sweep status "$W/slurm"
$c sweep collect "$W/slurm"
cmp "$W/local/collected.csv" "$W/slurm/collected.csv"
cmp "$W/local/collected_summary.csv" "$W/slurm/collected_summary.csv"
echo "local and Slurm sweeps collect to identical tables"

gzip -9n -c "$W/local/collected.csv" > "$R/collected.csv.gz"
cp "$W/local/collected_summary.csv" "$W/local/metrics_dictionary.csv" "$R/"
jobs=$(($(wc -l < "$W/local/jobs.csv") - 1))
{
  echo "path,jobs,seconds,jobs_per_second,cpu"
  cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
  awk -v a="$t0" -v b="$t1" -v n="$jobs" -v cpu="$cpu" 'BEGIN{printf "sweep run (local),%d,%.1f,%.1f,%s (%d cores)\n", n, b-a, n/(b-a), cpu, '"$(nproc)"'}'
  awk -v a="$t2" -v b="$t3" -v n="$jobs" -v cpu="$cpu" 'BEGIN{printf "sweep slurm (local one-node Slurm),%d,%.1f,%.1f,%s (%d cores)\n", n, b-a, n/(b-a), cpu, '"$(nproc)"'}'
} > "$R/timings.csv"
cat "$R/timings.csv"
