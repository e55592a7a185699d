#!/usr/bin/env python3
"""PyTorch CPU peer for `collapse bench vae`: the same MLP VAE (784 -> 400 -> 2x20 -> 400 -> 784,
ReLU, Bernoulli likelihood with logits, KL to N(0, I), beta = 1), the same Adam settings
(lr 1e-3, betas 0.9/0.999, eps 1e-8), f32, on the CPU with all of the machine's threads (as
cpu32 uses them). Median seconds per training step (zero_grad, forward, loss, backward, Adam
step, loss.item()) over STEPS steps after 3 warm-up steps, on uniform random pixels.
`--device cuda` runs the same on the GPU (TF32 off, so the products are f32 as ours are).

Usage: python3 benches/peers/vae_torch.py [--batches 128,1024] [--steps 20] [--device cpu|cuda]
       [--out FILE.csv]
"""
import argparse
import csv
import os
import statistics
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="128,1024")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--out")
    a = ap.parse_args()
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        sys.exit("PyTorch is not installed (pip install torch): no peer")
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit("--device cuda: torch.cuda.is_available() is False")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    name = "torch-cuda" if dev.type == "cuda" else "torch-cpu"
    d, h, z = 784, 400, 20

    class Vae(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = torch.nn.Linear(d, h)
            self.mu = torch.nn.Linear(h, z)
            self.lv = torch.nn.Linear(h, z)
            self.dec = torch.nn.Linear(z, h)
            self.out = torch.nn.Linear(h, d)

        def forward(self, x):
            h1 = F.relu(self.enc(x))
            mu, lv = self.mu(h1), self.lv(h1)
            zz = mu + torch.exp(0.5 * lv) * torch.randn_like(mu)
            logits = self.out(F.relu(self.dec(zz)))
            bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
            kl = -0.5 * torch.sum(1 + lv - mu * mu - lv.exp())
            return (bce + kl) / x.shape[0]

    rows = []
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {where}")
    print(f"{'backend':<10} {'batch':>6} {'ms/step':>10} {'steps/s':>9} {'images/s':>10}")
    for b in [int(v) for v in a.batches.split(",")]:
        m = Vae().to(dev)
        opt = torch.optim.Adam(m.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
        x = torch.rand(b, d, device=dev)
        times = []
        for s in range(a.steps + 3):
            t = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = m(x)
            loss.backward()
            opt.step()
            loss.item()
            if s >= 3:
                times.append(time.perf_counter() - t)
        med = statistics.median(times)
        rows.append({"backend": name, "batch": b, "seconds": med,
                     "steps_per_s": 1 / med, "images_per_s": b / med})
        print(f"{name:<10} {b:>6} {med * 1e3:>10.3f} {1 / med:>9.2f} {b / med:>10.0f}")
    if a.out:
        with open(a.out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)


if __name__ == "__main__":
    main()
