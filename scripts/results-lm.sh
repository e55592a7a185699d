#!/usr/bin/env bash
# The language model's results under results/lm/ (about 12 minutes on 2 cores):
#   train/  `collapse train lm` on Debian's fortunes, the default model (C=128, L=4, H=4, T=128),
#           2000 steps of 16 sequences on cpu32: log.csv, model.json, samples.txt (weights not kept)
#   bench/  `collapse bench lm` (cpu32; cpu64 for 2 steps) and the PyTorch CPU peer
#           (benches/peers/lm_torch.py) on the same shape, back to back; ratio.txt
# The generational runs are `scripts/results-collapse.sh lm` (results/policies-lm/).
# Usage: scripts/results-lm.sh [train] [bench]   (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
parts=${*:-train bench}
cargo build --release --bin collapse
c=./target/release/collapse
if [[ " $parts " == *" train "* ]]; then
rm -rf results/lm/train
$c train lm --steps 2000 --eval-every 200 --out results/lm/train | tee results/lm/train.txt
rm -f results/lm/train/weights.npy
fi
[[ " $parts " == *" bench "* ]] || exit 0
mkdir -p results/lm/bench
$c bench lm --backends cpu32 --steps 20 --out results/lm/bench/collapse.csv
$c bench lm --backends cpu64 --steps 2 --out results/lm/bench/collapse-cpu64.csv --no-records
python3 benches/peers/lm_torch.py --steps 20 --out results/lm/bench/torch.csv
python3 - <<'PY' | tee results/lm/bench/ratio.txt
import csv
d = "results/lm/bench"
ours = next(csv.DictReader(open(f"{d}/collapse.csv")))
ref = next(csv.DictReader(open(f"{d}/collapse-cpu64.csv")))
torch = next(csv.DictReader(open(f"{d}/torch.csv")))
for k, name in [("train_tokens_per_s", "training"), ("sample_tokens_per_s", "sampling")]:
    print(f"{name}: cpu32 {float(ours[k]):.0f} tokens/s, cpu64 {float(ref[k]):.0f}, "
          f"PyTorch CPU {float(torch[k]):.0f}; cpu32/PyTorch = {float(ours[k]) / float(torch[k]):.2f}, "
          f"cpu32/cpu64 = {float(ours[k]) / float(ref[k]):.1f}")
PY
