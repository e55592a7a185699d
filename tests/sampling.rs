//! Batched Gaussian / GMM sampling on every backend: identical component indices, values within
//! stated bounds of the references, statistics within bounds derived from N, chunking, errors.

mod common;

use collapse_kernels::backend::{BackendKind, create};
use collapse_kernels::ops::Backend;
use collapse_kernels::ops::sampling::{Factor, MixtureBatch, PreparedMixture};
use collapse_kernels::rng::StreamKey;

/// A random mixture batch: R mixtures, K components, D dims, weights from a Dirichlet-ish draw,
/// means in [-5, 5], full covariances A Aᵀ + 0.1 I (well-conditioned) or diagonal std devs.
fn random_batch(r: usize, k: usize, d: usize, full: bool, seed: u64) -> MixtureBatch {
    let cpu = create(BackendKind::Cpu64, None).unwrap();
    let key = StreamKey::new(seed, 999);
    let mut u = vec![0f64; r * k + r * k * d + r * k * d * d + r * k * d];
    cpu.uniform(key, 0, &mut u).unwrap();
    let mut it = u.into_iter();
    let mut weights = Vec::new();
    for _ in 0..r {
        let w: Vec<f64> = (0..k).map(|_| 0.2 + it.next().unwrap()).collect();
        let s: f64 = w.iter().sum();
        weights.extend(w.iter().map(|x| x / s));
    }
    let means: Vec<f64> = (0..r * k * d)
        .map(|_| 10.0 * it.next().unwrap() - 5.0)
        .collect();
    if full {
        let mut cov = Vec::new();
        for _ in 0..r * k {
            let a: Vec<f64> = (0..d * d).map(|_| it.next().unwrap() - 0.5).collect();
            for i in 0..d {
                for j in 0..d {
                    let mut s: f64 = (0..d).map(|t| a[i * d + t] * a[j * d + t]).sum();
                    if i == j {
                        s += 0.1;
                    }
                    cov.push(s);
                }
            }
        }
        MixtureBatch::from_covariances(r, k, d, weights, means, &cov).unwrap()
    } else {
        let sd: Vec<f64> = (0..r * k * d)
            .map(|_| 0.2 + 2.0 * it.next().unwrap())
            .collect();
        MixtureBatch {
            replicates: r,
            k,
            d,
            weights,
            means,
            factor: Factor::Diagonal(sd),
        }
    }
}

fn draw(
    b: &dyn Backend,
    p: &PreparedMixture,
    m: usize,
    key: StreamKey,
    first: u64,
) -> (Vec<f64>, Vec<u32>) {
    let n = p.batch.replicates * m;
    let mut x = vec![f64::NAN; n * p.batch.d];
    let mut c = vec![u32::MAX; n];
    b.sample_mixture(p, m, key, first, &mut x, &mut c)
        .unwrap_or_else(|e| panic!("{}: {e}", b.name()));
    (x, c)
}

/// GPU backends vs cpu32 (same f32 uniforms and formula; the GPU's transcendentals and
/// accumulation differ), norm-wise relative error over all sample values. Measured on
/// lavapipe: ≤ 1.2e-7 on the shapes below (`-- --nocapture` prints it). Bound: 1e-6.
const F32_SAMPLE_REL: f64 = 1e-6;

/// f32 backends vs cpu64. Dominated not by arithmetic but by the uniforms: f32 uniforms carry
/// 24 bits, f64 ones 32, so the rare samples with a tiny Box–Muller u₁ move by up to ~1 (see
/// tests/rng.rs). Measured ≤ 4.3e-6 on these shapes; bound 1e-4 (a wrong sample anywhere in
/// 10⁴ values still fails it).
const F32_VS_F64_SAMPLE_REL: f64 = 1e-4;

#[test]
fn indices_identical_and_values_close_across_backends() {
    let reference = create(BackendKind::Cpu64, None).unwrap();
    let cpu32 = create(BackendKind::Cpu32, None).unwrap();
    for (r, k, d, full, m) in [
        (1, 1, 1, false, 5000),
        (3, 16, 8, true, 20_000),
        (2, 5, 13, false, 7001),
        (4, 1, 64, true, 1000),
    ] {
        let p = random_batch(r, k, d, full, (r * 1000 + k * 10 + d) as u64)
            .prepare()
            .unwrap();
        let key = StreamKey::new(31337, 5);
        let (want_x, want_c) = draw(reference.as_ref(), &p, m, key, 17);
        let (x32, _) = draw(cpu32.as_ref(), &p, m, key, 17);
        for b in common::backends().iter().filter(|b| b.name() != "cpu64") {
            let (x, c) = draw(b.as_ref(), &p, m, key, 17);
            let bad = c.iter().zip(&want_c).position(|(a, b)| a != b);
            assert!(
                bad.is_none(),
                "{} (R{r} K{k} D{d}): component {} differs",
                b.name(),
                bad.unwrap()
            );
            assert!(
                x.iter().all(|v| v.is_finite()),
                "{}: non-finite sample",
                b.name()
            );
            let e = common::rel_err(&x, &want_x);
            let e32 = common::rel_err(&x, &x32);
            eprintln!(
                "{} R{r} K{k} D{d} full={full}: rel err vs cpu64 {e:.2e}, vs cpu32 {e32:.2e}",
                b.name()
            );
            assert!(
                e <= F32_VS_F64_SAMPLE_REL,
                "{}: rel err {e:.2e} > {F32_VS_F64_SAMPLE_REL:e}",
                b.name()
            );
            assert!(
                e32 <= F32_SAMPLE_REL,
                "{}: rel err vs cpu32 {e32:.2e} > {F32_SAMPLE_REL:e}",
                b.name()
            );
        }
    }
}

#[test]
fn sample_i_depends_only_on_seed_stream_and_i() {
    let p = random_batch(1, 4, 3, true, 1).prepare().unwrap();
    let key = StreamKey::new(8, 8);
    for b in common::backends() {
        let (all_x, all_c) = draw(b.as_ref(), &p, 300, key, 0);
        let (part_x, part_c) = draw(b.as_ref(), &p, 100, key, 150);
        assert_eq!(part_c, all_c[150..250], "{}", b.name());
        assert_eq!(part_x, all_x[150 * 3..250 * 3], "{}", b.name());
    }
}

#[test]
fn chunked_gpu_launches_match_unchunked() {
    // 4 KiB bindings: a D = 8 sample is 32 bytes, so 128 samples per chunk.
    let Some(small) = common::small_binding_gpu(4096) else {
        return;
    };
    let p = random_batch(2, 3, 8, true, 2).prepare().unwrap();
    let key = StreamKey::new(1, 2);
    let reference = create(BackendKind::Cpu32, None).unwrap();
    let (want_x, want_c) = draw(reference.as_ref(), &p, 1000, key, 3);
    for kind in [BackendKind::Wgsl, BackendKind::Cube] {
        let b = create(kind, Some(&small)).unwrap();
        let (x, c) = draw(b.as_ref(), &p, 1000, key, 3);
        assert_eq!(c, want_c, "{kind}");
        assert!(common::rel_err(&x, &want_x) < F32_SAMPLE_REL, "{kind}");
        // And the RNG fills, across chunk boundaries and an unaligned start.
        let mut got = vec![0u32; 5000];
        let mut want = vec![0u32; 5000];
        b.uniform_u32(key, 3, &mut got).unwrap();
        reference.uniform_u32(key, 3, &mut want).unwrap();
        assert_eq!(got, want, "{kind} chunked u32 fill");
    }
}

/// Thresholds (6 standard errors each; ~1000 checks per backend, so a correct sampler fails
/// with probability ~1e-6 — and the seeds are fixed):
/// - count of component k: |n_k − N w_k| ≤ 6 √(N w_k (1 − w_k))   (binomial);
/// - mean of component k, dim i: |x̄ − μ| ≤ 6 √(Σ_ii / n_k);
/// - covariance (i, j): |S_ij − Σ_ij| ≤ 6 √((Σ_ii Σ_jj + Σ_ij²) / n_k)  (Gaussian sample
///   covariance variance, large n).
#[test]
fn gmm_statistics_match_parameters() {
    let (k, d) = (16, 8);
    let batch = random_batch(1, k, d, true, 77);
    let p = batch.prepare().unwrap();
    let Factor::Cholesky(l) = &p.batch.factor else {
        unreachable!()
    };
    let n = 1_000_000;
    for b in common::backends().iter().filter(|b| b.name() != "cpu64") {
        let (x, c) = draw(b.as_ref(), &p, n, StreamKey::new(4, 4), 0);
        for comp in 0..k {
            let rows: Vec<&[f64]> = x
                .chunks(d)
                .zip(&c)
                .filter(|(_, cc)| **cc as usize == comp)
                .map(|(r, _)| r)
                .collect();
            let nk = rows.len() as f64;
            let w = p.batch.weights[comp];
            let tol = 6.0 * (n as f64 * w * (1.0 - w)).sqrt();
            assert!(
                (nk - n as f64 * w).abs() <= tol,
                "{}: count of {comp}: {nk} vs {}",
                b.name(),
                n as f64 * w
            );
            let lc = &l[comp * d * d..(comp + 1) * d * d];
            let sigma =
                |i: usize, j: usize| (0..d).map(|t| lc[i * d + t] * lc[j * d + t]).sum::<f64>();
            let mu = &p.batch.means[comp * d..(comp + 1) * d];
            let mean: Vec<f64> = (0..d)
                .map(|i| rows.iter().map(|r| r[i]).sum::<f64>() / nk)
                .collect();
            for i in 0..d {
                let tol = 6.0 * (sigma(i, i) / nk).sqrt();
                assert!(
                    (mean[i] - mu[i]).abs() <= tol,
                    "{}: mean {comp},{i}: {} vs {}",
                    b.name(),
                    mean[i],
                    mu[i]
                );
                for j in 0..=i {
                    let s = rows
                        .iter()
                        .map(|r| (r[i] - mean[i]) * (r[j] - mean[j]))
                        .sum::<f64>()
                        / (nk - 1.0);
                    let tol = 6.0 * ((sigma(i, i) * sigma(j, j) + sigma(i, j).powi(2)) / nk).sqrt();
                    assert!(
                        (s - sigma(i, j)).abs() <= tol,
                        "{}: cov {comp},{i},{j}: {s} vs {}",
                        b.name(),
                        sigma(i, j)
                    );
                }
            }
        }
    }
}

#[test]
fn bad_shapes_and_sizes_are_errors_on_every_backend() {
    let p = random_batch(2, 2, 3, false, 3).prepare().unwrap();
    for b in common::backends() {
        let mut x = vec![0.0; 2 * 10 * 3 - 1];
        let mut c = vec![0u32; 20];
        let e = b
            .sample_mixture(&p, 10, StreamKey::new(0, 0), 0, &mut x, &mut c)
            .expect_err("short output accepted");
        assert!(
            e.to_string()
                .contains("outputs hold 59 values and 20 components; R·M·D = 60"),
            "{}: {e}",
            b.name()
        );
    }
    let big = random_batch(1, 1, 129, false, 4).prepare().unwrap();
    for b in common::gpu_backends() {
        let mut x = vec![0.0; 129];
        let mut c = vec![0u32; 1];
        let e = b
            .sample_mixture(&big, 1, StreamKey::new(0, 0), 0, &mut x, &mut c)
            .unwrap_err();
        assert!(e.to_string().contains("D ≤ 128"), "{e}");
    }
}

#[test]
fn cpu32_lane_batched_sampler_equals_the_scalar_f32_path() {
    use collapse_kernels::backend::cpu64::sampling::{Params, sample_range};
    let cpu32 = create(BackendKind::Cpu32, None).unwrap();
    for (k, d, full, m) in [(16, 8, true, 10_007), (3, 5, false, 999), (1, 1, true, 33)] {
        let p = random_batch(2, k, d, full, 12).prepare().unwrap();
        let key = StreamKey::new(21, 12);
        let (x, c) = draw(cpu32.as_ref(), &p, m, key, 40);
        let mut xs = vec![f64::NAN; 2 * m * d];
        let mut cs = vec![u32::MAX; 2 * m];
        sample_range(&p, &Params::<f32>::of(&p), m, key, 40, 0, &mut xs, &mut cs);
        assert_eq!(c, cs, "K{k} D{d}");
        assert_eq!(x, xs, "K{k} D{d}");
    }
}

/// The widest dimensions (D = 128 full: the WGSL sampler's workgroup narrows to 32 where 64
/// columns of normals do not fit lavapipe's 32 KiB; D = 127 diag: a ragged last block of
/// normals) and sample counts not a multiple of either workgroup: GPU components equal cpu64's,
/// values within the f32 bounds of cpu32.
#[test]
fn widest_dimensions_and_ragged_workgroups() {
    let cpu32 = create(BackendKind::Cpu32, None).unwrap();
    let reference = create(BackendKind::Cpu64, None).unwrap();
    for (r, k, d, full, m) in [(1, 3, 128, true, 301), (2, 2, 127, false, 333)] {
        let p = random_batch(r, k, d, full, 900 + d as u64)
            .prepare()
            .unwrap();
        let key = StreamKey::new(77, 3);
        let (want_x, want_c) = draw(reference.as_ref(), &p, m, key, 5);
        let (x32, _) = draw(cpu32.as_ref(), &p, m, key, 5);
        for b in common::gpu_backends() {
            let (x, c) = draw(b.as_ref(), &p, m, key, 5);
            assert_eq!(c, want_c, "{} D{d}: components", b.name());
            assert!(x.iter().all(|v| v.is_finite()), "{}: non-finite", b.name());
            let e = common::rel_err(&x, &want_x);
            let e32 = common::rel_err(&x, &x32);
            assert!(e <= F32_VS_F64_SAMPLE_REL, "{} D{d}: {e:.2e}", b.name());
            assert!(
                e32 <= F32_SAMPLE_REL,
                "{} D{d}: vs cpu32 {e32:.2e}",
                b.name()
            );
        }
    }
}
