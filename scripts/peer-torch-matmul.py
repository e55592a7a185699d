#!/usr/bin/env python3
"""Peer for `collapse bench matmul`: SGEMM through PyTorch on the same shapes, in f32 — cuBLAS
on a card (`--device cuda`, the default; TF32 off, true f32 arithmetic as our kernels do) or
the CPU BLAS PyTorch ships (`--device cpu`: MKL on x86-64, with `--threads` threads, 2 by
default to match our CPU runs). Median of REPS products after 3 warm-ups (CUDA events on a card,
`time.perf_counter` around `torch.mm(a, b, out=c)` on the CPU). A transposed operand is a
transposed view of a `[K][M]` / `[N][K]` tensor, as our backends store it. Writes CSV (shape, m,
n, k, trans_a, trans_b, seconds, gflops, backend, device) and prints it.

Shapes: `--sizes` squares, `--shape MxNxK` (repeatable), `--models` (lm_mlp_up, vae_enc1), or
`--from-csv FILE`: every distinct shape of a `collapse bench matmul --out FILE` table, with its
label and transposes (what `scripts/bench-cpu-peers.sh` and `scripts/gpu-check.sh` use, so the
peer times exactly our list).

Usage: python3 scripts/peer-torch-matmul.py --out FILE.csv [--device cpu] [--threads 2]
       [--sizes 512,1024] [--shape MxNxK ...] [--models] [--from-csv OURS.csv]
"""
import argparse
import csv
import statistics
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="512,1024,2048,4096", help="square sizes, comma-separated")
    ap.add_argument("--shape", action="append", default=[], help="MxNxK, repeatable")
    ap.add_argument("--models", action="store_true", help="add lm_mlp_up and vae_enc1")
    ap.add_argument("--from-csv", help="time every shape of this collapse bench matmul CSV")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (--device cpu)")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    try:
        import torch
    except ImportError:
        sys.exit("PyTorch is not installed: no peer")
    cuda = a.device == "cuda"
    if cuda:
        if not torch.cuda.is_available():
            sys.exit("PyTorch sees no CUDA device: no cuBLAS peer")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        dev = torch.cuda.get_device_name(0)
        backend = "torch_cublas_fp32"
    else:
        torch.set_num_threads(a.threads)
        dev = f"CPU, {torch.get_num_threads()} threads"
        backend = "torch_cpu_fp32"
    torch.set_float32_matmul_precision("highest")
    shapes = []
    if a.from_csv:
        seen = set()
        for r in csv.DictReader(open(a.from_csv)):
            if r["shape"] in seen:
                continue
            seen.add(r["shape"])
            t = lambda v: v.strip().lower() == "true"
            shapes.append((r["shape"], int(r["m"]), int(r["n"]), int(r["k"]),
                           t(r.get("trans_a", "false")), t(r.get("trans_b", "false"))))
    else:
        shapes = [(f"{n}x{n}x{n}", n, n, n, False, False) for n in map(int, a.sizes.split(",")) if n > 0]
        for s in a.shape:
            m, n, k = map(int, s.split("x"))
            shapes.append((s, m, n, k, False, False))
        if a.models:
            shapes += [("lm_mlp_up", 4096, 1024, 256, False, False),
                       ("vae_enc1", 128, 400, 784, False, False)]
    rows = []
    where = "cuda" if cuda else "cpu"
    for label, m, n, k, ta, tb in shapes:
        x = (torch.rand(k, m, device=where) - 0.5).t() if ta else torch.rand(m, k, device=where) - 0.5
        y = (torch.rand(n, k, device=where) - 0.5).t() if tb else torch.rand(k, n, device=where) - 0.5
        c = torch.empty(m, n, device=where)
        for _ in range(3):
            t0 = time.perf_counter()
            torch.mm(x, y, out=c)
            warm = time.perf_counter() - t0
        times = []
        # On a CPU, enough repetitions for ~0.2 s (at least REPS, at most 200): a median of
        # small products is otherwise one scheduler tick.
        reps = a.reps if cuda else max(a.reps, min(200, int(0.2 / max(warm, 1e-7))))
        for _ in range(reps):
            if cuda:
                s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                s.record()
                torch.mm(x, y, out=c)
                e.record()
                torch.cuda.synchronize()
                times.append(s.elapsed_time(e) * 1e-3)
            else:
                t0 = time.perf_counter()
                torch.mm(x, y, out=c)
                times.append(time.perf_counter() - t0)
        t = statistics.median(times)
        rows.append(dict(shape=label, m=m, n=n, k=k, trans_a=ta, trans_b=tb, seconds=t,
                         gflops=2 * m * n * k / t * 1e-9, backend=backend, device=dev))
        print(f"{label:<18} {backend} {t * 1e3:10.3f} ms {rows[-1]['gflops']:10.1f} GFLOP/s")
    with open(a.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)


if __name__ == "__main__":
    main()
