#!/usr/bin/env python3
"""How often one k-means start reaches the best basin: ours vs scikit-learn, on digits.

Usage: python3 benches/peers/sklearn_gmm_starts.py COLLAPSE_BIN DATA_CSV OUT.csv [STARTS] [COV]
       python3 benches/peers/sklearn_gmm_starts.py --summary OUT.csv   (the table of a run)
DATA_CSV is sklearn_gmm_scores.py's digits.csv (standardised digits). STARTS (default 40) fits
with one `kmeans` initialisation each, K = 10, tol 1e-6, reg_covar 1e-6 (1e-3 for full), COV
(default tied): ours with --seed 0..STARTS-1 (cpu64), scikit-learn's as the STARTS
initialisations of one GaussianMixture(n_init=STARTS, random_state=1) read from its verbose
output (lower_bound_ per initialisation). Writes every final mean log-likelihood and prints,
per side, the starts within 10% of the best either side found (the best basin: the others
are ~20% below it), the best and the median. On this multimodal problem the best of
10 starts is a draw: this says whether our starts are as good as scikit-learn's in distribution.
Needs: pip install scikit-learn numpy.
"""
import contextlib
import csv
import io
import json
import re
import subprocess
import sys

import numpy as np
from sklearn.mixture import GaussianMixture


def summary(rows, label):
    """Print the per-side table of `rows` ((side, start, mean ll) tuples)."""
    best = max(v for _, _, v in rows)
    print(f"{label}: {len(rows) // 2} single k-means starts each; best found {best:.4f}")
    for name in ["collapse", "sklearn"]:
        v = [x for side, _, x in rows if side == name]
        near = sum(x >= best - 0.1 * abs(best) for x in v)
        print(f"{name:9} within 10% of the best: {near}/{len(v)}; best {max(v):.4f}, "
              f"median {np.median(v):.4f}")


def main():
    if sys.argv[1] == "--summary":
        rows = [(r["side"], int(r["start"]), float(r["mean_log_likelihood"]))
                for r in csv.DictReader(open(sys.argv[2]))]
        return summary(rows, sys.argv[2])
    exe, data, out = sys.argv[1], sys.argv[2], sys.argv[3]
    starts = int(sys.argv[4]) if len(sys.argv) > 4 else 40
    cov = sys.argv[5] if len(sys.argv) > 5 else "tied"
    reg = "1e-3" if cov == "full" else "1e-6"
    x = np.loadtxt(data, delimiter=",")
    ours = []
    for s in range(starts):
        subprocess.run([exe, "fit", "gmm", "--data", data, "--k", "10", "--covariance", cov,
                        "--tol", "1e-6", "--max-iter", "1000", "--reg-covar", reg, "--seed",
                        str(s), "--backend", "cpu64", "--out", out + ".fit.json"], check=True,
                       capture_output=True)
        ours.append(json.load(open(out + ".fit.json"))["mean_log_likelihood"])
    f = io.StringIO()
    with contextlib.redirect_stdout(f):
        GaussianMixture(10, covariance_type=cov, n_init=starts, tol=1e-6, max_iter=1000,
                        reg_covar=float(reg), random_state=1, verbose=2,
                        verbose_interval=10**9).fit(x)
    sk = [float(m.rstrip(".")) for m in re.findall(r"lower bound (-?[0-9.]+)", f.getvalue())]
    rows = [("collapse", i, v) for i, v in enumerate(ours)]
    rows += [("sklearn", i, v) for i, v in enumerate(sk)]
    with open(out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["side", "start", "mean_log_likelihood"])
        w.writerows(rows)
    summary(rows, cov)


if __name__ == "__main__":
    main()
