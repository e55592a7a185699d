#!/usr/bin/env bash
# On a machine with an NVIDIA GPU, no Rust toolchain and no network: run the binaries that
# scripts/gpu-build.sh put in gpu-bundle/ and write records into OUTDIR, in order of value, inside
# a BUDGET of 300 s (every step has its own limit and gets at most what is left; a step with
# under 10 s left is skipped). Every step writes its output as it goes; the summary at the end
# (also printed when the script is interrupted or a step fails) shows whatever finished.
#   1. nvidia-smi, `collapse info` (adapter, limits, features, shader mode)
#   2. `collapse check` on wgsl and cube (every kernel vs the golden fingerprints)
#   3. EM per iteration at [1M, 64] → 64 diag and full, wgsl and cube, with the per-kernel
#      device-time table and waits per iteration (`bench gmm`)
#   4. matmul: wgsl and cube at 512-4096 and the models' shapes with the autotuned tile; every
#      WGSL tile at the two largest sizes (COLLAPSE_MATMUL_TILE); trusted vs checked shader
#      modules (COLLAPSE_CHECKED_SHADERS=1); cuBLAS through PyTorch (TF32 off) on the same card
#   5. the WGSL GMM sampler's write rate vs the card's copy bandwidth (`bench sample`)
#   6. VAE training steps/s (cpu32, wgsl, cube; per-kernel table, dispatches per step)
#   7. LM training and sampling tokens/s (cpu32, wgsl, cube; per-kernel table, dispatches)
#   8. PyTorch CUDA peers of the VAE and the LM on the same card
# cpu32 rows run only where they finish in seconds (VAE, LM); the GMM and matmul rows at GPU
# sizes are wgsl and cube only.
# Every bench step also writes its JSON records (src/measure/records.rs) into OUTDIR/records.
# Usage: bash scripts/gpu-check.sh OUTDIR
# (OUTDIR holds ~25 files; through the device tool, whose $OUT returns at most 8, run
#  `bash scripts/gpu-check.sh /tmp/gc; tar czf "$OUT/gpu-check.tgz" -C /tmp gc`.)
# Small sizes for a dry run on lavapipe (same steps, minutes instead of a card's seconds):
#   GPU_CHECK_DRY=1 bash scripts/gpu-check.sh /tmp/gc-dry
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: gpu-check.sh OUTDIR}
mkdir -p "$out/records"
out=$(cd "$out" && pwd)
B=gpu-bundle
[ -d "$B" ] || { echo "no $B/: run scripts/gpu-build.sh on the build machine and carry $B"; exit 2; }
export WGPU_BACKEND=${WGPU_BACKEND:-vulkan}
# Vulkan loader (the NVIDIA driver ships the ICD; the loader may be missing).
if ! ldconfig -p | grep -q libvulkan.so.1; then
  for f in "$B"/debs/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
if [ -e /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && ! ls /usr/share/vulkan/icd.d/nvidia* >/dev/null 2>&1; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
bin=/tmp/collapse-gpu
mkdir -p "$bin"
for f in "$B"/*.gz; do n=$(basename "$f" .gz); gunzip -c "$f" > "$bin/$n"; chmod +x "$bin/$n"; done
C="$bin/collapse"
R=(--records "$out/records")

# Sizes: the card's, or small ones for a dry run on lavapipe.
if [ "${GPU_CHECK_DRY:-0}" = 1 ]; then
  GMM_SHAPES=${GMM_SHAPES:---shape 4096x8x4:diag --shape 4096x8x4:full}
  MATMUL_SIZES=${MATMUL_SIZES:-64,128}
  TILE_SIZES=${TILE_SIZES:-128}
  SAMPLE_N=${SAMPLE_N:-65536}
  VAE_BATCHES=${VAE_BATCHES:-16}
  LM_ARGS=${LM_ARGS:---width 32 --layers 1 --heads 2 --context 16 --batch 2 --steps 2}
  PEER_LM_ARGS=${PEER_LM_ARGS:---width 32 --layers 1 --heads 2 --context 16 --batch 2 --steps 2}
  STEPS=${STEPS:-2}
  BUDGET=${BUDGET:-900}
else
  GMM_SHAPES=${GMM_SHAPES:---shape 1000000x64x64:diag --shape 1000000x64x64:full}
  MATMUL_SIZES=${MATMUL_SIZES:-512,1024,2048,4096}
  TILE_SIZES=${TILE_SIZES:-2048,4096}
  SAMPLE_N=${SAMPLE_N:-16777216}
  VAE_BATCHES=${VAE_BATCHES:-128,1024}
  LM_ARGS=${LM_ARGS:---steps 5}
  PEER_LM_ARGS=${PEER_LM_ARGS:---steps 10}
  STEPS=${STEPS:-10}
  BUDGET=${BUDGET:-300}
fi
t() { local left=$(( BUDGET - SECONDS )); [ "$left" -lt 10 ] && { echo "(skipped: time budget spent)"; return 124; }
      timeout $(( $1 < left ? $1 : left )) "${@:2}"; }
step() { echo; echo "== [$SECONDS s] $*"; }
check_rc=unset

summary() {
  echo
  echo "== summary ($(head -2 "$out/nvidia-smi.csv" 2>/dev/null | tail -1); build $(cat "$B/git-rev" 2>/dev/null); ${SECONDS} s) =="
  echo "collapse check: $(case $check_rc in 0) echo passed;; unset) echo "did not run";; *) echo "FAILED (rc $check_rc)";; esac)"
  grep -hE "^\s*(backend|cpu32|wgsl|cube)\b|waits|dispatches" "$out/gmm.txt" 2>/dev/null | head -20 || true
  grep -hE "GB/s|copy bandwidth" "$out/sample.txt" 2>/dev/null || true
  grep -hE "^(backend|cpu32|wgsl|cube)\b" "$out/vae.txt" "$out/lm.txt" 2>/dev/null || true
  grep -hE "^(batch|torch|peer)" "$out/peers.txt" 2>/dev/null | head -10 || true
  [ -s "$out/tiles.csv" ] && { echo "matmul per tile (wgsl, GFLOP/s):"; column -s, -t < "$out/tiles.csv"; }
  python3 - "$out" <<'PY' || true
import csv, os, sys
out = sys.argv[1]
try:
    ours = list(csv.DictReader(open(os.path.join(out, "matmul.csv"))))
except OSError as e:
    sys.exit(f"matmul summary: {e}")
try:
    peer = {r["shape"]: float(r["gflops"]) for r in csv.DictReader(open(os.path.join(out, "matmul-torch.csv")))}
except OSError:
    peer = {}
print(f"{'shape':<14} {'wgsl':>9} {'cube':>9} {'cuBLAS':>9} {'wgsl/cuBLAS':>12} {'cube/cuBLAS':>12}  (GFLOP/s)")
for shape in dict.fromkeys(r["shape"] for r in ours):
    g = {r["backend"]: float(r["gflops"]) for r in ours if r["shape"] == shape}
    c = peer.get(shape)
    w, k = g.get("wgsl"), g.get("cube")
    f = lambda v: f"{v:9.1f}" if v else f"{'-':>9}"
    r = lambda v: f"{v / c:12.1%}" if v and c else f"{'-':>12}"
    print(f"{shape:<14} {f(w)} {f(k)} {f(c)} {r(w)} {r(k)}")
PY
}
trap summary EXIT

# 1. The card and the adapter.
step "1. nvidia-smi, collapse info"
{ nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv || true; } > "$out/nvidia-smi.csv" 2>&1
cat "$out/nvidia-smi.csv"
t 30 "$C" info 2>&1 | tee "$out/info.txt"
t 30 "$C" info --json > "$out/info.json" 2>&1

# 2. Correctness on the card.
step "2. collapse check (wgsl, cube)"
t 60 "$C" check --backends wgsl,cube 2>&1 | tee "$out/check.txt"
check_rc=${PIPESTATUS[0]}

# 3. EM at GPU sizes (bench gmm writes each CSV row as its shape finishes).
step "3. bench gmm"
# shellcheck disable=SC2086
t 60 "$C" bench gmm --backends wgsl,cube --iters 3 $GMM_SHAPES --out "$out/gmm.csv" --force \
  --kernels "$out/gmm-kernels.csv" "${R[@]}" 2>&1 | tee "$out/gmm.txt"

# 4. Matmul: autotuned tile on both GPU backends, every WGSL tile, checked vs trusted, cuBLAS.
step "4a. bench matmul (autotuned tile)"
t 60 "$C" bench matmul --backends wgsl,cube --sizes "$MATMUL_SIZES" --models --reps 5 \
  --out "$out/matmul.csv" --force "${R[@]}" 2>&1 | tee "$out/matmul.txt"
step "4b. every WGSL tile; trusted vs checked shader modules"
echo "tile,checks,shape,gflops" > "$out/tiles.csv"
# The tile names, from the error an unknown name gets ("choose one of A, B, ...").
tiles=$(COLLAPSE_MATMUL_TILE=? "$C" bench matmul --backends wgsl --sizes 64 --no-records \
  --out /tmp/gc-tile.csv --force 2>&1 | sed -n 's/.*choose one of //p' | tr -d ',')
for tile in $tiles; do
  for checks in 0 1; do
    [ "$checks" = 1 ] && [ "$tile" != "128x128k8_8x8" ] && [ "$tile" != "64x64k16_4x4" ] && continue
    COLLAPSE_MATMUL_TILE=$tile COLLAPSE_CHECKED_SHADERS=$checks t 20 "$C" bench matmul --backends wgsl \
      --sizes "$TILE_SIZES" --reps 3 --out "/tmp/gc-tile.csv" --force --no-records > "/tmp/gc-tile.txt" 2>&1
    python3 - "$tile" "$checks" /tmp/gc-tile.csv >> "$out/tiles.csv" <<'PY' || true
import csv, sys
for r in csv.DictReader(open(sys.argv[3])):
    if r["backend"] == "wgsl":
        print(f"{sys.argv[1]},{'checked' if sys.argv[2] == '1' else 'trusted'},{r['shape']},{float(r['gflops']):.1f}")
PY
  done
done
cat "$out/tiles.csv"
step "4c. cuBLAS through PyTorch (TF32 off)"
t 30 python3 scripts/peer-torch-matmul.py --from-csv "$out/matmul.csv" --out "$out/matmul-torch.csv" 2>&1 \
  | tee "$out/matmul-torch.txt"

# 5. Device GB/s: copy-bandwidth probe vs the WGSL GMM sampler's writes (issue: ≥ 60%).
step "5. bench sample"
t 30 "$C" bench sample --samples "$SAMPLE_N" "${R[@]}" 2>&1 | tee "$out/sample.txt"

# 6-7. Models: VAE and LM training (and LM sampling), per-kernel tables and dispatch counts.
step "6. bench vae"
t 40 "$C" bench vae --backends cpu32,wgsl,cube --batches "$VAE_BATCHES" --steps "$STEPS" \
  --out "$out/vae.csv" --force --kernels "$out/vae-kernels.csv" "${R[@]}" 2>&1 | tee "$out/vae.txt"
step "7. bench lm"
# shellcheck disable=SC2086
t 45 "$C" bench lm --backends cpu32,wgsl,cube $LM_ARGS --out "$out/lm.csv" --force \
  --kernels "$out/lm-kernels.csv" "${R[@]}" 2>&1 | tee "$out/lm.txt"

# 8. PyTorch CUDA peers on the same card.
step "8. PyTorch CUDA peers (VAE, LM)"
{
  t 30 python3 benches/peers/vae_torch.py --device cuda --batches "$VAE_BATCHES" --steps "$STEPS" --out "$out/vae-torch.csv"
  # shellcheck disable=SC2086
  t 30 python3 benches/peers/lm_torch.py --device cuda $PEER_LM_ARGS --out "$out/lm-torch.csv"
} 2>&1 | tee "$out/peers.txt"
exit 0
