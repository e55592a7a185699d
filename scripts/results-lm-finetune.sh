#!/usr/bin/env bash
# Shumailov et al.'s setting for the language model: every generation fine-tunes the generation-0
# model (trained on real text) on the previous generation's samples, instead of training from
# scratch. replace and accumulate, 8 generations × 2 replicates, the lm defaults otherwise
# (results/policies-lm). About 8 minutes on 2 cores. Writes results/lm-finetune/.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin collapse
c=./target/release/collapse
out=results/lm-finetune
rm -rf "$out"/{replace,accumulate,plots}
for p in replace accumulate; do
  $c run --model lm --lm-init gen0 --samples 1000 --generations 8 --replicates 2 --policy "$p" \
    --seed 2 --backend cpu32 --out "$out/$p"
  rm -rf "$out/$p/weights"
done
$c plot "$out/replace" "$out/accumulate" results/policies-lm/replace --out "$out/plots"
