//! Using a fitted mixture: FIT.json's BIC/AIC and parameter count (scikit-learn's definitions),
//! reading FIT.json back, and `collapse gmm score|predict|predict-proba` on new data, on cpu64
//! (against values computed here in f64 from the definitions) and cpu32 (against cpu64).
//! Data: fresh Philox normals around three means (seed printed by `random_data`'s caller).

mod common;

use std::path::Path;

use collapse_kernels::backend::{BackendKind, create};
use collapse_kernels::io::read_table;
use collapse_kernels::models::gmm::{aic, bic, params_from_json, score};
use collapse_kernels::num::density::{gauss_density, logsumexp};
use collapse_kernels::ops::gmm::{CovarianceType, GmmParams};
use collapse_kernels::rng::StreamKey;
use common::cli::{collapse, fails, ok};
use common::tmpdir;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A time-based seed, printed, so a failure can be replayed with `GMM_USE_SEED`.
fn seed() -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SEED.get_or_init(|| common::seed_from_env("GMM_USE_SEED"))
}

/// `n` points in 3 dimensions: standard normals shifted to one of three means by row.
fn write_data(dir: &Path, name: &str, n: usize, stream: u64) -> std::path::PathBuf {
    let mut z = vec![0.0; n * 3];
    create(BackendKind::Cpu64, None)
        .unwrap()
        .normal(StreamKey::new(seed(), stream), 0, &mut z)
        .unwrap();
    let mut csv = String::from("a,b,c\n");
    for (i, r) in z.chunks(3).enumerate() {
        let shift = [0.0, 4.0, -3.0][i % 3];
        csv.push_str(&format!(
            "{},{},{}\n",
            r[0] + shift,
            r[1] - shift,
            r[2] * 0.5
        ));
    }
    let p = dir.join(name);
    std::fs::write(&p, csv).unwrap();
    p
}

/// `collapse fit gmm` on cpu64 (`k` components, covariance `cov`, seed 7) of `data` into
/// `fit`; returns FIT.json as written.
fn fit_cli(data: &Path, k: &str, cov: &str, fit: &Path) -> serde_json::Value {
    ok(&collapse([
        "fit",
        "gmm",
        "--data",
        s(data),
        "--k",
        k,
        "--covariance",
        cov,
        "--seed",
        "7",
        "--backend",
        "cpu64",
        "--out",
        s(fit),
    ]));
    serde_json::from_slice(&std::fs::read(fit).unwrap()).unwrap()
}

/// log N(x | μ, Σ) for a diagonal or spherical Σ (from the definition) or a full or tied Σ,
/// in f64, from FIT.json's stored layouts (scikit-learn's `covariances_`).
fn log_component(p: &GmmParams, c: usize, x: &[f64]) -> f64 {
    let d = p.d;
    let mu = &p.means[c * d..(c + 1) * d];
    let ln2pi = (2.0 * std::f64::consts::PI).ln();
    let diagonal = |v: &dyn Fn(usize) -> f64| {
        -0.5 * (0..d)
            .map(|j| ln2pi + v(j).ln() + (x[j] - mu[j]).powi(2) / v(j))
            .sum::<f64>()
    };
    match p.covariance_type {
        CovarianceType::Diag => diagonal(&|j| p.covariances[c * d + j]),
        CovarianceType::Spherical => diagonal(&|_| p.covariances[c]),
        // The project's f64 density (Cholesky of Σ, not the E-step's precision factor).
        CovarianceType::Full => {
            gauss_density(x, mu, &p.covariances[c * d * d..(c + 1) * d * d]).ln()
        }
        CovarianceType::Tied => gauss_density(x, mu, &p.covariances).ln(),
    }
}

/// Mean log-likelihood and responsibilities `[N][K]` from the definitions.
fn by_definition(p: &GmmParams, x: &[f64]) -> (f64, Vec<f64>) {
    let mut total = 0.0;
    let mut r = Vec::new();
    for row in x.chunks(p.d) {
        let l: Vec<f64> = (0..p.k)
            .map(|c| p.weights[c].ln() + log_component(p, c, row))
            .collect();
        let lse = logsumexp(&l);
        total += lse;
        r.extend(l.iter().map(|v| (v - lse).exp()));
    }
    (total / (x.len() / p.d) as f64, r)
}

fn max_abs(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn parameter_counts_are_scikit_learns() {
    let p = |cov, k, d| GmmParams {
        k,
        d,
        covariance_type: cov,
        weights: vec![1.0 / k as f64; k],
        means: vec![0.0; k * d],
        covariances: vec![],
    };
    // scikit-learn's _n_parameters(): means K·D, full K·D(D+1)/2, tied D(D+1)/2, diag K·D,
    // spherical K, weights K − 1 (iris full 44, tied 24, diag 26, spherical 17, wine full 314:
    // checked against scikit-learn 1.9).
    assert_eq!(p(CovarianceType::Full, 3, 4).n_parameters(), 44);
    assert_eq!(p(CovarianceType::Tied, 3, 4).n_parameters(), 24);
    assert_eq!(p(CovarianceType::Diag, 3, 4).n_parameters(), 26);
    assert_eq!(p(CovarianceType::Spherical, 3, 4).n_parameters(), 17);
    assert_eq!(p(CovarianceType::Full, 3, 13).n_parameters(), 314);
    assert_eq!(p(CovarianceType::Full, 1, 1).n_parameters(), 2);
    let q = p(CovarianceType::Diag, 10, 64);
    assert_eq!(q.n_parameters(), 10 * 64 * 2 + 9);
    let (n, ll) = (150usize, -1.9368739);
    assert_eq!(bic(&q, n, ll), -2.0 * ll * 150.0 + 1289.0 * 150f64.ln());
    assert_eq!(aic(&q, n, ll), -2.0 * ll * 150.0 + 2.0 * 1289.0);
}

#[test]
fn fit_json_reads_back_and_scores_new_data_on_cpu64_and_cpu32() {
    let dir = tmpdir("gmm-use");
    let train = write_data(&dir, "train.csv", 600, 1);
    let test = write_data(&dir, "test.csv", 301, 2);
    let x = read_table(&test).unwrap();
    let cpu64 = create(BackendKind::Cpu64, None).unwrap();
    let cpu32 = create(BackendKind::Cpu32, None).unwrap();
    for cov in ["full", "tied", "diag", "spherical"] {
        let fit = dir.join(format!("{cov}.json"));
        let v = fit_cli(&train, "3", cov, &fit);
        let p = params_from_json(&v).unwrap();
        assert_eq!(p.covariance_type.name(), cov);
        // scikit-learn's layouts of covariances_: [K][D][D], [D][D], [K][D], [K].
        let shape = |c: &serde_json::Value| -> Vec<usize> {
            let mut s = Vec::new();
            let mut c = c;
            while let Some(a) = c.as_array() {
                s.push(a.len());
                c = &a[0];
            }
            s
        };
        let want: &[usize] = match cov {
            "full" => &[3, 3, 3],
            "tied" => &[3, 3],
            "diag" => &[3, 3],
            _ => &[3],
        };
        assert_eq!(shape(&v["covariances"]), want, "{cov}");
        assert_eq!(v["n_samples"], 600);
        assert_eq!(
            v["n_parameters"].as_u64().unwrap() as usize,
            p.n_parameters()
        );
        // FIT.json's BIC/AIC are of the training data, from its mean log-likelihood.
        let xt = read_table(&train).unwrap();
        let (ll_train, _) = by_definition(&p, &xt.data);
        let ll_fit = v["mean_log_likelihood"].as_f64().unwrap();
        assert!(
            (ll_fit - ll_train).abs() <= 1e-10 * ll_train.abs(),
            "{ll_fit} vs {ll_train}"
        );
        let b = v["bic"].as_f64().unwrap();
        assert!(
            (b - bic(&p, 600, ll_train)).abs() <= 1e-10 * b.abs(),
            "{cov} bic {b}"
        );
        let a = v["aic"].as_f64().unwrap();
        assert!(
            (a - aic(&p, 600, ll_train)).abs() <= 1e-10 * a.abs(),
            "{cov} aic {a}"
        );

        // Scoring new data: cpu64 against the definitions, cpu32 against cpu64.
        let (ll, r) = by_definition(&p, &x.data);
        let s64 = score(cpu64.as_ref(), &p, &x).unwrap();
        assert!(
            (s64.mean_log_likelihood - ll).abs() <= 1e-12 * ll.abs(),
            "{cov}"
        );
        assert!(max_abs(&s64.responsibilities, &r) <= 1e-12, "{cov}");
        let s32 = score(cpu32.as_ref(), &p, &x).unwrap();
        assert!(
            (s32.mean_log_likelihood - ll).abs() <= 1e-5 * ll.abs(),
            "{cov}"
        );
        assert!(max_abs(&s32.responsibilities, &r) <= 1e-4, "{cov}");
        for row in s32.responsibilities.chunks(3) {
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-5);
        }

        // The CLI writes the same numbers.
        let score_csv = dir.join(format!("{cov}.score.csv"));
        let line = ok(&collapse([
            "gmm",
            "score",
            "--fit",
            s(&fit),
            "--data",
            s(&test),
            "--backend",
            "cpu64",
            "--out",
            s(&score_csv),
        ]));
        let text = std::fs::read_to_string(&score_csv).unwrap();
        assert!(
            text.starts_with("n_samples,mean_log_likelihood,bic,aic\n"),
            "{text}"
        );
        let vals: Vec<f64> = text
            .lines()
            .nth(1)
            .unwrap()
            .split(',')
            .map(|t| t.parse().unwrap())
            .collect();
        assert_eq!(vals[0], 301.0);
        assert!((vals[1] - ll).abs() <= 1e-12 * ll.abs(), "{cov}: {line}");
        assert!((vals[2] - bic(&p, 301, ll)).abs() <= 1e-10 * vals[2].abs());
        assert!((vals[3] - aic(&p, 301, ll)).abs() <= 1e-10 * vals[3].abs());
        for (sub, backend) in [
            ("predict", "cpu64"),
            ("predict-proba", "cpu64"),
            ("predict", "cpu32"),
        ] {
            let out = dir.join(format!("{cov}.{sub}.{backend}.csv"));
            ok(&collapse([
                "gmm",
                sub,
                "--fit",
                s(&fit),
                "--data",
                s(&test),
                "--backend",
                backend,
                "--out",
                s(&out),
            ]));
            let text = std::fs::read_to_string(&out).unwrap();
            let mut lines = text.lines();
            let head = lines.next().unwrap();
            let body: Vec<Vec<f64>> = lines
                .map(|l| l.split(',').map(|t| t.parse().unwrap()).collect())
                .collect();
            assert_eq!(body.len(), 301, "{sub}");
            if sub == "predict" {
                assert_eq!(head, "label");
                // Points more than 1e-3 from a tie get the argmax of the exact posterior.
                for (i, row) in body.iter().enumerate() {
                    let ri = &r[i * 3..i * 3 + 3];
                    let best = (0..3).max_by(|&a, &b| ri[a].total_cmp(&ri[b])).unwrap();
                    let mut sorted = ri.to_vec();
                    sorted.sort_by(f64::total_cmp);
                    if sorted[2] - sorted[1] > 1e-3 {
                        assert_eq!(row[0] as usize, best, "{cov} {backend} row {i}");
                    }
                }
            } else {
                assert_eq!(head, "p0,p1,p2");
                let flat: Vec<f64> = body.concat();
                assert!(max_abs(&flat, &r) <= 1e-12, "{cov} predict-proba");
            }
        }
    }
}

#[test]
fn bad_fits_and_data_are_one_line_errors_naming_the_file() {
    let dir = tmpdir("gmm-use-bad");
    let train = write_data(&dir, "train.csv", 90, 3);
    let fit = dir.join("fit.json");
    let good = fit_cli(&train, "2", "diag", &fit);
    let out = dir.join("out.csv");
    let run_with = |v: &serde_json::Value, needle: &str, what: &str| {
        let f = dir.join("bad.json");
        std::fs::write(&f, v.to_string()).unwrap();
        fails(
            &collapse([
                "gmm",
                "score",
                "--fit",
                s(&f),
                "--data",
                s(&train),
                "--out",
                s(&out),
            ]),
            needle,
            what,
        );
        assert!(!out.exists(), "{what}: wrote {}", out.display());
    };
    let mut v = good.clone();
    v.as_object_mut().unwrap().remove("means");
    run_with(&v, "`means`", "no means");
    let mut v = good.clone();
    v["weights"] = serde_json::json!([0.5, 0.6]);
    run_with(&v, "sum to 1", "weights not summing to 1");
    let mut v = good.clone();
    v["covariances"][1][2] = serde_json::json!(-1.0);
    run_with(&v, "bad.json", "a negative variance");
    let mut v = good.clone();
    v["covariances"][0] = serde_json::json!([1.0, 2.0]);
    run_with(&v, "covariances", "a short covariance row");
    let mut v = good.clone();
    v["covariance_type"] = serde_json::json!("banana");
    run_with(&v, "covariance_type", "an unknown covariance type");
    // A diag fit relabelled: spherical wants [K] numbers, tied one D×D matrix.
    let mut v = good.clone();
    v["covariance_type"] = serde_json::json!("spherical");
    run_with(&v, "covariances", "spherical covariances of [K][D]");
    let mut v = good.clone();
    v["covariance_type"] = serde_json::json!("tied");
    run_with(&v, "covariances", "tied covariances of the wrong shape");
    // Data of the wrong width.
    let wide = dir.join("wide.csv");
    std::fs::write(&wide, "1,2,3,4\n5,6,7,8\n").unwrap();
    fails(
        &collapse([
            "gmm",
            "predict",
            "--fit",
            s(&fit),
            "--data",
            s(&wide),
            "--out",
            s(&out),
        ]),
        "wide.csv",
        "data of 4 columns for a 3-dimensional fit",
    );
    assert!(!out.exists());
    fails(
        &collapse([
            "gmm",
            "predict",
            "--fit",
            s(&dir.join("none.json")),
            "--data",
            s(&train),
            "--out",
            s(&out),
        ]),
        "none.json",
        "a missing fit",
    );
}

#[test]
fn sample_gmm_draws_the_fit_reproducibly_on_cpu64_and_cpu32() {
    let dir = tmpdir("gmm-sample");
    let train = write_data(&dir, "train.csv", 300, 4);
    let fit = dir.join("fit.json");
    let v = fit_cli(&train, "3", "full", &fit);
    let p = params_from_json(&v).unwrap();
    let draw = |backend: &str, seed: &str, name: &str| {
        let out = dir.join(name);
        ok(&collapse([
            "sample",
            "gmm",
            "--fit",
            s(&fit),
            "--n",
            "20000",
            "--seed",
            seed,
            "--backend",
            backend,
            "--out",
            s(&out),
        ]));
        read_table(&out).unwrap()
    };
    let a = draw("cpu64", "5", "a.npy");
    let a2 = draw("cpu64", "5", "a2.npy");
    let b = draw("cpu32", "5", "b.csv");
    let c = draw("cpu64", "6", "c.npy");
    assert_eq!((a.rows, a.cols), (20000, 3));
    assert_eq!(a.data, a2.data, "same seed, different points");
    assert_ne!(a.data, c.data, "another seed, the same points");
    // Same Philox draws on both backends: they differ by f32 arithmetic and by the f32
    // uniforms' 24 bits (rare samples with a tiny Box–Muller u₁ move most; tests/sampling.rs),
    // norm-wise within the samplers' stated 1e-4 (one wrong point in 6·10⁴ values fails it).
    let e = common::rel_err(&b.data, &a.data);
    assert!(e <= 1e-4, "cpu32 vs cpu64: relative error {e:.2e}");
    // The points' mean is the mixture's mean Σ w_k μ_k, within 5 standard errors.
    for j in 0..3 {
        let want: f64 = (0..p.k).map(|c| p.weights[c] * p.means[c * 3 + j]).sum();
        let col: Vec<f64> = a.data.iter().skip(j).step_by(3).cloned().collect();
        let m = col.iter().sum::<f64>() / col.len() as f64;
        let sd = (col.iter().map(|v| (v - m).powi(2)).sum::<f64>() / col.len() as f64).sqrt();
        assert!(
            (m - want).abs() < 5.0 * sd / (col.len() as f64).sqrt(),
            "dim {j}: {m} vs {want}"
        );
    }
    let out = dir.join("none.csv");
    for n in ["0", "999999999999"] {
        fails(
            &collapse([
                "sample",
                "gmm",
                "--fit",
                s(&fit),
                "--n",
                n,
                "--out",
                s(&out),
            ]),
            "--n",
            "an impossible --n",
        );
    }
    assert!(!out.exists());
}

/// `collapse fit gmm --init` takes scikit-learn's four names; `--init-from FIT.json` continues
/// an earlier fit (a fit stopped by `--max-iter 2` and continued converges to the mean
/// log-likelihood of an uninterrupted fit within 1e-9 relative, in fewer iterations); an
/// unconverged fit says so on stderr (ConvergenceWarning) and in FIT.json; a start of another K
/// or type is refused, naming the file, before any fit.
#[test]
fn init_flags_warm_start_and_convergence_warning() {
    let dir = tmpdir("gmm-init");
    let train = write_data(&dir, "train.csv", 600, 5);
    let run = |extra: &[&str], out: &Path| {
        let mut args = vec![
            "fit",
            "gmm",
            "--data",
            s(&train),
            "--k",
            "3",
            "--seed",
            "7",
            "--tol",
            "1e-10",
            "--backend",
            "cpu64",
            "--out",
            s(out),
        ];
        args.extend_from_slice(extra);
        collapse(args)
    };
    let read = |p: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    for init in ["kmeans", "k-means++", "random", "random_from_data"] {
        let out = dir.join(format!("{init}.json"));
        ok(&run(&["--init", init, "--max-iter", "1000"], &out));
        let v = read(&out);
        assert_eq!(v["converged"], true, "{init}");
        assert!(v["mean_log_likelihood"].as_f64().unwrap().is_finite());
    }
    let whole = read(&dir.join("kmeans.json"));
    let stopped = dir.join("stopped.json");
    let o = run(&["--max-iter", "2"], &stopped);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    ok(&o);
    assert!(err.contains("ConvergenceWarning"), "{err}");
    let v = read(&stopped);
    assert_eq!(
        (v["converged"].clone(), v["n_iter"].clone()),
        (false.into(), 2.into())
    );
    let resumed = dir.join("resumed.json");
    ok(&run(
        &["--init-from", s(&stopped), "--max-iter", "1000"],
        &resumed,
    ));
    let w = read(&resumed);
    let (a, b) = (
        w["mean_log_likelihood"].as_f64().unwrap(),
        whole["mean_log_likelihood"].as_f64().unwrap(),
    );
    assert!((a - b).abs() <= 1e-9 * b.abs(), "{a} vs {b}");
    assert!(w["n_iter"].as_u64().unwrap() < whole["n_iter"].as_u64().unwrap());
    let refused = dir.join("refused.json");
    fails(
        &run(
            &["--init-from", s(&stopped), "--covariance", "diag"],
            &refused,
        ),
        "stopped.json",
        "a start of another covariance type",
    );
    assert!(!refused.exists());
}
