#!/usr/bin/env python3
"""Peer for `collapse bench matmul`: cuBLAS SGEMM through PyTorch on the same card, TF32 off
(true f32 arithmetic, as our kernels do), for the same shapes. Median of REPS products after
3 warm-ups, timed with CUDA events. Writes CSV (shape, m, n, k, seconds, gflops) and prints it.

Usage: python3 scripts/peer-torch-matmul.py --out FILE.csv [--sizes 512,1024] [--shape MxNxK ...]
"""
import argparse
import csv
import statistics
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="512,1024,2048,4096", help="square sizes, comma-separated")
    ap.add_argument("--shape", action="append", default=[], help="MxNxK, repeatable")
    ap.add_argument("--models", action="store_true", help="add lm_mlp_up and vae_enc1")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    try:
        import torch
    except ImportError:
        sys.exit("PyTorch is not installed: no cuBLAS peer")
    if not torch.cuda.is_available():
        sys.exit("PyTorch sees no CUDA device: no cuBLAS peer")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    shapes = [(f"{n}x{n}x{n}", n, n, n) for n in map(int, a.sizes.split(",")) if n > 0]
    for s in a.shape:
        m, n, k = map(int, s.split("x"))
        shapes.append((s, m, n, k))
    if a.models:
        shapes += [("lm_mlp_up", 4096, 1024, 256), ("vae_enc1", 128, 400, 784)]
    rows = []
    dev = torch.cuda.get_device_name(0)
    for label, m, n, k in shapes:
        x = torch.rand(m, k, device="cuda") - 0.5
        y = torch.rand(k, n, device="cuda") - 0.5
        for _ in range(3):
            torch.mm(x, y)
        times = []
        for _ in range(a.reps):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            torch.mm(x, y)
            e.record()
            torch.cuda.synchronize()
            times.append(s.elapsed_time(e) * 1e-3)
        t = statistics.median(times)
        rows.append(dict(shape=label, m=m, n=n, k=k, seconds=t, gflops=2 * m * n * k / t * 1e-9,
                         backend="torch_cublas_fp32", device=dev))
        print(f"{label:<18} torch/cuBLAS fp32 {t * 1e3:10.3f} ms {rows[-1]['gflops']:10.1f} GFLOP/s")
    with open(a.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)


if __name__ == "__main__":
    main()
