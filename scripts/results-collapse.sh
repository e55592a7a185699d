#!/usr/bin/env bash
# Regenerate the generational results under results/ (each directory also holds the exact
# configuration in summary.json and state.json). About 3 minutes on 2 cores with cpu32.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin collapse
c=./target/release/collapse
B="${BACKEND:-cpu32}"

# Shumailov et al.'s GMM setting: 2 components, N = 1000 per generation, 2000 generations, replace.
rm -rf results/shumailov-gmm/replace   # keep the folder's README
$c run --model gmm --truth shumailov-gmm --samples 1000 --generations 2000 --replicates 4 \
  --policy replace --seed 1 --backend "$B" --out results/shumailov-gmm/replace

# Policy comparison: replace, accumulate, mix:0.1, verify:gen0:0.5, for the 1-D Gaussian and the GMM.
for model in gaussian gmm; do
  rm -rf "results/policies-$model"/{replace,accumulate,mix-0.1,verify-gen0-0.5,plots}
  if [ "$model" = gaussian ]; then args=(--samples 100 --generations 500 --replicates 16);
  else args=(--samples 1000 --generations 200 --replicates 4); fi
  for p in replace accumulate mix:0.1 verify:gen0:0.5; do
    $c run --model "$model" "${args[@]}" --policy "$p" --seed 2 --backend "$B" \
      --out "results/policies-$model/${p//:/-}"
  done
  $c plot results/policies-$model/replace results/policies-$model/accumulate \
    results/policies-$model/mix-0.1 results/policies-$model/verify-gen0-0.5 \
    --out "results/policies-$model/plots"
done
