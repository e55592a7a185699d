#!/usr/bin/env python3
"""Peer for `collapse bench gmm`: scikit-learn's GaussianMixture on the same data files.

Usage: python3 benches/peers/sklearn_gmm.py DATA_DIR OUT.csv [ITERS]
DATA_DIR holds gmm-N-D-K.npy written by `collapse bench gmm --data-dir DATA_DIR`.
Seconds per EM iteration = (time of a fit with max_iter = 1 + ITERS − time with max_iter = 1)
/ ITERS, so initialisation and the final E-step cancel; tol = 0 makes every fit run to
max_iter. float64 (scikit-learn has no float32 EM). Install: pip install scikit-learn.
"""
import csv
import os
import sys
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

SHAPES = [(100_000, 16, 32, "full"), (100_000, 16, 32, "diag"), (1_000_000, 8, 16, "full"),
          (100_000, 16, 32, "tied"), (100_000, 16, 32, "spherical")]


def fit_time(x, k, cov, max_iter):
    gm = GaussianMixture(n_components=k, covariance_type=cov, max_iter=max_iter, tol=0.0,
                         init_params="random_from_data", random_state=0, reg_covar=1e-6)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(x)
    return time.perf_counter() - t, gm.n_iter_


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    data_dir, out = sys.argv[1], sys.argv[2]
    iters = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    try:
        from threadpoolctl import threadpool_info
        blas = ";".join(f"{i.get('internal_api')}:{i.get('num_threads')}" for i in threadpool_info())
    except Exception:
        blas = "unknown"
    import sklearn
    rows = []
    print(f"{'peer':<8} {'N':>9} {'D':>3} {'K':>3} {'cov':<9} {'ms/iter':>12}")
    for n, d, k, cov in SHAPES:
        x = np.load(os.path.join(data_dir, f"gmm-{n}-{d}-{k}.npy"))
        t1, _ = fit_time(x, k, cov, 1)
        tn, it = fit_time(x, k, cov, 1 + iters)
        per = (tn - t1) / (it - 1)
        print(f"{'sklearn':<8} {n:>9} {d:>3} {k:>3} {cov:<9} {per * 1e3:>12.2f}")
        rows.append({"backend": "sklearn", "device": f"scikit-learn {sklearn.__version__}, numpy "
                     f"{np.__version__}, BLAS {blas}, float64", "n": n, "d": d, "k": k,
                     "covariance_type": cov, "seconds_per_iter": per, "iterations": it - 1,
                     "point_components_per_s": n * k / per})
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
