//! EM for Gaussian mixtures: each backend's E-step and M-step against cpu64 on fresh random
//! data, whole fits, parameter recovery with bounds from N, numerical robustness and bad input.

mod common;

use collapse_kernels::backend::{BackendKind, create};
use collapse_kernels::io::Matrix;
use collapse_kernels::models::gmm::{GmmConfig, Init, fit, params_from_stats};
use collapse_kernels::ops::Backend;
use collapse_kernels::ops::gmm::{CovarianceType, GmmParams, MStats, PassLayout};
use collapse_kernels::ops::sampling::{Factor, MixtureBatch};
use collapse_kernels::rng::StreamKey;

use common::rel_err;

/// Every initialisation.
const INITS: [Init; 4] = [
    Init::KMeans,
    Init::KMeansPlusPlus,
    Init::Random,
    Init::RandomFromData,
];

/// The CPU backends plus any GPU backend that implements EM (an `Unsupported` answer skips it).
fn em_backends() -> Vec<Box<dyn Backend>> {
    let x = Matrix::new(1, 1, vec![0.0]).unwrap();
    common::backends()
        .into_iter()
        .filter(|b| match b.gmm_pass(&x) {
            Ok(_) => true,
            Err(e) => {
                eprintln!("{}: {e}", b.name());
                false
            }
        })
        .collect()
}

fn normals(n: usize, seed: u64) -> Vec<f64> {
    let mut z = vec![0.0; n];
    create(BackendKind::Cpu64, None)
        .unwrap()
        .normal(StreamKey::new(seed, 1), 0, &mut z)
        .unwrap();
    z
}

/// Random parameters: weights ∝ 1 + |z|, means 3z, covariances A Aᵀ + 0.5 I (full: one per
/// component; tied: one) or variances 0.5 + z² (diag: K·D; spherical: K).
fn random_params(k: usize, d: usize, cov: CovarianceType, seed: u64) -> GmmParams {
    let z = normals(k + k * d + k * d * d, seed);
    let w: Vec<f64> = z[..k].iter().map(|v| 1.0 + v.abs()).collect();
    let s: f64 = w.iter().sum();
    let blocks = if cov == CovarianceType::Tied { 1 } else { k };
    let covariances = match cov {
        CovarianceType::Full | CovarianceType::Tied => (0..blocks)
            .flat_map(|c| {
                let a = &z[k + k * d + c * d * d..k + k * d + (c + 1) * d * d];
                (0..d * d).map(move |ij| {
                    let (i, j) = (ij / d, ij % d);
                    (0..d).map(|t| a[i * d + t] * a[j * d + t]).sum::<f64>() * 0.3
                        + if i == j { 0.5 } else { 0.0 }
                })
            })
            .collect(),
        CovarianceType::Diag => z[k + k * d..k + 2 * k * d]
            .iter()
            .map(|v| 0.5 + v * v)
            .collect(),
        CovarianceType::Spherical => z[k + k * d..k + k * d + k]
            .iter()
            .map(|v| 0.5 + v * v)
            .collect(),
    };
    GmmParams {
        k,
        d,
        covariance_type: cov,
        weights: w.iter().map(|v| v / s).collect(),
        means: z[k..k + k * d].iter().map(|v| 3.0 * v).collect(),
        covariances,
    }
}

fn random_data(n: usize, d: usize, seed: u64) -> Matrix {
    Matrix::new(n, d, normals(n * d, seed).iter().map(|v| 4.0 * v).collect()).unwrap()
}

/// Per-quantity bounds for f32 backends vs cpu64 (norm-wise relative), from N = 20000 points,
/// D = 6, K = 5 with values O(10): log-likelihood total 1e-5, responsibilities 1e-4,
/// N_k and means 1e-5, centred scatter 1e-4. Measured for cpu32 (`-- --nocapture`): ≤ 6e-9,
/// 8.3e-7, 2.1e-7, 1.8e-7 and 2.1e-7. Every covariance type (tied and spherical run in the
/// full and diagonal passes with repeated factors), and the host update from each backend's
/// statistics (the fitted covariances, scikit-learn's per-type estimates) within the scatter's
/// 1e-4.
#[test]
fn estep_and_mstep_match_cpu64() {
    let reference = create(BackendKind::Cpu64, None).unwrap();
    for cov in CovarianceType::ALL {
        let (n, d, k) = (20_000, 6, 5);
        let x = random_data(n, d, 3);
        let p = random_params(k, d, cov, 4).estep_params().unwrap();
        let mut rp = reference.gmm_pass(&x).unwrap();
        let ll_ref = rp.estep(&p).unwrap();
        let r_ref = rp.responsibilities().unwrap();
        let s_ref = rp.mstep(cov.layout()).unwrap();
        let mut cfg = GmmConfig::new(k);
        cfg.covariance_type = cov;
        let update_ref = params_from_stats(&s_ref, &x, &cfg, &mut 0, &mut None).0;
        assert_eq!(
            update_ref.covariances.len(),
            cov.stored_values(k, d).unwrap(),
            "{cov:?}"
        );
        for b in em_backends().iter().filter(|b| b.name() != "cpu64") {
            let mut bp = b.gmm_pass(&x).unwrap();
            let ll = bp.estep(&p).unwrap();
            let r = bp.responsibilities().unwrap();
            assert!(
                ((ll - ll_ref) / ll_ref).abs() < 1e-5,
                "{} {cov:?}: log-lik {ll} vs {ll_ref}",
                b.name()
            );
            assert!(
                rel_err(&r, &r_ref) < 1e-4,
                "{} {cov:?}: responsibilities {:.2e}",
                b.name(),
                rel_err(&r, &r_ref)
            );
            // M-step from identical responsibilities (the reference's).
            bp.set_responsibilities(&r_ref).unwrap();
            let s = bp.mstep(cov.layout()).unwrap();
            let update = params_from_stats(&s, &x, &cfg, &mut 0, &mut None).0;
            let cov_err = rel_err(&update.covariances, &update_ref.covariances);
            assert!(
                cov_err < 1e-4,
                "{} {cov:?}: covariances {cov_err:.2e}",
                b.name()
            );
            eprintln!(
                "{} {cov:?}: ll {:.1e} r {:.1e} nk {:.1e} means {:.1e} scatter {:.1e} \
                 covariances {cov_err:.1e}",
                b.name(),
                ((ll - ll_ref) / ll_ref).abs(),
                rel_err(&r, &r_ref),
                rel_err(&s.nk, &s_ref.nk),
                rel_err(&s.means, &s_ref.means),
                rel_err(&s.scatter, &s_ref.scatter)
            );
            assert!(rel_err(&s.nk, &s_ref.nk) < 1e-5, "{} nk", b.name());
            assert!(rel_err(&s.means, &s_ref.means) < 1e-5, "{} means", b.name());
            assert!(
                rel_err(&s.scatter, &s_ref.scatter) < 1e-4,
                "{} scatter",
                b.name()
            );
        }
    }
}

#[test]
fn reference_estep_is_correct_on_a_hand_computed_case() {
    // One standard normal component in 1-D: log p(x) = −½x² − ½ln 2π.
    let x = Matrix::new(3, 1, vec![0.0, 1.0, -2.0]).unwrap();
    let p = GmmParams {
        k: 1,
        d: 1,
        covariance_type: CovarianceType::Full,
        weights: vec![1.0],
        means: vec![0.0],
        covariances: vec![1.0],
    };
    let b = create(BackendKind::Cpu64, None).unwrap();
    let ll = b
        .gmm_pass(&x)
        .unwrap()
        .estep(&p.estep_params().unwrap())
        .unwrap();
    let want = -0.5 * (0.0 + 1.0 + 4.0) - 1.5 * (2.0 * std::f64::consts::PI).ln();
    assert!((ll - want).abs() < 1e-12, "{ll} vs {want}");
}

/// Means far from the origin (1e4) with unit spread: a one-pass Σ r x xᵀ − N μ μᵀ in f32 would
/// lose every digit; the two-pass centred scatter keeps the variance to 1e-3.
#[test]
fn mstep_does_not_cancel_catastrophically() {
    let (n, d) = (50_000, 2);
    let x = Matrix::new(n, d, normals(n * d, 8).iter().map(|v| 1e4 + v).collect()).unwrap();
    let r = vec![1.0; n];
    let reference = create(BackendKind::Cpu64, None).unwrap();
    let mut rp = reference.gmm_pass(&x).unwrap();
    rp.set_responsibilities(&r).unwrap();
    let s_ref = rp.mstep(PassLayout::Full).unwrap();
    for b in em_backends() {
        let mut bp = b.gmm_pass(&x).unwrap();
        bp.set_responsibilities(&r).unwrap();
        let s = bp.mstep(PassLayout::Full).unwrap();
        let var = s.scatter[0] / s.nk[0];
        let var_ref = s_ref.scatter[0] / s_ref.nk[0];
        assert!(
            (var - var_ref).abs() < 1e-3 * var_ref,
            "{}: variance {var} vs {var_ref}",
            b.name()
        );
    }
}

/// Points 1e3 standard deviations from every component: log-densities ~ −5e5, where a naive
/// exp underflows to 0 and 0/0 gives NaN. Log-sum-exp keeps responsibilities finite, summing to 1.
#[test]
fn estep_is_stable_far_from_every_component() {
    let x = Matrix::new(2, 1, vec![1e3, -1e3]).unwrap();
    let p = GmmParams {
        k: 2,
        d: 1,
        covariance_type: CovarianceType::Diag,
        weights: vec![0.5, 0.5],
        means: vec![0.0, 1.0],
        covariances: vec![1.0, 1.0],
    };
    for b in em_backends() {
        let mut bp = b.gmm_pass(&x).unwrap();
        let ll = bp.estep(&p.estep_params().unwrap()).unwrap();
        assert!(ll.is_finite(), "{}: {ll}", b.name());
        let r = bp.responsibilities().unwrap();
        assert!(r.iter().all(|v| v.is_finite()), "{}: {r:?}", b.name());
        assert!(
            (r[0] + r[1] - 1.0).abs() < 1e-6 && r[0] < 1e-6,
            "{}: {r:?}",
            b.name()
        );
        assert!(
            (r[2] + r[3] - 1.0).abs() < 1e-6 && r[3] < 1e-6,
            "{}: {r:?}",
            b.name()
        );
    }
}

fn mixture_data(n: usize, seed: u64) -> (Matrix, MixtureBatch) {
    // Three well-separated 2-D components.
    let batch = MixtureBatch::from_covariances(
        1,
        3,
        2,
        vec![0.5, 0.3, 0.2],
        vec![3.0, 2.0, -4.0, 0.0, 0.0, -5.0],
        &[0.5, 0.1, 0.1, 1.4, 1.0, 0.0, 0.0, 0.25, 0.09, 0.0, 0.0, 1.0],
    )
    .unwrap();
    let p = batch.prepare().unwrap();
    let mut out = vec![0.0; n * 2];
    let mut comps = vec![0; n];
    create(BackendKind::Cpu64, None)
        .unwrap()
        .sample_mixture(&p, n, StreamKey::new(seed, 0), 0, &mut out, &mut comps)
        .unwrap();
    (Matrix::new(n, 2, out).unwrap(), p.batch)
}

/// On 30000 points from a well-separated mixture each fitted weight is within 6·√(w(1−w)/N) and
/// each mean coordinate within 6·√(Σ_ii / (N w)) of the truth (matching components by mean).
#[test]
fn fit_recovers_a_well_separated_mixture() {
    let n = 30_000;
    let (x, truth) = mixture_data(n, 5);
    let Factor::Cholesky(l) = &truth.factor else {
        unreachable!()
    };
    for b in em_backends() {
        for cov in CovarianceType::ALL {
            let mut cfg = GmmConfig::new(3);
            cfg.covariance_type = cov;
            cfg.tol = 1e-6;
            let f = fit(b.as_ref(), &x, &cfg, &mut |_, _, _| {}).unwrap();
            assert!(f.converged, "{} {cov:?} did not converge", b.name());
            for t in 0..3 {
                let tm = &truth.means[t * 2..t * 2 + 2];
                let c = (0..3)
                    .min_by(|&a, &bb| {
                        let da: f64 = (0..2)
                            .map(|j| (f.params.means[a * 2 + j] - tm[j]).powi(2))
                            .sum();
                        let db: f64 = (0..2)
                            .map(|j| (f.params.means[bb * 2 + j] - tm[j]).powi(2))
                            .sum();
                        da.total_cmp(&db)
                    })
                    .unwrap();
                let w = truth.weights[t];
                let tol_w = 6.0 * (w * (1.0 - w) / n as f64).sqrt();
                assert!(
                    (f.params.weights[c] - w).abs() < tol_w,
                    "{} {cov:?}: weight {t}",
                    b.name()
                );
                for j in 0..2 {
                    let sii: f64 = (0..2).map(|q| l[t * 4 + j * 2 + q].powi(2)).sum();
                    let tol = 6.0 * (sii / (n as f64 * w)).sqrt();
                    assert!(
                        (f.params.means[c * 2 + j] - tm[j]).abs() < tol,
                        "{} {cov:?}: mean {t},{j}",
                        b.name()
                    );
                }
            }
        }
    }
}

/// The same seed gives the same initialisation everywhere, so fits agree to 1e-5 relative:
/// every covariance type, every initialisation. `kmeans` and `random` fit K = 4 to the three
/// clusters; the single-point starts (`k-means++`, `random_from_data`) fit K = 3: from them a
/// fourth component splits a cluster along a flat ridge of the likelihood, where the f32
/// backends' ~1e-7 rounding of the mean log-likelihood moves the stopping point by up to 1e-5
/// (measured 1.1e-5 for full, wgsl vs cpu64), so agreement there says nothing about the passes.
#[test]
fn whole_fits_agree_across_backends() {
    let (x, _) = mixture_data(10_000, 6);
    for cov in CovarianceType::ALL {
        for init in INITS {
            let k = match init {
                Init::KMeans | Init::Random => 4,
                _ => 3,
            };
            let mut cfg = GmmConfig::new(k);
            cfg.covariance_type = cov;
            cfg.init = init;
            cfg.tol = 1e-7;
            cfg.max_iter = 300;
            cfg.seed = 11;
            let lls: Vec<(String, f64)> = em_backends()
                .iter()
                .map(|b| {
                    (
                        b.name().to_string(),
                        fit(b.as_ref(), &x, &cfg, &mut |_, _, _| {})
                            .unwrap()
                            .mean_log_likelihood,
                    )
                })
                .collect();
            let r = lls[0].1;
            eprintln!("{cov:?} {init:?}: {lls:?}");
            for (name, ll) in &lls {
                assert!(
                    ((ll - r) / r).abs() < 1e-5,
                    "{cov:?} {init:?}: {name} {ll} vs cpu64 {r}"
                );
            }
        }
    }
}

#[test]
fn bad_input_and_degenerate_cases() {
    let b = create(BackendKind::Cpu32, None).unwrap();
    let x = random_data(10, 2, 1);
    let none = &mut |_: usize, _: usize, _: f64| {};
    let e = fit(b.as_ref(), &x, &GmmConfig::new(11), none)
        .unwrap_err()
        .to_string();
    assert!(e.contains("exceeds the number of points"), "{e}");
    let e = fit(b.as_ref(), &x, &GmmConfig::new(0), none)
        .unwrap_err()
        .to_string();
    assert!(e.contains("k must be at least 1"), "k = 0: {e}");
    let mut bad = x.clone();
    bad.data[7] = f64::NAN;
    let e = fit(b.as_ref(), &bad, &GmmConfig::new(2), none)
        .unwrap_err()
        .to_string();
    assert!(e.contains("row 4, column 2"), "{e}");
    let mut cfg = GmmConfig::new(2);
    cfg.reg_covar = -1.0;
    let e = fit(b.as_ref(), &x, &cfg, none).unwrap_err().to_string();
    assert!(e.contains("reg_covar"), "reg_covar = -1: {e}");

    // All points identical: covariances collapse to reg_covar·I, no NaN, no panic. Each
    // component then sits on the point (means 1.5) with covariance 1e-6·I (to 1e-3 relative:
    // f32 backends hold 1e-6 + a scatter of exactly 0), so the mean log-likelihood is the
    // density of N(0, 1e-6·I) at its centre, −½·2·ln(2π·1e-6) ≈ 11.98.
    let dup = Matrix::new(50, 2, vec![1.5; 100]).unwrap();
    let reg = GmmConfig::new(2).reg_covar;
    let peak = -(2.0 * std::f64::consts::PI * reg).ln();
    for bb in em_backends() {
        let f = fit(bb.as_ref(), &dup, &GmmConfig::new(2), none).unwrap();
        let name = bb.name();
        assert!(
            (f.mean_log_likelihood - peak).abs() < 1e-3 * peak,
            "{name}: mean log-likelihood {} vs {peak}",
            f.mean_log_likelihood
        );
        assert!(f.params.covariances.iter().all(|v| v.is_finite()));
        for c in 0..2 {
            let cv = &f.params.covariances[c * 4..(c + 1) * 4];
            assert!(
                (cv[0] - reg).abs() < 1e-3 * reg && (cv[3] - reg).abs() < 1e-3 * reg,
                "{name}: component {c} covariance {cv:?}"
            );
            assert!(
                cv[1].abs() < 1e-3 * reg && cv[2].abs() < 1e-3 * reg,
                "{name}: {cv:?}"
            );
            let m = &f.params.means[c * 2..(c + 1) * 2];
            assert!(
                m.iter().all(|v| (v - 1.5).abs() < 1e-6),
                "{name}: means {m:?}"
            );
        }
        assert!((f.params.weights.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    // A component with no mass is re-seeded at a data point with the data's variance.
    let stats = MStats {
        nk: vec![10.0, 0.0],
        means: vec![0.0, 0.0, 0.0, 0.0],
        scatter: vec![10.0, 0.0, 0.0, 10.0, 0.0, 0.0, 0.0, 0.0],
    };
    let (p, reseeded) = params_from_stats(&stats, &x, &GmmConfig::new(2), &mut 0, &mut None);
    assert_eq!(reseeded, 1);
    assert!(
        x.data.chunks(2).any(|r| r == &p.means[2..4]),
        "re-seeded mean is not a data point"
    );
    assert!(p.covariances[4] > 0.0 && p.covariances[7] > 0.0);
    // Its covariance is the data's per-dimension (population) variance plus reg_covar on the
    // diagonal, 0 off it; its weight 1/N before renormalising (10/10 and 1/10 → 10/11, 1/11);
    // the other component keeps scatter/N_k + reg_covar.
    for j in 0..2 {
        let col: Vec<f64> = x.data.iter().skip(j).step_by(2).copied().collect();
        let m = col.iter().sum::<f64>() / 10.0;
        let var = col.iter().map(|v| (v - m).powi(2)).sum::<f64>() / 10.0 + 1e-6;
        let got = p.covariances[4 + 3 * j];
        assert!(
            (got - var).abs() <= 1e-12 * var,
            "dimension {j}: {got} vs {var}"
        );
    }
    assert_eq!((p.covariances[5], p.covariances[6]), (0.0, 0.0));
    assert_eq!(p.covariances[..4], [1.0 + 1e-6, 0.0, 0.0, 1.0 + 1e-6]);
    assert_eq!(p.means[..2], [0.0, 0.0]);
    assert!(
        (p.weights[0] - 10.0 / 11.0).abs() < 1e-12,
        "{:?}",
        p.weights
    );
    assert!((p.weights[1] - 1.0 / 11.0).abs() < 1e-12, "{:?}", p.weights);
    assert!((p.weights.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    p.estep_params().unwrap();
}

/// Small bindings force the GPU passes through several chunks of points and many tiles: the
/// sums must match the unchunked run's to f32 rounding (different summation shape).
#[test]
fn chunked_gpu_passes_match_unchunked() {
    let Some(small) = common::small_binding_gpu(16 * 1024) else {
        return;
    };
    let (n, d, k) = (9_000, 3, 4);
    let x = random_data(n, d, 21);
    for cov in [CovarianceType::Full, CovarianceType::Diag] {
        let p = random_params(k, d, cov, 22).estep_params().unwrap();
        for kind in [BackendKind::Wgsl, BackendKind::Cube] {
            let whole = create(kind, common::gpu().as_ref()).unwrap();
            let chunked = create(kind, Some(&small)).unwrap();
            let (Ok(mut a), Ok(mut b)) = (whole.gmm_pass(&x), chunked.gmm_pass(&x)) else {
                continue;
            };
            let (la, lb) = (a.estep(&p).unwrap(), b.estep(&p).unwrap());
            assert!(
                ((la - lb) / la).abs() < 1e-5,
                "{kind} {cov:?}: {la} vs {lb}"
            );
            assert!(
                rel_err(
                    &a.responsibilities().unwrap(),
                    &b.responsibilities().unwrap()
                ) < 1e-6
            );
            let (sa, sb) = (
                a.mstep(cov.layout()).unwrap(),
                b.mstep(cov.layout()).unwrap(),
            );
            assert!(
                rel_err(&sa.nk, &sb.nk) < 1e-5 && rel_err(&sa.means, &sb.means) < 1e-5,
                "{kind}"
            );
            assert!(
                rel_err(&sa.scatter, &sb.scatter) < 1e-5,
                "{kind} {cov:?} scatter"
            );
        }
    }
}

/// The tiled GPU kernels on shapes that are ragged for every tile and block: N not a multiple
/// of the 64-point E-step workgroup or of the M-step's 16-point staging and 256-point tiles,
/// D below and above the 32-coordinate staging chunk and not a multiple of the 8-column
/// register block, K > 1 and (K = 35) above the 32-row output block, diag and full; each
/// against cpu64 on fresh random data within `estep_and_mstep_match_cpu64`'s bounds.
#[test]
fn tiled_kernels_match_cpu64_on_ragged_shapes() {
    let reference = create(BackendKind::Cpu64, None).unwrap();
    let gpus: Vec<Box<dyn Backend>> = em_backends()
        .into_iter()
        .filter(|b| !b.name().starts_with("cpu"))
        .collect();
    if common::ci() {
        assert_eq!(gpus.len(), 2, "CI=true: both GPU backends must run EM");
    }
    for (n, d, k, seed) in [(1037, 13, 3, 30), (777, 37, 2, 31), (2113, 5, 35, 32)] {
        let x = random_data(n, d, seed);
        for cov in CovarianceType::ALL {
            let p = random_params(k, d, cov, seed + 100).estep_params().unwrap();
            let mut rp = reference.gmm_pass(&x).unwrap();
            let ll_ref = rp.estep(&p).unwrap();
            let r_ref = rp.responsibilities().unwrap();
            let s_ref = rp.mstep(cov.layout()).unwrap();
            for b in &gpus {
                let what = format!("{} N={n} D={d} K={k} {cov:?}", b.name());
                let mut bp = b.gmm_pass(&x).unwrap();
                let ll = bp.estep(&p).unwrap();
                let r = bp.responsibilities().unwrap();
                assert!(
                    r.iter().all(|v| v.is_finite()),
                    "{what}: NaN responsibility"
                );
                assert!(
                    ((ll - ll_ref) / ll_ref).abs() < 1e-5,
                    "{what}: log-lik {ll} vs {ll_ref}"
                );
                assert!(rel_err(&r, &r_ref) < 1e-4, "{what}: responsibilities");
                bp.set_responsibilities(&r_ref).unwrap();
                let s = bp.mstep(cov.layout()).unwrap();
                eprintln!(
                    "{what}: ll {:.1e} r {:.1e} nk {:.1e} means {:.1e} scatter {:.1e}",
                    ((ll - ll_ref) / ll_ref).abs(),
                    rel_err(&r, &r_ref),
                    rel_err(&s.nk, &s_ref.nk),
                    rel_err(&s.means, &s_ref.means),
                    rel_err(&s.scatter, &s_ref.scatter)
                );
                assert!(rel_err(&s.nk, &s_ref.nk) < 1e-5, "{what}: nk");
                assert!(rel_err(&s.means, &s_ref.means) < 1e-5, "{what}: means");
                assert!(
                    rel_err(&s.scatter, &s_ref.scatter) < 1e-4,
                    "{what}: scatter"
                );
            }
        }
    }
}

/// Two EM iterations (E-step, M-step, parameter update, E-step, M-step) from the same start
/// give identical bits on two fresh passes of every GPU backend: every sum has a fixed order.
#[test]
fn gpu_em_iterations_are_bit_deterministic() {
    let (n, d, k) = (3001, 6, 4);
    let x = random_data(n, d, 40);
    for b in em_backends()
        .iter()
        .filter(|b| !b.name().starts_with("cpu"))
    {
        for cov in CovarianceType::ALL {
            let run = || {
                let mut pass = b.gmm_pass(&x).unwrap();
                let mut params = random_params(k, d, cov, 41);
                let mut bits = Vec::new();
                for _ in 0..2 {
                    let ll = pass.estep(&params.estep_params().unwrap()).unwrap();
                    let s = pass.mstep(cov.layout()).unwrap();
                    bits.push(ll.to_bits());
                    bits.extend(
                        s.nk.iter()
                            .chain(&s.means)
                            .chain(&s.scatter)
                            .map(|v| v.to_bits()),
                    );
                    let mut cfg = GmmConfig::new(k);
                    cfg.covariance_type = cov;
                    params = params_from_stats(&s, &x, &cfg, &mut 0, &mut None).0;
                }
                bits
            };
            assert_eq!(run(), run(), "{} {cov:?}: two runs differ", b.name());
        }
    }
}

/// One E-step + M-step makes the same small number of dispatches and host waits at N = 2 000
/// and N = 40 000 (one chunk each): WGSL through the context's counters (6 dispatches; 15
/// waits: two per timed dispatch, one per read-back of the log-likelihood, the first-pass sums
/// and the scatter), cubecl through its kernels' own counters (6 launches, 3 read-backs).
#[test]
fn an_em_iteration_waits_a_fixed_small_number_of_times() {
    use collapse_kernels::backend::cube::gmm::CubeGmmOps;
    use collapse_kernels::backend::device_gmm::DeviceGmm;
    use collapse_kernels::ops::gmm::GmmPass;
    if common::gpu().is_none() {
        return;
    }
    // A context of its own: the shared one's counters also count the tests running beside this.
    let gpu = collapse_kernels::gpu::GpuContext::new(&collapse_kernels::gpu::GpuOptions {
        adapter: std::env::var("COLLAPSE_ADAPTER").ok(),
        poison: true,
        ..Default::default()
    })
    .unwrap();
    let client = gpu.cube_client().unwrap();
    let (d, k) = (5, 3);
    for cov in [CovarianceType::Full, CovarianceType::Diag] {
        let p = random_params(k, d, cov, 51).estep_params().unwrap();
        let mut seen = Vec::new();
        for n in [2_000, 40_000] {
            let x = random_data(n, d, 50);
            let wgsl = create(BackendKind::Wgsl, Some(&gpu)).unwrap();
            let mut pass = wgsl.gmm_pass(&x).unwrap();
            gpu.reset_counts();
            pass.estep(&p).unwrap();
            pass.mstep(cov.layout()).unwrap();
            let c = gpu.counts();
            let mut cube = DeviceGmm::new(CubeGmmOps::new(&client, &gpu), &x).unwrap();
            let before = cube.ops().counts();
            cube.estep(&p).unwrap();
            cube.mstep(cov.layout()).unwrap();
            let after = cube.ops().counts();
            let cube_counts = (after.0 - before.0, after.1 - before.1);
            eprintln!(
                "{cov:?} N={n}: wgsl {} dispatches, {} waits; cube {} launches, {} reads",
                c.dispatches, c.waits, cube_counts.0, cube_counts.1
            );
            assert!(c.dispatches <= 6 && c.waits <= 15, "{cov:?} N={n}: {c:?}");
            assert!(cube_counts.0 <= 6 && cube_counts.1 <= 3, "{cov:?} N={n}");
            seen.push((c.dispatches, c.waits, cube_counts));
        }
        assert_eq!(seen[0], seen[1], "{cov:?}: counts depend on N");
    }
}

/// Random responsibilities `[N][K]` (rows sum to 1), seeded.
fn random_responsibilities(n: usize, k: usize, seed: u64) -> Vec<f64> {
    let mut r: Vec<f64> = normals(n * k, seed).iter().map(|v| v * v + 0.01).collect();
    for row in r.chunks_mut(k) {
        let s: f64 = row.iter().sum();
        row.iter_mut().for_each(|v| *v /= s);
    }
    r
}

/// The tied and spherical updates are scikit-learn's estimates, computed here directly from
/// the responsibilities with plain loops (f64): tied `Σ_n Σ_k r_nk (x_n − μ_k)(x_n − μ_k)ᵀ / N
/// + reg·I`, spherical `Σ_j Σ_n r_nk (x_nj − μ_kj)² / (D·N_k) + reg`; within 1e-12 relative.
#[test]
fn tied_and_spherical_updates_are_scikit_learns() {
    let (n, d, k) = (700, 3, 4);
    let x = random_data(n, d, 60);
    let r = random_responsibilities(n, k, 61);
    let reg = 1e-6;
    let nk: Vec<f64> = (0..k).map(|c| (0..n).map(|i| r[i * k + c]).sum()).collect();
    let mu: Vec<f64> = (0..k * d)
        .map(|cj| {
            let (c, j) = (cj / d, cj % d);
            (0..n).map(|i| r[i * k + c] * x.row(i)[j]).sum::<f64>() / nk[c]
        })
        .collect();
    let mut tied = vec![0.0; d * d];
    for i in 0..n {
        for c in 0..k {
            for a in 0..d {
                for b in 0..d {
                    tied[a * d + b] += r[i * k + c]
                        * (x.row(i)[a] - mu[c * d + a])
                        * (x.row(i)[b] - mu[c * d + b]);
                }
            }
        }
    }
    let tied: Vec<f64> = (0..d * d)
        .map(|ab| tied[ab] / n as f64 + if ab % (d + 1) == 0 { reg } else { 0.0 })
        .collect();
    let spherical: Vec<f64> = (0..k)
        .map(|c| {
            let s: f64 = (0..n)
                .map(|i| {
                    (0..d)
                        .map(|j| r[i * k + c] * (x.row(i)[j] - mu[c * d + j]).powi(2))
                        .sum::<f64>()
                })
                .sum();
            s / (d as f64 * nk[c]) + reg
        })
        .collect();
    let cpu = create(BackendKind::Cpu64, None).unwrap();
    for (cov, want) in [
        (CovarianceType::Tied, tied),
        (CovarianceType::Spherical, spherical),
    ] {
        let mut pass = cpu.gmm_pass(&x).unwrap();
        pass.set_responsibilities(&r).unwrap();
        let mut cfg = GmmConfig::new(k);
        cfg.covariance_type = cov;
        cfg.reg_covar = reg;
        let s = pass.mstep(cov.layout()).unwrap();
        let (p, reseeded) = params_from_stats(&s, &x, &cfg, &mut 0, &mut None);
        assert_eq!(reseeded, 0);
        assert_eq!(p.covariances.len(), want.len(), "{cov:?}");
        let e = rel_err(&p.covariances, &want);
        assert!(e < 1e-12, "{cov:?}: {e:.2e}");
        assert!(rel_err(&p.means, &mu) < 1e-12, "{cov:?} means");
        // The expanded form gives every component the shared (tied) or repeated (spherical)
        // covariance.
        for c in 0..k {
            let m = p.component_covariance(c);
            for a in 0..d {
                for b in 0..d {
                    let w = match cov {
                        CovarianceType::Tied => p.covariances[a * d + b],
                        _ if a == b => p.covariances[c],
                        _ => 0.0,
                    };
                    assert_eq!(m[a * d + b], w, "{cov:?} component {c} ({a}, {b})");
                }
            }
        }
    }
}

/// The four initialisations as scikit-learn defines them, reproducible from the seed and
/// different per initialisation index: `kmeans` a hard assignment at a fixed point of Lloyd's
/// algorithm (each point at its nearest centroid); `k-means++` and `random_from_data`
/// responsibility 1 at K distinct points, one per component, 0 elsewhere; `random` rows summing
/// to 1, every entry positive. `random_from_data` picks each point with probability K/N (over
/// 4000 seeds, within 5 standard errors).
#[test]
fn initialisations_are_scikit_learns() {
    use collapse_kernels::models::gmm::initial_responsibilities;
    let (x, _) = mixture_data(2_000, 9);
    let (n, d, k) = (x.rows, x.cols, 4);
    for init in INITS {
        let mut cfg = GmmConfig::new(k);
        cfg.init = init;
        cfg.seed = 3;
        let r = initial_responsibilities(&x, &cfg, 0);
        assert_eq!(r, initial_responsibilities(&x, &cfg, 0), "{init:?}");
        assert_ne!(r, initial_responsibilities(&x, &cfg, 1), "{init:?}");
        assert!(r.iter().all(|v| v.is_finite() && *v >= 0.0), "{init:?}");
        match init {
            Init::Random => {
                assert!(r.iter().all(|v| *v > 0.0));
                for row in r.chunks(k) {
                    assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
                }
            }
            Init::KMeans => {
                let label: Vec<usize> = r
                    .chunks(k)
                    .map(|row| {
                        assert_eq!(row.iter().filter(|v| **v == 1.0).count(), 1);
                        assert_eq!(row.iter().sum::<f64>(), 1.0);
                        row.iter().position(|v| *v == 1.0).unwrap()
                    })
                    .collect();
                let mut centre = vec![0.0; k * d];
                let mut count = vec![0.0; k];
                for (i, &l) in label.iter().enumerate() {
                    count[l] += 1.0;
                    for j in 0..d {
                        centre[l * d + j] += x.row(i)[j];
                    }
                }
                assert!(count.iter().all(|c| *c > 0.0), "an empty cluster");
                for (i, &l) in label.iter().enumerate() {
                    let dist = |c: usize| -> f64 {
                        (0..d)
                            .map(|j| (x.row(i)[j] - centre[c * d + j] / count[c]).powi(2))
                            .sum()
                    };
                    let nearest = (0..k).min_by(|&a, &b| dist(a).total_cmp(&dist(b))).unwrap();
                    assert!(
                        nearest == l || dist(nearest) >= dist(l) * (1.0 - 1e-12),
                        "point {i} is not at its nearest centroid"
                    );
                }
            }
            Init::KMeansPlusPlus | Init::RandomFromData => {
                let rows: Vec<usize> = (0..n)
                    .filter(|&i| r[i * k..(i + 1) * k].iter().any(|v| *v != 0.0))
                    .collect();
                assert_eq!(rows.len(), k, "{init:?}: {rows:?}");
                for c in 0..k {
                    let col: Vec<f64> = (0..n).map(|i| r[i * k + c]).collect();
                    assert_eq!(col.iter().filter(|v| **v == 1.0).count(), 1, "{init:?}");
                    assert_eq!(col.iter().sum::<f64>(), 1.0, "{init:?}");
                }
            }
        }
    }
    // random_from_data: uniform without replacement.
    let small = Matrix::new(10, 1, (0..10).map(|v| v as f64).collect()).unwrap();
    let (seeds, k) = (4000, 3);
    let mut hits = [0usize; 10];
    for seed in 0..seeds {
        let mut cfg = GmmConfig::new(k);
        cfg.init = Init::RandomFromData;
        cfg.seed = seed;
        let r = initial_responsibilities(&small, &cfg, 0);
        for (i, h) in hits.iter_mut().enumerate() {
            *h += r[i * k..(i + 1) * k].contains(&1.0) as usize;
        }
    }
    let p = k as f64 / 10.0;
    let se = (seeds as f64 * p * (1.0 - p)).sqrt();
    for (i, h) in hits.iter().enumerate() {
        assert!(
            (*h as f64 - seeds as f64 * p).abs() < 5.0 * se,
            "point {i} chosen {h} times of {seeds}, expected {}",
            seeds as f64 * p
        );
    }
}

/// `n_iter` counts the EM updates behind the reported parameters (scikit-learn's `n_iter_`):
/// a converged fit made `n_iter + 1` E-steps; `max_iter = n_iter` gives the same fit, still
/// converged; one fewer stops unconverged at `max_iter` updates, reporting the log-likelihood of
/// the parameters it reports; a warm start from those parameters takes the one missing update to
/// the converged fit, bit for bit. A warm start of another shape is refused.
#[test]
fn n_iter_converged_and_warm_start_follow_scikit_learn() {
    use collapse_kernels::models::gmm::{fit_from, score};
    let (x, _) = mixture_data(3_000, 12);
    let cpu = create(BackendKind::Cpu64, None).unwrap();
    for cov in CovarianceType::ALL {
        let mut cfg = GmmConfig::new(3);
        cfg.covariance_type = cov;
        cfg.tol = 1e-9;
        cfg.max_iter = 1000;
        let mut esteps = 0;
        let f = fit(cpu.as_ref(), &x, &cfg, &mut |_, _, _| esteps += 1).unwrap();
        assert!(
            f.converged && f.n_iter >= 3,
            "{cov:?}: {} iterations",
            f.n_iter
        );
        assert_eq!(esteps, f.n_iter + 1, "{cov:?}");
        cfg.max_iter = f.n_iter;
        let g = fit(cpu.as_ref(), &x, &cfg, &mut |_, _, _| {}).unwrap();
        assert!(g.converged, "{cov:?}");
        assert_eq!((g.n_iter, &g.params), (f.n_iter, &f.params), "{cov:?}");
        cfg.max_iter = f.n_iter - 1;
        let h = fit(cpu.as_ref(), &x, &cfg, &mut |_, _, _| {}).unwrap();
        assert!(!h.converged, "{cov:?}");
        assert_eq!(h.n_iter, cfg.max_iter, "{cov:?}");
        let s = score(cpu.as_ref(), &h.params, &x).unwrap();
        assert_eq!(s.mean_log_likelihood, h.mean_log_likelihood, "{cov:?}");
        cfg.max_iter = 1000;
        cfg.n_init = 5;
        let w = fit_from(cpu.as_ref(), &x, &cfg, Some(&h.params), &mut |_, _, _| {}).unwrap();
        assert!(w.converged, "{cov:?}");
        assert_eq!((w.n_iter, &w.params), (1, &f.params), "{cov:?}");
        let mut other = GmmConfig::new(2);
        other.covariance_type = cov;
        let e = fit_from(cpu.as_ref(), &x, &other, Some(&h.params), &mut |_, _, _| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("starting fit has K = 3"), "{e}");
    }
}
