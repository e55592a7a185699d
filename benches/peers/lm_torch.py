#!/usr/bin/env python3
"""PyTorch peer for `collapse bench lm`: the same byte-level pre-norm transformer (vocabulary
256, learned position embeddings, LayerNorm eps 1e-5, causal multi-head attention with a fused
QKV projection, GELU (tanh) MLP of 4C, final LayerNorm, untied head without bias), the same
AdamW (lr 1e-3, betas 0.9/0.95, eps 1e-8, weight decay 0.1 on matrices and embeddings) with
gradient clipping to norm 1, f32. Median seconds per training step (zero_grad, forward,
cross-entropy, backward, clip, step, loss.item()) over STEPS steps after 3 warm-up steps on
uniform random bytes; then sampling tokens/s: BATCH rows of T-1 bytes after a 1-byte prompt with
a KV cache, multinomial draws at temperature 1.

Usage: python3 benches/peers/lm_torch.py [--width 128 --layers 4 --heads 4 --context 128]
       [--batch 16] [--steps 10] [--device cpu|cuda] [--out FILE.csv]
"""
import argparse
import csv
import math
import os
import statistics
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--device", default="cpu")
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
    C, L, H, T = a.width, a.layers, a.heads, a.context
    d = C // H

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1 = torch.nn.LayerNorm(C, eps=1e-5)
            self.qkv = torch.nn.Linear(C, 3 * C)
            self.proj = torch.nn.Linear(C, C)
            self.ln2 = torch.nn.LayerNorm(C, eps=1e-5)
            self.fc = torch.nn.Linear(C, 4 * C)
            self.out = torch.nn.Linear(4 * C, C)

        def attend(self, x, cache=None):
            b, t, _ = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
            q, k, v = (z.view(b, t, H, d).transpose(1, 2) for z in (q, k, v))
            if cache is not None:
                if cache[0] is not None:
                    k = torch.cat([cache[0], k], dim=2)
                    v = torch.cat([cache[1], v], dim=2)
                cache[0], cache[1] = k, v
                o = F.scaled_dot_product_attention(q, k, v)
            else:
                o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.proj(o.transpose(1, 2).reshape(b, t, C))

        def forward(self, x, cache=None):
            x = x + self.attend(x, cache)
            return x + self.out(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))

    class Lm(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = torch.nn.Embedding(256, C)
            self.pos = torch.nn.Embedding(T, C)
            self.blocks = torch.nn.ModuleList([Block() for _ in range(L)])
            self.lnf = torch.nn.LayerNorm(C, eps=1e-5)
            self.head = torch.nn.Linear(C, 256, bias=False)

        def forward(self, x, pos0=0, caches=None):
            t = x.shape[1]
            h = self.tok(x) + self.pos(torch.arange(pos0, pos0 + t, device=x.device))
            for i, blk in enumerate(self.blocks):
                h = blk(h, None if caches is None else caches[i])
            return self.head(self.lnf(h))

    m = Lm().to(dev)
    decay = [p for n, p in m.named_parameters() if p.dim() == 2]
    other = [p for n, p in m.named_parameters() if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": other, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    x = torch.randint(0, 256, (a.batch, T + 1), device=dev)
    times = []
    for s in range(a.steps + 3):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logits = m(x[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, 256), x[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        loss.item()
        if s >= 3:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    n = T - 1
    with torch.no_grad():
        t0 = time.perf_counter()
        caches = [[None, None] for _ in range(L)]
        tok = torch.full((a.batch, 1), 10, device=dev)
        for p in range(n):
            logits = m(tok, pos0=p, caches=caches)[:, -1]
            tok = torch.multinomial(torch.softmax(logits, -1), 1)
        tok.cpu()
        sample_s = time.perf_counter() - t0
    row = {"backend": f"torch-{a.device}", "shape": f"{C}-{L}-{H}-{T}", "batch": a.batch,
           "seconds": med, "train_tokens_per_s": a.batch * T / med,
           "sample_tokens_per_s": a.batch * n / sample_s}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {a.device}")
    print(f"{'backend':<10} {'C-L-H-T':>14} {'batch':>6} {'ms/step':>10} {'train tok/s':>14} "
          f"{'sample tok/s':>15}")
    print(f"{row['backend']:<10} {row['shape']:>14} {a.batch:>6} {med * 1e3:>10.2f} "
          f"{row['train_tokens_per_s']:>14.0f} {row['sample_tokens_per_s']:>15.0f}")
    if a.out:
        with open(a.out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            w.writeheader()
            w.writerow(row)


if __name__ == "__main__":
    main()
