#!/usr/bin/env bash
# Regenerate the generational results under results/ (each directory also holds the exact
# configuration in summary.json and state.json).
#   scripts/results-collapse.sh [shumailov] [gaussian] [gmm] [vae] [lm]   (default: all five)
# About 3 minutes on 2 cores with cpu32 for the first three, 5 for vae, 15 for lm.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin collapse
c=./target/release/collapse
B="${BACKEND:-cpu32}"
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(shumailov gaussian gmm vae lm)

for part in "${parts[@]}"; do
  case "$part" in
  shumailov)
    # Shumailov et al.'s GMM setting: 2 components, N = 1000 per generation, 2000 generations.
    rm -rf results/shumailov-gmm/replace   # keep the folder's README
    $c run --model gmm --truth shumailov-gmm --samples 1000 --generations 2000 --replicates 4 \
      --policy replace --seed 1 --backend "$B" --out results/shumailov-gmm/replace
    ;;
  gaussian | gmm | vae | lm)
    # Policy comparison: replace, accumulate, mix:0.1, verify:gen0:0.5.
    model=$part
    rm -rf "results/policies-$model"/{replace,accumulate,mix-0.1,verify-gen0-0.5,plots}
    case "$model" in
    gaussian) args=(--samples 100 --generations 500 --replicates 16) ;;
    gmm) args=(--samples 1000 --generations 200 --replicates 4) ;;
    # Fashion-MNIST (dataset-fashion-mnist): 5000 real images per replicate at generation 0.
    vae) args=(--samples 5000 --real-rows 5000 --generations 10 --replicates 3) ;;
    # Debian's fortunes: 1000 windows of 65 bytes per generation; C=64, L=2, T=64, 300 steps.
    lm) args=(--samples 1000 --generations 8 --replicates 2) ;;
    esac
    for p in replace accumulate mix:0.1 verify:gen0:0.5; do
      out="results/policies-$model/${p//:/-}"
      $c run --model "$model" "${args[@]}" --policy "$p" --seed 2 --backend "$B" --out "$out"
      # VAE and LM weights (2.6 MB / 0.9 MB per generation and replicate) stay out of the
      # repository: these runs cannot be resumed, rerun them instead.
      rm -rf "$out/weights"
    done
    $c plot results/policies-$model/replace results/policies-$model/accumulate \
      results/policies-$model/mix-0.1 results/policies-$model/verify-gen0-0.5 \
      --out "results/policies-$model/plots"
    ;;
  *) echo "unknown part $part (shumailov, gaussian, gmm, vae, lm)" >&2; exit 2 ;;
  esac
done
