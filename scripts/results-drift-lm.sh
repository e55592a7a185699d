#!/usr/bin/env bash
# How much of the language model's collapse is arithmetic: the same small generational LM run
# (same seed, same Philox streams) on cpu64, cpu32, wgsl and cube, then a comparison of their
# validation losses per generation and of the text each generation sampled. The GPU backends run
# on whatever adapter wgpu picks (lavapipe on a machine without a GPU: correct, slow).
# Writes results/drift-lm/{cpu64,cpu32,wgsl,cube}/ and results/drift-lm/compare.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin collapse
c=./target/release/collapse
out=results/drift-lm
for b in cpu64 cpu32 wgsl cube; do
  rm -rf "$out/$b"
  $c run --model lm --samples 200 --generations 5 --replicates 2 --policy replace --seed 3 \
    --lm-width 32 --lm-layers 1 --lm-heads 2 --lm-context 32 --lm-steps 60 --lm-batch 8 \
    --backend "$b" --out "$out/$b"
  rm -rf "$out/$b/weights"
done
python3 - "$out" <<'PY' | tee "$out/compare.txt"
import csv, os, sys
d = sys.argv[1]
bs = ["cpu64", "cpu32", "wgsl", "cube"]
rows = {b: list(csv.DictReader(open(os.path.join(d, b, "metrics.csv")))) for b in bs}
gens = sorted({int(r["generation"]) for r in rows["cpu64"]})
print("validation loss (nats/byte), mean over replicates, and |difference| to cpu64")
print(f"{'gen':>4} " + " ".join(f"{b:>10}" for b in bs) + "   " + " ".join(f"{'Δ' + b:>10}" for b in bs[1:]))
for g in gens:
    v = {b: sum(float(r["val_loss"]) for r in rows[b] if int(r["generation"]) == g) / 2 for b in bs}
    print(f"{g:>4} " + " ".join(f"{v[b]:>10.6f}" for b in bs) + "   "
          + " ".join(f"{abs(v[b] - v['cpu64']):>10.2e}" for b in bs[1:]))
print()
print("sampled text of replicate 0 (samples/gNNNN.txt): first generation that differs from cpu64's")
for b in bs[1:]:
    first = next((g for g in gens
                  if open(os.path.join(d, b, "samples", f"g{g:04}.txt"), "rb").read()
                  != open(os.path.join(d, "cpu64", "samples", f"g{g:04}.txt"), "rb").read()), None)
    print(f"{b:>6}: {'never (identical through generation %d)' % gens[-1] if first is None else first}")
PY
