//! Philox on every backend: bit-identical u32 streams, normals within a measured bound, and
//! statistical checks whose thresholds are derived from the sample size.

mod common;

use collapse_kernels::backend::{BackendKind, create};
use collapse_kernels::rng::{self, StreamKey};

/// (seed, stream, start) triples: small, large 64-bit values, an unaligned start, and a start
/// whose block counter crosses the 2^32 boundary inside the range (tests the carry).
const CASES: [(u64, u64, u64); 4] = [
    (0, 0, 0),
    (42, 7, 3),
    (0xDEAD_BEEF_0123_4567, 0xFFFF_FFFF_0000_0001, 1_000_001),
    (12345, 1 << 40, (1u64 << 34) - 2_000_000),
];

const N_IDENTICAL: usize = 1 << 20; // ≥ 10^6 draws per case

#[test]
fn u32_streams_are_bit_identical_across_backends() {
    let reference = create(BackendKind::Cpu64, None).unwrap();
    let backends = common::backends();
    for (seed, stream, start) in CASES {
        let key = StreamKey::new(seed, stream);
        let mut want = vec![0u32; N_IDENTICAL];
        reference.uniform_u32(key, start, &mut want).unwrap();
        // Spot-check the reference against the scalar definition.
        for i in [0usize, 1, 2, 3, 4, 999_999, N_IDENTICAL - 1] {
            assert_eq!(want[i], key.u32_at(start + i as u64));
        }
        for b in &backends {
            let mut got = vec![0u32; N_IDENTICAL];
            b.uniform_u32(key, start, &mut got).unwrap();
            let bad = got.iter().zip(&want).position(|(g, w)| g != w);
            assert!(
                bad.is_none(),
                "{}: draw {} of (seed {seed}, stream {stream}) differs: got {:#x}, want {:#x}",
                b.name(),
                start + bad.unwrap() as u64,
                got[bad.unwrap()],
                want[bad.unwrap()]
            );
        }
    }
}

#[test]
fn uniforms_match_the_documented_conversion_exactly() {
    let key = StreamKey::new(9, 9);
    let n = 100_003;
    let mut raw = vec![0u32; n];
    create(BackendKind::Cpu64, None)
        .unwrap()
        .uniform_u32(key, 5, &mut raw)
        .unwrap();
    for b in common::backends() {
        let mut u = vec![f64::NAN; n];
        b.uniform(key, 5, &mut u).unwrap();
        for (i, (&x, &v)) in raw.iter().zip(&u).enumerate() {
            let want = match b.precision() {
                collapse_kernels::ops::Precision::F64 => rng::unit_f64(x),
                collapse_kernels::ops::Precision::F32 => rng::unit_f32(x) as f64,
            };
            assert_eq!(v, want, "{} uniform {i}", b.name());
        }
    }
}

/// f32 normals on the GPU vs the cpu32 normals (same f32 formula, same uniforms): the only
/// difference is the GPU's ln/sqrt/sin/cos. The error measure is |Δ| / max(1, |z|).
/// Measured on lavapipe (llvmpipe, Mesa 22.3.6) over 4 × 2^20 normals: 2.8e-5 (run this test
/// with `-- --nocapture` to print it per backend and case). WGSL only promises sin/cos within 2⁻¹¹
/// ≈ 4.9e-4 absolute on [−π, π] (so up to r·2⁻¹¹ ≈ 2.8e-3 in z); the bound below is the measured
/// figure with a margin of ~4×, tight enough that any formula or stream error (O(1)) fails.
const F32_ARITH_SCALED: f64 = 1e-4;

#[test]
fn gpu_normals_match_cpu32_within_measured_bound() {
    let cpu32 = create(BackendKind::Cpu32, None).unwrap();
    for (seed, stream, start) in CASES {
        let key = StreamKey::new(seed, stream);
        let mut want = vec![0f64; N_IDENTICAL];
        cpu32.normal(key, start, &mut want).unwrap();
        for b in common::gpu_backends() {
            let mut got = vec![f64::NAN; N_IDENTICAL];
            b.normal(key, start, &mut got).unwrap();
            let mut worst = (0.0f64, 0usize);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(g.is_finite(), "{}: normal {i} is {g}", b.name());
                let e = (g - w).abs() / w.abs().max(1.0);
                if e > worst.0 {
                    worst = (e, i);
                }
            }
            eprintln!(
                "{} vs cpu32 normals: max scaled |Δ| = {:.3e} at {}",
                b.name(),
                worst.0,
                worst.1
            );
            assert!(
                worst.0 <= F32_ARITH_SCALED,
                "{}: normal {} differs from cpu32 by {:.3e} (bound {F32_ARITH_SCALED:e})",
                b.name(),
                worst.1,
                worst.0
            );
        }
    }
}

/// f32 normals vs the f64 reference. They use the same draws but f32 uniforms have 24 bits
/// (u₁ ≥ 2⁻²⁴, so |z| ≤ √(48 ln 2) ≈ 5.77) where f64 ones have 32: the difference is the
/// quantisation of u₁ and u₂ plus f32 rounding. For each element the bound is
/// |r(u₁⁽³²⁾) − r(u₁⁽⁶⁴⁾)| + r·2π·2⁻²⁴ + `F32_ARITH_SCALED`·max(1, |z|): the first two terms
/// are the exact effect of the coarser uniforms, the last covers f32 arithmetic as above.
#[test]
fn f32_normals_match_cpu64_up_to_uniform_quantisation() {
    let cpu64 = create(BackendKind::Cpu64, None).unwrap();
    let key = StreamKey::new(2024, 11);
    let n = 1 << 18;
    let mut raw = vec![0u32; n];
    cpu64.uniform_u32(key, 0, &mut raw).unwrap();
    let mut want = vec![0f64; n];
    cpu64.normal(key, 0, &mut want).unwrap();
    for b in common::backends().iter().filter(|b| b.name() != "cpu64") {
        let mut got = vec![f64::NAN; n];
        b.normal(key, 0, &mut got).unwrap();
        for i in 0..n {
            let pair = i & !1;
            let r64 = (-2.0 * rng::open_unit_f64(raw[pair]).ln()).sqrt();
            let r32 = (-2.0 * (rng::open_unit_f32(raw[pair]) as f64).ln()).sqrt();
            let bound = (r64 - r32).abs()
                + r64 * std::f64::consts::TAU * rng::INV_2POW24_F32 as f64
                + F32_ARITH_SCALED * want[i].abs().max(1.0);
            assert!(
                (got[i] - want[i]).abs() <= bound,
                "{} normal {i}: {} vs cpu64 {} (bound {bound:.3e})",
                b.name(),
                got[i],
                want[i]
            );
        }
    }
}

/// Kolmogorov–Smirnov statistic of sorted `x` against `cdf`.
fn ks(sorted: &[f64], cdf: impl Fn(f64) -> f64) -> f64 {
    let n = sorted.len() as f64;
    sorted
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let f = cdf(x);
            (f - i as f64 / n).max((i + 1) as f64 / n - f)
        })
        .fold(0.0, f64::max)
}

fn mean_var(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    // Pairwise-free but accurate enough: f64 sums of 10^7 terms of size O(1) lose ~1e-9.
    let m = x.iter().sum::<f64>() / n;
    let v = x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (n - 1.0);
    (m, v)
}

const N_STAT: usize = 10_000_000;

/// Thresholds, derived from N (all at "6 standard errors" or a 1e-6 tail, so a correct
/// generator fails with probability < 1e-6 per check, and these are fixed seeds anyway):
/// - mean:      |m − μ| ≤ 6·σ/√N;
/// - variance:  |s² − σ²| ≤ 6·√((μ₄ − σ⁴)/N)  (the large-N variance of s²);
/// - KS:        D ≤ t/√N with t = √(ln(2/α)/2), α = 1e-6, from P(√N·D > t) ≤ 2e^(−2t²)
///   (Dvoretzky–Kiefer–Wolfowitz with Massart's constant).
fn check_distribution(
    label: &str,
    mut x: Vec<f64>,
    mu: f64,
    sigma2: f64,
    mu4: f64,
    cdf: impl Fn(f64) -> f64,
) {
    let n = x.len() as f64;
    assert!(x.iter().all(|v| v.is_finite()), "{label}: non-finite value");
    let (m, v) = mean_var(&x);
    let mean_tol = 6.0 * (sigma2 / n).sqrt();
    let var_tol = 6.0 * ((mu4 - sigma2 * sigma2) / n).sqrt();
    assert!(
        (m - mu).abs() <= mean_tol,
        "{label}: mean {m} vs {mu} (tol {mean_tol:.2e})"
    );
    assert!(
        (v - sigma2).abs() <= var_tol,
        "{label}: variance {v} vs {sigma2} (tol {var_tol:.2e})"
    );
    x.sort_by(f64::total_cmp);
    let d = ks(&x, cdf);
    let t = ((2.0f64 / 1e-6).ln() / 2.0).sqrt();
    let ks_tol = t / n.sqrt();
    assert!(d <= ks_tol, "{label}: KS D = {d:.3e} > {ks_tol:.3e}");
    eprintln!("{label}: mean {m:.6} var {v:.6} KS D {d:.2e} (tol {ks_tol:.2e})");
}

fn normal_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

/// Every backend, 10^7 uniforms and 10^7 normals.
#[test]
fn uniform_and_normal_statistics() {
    let key = StreamKey::new(777, 3);
    for b in common::backends() {
        let n = N_STAT;
        let mut u = vec![0f64; n];
        b.uniform(key, 0, &mut u).unwrap();
        check_distribution(
            &format!("{} uniform", b.name()),
            u,
            0.5,
            1.0 / 12.0,
            1.0 / 80.0,
            |x| x.clamp(0.0, 1.0),
        );
        let mut z = vec![0f64; n];
        b.normal(key, 1 << 30, &mut z).unwrap();
        check_distribution(
            &format!("{} normal", b.name()),
            z,
            0.0,
            1.0,
            3.0,
            normal_cdf,
        );
    }
}

#[test]
fn backend_names_round_trip_and_unknown_is_an_error() {
    for k in BackendKind::ALL {
        assert_eq!(k.name().parse::<BackendKind>().unwrap(), k);
    }
    let e = "cuda".parse::<BackendKind>().unwrap_err().to_string();
    assert!(e.contains("cpu64, cpu32, wgsl, cube"), "{e}");
}

/// The WGSL Philox with the native `u64` multiply (the default where the adapter has
/// `SHADER_INT64`, as lavapipe does) and with the emulated 16-bit-halves multiply
/// (`GpuOptions::emulated_int64`) both give the reference's bits, on every case above.
#[test]
fn native_and_emulated_philox_multiply_give_the_same_bits() {
    use collapse_kernels::gpu::{GpuContext, GpuOptions};
    let Some(native) = common::gpu() else {
        return;
    };
    if common::ci() {
        assert!(
            native.native_int64(),
            "CI=true: lavapipe has SHADER_INT64, the native multiply should be in use"
        );
    }
    let emulated = GpuContext::new(&GpuOptions {
        adapter: std::env::var("COLLAPSE_ADAPTER").ok(),
        poison: true,
        emulated_int64: true,
        ..Default::default()
    })
    .unwrap();
    assert!(!emulated.native_int64());
    let reference = create(BackendKind::Cpu64, None).unwrap();
    for (ctx, what) in [(native, "native"), (emulated, "emulated")] {
        let b = create(BackendKind::Wgsl, Some(&ctx)).unwrap();
        for (seed, stream, start) in CASES {
            let key = StreamKey::new(seed, stream);
            let mut want = vec![0u32; 1 << 16];
            reference.uniform_u32(key, start, &mut want).unwrap();
            let mut got = vec![0u32; 1 << 16];
            b.uniform_u32(key, start, &mut got).unwrap();
            assert!(
                got == want,
                "{what} multiply: (seed {seed}, stream {stream}) differs"
            );
        }
    }
}
