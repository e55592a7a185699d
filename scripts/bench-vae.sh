#!/usr/bin/env bash
# VAE training throughput: `collapse bench vae` (cpu32, and cpu64 at batch 128) and the PyTorch CPU
# peer (benches/peers/vae_torch.py), back to back on this machine; prints both tables and the
# ratio cpu32 / PyTorch. Writes OUTDIR/{collapse.csv,torch.csv,ratio.txt} (default results/vae).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-results/vae}
mkdir -p "$out"
cargo build --release --bin collapse
c=./target/release/collapse
$c bench vae --backends cpu32 --batches 128,1024 --steps 30 --out "$out/collapse.csv"
$c bench vae --backends cpu64 --batches 128 --steps 5 --out "$out/collapse-cpu64.csv" --no-records
python3 benches/peers/vae_torch.py --batches 128,1024 --steps 30 --out "$out/torch.csv"
python3 - "$out" <<'PY' | tee "$out/ratio.txt"
import csv, sys
d = sys.argv[1]
ours = {int(r["batch"]): float(r["images_per_s"]) for r in csv.DictReader(open(f"{d}/collapse.csv"))}
torch = {int(r["batch"]): float(r["images_per_s"]) for r in csv.DictReader(open(f"{d}/torch.csv"))}
for b in sorted(ours):
    if b in torch:
        print(f"batch {b}: cpu32 {ours[b]:.0f} images/s, PyTorch CPU {torch[b]:.0f} images/s, "
              f"cpu32/PyTorch = {ours[b] / torch[b]:.2f}")
PY
