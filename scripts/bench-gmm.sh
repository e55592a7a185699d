#!/usr/bin/env bash
# Time EM iterations of collapse-kernels and of scikit-learn on the same data, back to back, and
# record both under results/gmm/ with a ratio table.
# Usage: bash scripts/bench-gmm.sh [BACKENDS]   (default cpu64,cpu32; add wgsl,cube on a GPU)
set -euo pipefail
cd "$(dirname "$0")/.."
backends="${1:-cpu64,cpu32}"
out=results/gmm
data=target/bench-data
mkdir -p "$out" "$data"
cargo build --release --bin collapse
python3 -c "import sklearn" 2>/dev/null || pip install -q scikit-learn threadpoolctl
./target/release/collapse bench gmm --backends "$backends" --iters 5 --data-dir "$data" \
  --out "$out/collapse.csv" --force
# numpy's OpenBLAS runs its best kernel only without the OPENBLAS_* overrides some machines set.
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 benches/peers/sklearn_gmm.py "$data" \
  "$out/sklearn.csv" 5
python3 - "$out" <<'PY'
import csv, sys, platform, os
out = sys.argv[1]
ours = list(csv.DictReader(open(f"{out}/collapse.csv")))
peer = {(r["n"], r["d"], r["k"], r["covariance_type"]): float(r["seconds_per_iter"])
        for r in csv.DictReader(open(f"{out}/sklearn.csv"))}
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
lines = [f"machine: {cpu}, {os.cpu_count()} cores", "",
         "| backend | N | D | K | cov | ms/iter | scikit-learn ms/iter | speed-up |", "|---|---|---|---|---|---|---|---|"]
for r in ours:
    s = peer[(r["n"], r["d"], r["k"], r["covariance_type"])]
    t = float(r["seconds_per_iter"])
    lines.append(f"| {r['backend']} | {r['n']} | {r['d']} | {r['k']} | {r['covariance_type']} | "
                 f"{t*1e3:.1f} | {s*1e3:.1f} | {s/t:.2f}× |")
open(f"{out}/table.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
