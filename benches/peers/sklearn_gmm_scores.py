#!/usr/bin/env python3
"""Peer check of `collapse gmm score|predict|predict-proba` and FIT.json's BIC/AIC against
scikit-learn's GaussianMixture on the data sets scikit-learn ships (iris, wine, digits).

Usage: python3 benches/peers/sklearn_gmm_scores.py COLLAPSE_BIN OUT_DIR [BACKEND]
For every data set (standardised) and covariance type (full, tied, diag, spherical): `collapse
fit gmm` (K = number of classes, 10 initialisations, tol 1e-6, default init `kmeans`), then
scikit-learn is given *our* parameters and computes score(X), bic(X), aic(X), predict(X),
predict_proba(X); ours come from FIT.json and `collapse gmm score|predict|predict-proba`. Also
scikit-learn's own fit (10 initialisations, tol 1e-6, its default init `kmeans`) for its mean
log-likelihood, and EM from one start on both sides (`same_start`: our fit after one update,
continued by `--init-from` and given to scikit-learn as its init).
Writes OUT_DIR/scores-BACKEND.csv and prints it.
Bounds checked (exit 1 when one fails): our mean log-likelihood no worse than scikit-learn's
own fit's by more than 1e-4 relative; from the same start, the same log-likelihood (1e-9
relative; 1e-5 for cpu32) and scikit-learn's n_iter_ one more than ours (cpu64); BIC and AIC within 1e-8 relative (FIT.json and `gmm
score`; 1e-5 for cpu32, which runs the E-step in f32); predictions equal; probabilities within
1e-6 (cpu64; 1e-3 for cpu32); parameter counts equal. Needs: pip install scikit-learn numpy.
"""
import csv
import json
import os
import subprocess
import sys

import numpy as np
from sklearn.datasets import load_digits, load_iris, load_wine
from sklearn.mixture import GaussianMixture
from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky


def standardise(x):
    s = x.std(axis=0)
    s[s == 0] = 1.0
    return (x - x.mean(axis=0)) / s


def sk_with(fit):
    """A GaussianMixture holding the parameters of our FIT.json."""
    cov = fit["covariance_type"]
    w = np.array(fit["weights"])
    gm = GaussianMixture(n_components=len(w), covariance_type=cov)
    gm.weights_ = w
    gm.means_ = np.array(fit["means"])
    gm.covariances_ = np.array(fit["covariances"])
    gm.precisions_cholesky_ = _compute_precision_cholesky(gm.covariances_, cov)
    return gm


def precisions(fit):
    """scikit-learn's `precisions_init` for the covariances of a FIT.json."""
    c = np.array(fit["covariances"])
    return np.linalg.inv(c) if fit["covariance_type"] in ("full", "tied") else 1.0 / c


def same_start(exe, data, x, k, cov, reg, backend, out, tag):
    """EM from one start on both sides: our fit stopped after one EM update (seed 0, one
    initialisation) is continued by `--init-from` and given to scikit-learn as weights_init,
    means_init, precisions_init. Returns (our mean ll, scikit-learn's lower_bound_, our n_iter,
    its n_iter_): the same EM gives the same log-likelihood, and scikit-learn counts one more
    iteration for it (its lower_bound_ is the one before its last update)."""
    p1 = os.path.join(out, f"{tag}.start.json")
    pw = os.path.join(out, f"{tag}.continued.json")
    common = ["--covariance", cov, "--tol", "1e-6", "--reg-covar", reg, "--backend", backend]
    subprocess.run([exe, "fit", "gmm", "--data", data, "--k", str(k), "--max-iter", "1",
                    "--seed", "0", "--out", p1] + common, check=True, capture_output=True)
    subprocess.run([exe, "fit", "gmm", "--data", data, "--k", str(k), "--max-iter", "1000",
                    "--init-from", p1, "--out", pw] + common, check=True, capture_output=True)
    start, ours = json.load(open(p1)), json.load(open(pw))
    gm = GaussianMixture(n_components=k, covariance_type=cov, tol=1e-6, max_iter=1000,
                         reg_covar=float(reg), weights_init=np.array(start["weights"]),
                         means_init=np.array(start["means"]),
                         precisions_init=precisions(start)).fit(x)
    return ours["mean_log_likelihood"], gm.lower_bound_, ours["n_iter"], gm.n_iter_


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-300)


def main():
    exe, out = sys.argv[1], sys.argv[2]
    backend = sys.argv[3] if len(sys.argv) > 3 else "cpu64"
    os.makedirs(out, exist_ok=True)
    prob_tol = 1e-6 if backend == "cpu64" else 1e-3
    rows, ok = [], True
    sets = {"iris": load_iris(), "wine": load_wine(), "digits": load_digits()}
    for name, ds in sets.items():
        x = standardise(ds.data.astype(np.float64))
        k = len(np.unique(ds.target))
        data = os.path.join(out, f"{name}.csv")
        np.savetxt(data, x, delimiter=",", fmt="%.17g")
        for cov in ["full", "tied", "diag", "spherical"]:
            if name == "digits" and cov == "full":
                reg = "1e-3"  # 64 dimensions, some nearly constant: keep the fit well posed
            else:
                reg = "1e-6"
            tag = f"{name}-{cov}"
            fit_path = os.path.join(out, f"{tag}.json")
            subprocess.run([exe, "fit", "gmm", "--data", data, "--k", str(k), "--covariance", cov,
                            "--n-init", "10", "--tol", "1e-6", "--max-iter", "1000",
                            "--reg-covar", reg, "--seed", "0", "--backend", backend,
                            "--out", fit_path], check=True, capture_output=True)
            fit = json.load(open(fit_path))
            gm = sk_with(fit)
            ours = {}
            for sub in ["score", "predict", "predict-proba"]:
                p = os.path.join(out, f"{tag}.{sub}.csv")
                subprocess.run([exe, "gmm", sub, "--fit", fit_path, "--data", data,
                                "--backend", backend, "--out", p], check=True,
                               capture_output=True)
                ours[sub] = np.genfromtxt(p, delimiter=",", names=True)
            sk_score = gm.score(x)
            sk_bic, sk_aic = gm.bic(x), gm.aic(x)
            labels = np.atleast_1d(ours["predict"]["label"]).astype(int)
            proba = np.array(ours["predict-proba"].tolist())
            sk_fit = GaussianMixture(n_components=k, covariance_type=cov, n_init=10, tol=1e-6,
                                     max_iter=1000, reg_covar=float(reg), random_state=0).fit(x)
            ss_ours, ss_sk, ss_it, ss_sk_it = same_start(exe, data, x, k, cov, reg, backend,
                                                         out, tag)
            r = {
                "data": name, "covariance": cov, "k": k, "backend": backend,
                "same_start_ll_rel_err": rel(ss_ours, ss_sk),
                "same_start_n_iter": ss_it, "same_start_sklearn_n_iter": ss_sk_it,
                "ours_mean_ll": fit["mean_log_likelihood"],
                "sklearn_score_of_ours": sk_score,
                "sklearn_own_fit_mean_ll": sk_fit.score(x),
                "fit_bic_rel_err": rel(fit["bic"], sk_bic),
                "fit_aic_rel_err": rel(fit["aic"], sk_aic),
                "score_bic_rel_err": rel(float(ours["score"]["bic"]), sk_bic),
                "score_aic_rel_err": rel(float(ours["score"]["aic"]), sk_aic),
                "predict_mismatches": int((labels != gm.predict(x)).sum()),
                "proba_max_abs_err": float(np.abs(proba - gm.predict_proba(x)).max()),
                "n_parameters": fit["n_parameters"],
                "sklearn_n_parameters": gm._n_parameters(),
            }
            bic_tol = 1e-8 if backend == "cpu64" else 1e-5
            same_tol = 1e-9 if backend == "cpu64" else 1e-5
            good = (max(r["fit_bic_rel_err"], r["fit_aic_rel_err"]) <= bic_tol
                    and max(r["score_bic_rel_err"], r["score_aic_rel_err"]) <= bic_tol
                    and r["predict_mismatches"] == 0
                    and r["proba_max_abs_err"] <= prob_tol
                    and r["n_parameters"] == r["sklearn_n_parameters"]
                    and r["same_start_ll_rel_err"] <= same_tol
                    and (backend != "cpu64" or ss_sk_it == ss_it + 1))
            # No worse than scikit-learn's own optimum by more than 1e-4 relative.
            floor = r["sklearn_own_fit_mean_ll"] - 1e-4 * abs(r["sklearn_own_fit_mean_ll"])
            r["ll_ok"] = r["ours_mean_ll"] >= floor
            good = good and r["ll_ok"]
            r["ok"] = good
            ok &= good
            rows.append(r)
    path = os.path.join(out, f"scores-{backend}.csv")
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(open(path).read())
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
