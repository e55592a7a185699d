#!/usr/bin/env python3
"""The ratio table of scripts/bench-cpu-peers.sh: medians over the rounds' raw CSVs of ours
(cpu32) and the peer's, their ratio (ours/peer, higher is better: throughput ratio, or time
ratio peer/ours for the GMM) and the issue's target. Prints Markdown; writes OUTDIR/table.csv.

Usage: python3 scripts/cpu-peers-table.py OUTDIR ROUNDS
"""
import csv
import os
import statistics
import sys


def rows(path):
    try:
        return list(csv.DictReader(open(path)))
    except OSError:
        return []


def main():
    out, rounds = sys.argv[1], int(sys.argv[2])
    raw = os.path.join(out, "raw")
    # figure -> ([ours per round], [peer per round], unit, target)
    figs = {}

    def add(name, ours, peer, unit, target):
        f = figs.setdefault(name, ([], [], unit, target))
        if ours is not None:
            f[0].append(ours)
        if peer is not None:
            f[1].append(peer)

    for r in range(1, rounds + 1):
        peer = {x["shape"]: float(x["gflops"]) for x in rows(f"{raw}/matmul-torch-{r}.csv")}
        for x in rows(f"{raw}/matmul-{r}.csv"):
            if x["backend"] != "cpu32":
                continue
            t = "".join(s for s, on in (("ᵀ·", x.get("trans_a") == "true"), ("·ᵀ", x.get("trans_b") == "true")) if on)
            add(f"sgemm {x['shape']} ({x['m']}×{x['n']}×{x['k']}{' ' + t if t else ''})",
                float(x["gflops"]), peer.get(x["shape"]), "GFLOP/s", 0.95)
        lm, lmt = rows(f"{raw}/lm-{r}.csv"), rows(f"{raw}/lm-torch-{r}.csv")
        if lm and lmt:
            add("LM training (128-4-4-128, batch 16)", float(lm[0]["train_tokens_per_s"]),
                float(lmt[0]["train_tokens_per_s"]), "tokens/s", 1.2)
            add("LM sampling (KV cache, 16 rows)", float(lm[0]["sample_tokens_per_s"]),
                float(lmt[0]["sample_tokens_per_s"]), "tokens/s", 2.0)
        vt = {x["batch"]: float(x["images_per_s"]) for x in rows(f"{raw}/vae-torch-{r}.csv")}
        for x in rows(f"{raw}/vae-{r}.csv"):
            if x["backend"] == "cpu32":
                add(f"VAE 784-400-20, batch {x['batch']}", float(x["images_per_s"]),
                    vt.get(x["batch"]), "images/s", 1.2)
        sk = {(x["n"], x["d"], x["k"], x["covariance_type"]): float(x["seconds_per_iter"])
              for x in rows(f"{raw}/gmm-sklearn-{r}.csv")}
        for x in rows(f"{raw}/gmm-{r}.csv"):
            if x["backend"] != "cpu32":
                continue
            key = (x["n"], x["d"], x["k"], x["covariance_type"])
            # Iterations per second, so that higher is better as for the rest.
            s = sk.get(key)
            add(f"GMM EM [{x['n']}, {x['d']}] → {x['k']} {x['covariance_type']} (peer f64)",
                1.0 / float(x["seconds_per_iter"]), 1.0 / s if s else None, "iterations/s", 15.0)
    machine = open(os.path.join(out, "machine.txt")).read().strip().splitlines()
    lines = [f"- {m}" for m in machine] + [
        "",
        "| figure | cpu32 | peer (PyTorch CPU / scikit-learn) | unit | ratio | target | met |",
        "|---|---|---|---|---|---|---|"]
    table = []
    for name, (ours, peer, unit, target) in figs.items():
        if not ours:
            continue
        o = statistics.median(ours)
        p = statistics.median(peer) if peer else None
        ratio = o / p if p else None
        met = "" if ratio is None else ("yes" if ratio >= target else "**no**")
        f = (lambda v: f"{v:.2f}") if unit == "iterations/s" else (lambda v: f"{v:.0f}" if v > 100 else f"{v:.1f}")
        lines.append(f"| {name} | {f(o)} | {f(p) if p else '-'} | {unit} | "
                     f"{f'{ratio:.2f}×' if ratio else '-'} | ≥ {target}× | {met} |")
        table.append(dict(figure=name, ours=o, peer=p if p else "", unit=unit,
                          ratio=ratio if ratio else "", target=target, rounds=len(ours)))
    with open(os.path.join(out, "table.csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["figure", "ours", "peer", "unit", "ratio", "target", "rounds"])
        w.writeheader()
        w.writerows(table)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
