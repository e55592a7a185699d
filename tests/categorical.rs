//! Categorical sampling from logits on every backend: indices vs the f64 reference (differences
//! only at CDF boundaries, within a derived distance), chi-square against softmax(logits/T),
//! top-k and ties, chunking, and errors.

mod common;

use collapse_kernels::backend::{BackendKind, create};
use collapse_kernels::ops::Backend;
use collapse_kernels::ops::sampling::Categorical;
use collapse_kernels::rng::{self, StreamKey};

fn random_logits(b: usize, v: usize, scale: f64, seed: u64) -> Vec<f64> {
    let mut z = vec![0f64; b * v];
    create(BackendKind::Cpu64, None)
        .unwrap()
        .normal(StreamKey::new(seed, 55), 0, &mut z)
        .unwrap();
    z.iter().map(|x| x * scale).collect()
}

/// The f64 probabilities of each row, as the method defines them (top-k in index order on ties).
fn probabilities(c: &Categorical) -> Vec<f64> {
    let v = c.classes;
    let mut out = Vec::new();
    for row in c.logits.chunks(v) {
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let mut sorted = row.to_vec();
        sorted.sort_by(|a, b| b.partial_cmp(a).unwrap());
        let t = sorted[c.k() - 1];
        let mut ties = c.k() - row.iter().filter(|&&x| x > t).count();
        let p: Vec<f64> = row
            .iter()
            .map(|&x| {
                let keep = x > -1e30
                    && (x > t
                        || (x == t && ties > 0 && {
                            ties -= 1;
                            true
                        }));
                if keep {
                    ((x - m) / c.temperature).exp()
                } else {
                    0.0
                }
            })
            .collect();
        let z: f64 = p.iter().sum();
        out.extend(p.iter().map(|x| x / z));
    }
    out
}

fn draw(b: &dyn Backend, c: &Categorical, s: usize, key: StreamKey, first: u64) -> Vec<u32> {
    let mut out = vec![u32::MAX; c.rows * s];
    b.sample_categorical(c, s, key, first, &mut out)
        .unwrap_or_else(|e| panic!("{}: {e}", b.name()));
    out
}

/// Where a backend's class differs from cpu64's, the f64 CDF between the two classes must lie
/// within δ of the sample's uniform u: the difference is rounding at a boundary, not a wrong
/// draw. δ = 2⁻²⁴ (f32 vs f64 uniform) + (2V + 64)·2⁻²⁴ (f32 recursive sums of the running and
/// total mass, each ≤ (V−1)·2⁻²⁴ relative) + 1e-5 (exp error and logits rounded to f32).
#[test]
fn classes_match_cpu64_except_at_cdf_boundaries() {
    let reference = create(BackendKind::Cpu64, None).unwrap();
    let key = StreamKey::new(5150, 2);
    let (b, v, s) = (32, 257, 64);
    for (t, top_k, scale) in [
        (1.0, None, 2.0),
        (0.5, Some(10), 3.0),
        (2.0, Some(1), 1.0),
        (0.7, Some(257), 4.0),
    ] {
        let mut logits = random_logits(b, v, scale, 9);
        logits[3] = f64::NEG_INFINITY; // probability 0
        let c = Categorical {
            rows: b,
            classes: v,
            logits,
            temperature: t,
            top_k,
        };
        let p = probabilities(&c);
        let want = draw(reference.as_ref(), &c, s, key, 11);
        let delta = rng::INV_2POW24_F32 as f64 * (1.0 + 2.0 * v as f64 + 64.0) + 1e-5;
        for be in common::backends().iter().filter(|b| b.name() != "cpu64") {
            let got = draw(be.as_ref(), &c, s, key, 11);
            let mut mismatches = 0;
            for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                assert!((g as usize) < v, "{}: class {g} out of range", be.name());
                let row = i / s;
                assert!(
                    p[row * v + g as usize] > 0.0,
                    "{}: sample {i} chose zero-probability class {g}",
                    be.name()
                );
                if g == w {
                    continue;
                }
                mismatches += 1;
                let u = rng::unit_f64(key.u32_at(11 + i as u64));
                let (lo, hi) = (g.min(w) as usize, g.max(w) as usize);
                let cdf_at = |j: usize| p[row * v..row * v + j + 1].iter().sum::<f64>();
                for j in lo..hi {
                    assert!(
                        (cdf_at(j) - u).abs() <= delta,
                        "{} sample {i}: class {g} vs cpu64 {w}, u = {u}, CDF({j}) = {} (δ = {delta:.2e})",
                        be.name(),
                        cdf_at(j)
                    );
                }
            }
            eprintln!(
                "{} T={t} top_k={top_k:?}: {mismatches} of {} classes differ from cpu64 (boundary cases)",
                be.name(),
                b * s
            );
            assert!(
                mismatches * 100 <= b * s,
                "{}: too many boundary mismatches",
                be.name()
            );
        }
    }
}

#[test]
fn gpu_classes_equal_cpu32_classes_almost_always() {
    // Same precision, same summation order: only the GPU's exp can move a boundary.
    let cpu32 = create(BackendKind::Cpu32, None).unwrap();
    let c = Categorical {
        rows: 256,
        classes: 512,
        logits: random_logits(256, 512, 2.0, 3),
        temperature: 0.8,
        top_k: Some(40),
    };
    let key = StreamKey::new(1, 1);
    let want = draw(cpu32.as_ref(), &c, 8, key, 0);
    for b in common::gpu_backends() {
        let got = draw(b.as_ref(), &c, 8, key, 0);
        let diff = got.iter().zip(&want).filter(|(a, b)| a != b).count();
        eprintln!(
            "{} vs cpu32: {diff} of {} classes differ",
            b.name(),
            want.len()
        );
        assert!(diff * 1000 <= want.len(), "{}: {diff} differ", b.name());
    }
}

/// Wilson–Hilferty approximation of the chi-square quantile with `df` degrees of freedom at
/// upper tail probability α (z = the standard normal quantile); accurate to < 1% for df ≥ 5.
fn chi2_quantile(df: f64, z: f64) -> f64 {
    let a = 2.0 / (9.0 * df);
    df * (1.0 - a + z * a.sqrt()).powi(3)
}

/// Pearson χ² of each row's class counts against softmax(logits/T) with top-k; fails at
/// significance α = 1e-6 (z = 4.753). Classes outside the top-k must never appear.
#[test]
fn class_frequencies_pass_chi_square() {
    let (b, v, s) = (4, 50, 250_000);
    for top_k in [None, Some(10)] {
        let c = Categorical {
            rows: b,
            classes: v,
            logits: random_logits(b, v, 1.0, 17),
            temperature: 0.9,
            top_k,
        };
        let p = probabilities(&c);
        for be in common::backends() {
            let got = draw(be.as_ref(), &c, s, StreamKey::new(99, 0), 0);
            for row in 0..b {
                let mut counts = vec![0f64; v];
                for &g in &got[row * s..(row + 1) * s] {
                    counts[g as usize] += 1.0;
                }
                let mut chi2 = 0.0;
                let mut df = -1.0;
                for j in 0..v {
                    let e = p[row * v + j] * s as f64;
                    if e == 0.0 {
                        assert_eq!(counts[j], 0.0, "{}: excluded class {j} drawn", be.name());
                        continue;
                    }
                    assert!(e >= 5.0, "test design: expected count {e} too small");
                    chi2 += (counts[j] - e).powi(2) / e;
                    df += 1.0;
                }
                let q = chi2_quantile(df, 4.753);
                assert!(
                    chi2 <= q,
                    "{} row {row} top_k {top_k:?}: χ² = {chi2:.1} > {q:.1} (df {df})",
                    be.name()
                );
            }
        }
    }
}

#[test]
fn ties_at_the_top_k_cut_keep_the_lowest_indices() {
    let c = Categorical {
        rows: 1,
        classes: 8,
        logits: vec![0.5, 1.0, 1.0, 1.0, 1.0, -2.0, 1.0, 0.0],
        temperature: 1.0,
        top_k: Some(3),
    };
    for b in common::backends() {
        let got = draw(b.as_ref(), &c, 30_000, StreamKey::new(4, 4), 0);
        let mut counts = [0usize; 8];
        got.iter().for_each(|&g| counts[g as usize] += 1);
        assert_eq!(
            counts[0] + counts[4..].iter().sum::<usize>(),
            0,
            "{}: {counts:?}",
            b.name()
        );
        for &n in &counts[1..4] {
            // Each of 1, 2, 3 has p = 1/3: 6 standard errors.
            assert!(
                (n as f64 - 10_000.0).abs() <= 6.0 * (30_000.0f64 * (2.0 / 9.0)).sqrt(),
                "{}: {counts:?}",
                b.name()
            );
        }
    }
}

#[test]
fn chunked_gpu_launches_match_unchunked() {
    let Some(small) = common::small_binding_gpu(2048) else {
        return;
    };
    let c = Categorical {
        rows: 10,
        classes: 37,
        logits: random_logits(10, 37, 1.5, 8),
        temperature: 1.0,
        top_k: Some(5),
    };
    for kind in [BackendKind::Wgsl, BackendKind::Cube] {
        let chunked = create(kind, Some(&small)).unwrap();
        let whole = create(kind, common::gpu().as_ref()).unwrap();
        let key = StreamKey::new(6, 6);
        assert_eq!(
            draw(chunked.as_ref(), &c, 300, key, 5),
            draw(whole.as_ref(), &c, 300, key, 5),
            "{kind}"
        );
    }
}

#[test]
fn bad_parameters_are_clear_errors() {
    let ok = Categorical {
        rows: 2,
        classes: 3,
        logits: vec![0.0; 6],
        temperature: 1.0,
        top_k: None,
    };
    let cases = [
        (
            "T = 0",
            Categorical {
                temperature: 0.0,
                ..ok.clone()
            },
            "temperature",
        ),
        (
            "T < 0",
            Categorical {
                temperature: -1.0,
                ..ok.clone()
            },
            "temperature",
        ),
        (
            "T NaN",
            Categorical {
                temperature: f64::NAN,
                ..ok.clone()
            },
            "temperature",
        ),
        (
            "NaN logit",
            Categorical {
                logits: vec![0.0, 0.0, 0.0, 0.0, f64::NAN, 0.0],
                ..ok.clone()
            },
            "row 1, column 1",
        ),
        (
            "+inf logit",
            Categorical {
                logits: vec![f64::INFINITY, 0.0, 0.0, 0.0, 0.0, 0.0],
                ..ok.clone()
            },
            "row 0, column 0",
        ),
        (
            "all -inf",
            Categorical {
                logits: vec![
                    0.0,
                    0.0,
                    0.0,
                    f64::NEG_INFINITY,
                    f64::NEG_INFINITY,
                    f64::NEG_INFINITY,
                ],
                ..ok.clone()
            },
            "row 1",
        ),
        (
            "top_k 0",
            Categorical {
                top_k: Some(0),
                ..ok.clone()
            },
            "top_k",
        ),
        (
            "top_k > V",
            Categorical {
                top_k: Some(4),
                ..ok.clone()
            },
            "top_k",
        ),
        (
            "shape",
            Categorical {
                logits: vec![0.0; 5],
                ..ok.clone()
            },
            "B·V",
        ),
        (
            "V = 0",
            Categorical {
                classes: 0,
                logits: vec![],
                ..ok.clone()
            },
            "V ≥ 1",
        ),
    ];
    for b in common::backends() {
        for (what, c, needle) in &cases {
            let mut out = vec![0u32; c.rows * 2];
            let e = b
                .sample_categorical(c, 2, StreamKey::new(0, 0), 0, &mut out)
                .expect_err(what);
            assert!(e.to_string().contains(needle), "{}: {what}: {e}", b.name());
        }
        let mut short = vec![0u32; 3];
        let e = b
            .sample_categorical(&ok, 2, StreamKey::new(0, 0), 0, &mut short)
            .expect_err("short output");
        assert!(
            e.to_string().contains("output holds 3 classes; B·S = 4"),
            "{}: {e}",
            b.name()
        );
        // Nothing was drawn into it.
        assert_eq!(short, [0; 3], "{}", b.name());
    }
}

/// The WGSL sampler (one CDF pass per row, then a binary search per sample) draws exactly the
/// classes of the per-sample scan it replaced, which the cube kernel still runs line for line
/// (same f32 summation order, same exp on one device): every class equal, over rows with and
/// without top-k, ties at the cut, excluded logits, temperatures and a start offset.
#[test]
fn row_cdf_and_binary_search_draw_the_classes_of_the_per_sample_scan() {
    let Some(gpu) = common::gpu() else {
        return;
    };
    let wgsl = create(BackendKind::Wgsl, Some(&gpu)).unwrap();
    let scan = create(BackendKind::Cube, Some(&gpu)).unwrap();
    for (case, (rows, classes, scale, temperature, top_k)) in [
        (64, 256, 2.0, 1.0, None),
        (37, 300, 3.0, 0.7, Some(40)),
        (5, 1000, 1.0, 1.3, Some(999)),
        (3, 65, 4.0, 0.5, Some(1)),
    ]
    .into_iter()
    .enumerate()
    {
        let mut logits = random_logits(rows, classes, scale, 100 + case as u64);
        // Ties at the top-k cut, excluded classes and -inf in every row.
        for r in 0..rows {
            let row = &mut logits[r * classes..(r + 1) * classes];
            row[1] = row[0];
            row[2] = row[0];
            row[3] = -1e31;
            row[classes - 1] = f64::NEG_INFINITY;
        }
        let c = Categorical {
            rows,
            classes,
            logits,
            temperature,
            top_k,
        };
        let key = StreamKey::new(9, case as u64);
        let want = draw(scan.as_ref(), &c, 50, key, 7);
        let got = draw(wgsl.as_ref(), &c, 50, key, 7);
        let diff = got.iter().zip(&want).filter(|(a, b)| a != b).count();
        assert_eq!(
            diff,
            0,
            "case {case}: {diff} of {} classes differ",
            want.len()
        );
    }
}
