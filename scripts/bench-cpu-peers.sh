#!/usr/bin/env bash
# The cpu32 backend against what a user without a GPU would pick instead, back to back on this
# machine, 2 threads on both sides, f32 on both sides (scikit-learn has only f64 EM):
#   sgemm    `collapse bench matmul --backends cpu32` (squares 256-2048 and every shape of the
#            default LM and VAE, --models) vs PyTorch CPU (MKL) `torch.mm` on the same shapes
#            and transposes (scripts/peer-torch-matmul.py --device cpu --from-csv)
#   LM       `collapse bench lm` (training tokens/s, KV-cache sampling tokens/s; C=128, L=4,
#            H=4, T=128, batch 16) vs benches/peers/lm_torch.py
#   VAE      `collapse bench vae` at batch 128 and 1024 vs benches/peers/vae_torch.py
#   GMM EM   `collapse bench gmm` ([100k,16]→32 full and diag, [1M,8]→16 full) vs
#            benches/peers/sklearn_gmm.py (scikit-learn GaussianMixture, float64, OpenBLAS)
# Each figure is measured ROUNDS times (default 3), ours then the peer's in each round, and the
# table reports the medians, their ratio and the issue's target (sgemm ≥ 0.95×, LM training
# ≥ 1.2×, sampling ≥ 2×, VAE ≥ 1.2×, GMM ≥ 15×). Warm-ups are excluded on both sides.
#
# It installs nothing. The peers need PyTorch (CPU) and scikit-learn in a Python outside the
# repository, e.g.
#   python3 -m venv ~/peers && ~/peers/bin/pip install torch scikit-learn threadpoolctl
#   PYTHON=~/peers/bin/python bash scripts/bench-cpu-peers.sh
# (the PyPI torch wheel brings CUDA libraries it does not use here; the CPU-only wheel from
# download.pytorch.org/whl/cpu is smaller where that index can be reached).
#
# Usage: bash scripts/bench-cpu-peers.sh [OUTDIR]   (default results/cpu-vs-peers)
#   env: PYTHON (default python3), ROUNDS (default 3), PARTS (default "matmul lm vae gmm")
# Writes OUTDIR/{machine.txt,table.md,table.csv} and the raw per-round CSVs in OUTDIR/raw/.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-results/cpu-vs-peers}
PY=${PYTHON:-python3}
ROUNDS=${ROUNDS:-3}
PARTS=${PARTS:-matmul lm vae gmm}
if ! "$PY" -c "import torch, sklearn, threadpoolctl" 2>/dev/null; then
  cat >&2 <<EOF
bench-cpu-peers: '$PY' cannot import torch, sklearn and threadpoolctl (the peers).
Make a Python for them outside the repository and point PYTHON at it:
  python3 -m venv ~/peers && ~/peers/bin/pip install torch scikit-learn threadpoolctl
  PYTHON=~/peers/bin/python bash scripts/bench-cpu-peers.sh
EOF
  exit 2
fi
cargo build --release --bin collapse
c=./target/release/collapse
mkdir -p "$out/raw"
# Two threads on every side: ours (rayon), PyTorch (intra-op), numpy's BLAS (scikit-learn).
export COLLAPSE_THREADS=2 OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "git: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo -dirty)"
  echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores online, threads used: 2"
  echo "avx512f: $(grep -qw avx512f /proc/cpuinfo && echo yes || echo no), avx2: $(grep -qw avx2 /proc/cpuinfo && echo yes || echo no)"
  echo "peers: $("$PY" -c 'import torch, sklearn, numpy; print("torch", torch.__version__, "(BLAS: MKL)" if torch.backends.mkl.is_available() else "", "scikit-learn", sklearn.__version__, "numpy", numpy.__version__)')"
  echo "rounds: $ROUNDS (medians reported)"
  echo "command: bash scripts/bench-cpu-peers.sh $*"
} | tee "$out/machine.txt"
lscpu > "$out/lscpu.txt"
data=target/bench-data
mkdir -p "$data"
for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r of $ROUNDS"
  if [[ " $PARTS " == *" matmul "* ]]; then
    $c bench matmul --backends cpu32 --sizes 256,512,1024,2048 --models --reps 30 \
      --out "$out/raw/matmul-$r.csv" --force --no-records > "$out/raw/matmul-$r.txt"
    "$PY" scripts/peer-torch-matmul.py --device cpu --threads 2 --reps 30 \
      --from-csv "$out/raw/matmul-$r.csv" --out "$out/raw/matmul-torch-$r.csv" > /dev/null
  fi
  if [[ " $PARTS " == *" lm "* ]]; then
    $c bench lm --backends cpu32 --steps 10 --out "$out/raw/lm-$r.csv" --force --no-records \
      > "$out/raw/lm-$r.txt"
    "$PY" benches/peers/lm_torch.py --steps 10 --out "$out/raw/lm-torch-$r.csv" > /dev/null
  fi
  if [[ " $PARTS " == *" vae "* ]]; then
    $c bench vae --backends cpu32 --batches 128,1024 --steps 20 --out "$out/raw/vae-$r.csv" \
      --force --no-records > "$out/raw/vae-$r.txt"
    "$PY" benches/peers/vae_torch.py --batches 128,1024 --steps 20 --out "$out/raw/vae-torch-$r.csv" \
      > /dev/null
  fi
  if [[ " $PARTS " == *" gmm "* ]]; then
    $c bench gmm --backends cpu32 --iters 5 --data-dir "$data" --out "$out/raw/gmm-$r.csv" --force \
      --no-records > "$out/raw/gmm-$r.txt"
    # numpy's OpenBLAS runs its best kernel only without the OPENBLAS_* overrides some machines set.
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$PY" benches/peers/sklearn_gmm.py "$data" \
      "$out/raw/gmm-sklearn-$r.csv" 5 > /dev/null
  fi
done
"$PY" scripts/cpu-peers-table.py "$out" "$ROUNDS" | tee "$out/table.md"
