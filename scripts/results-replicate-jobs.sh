#!/usr/bin/env bash
# results/replicate-jobs/: what running a generation's replicates at once (`collapse run
# --replicate-jobs J`) gains, per model and backend, and the check that the numbers do not
# depend on it (metrics.csv byte-identical to J = 1). Times are the CLI's own ("done in X s",
# which includes writing plots). About 6 minutes on 2 cores with lavapipe.
#   usage: scripts/results-replicate-jobs.sh [JOBS...]   (default: 1 2 4)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin collapse
c=./target/release/collapse
out=results/replicate-jobs
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
jobs=("${@:-1}")
[ $# -eq 0 ] && jobs=(1 2 4)
mkdir -p "$out"
{
  echo "# machine"
  lscpu | grep -E "Model name|^CPU\(s\)" || true
  $c info 2>&1 | head -20
} > "$out/machine.txt"
csv="$out/timings.csv"
echo "case,model,backend,replicates,generations,samples,jobs,seconds,speedup_vs_1,identical_to_jobs_1" > "$csv"
# name | backend | flags
cases=(
  "gaussian-cpu64|cpu64|--model gaussian --replicates 100 --generations 1000 --samples 100"
  "gmm-cpu64|cpu64|--model gmm --replicates 8 --generations 100 --samples 1000"
  "gmm-cpu32|cpu32|--model gmm --replicates 8 --generations 100 --samples 1000"
  "gmm-wgsl|wgsl|--model gmm --replicates 8 --generations 50 --samples 1000"
  "gmm-cube|cube|--model gmm --replicates 8 --generations 50 --samples 1000"
  "vae-cpu32|cpu32|--model vae --replicates 4 --generations 2 --real-rows 1000 --samples 1000 --vae-hidden 64 --vae-latent 8 --vae-epochs 2"
  "vae-wgsl|wgsl|--model vae --replicates 4 --generations 2 --real-rows 1000 --samples 1000 --vae-hidden 64 --vae-latent 8 --vae-epochs 2"
  "lm-cpu32|cpu32|--model lm --replicates 4 --generations 1 --samples 64 --lm-width 32 --lm-layers 1 --lm-heads 2 --lm-context 32 --lm-steps 40 --lm-batch 8"
  "lm-wgsl|wgsl|--model lm --replicates 4 --generations 1 --samples 64 --lm-width 32 --lm-layers 1 --lm-heads 2 --lm-context 32 --lm-steps 40 --lm-batch 8"
)
for entry in "${cases[@]}"; do
  IFS='|' read -r name backend flags <<<"$entry"
  base=""
  for j in "${jobs[@]}"; do
    dir="$tmp/$name-$j"
    # shellcheck disable=SC2086
    secs=$($c run $flags --backend "$backend" --seed 1 --replicate-jobs "$j" --out "$dir" 2>/dev/null |
      sed -n 's/^done in \([0-9.]*\) s.*/\1/p')
    [ -z "$base" ] && base=$secs
    same=yes
    cmp -s "$tmp/$name-${jobs[0]}/metrics.csv" "$dir/metrics.csv" || same=no
    model=$(sed -n 's/.*--model \([a-z]*\).*/\1/p' <<<"$flags")
    reps=$(sed -n 's/.*--replicates \([0-9]*\).*/\1/p' <<<"$flags")
    gens=$(sed -n 's/.*--generations \([0-9]*\).*/\1/p' <<<"$flags")
    samples=$(sed -n 's/.*--samples \([0-9]*\).*/\1/p' <<<"$flags")
    speed=$(python3 -c "print(f'{$base / $secs:.2f}')")
    echo "$name,$model,$backend,$reps,$gens,$samples,$j,$secs,$speed,$same" | tee -a "$csv"
  done
done
