#!/usr/bin/env bash
# On a machine with an NVIDIA GPU, no Rust toolchain and no network: run the binaries that
# scripts/gpu-build.sh put in gpu-bundle/ and write records into OUTDIR.
#   collapse info, collapse check (every kernel vs the golden fingerprints, all backends),
#   collapse bench gmm at GPU sizes ([1M, 64] → 64 diag and full) on cpu32, wgsl and cube,
#   collapse bench sample (copy bandwidth vs the sampler's write rate, GPU timestamps),
#   the criterion sampling bench (samples/s, bytes/s),
#   collapse bench matmul (cpu32, wgsl, cube; squares 512-4096 and the models' shapes) and the
#   PyTorch/cuBLAS f32 peer (TF32 off) on the same card, with the wgsl/cuBLAS ratio,
#   collapse bench vae (cpu32, wgsl and cube training steps/s),
#   collapse bench lm (cpu32, wgsl, cube: training and sampling tokens/s, wgsl's matmul share)
#   and the PyTorch peer of the same transformer on the card (benches/peers/lm_torch.py),
#   `collapse train lm` (queued kernels) and `collapse run --replicate-jobs 1` vs one per core,
# then prints a short table. Finishes inside 10 minutes: each step has a timeout and all share a
# BUDGET of 540 s.
# Every bench step also writes its JSON records (see src/measure/records.rs) into OUTDIR/records.
# Usage: bash scripts/gpu-check.sh OUTDIR
# (OUTDIR holds ~16 files; through the device tool, whose $OUT returns at most 8, run
#  `bash scripts/gpu-check.sh /tmp/gc; tar czf "$OUT/gpu-check.tgz" -C /tmp gc`.)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: gpu-check.sh OUTDIR}
mkdir -p "$out"
B=gpu-bundle
[ -d "$B" ] || { echo "no $B/: run scripts/gpu-build.sh on the build machine and carry $B"; exit 2; }
# 1. Vulkan loader (the NVIDIA driver ships the ICD; the loader may be missing).
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
{ nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv || true; } > "$out/nvidia-smi.csv" 2>&1
cat "$out/nvidia-smi.csv"
echo "build: $(cat "$B/git-rev" 2>/dev/null)"
# Time budget: every step gets at most its own limit and what is left of BUDGET seconds (default
# 540), so the whole script ends inside 10 minutes; a step with under 15 s left is skipped.
BUDGET=${BUDGET:-540}
t() { local left=$(( BUDGET - SECONDS )); [ "$left" -lt 15 ] && { echo "(skipped: time budget spent)"; return 0; }
      timeout $(( $1 < left ? $1 : left )) "${@:2}"; }
# 2. Adapter and correctness.
t 60 "$C" info | tee "$out/info.txt"
t 60 "$C" info --json > "$out/info.json"
t 180 "$C" check 2>&1 | tee "$out/check.txt"
check_rc=${PIPESTATUS[0]}
# 3. EM at GPU sizes; the CPU row is the same-run reference.
# GMM_SHAPES overrides the shapes (e.g. small ones to try the script on lavapipe).
shapes=${GMM_SHAPES:---shape 1000000x64x64:diag --shape 1000000x64x64:full}
t 150 "$C" bench gmm --backends cpu32,wgsl,cube --iters 3 $shapes --out "$out/gmm.csv" \
  --records "$out/records" 2>&1 \
  | tee "$out/gmm.txt"
# 4. Device GB/s: copy-bandwidth probe vs the WGSL GMM sampler's writes (issue: ≥ 60%).
t 60 "$C" bench sample --samples ${SAMPLE_N:-16777216} --records "$out/records" 2>&1 \
  | tee "$out/sample.txt"
# 5. Sampling bench (criterion writes target/criterion under the working directory).
if [ -x "$bin/bench-sampling" ]; then
  # (criterion's own files stay in /tmp: OUTDIR keeps to 8 files.)
  abs_out=$(cd "$out" && pwd)
  (mkdir -p /tmp/crit && cd /tmp/crit && COLLAPSE_RECORDS_DIR="$abs_out/records" \
     timeout $(( BUDGET - SECONDS > 90 ? 90 : (BUDGET - SECONDS > 15 ? BUDGET - SECONDS : 1) )) \
     "$bin/bench-sampling" --bench --warm-up-time 1 \
     --measurement-time 3 "gmm" > "$abs_out/sampling-bench.txt" 2>&1) || true
  grep "M samples" "$out/sampling-bench.txt" || true
fi
# 6. Matmul: our kernels and cuBLAS (through PyTorch, TF32 off) on the same card.
msizes=${MATMUL_SIZES:-512,1024,2048,4096}
t 120 "$C" bench matmul --backends cpu32,wgsl,cube --sizes "$msizes" --models --reps 5 \
  --out "$out/matmul.csv" --records "$out/records" 2>&1 | tee "$out/matmul.txt"
t 60 python3 scripts/peer-torch-matmul.py --sizes "$msizes" --models --out "$out/matmul-torch.csv" 2>&1 \
  | tee "$out/matmul-torch.txt" || true
# 7. VAE training steps on the card (wgsl, cube) beside cpu32.
t 60 "$C" bench vae --backends cpu32,wgsl,cube --batches 128,1024 --steps 10 --out "$out/vae.csv" \
  --records "$out/records" 2>&1 | tee "$out/vae.txt"
# 8. Language model: training and sampling tokens/s, and the share of device time in matmul.
t 60 "$C" bench lm --backends cpu32,wgsl,cube --steps 5 --out "$out/lm.csv" \
  --records "$out/records" 2>&1 | tee "$out/lm.txt"
t 40 python3 benches/peers/lm_torch.py --device cuda --steps 10 --out "$out/lm-torch.csv" 2>&1 \
  | tee -a "$out/lm.txt" || true
# 9. What runs use: queued kernels (one command buffer per up to 256 kernels) in `collapse train
#    lm` (tokens/s beside step 8's waited bench), and a generation's replicates at once
#    (`collapse run --replicate-jobs`): one at a time vs one per core, metrics must be identical.
{
  t 60 "$C" train lm --steps 20 --eval-every 1000 --backend wgsl --out /tmp/gc-train-lm 2>&1 \
    | tail -2 | sed "s/^/train lm wgsl (queued kernels; step, loss, val, ppl, s, tok\/s): /"
  for j in 1 0; do
    rm -rf "/tmp/gc-run-$j"
    t 60 "$C" run --model gmm --replicates 16 --generations 20 --samples 1000 --backend wgsl \
      --replicate-jobs "$j" --out "/tmp/gc-run-$j" 2>&1 | sed -n "s/^done in/replicate-jobs $j: done in/p"
  done
  cmp -s /tmp/gc-run-1/metrics.csv /tmp/gc-run-0/metrics.csv \
    && echo "replicate-jobs: metrics identical" || echo "replicate-jobs: METRICS DIFFER"
} 2>&1 | tee "$out/runs.txt"
echo
echo "== summary ($(head -2 "$out/nvidia-smi.csv" | tail -1)) =="
echo "collapse check: $([ "$check_rc" = 0 ] && echo passed || echo "FAILED (rc $check_rc)")"
grep -v '^wrote' "$out/gmm.txt" 2>/dev/null || true
grep -E "GB/s|copy bandwidth" "$out/sample.txt" 2>/dev/null || true
grep -E "^(backend|cpu32|wgsl|cube|torch)" "$out/lm.txt" 2>/dev/null || true
grep -E "replicate-jobs|tok" "$out/runs.txt" 2>/dev/null || true
python3 - "$out" <<'PY' || true
import csv, os, sys
out = sys.argv[1]
try:
    ours = list(csv.DictReader(open(os.path.join(out, "matmul.csv"))))
    peer = {r["shape"]: float(r["gflops"]) for r in csv.DictReader(open(os.path.join(out, "matmul-torch.csv")))}
except OSError as e:
    sys.exit(f"matmul summary: {e}")
print(f"{'shape':<14} {'wgsl':>9} {'cube':>9} {'cuBLAS':>9} {'wgsl/cuBLAS':>12} {'cube/cuBLAS':>12}  (GFLOP/s)")
for shape in dict.fromkeys(r["shape"] for r in ours):
    g = {r["backend"]: float(r["gflops"]) for r in ours if r["shape"] == shape}
    c = peer.get(shape)
    w, k = g.get("wgsl"), g.get("cube")
    f = lambda v: f"{v:9.1f}" if v else f"{'-':>9}"
    r = lambda v: f"{v / c:12.1%}" if v and c else f"{'-':>12}"
    print(f"{shape:<14} {f(w)} {f(k)} {f(c)} {r(w)} {r(k)}")
PY
