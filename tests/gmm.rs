//! EM for Gaussian mixtures: each backend's E-step and M-step against cpu64 on fresh random
//! data, whole fits, parameter recovery with bounds from N, numerical robustness and bad input.

mod common;

use collapse_kernels::backend::{BackendKind, create};
use collapse_kernels::io::Matrix;
use collapse_kernels::models::gmm::{GmmConfig, Init, fit, params_from_stats};
use collapse_kernels::ops::Backend;
use collapse_kernels::ops::gmm::{CovarianceType, GmmParams, MStats};
use collapse_kernels::ops::sampling::{Factor, MixtureBatch};
use collapse_kernels::rng::StreamKey;

use common::rel_err;

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

/// Random parameters: weights ∝ 1 + |z|, means 3z, covariances A Aᵀ + 0.5 I (or variances
/// 0.5 + z²).
fn random_params(k: usize, d: usize, cov: CovarianceType, seed: u64) -> GmmParams {
    let z = normals(k + k * d + k * d * d, seed);
    let w: Vec<f64> = z[..k].iter().map(|v| 1.0 + v.abs()).collect();
    let s: f64 = w.iter().sum();
    let covariances = match cov {
        CovarianceType::Full => (0..k)
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
/// 8.3e-7, 2.1e-7, 1.8e-7 and 2.1e-7.
#[test]
fn estep_and_mstep_match_cpu64() {
    let reference = create(BackendKind::Cpu64, None).unwrap();
    for cov in [CovarianceType::Full, CovarianceType::Diag] {
        let (n, d, k) = (20_000, 6, 5);
        let x = random_data(n, d, 3);
        let p = random_params(k, d, cov, 4).estep_params().unwrap();
        let mut rp = reference.gmm_pass(&x).unwrap();
        let ll_ref = rp.estep(&p).unwrap();
        let r_ref = rp.responsibilities().unwrap();
        let s_ref = rp.mstep(cov).unwrap();
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
            let s = bp.mstep(cov).unwrap();
            eprintln!(
                "{} {cov:?}: ll {:.1e} r {:.1e} nk {:.1e} means {:.1e} scatter {:.1e}",
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
    let s_ref = rp.mstep(CovarianceType::Full).unwrap();
    for b in em_backends() {
        let mut bp = b.gmm_pass(&x).unwrap();
        bp.set_responsibilities(&r).unwrap();
        let s = bp.mstep(CovarianceType::Full).unwrap();
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
        for cov in [CovarianceType::Full, CovarianceType::Diag] {
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

/// The same seed gives the same initialisation everywhere, so fits agree to 1e-5 relative.
#[test]
fn whole_fits_agree_across_backends() {
    let (x, _) = mixture_data(10_000, 6);
    for cov in [CovarianceType::Full, CovarianceType::Diag] {
        for init in [Init::KMeansPP, Init::Random] {
            let mut cfg = GmmConfig::new(4);
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
            let (sa, sb) = (a.mstep(cov).unwrap(), b.mstep(cov).unwrap());
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
        for cov in [CovarianceType::Full, CovarianceType::Diag] {
            let p = random_params(k, d, cov, seed + 100).estep_params().unwrap();
            let mut rp = reference.gmm_pass(&x).unwrap();
            let ll_ref = rp.estep(&p).unwrap();
            let r_ref = rp.responsibilities().unwrap();
            let s_ref = rp.mstep(cov).unwrap();
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
                let s = bp.mstep(cov).unwrap();
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
        for cov in [CovarianceType::Full, CovarianceType::Diag] {
            let run = || {
                let mut pass = b.gmm_pass(&x).unwrap();
                let mut params = random_params(k, d, cov, 41);
                let mut bits = Vec::new();
                for _ in 0..2 {
                    let ll = pass.estep(&params.estep_params().unwrap()).unwrap();
                    let s = pass.mstep(cov).unwrap();
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
            pass.mstep(cov).unwrap();
            let c = gpu.counts();
            let mut cube = DeviceGmm::new(CubeGmmOps::new(&client, &gpu), &x).unwrap();
            let before = cube.ops().counts();
            cube.estep(&p).unwrap();
            cube.mstep(cov).unwrap();
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
