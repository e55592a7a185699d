//! The host matrix products, all in one place. There are three, and they stay three because each
//! rounds differently and something bit-for-bit depends on each:
//!
//! - [`sgemm`]: f32 through the `gemm` crate's packed SGEMM (kernel chosen at run time for the
//!   CPU), split over rayon's threads when large, then the bias and activation. The cpu32 backend's matmul and the f32 CPU
//!   trainers ([`crate::num::float::HostFloat`] for f32) run it.
//! - [`dgemm_reference`]: the f64 matmul reference of the cpu64 backend, per output element
//!   `s = Σ_q a·b` in `q` order, then `α·s (+ β·C) (+ bias)` and the activation: the operation
//!   of [`crate::ops::matmul`] written as plainly as possible, what every backend's matmul is
//!   tested against.
//! - [`dgemm_accumulate`]: the f64 product of the f64 CPU trainers (the VAE's and the language
//!   model's reference), accumulating into C in `i–p–j` order (C and B rows walked
//!   contiguously), so `C + A·B` is `((C + a₀b₀) + a₁b₁) + …`.
//!
//! Without accumulation (`acc = false`, α = 1, no bias) the two f64 products give the same bits:
//! both form each element as `0 + a₀b₀ + a₁b₁ + …` in order. With accumulation they do not:
//! the reference adds `β·C` after the sum, the trainers' product starts the sum from C, and the
//! f64 VAE's gradient (`dh₁ = dμ·W_μᵀ + dlv·W_lvᵀ`) and its goldens depend on the latter. So
//! neither can be written in terms of the other.
//!
//! The products take a [`GemmShape`] (sizes, strides, α, β) rather than the kernel contract's
//! `Matmul`, so this foundation layer imports nothing above it; `ops::matmul::Matmul::shape`
//! converts.

use rayon::prelude::*;

/// A (batched, strided) product `C_b = α·op(A_b)·op(B_b) + β·C_b` as the host products take it:
/// `op(A_b)[i][p]` is at `b·stride_a + i·strides_a.0 + p·strides_a.1`, `op(B_b)[p][j]` at
/// `b·stride_b + p·strides_b.0 + j·strides_b.1`, `C_b[i][j]` at `b·stride_c + i·n + j`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GemmShape {
    /// Rows of op(A) and of C.
    pub m: usize,
    /// Columns of op(B) and of C.
    pub n: usize,
    /// Columns of op(A), rows of op(B).
    pub k: usize,
    /// Number of products.
    pub batch: usize,
    /// Row and column strides of op(A), elements.
    pub strides_a: (usize, usize),
    /// Row and column strides of op(B), elements.
    pub strides_b: (usize, usize),
    /// Elements between consecutive batches of A.
    pub stride_a: usize,
    /// Elements between consecutive batches of B.
    pub stride_b: usize,
    /// Elements between consecutive batches of C (at least `m·n` when `batch > 1`).
    pub stride_c: usize,
    /// α.
    pub alpha: f64,
    /// β (0: C is not read).
    pub beta: f64,
}

impl GemmShape {
    /// One packed product `C = op(A)·op(B) + β·C`: `A` stored `[m][k]` (`[k][m]` with `ta`),
    /// `B` stored `[k][n]` (`[n][k]` with `tb`), α = 1.
    pub fn single(m: usize, n: usize, k: usize, ta: bool, tb: bool, beta: f64) -> Self {
        Self {
            m,
            n,
            k,
            batch: 1,
            strides_a: if ta { (1, m) } else { (k, 1) },
            strides_b: if tb { (1, k) } else { (n, 1) },
            stride_a: m * k,
            stride_b: k * n,
            stride_c: m * n,
            alpha: 1.0,
            beta,
        }
    }
}

/// Products of fewer multiply–adds than this run on the calling thread alone: below it, handing
/// the work to rayon's workers costs more than it saves (measured on the models' products, e.g.
/// the VAE's `128×20×400`, on 2 cores of an AMD EPYC Zen 4; `scripts/bench-cpu-peers.sh`).
pub const SGEMM_PARALLEL_MACS: usize = 1 << 22;

/// The f32 product on f32 slices (already validated): `C = α·op(A)·op(B) + β·C`, then, when a
/// `bias` (`[n]`) is given, `C ← act(C + bias)` per element. What the cpu32 matmul, the f32 CPU
/// trainers and the bench run: **the one place that chooses the f32 GEMM engine**.
///
/// The engine is the `gemm` crate (0.19, feature `x86-v4`): packed, register-blocked kernels
/// chosen at run time for the CPU (AVX-512, AVX2+FMA, or SSE), so one binary runs its best
/// kernel on every x86-64 machine. Side by side on the models' shapes (2 cores of an AMD EPYC
/// Zen 4, when chosen) it was faster than `matrixmultiply` 0.3 on nearly every shape, and than
/// MKL through PyTorch on most (`scripts/bench-cpu-peers.sh` measures the latter: see
/// `results/cpu-vs-peers/`). A product of at least [`SGEMM_PARALLEL_MACS`] multiply–adds is
/// split by the crate over rayon's current
/// pool (rows *and* columns of C, so a 128-row weight gradient keeps every core busy); smaller
/// ones run on the calling thread, and a batch of small products runs its products in
/// parallel instead. Each element's sum order depends only on the shape and the CPU's kernel,
/// never on the thread count or scheduling.
pub fn sgemm(
    g: &GemmShape,
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    act: impl Fn(f32) -> f32 + Sync,
    c: &mut [f32],
) {
    let mn = g.m * g.n;
    if mn == 0 || g.batch == 0 {
        return;
    }
    let macs = g.m * g.n * g.k;
    let one = |bt: usize, out: &mut [f32], par: ::gemm::Parallelism| {
        let (ra, ca) = g.strides_a;
        let (rb, cb) = g.strides_b;
        let a0 = &a[bt * g.stride_a..];
        let b0 = &b[bt * g.stride_b..];
        // SAFETY: the pointers cover `M × K` of op(A) and `K × N` of op(B) at the given strides
        // (checked by the caller, e.g. `Matmul::validate`), and `out` is exactly `M × N` of C,
        // row-major. `gemm` computes `dst = α·dst + β·lhs·rhs` (its α and β are our β and α),
        // reading dst only when asked.
        unsafe {
            ::gemm::gemm(
                g.m,
                g.n,
                g.k,
                out.as_mut_ptr(),
                1,
                g.n as isize,
                g.beta != 0.0,
                a0.as_ptr(),
                ca as isize,
                ra as isize,
                b0.as_ptr(),
                cb as isize,
                rb as isize,
                g.beta as f32,
                g.alpha as f32,
                false,
                false,
                false,
                par,
            );
        }
    };
    // The batch's C blocks, disjoint (stride_c ≥ M·N).
    let mut blocks: Vec<&mut [f32]> = Vec::with_capacity(g.batch);
    let mut rest = &mut c[..];
    for bt in 0..g.batch {
        let skip = if bt == 0 { 0 } else { g.stride_c - mn };
        let (_, tail) = rest.split_at_mut(skip);
        let (mine, tail) = tail.split_at_mut(mn);
        rest = tail;
        blocks.push(mine);
    }
    let threads = rayon::current_num_threads();
    if macs >= SGEMM_PARALLEL_MACS && threads > 1 {
        for (bt, out) in blocks.iter_mut().enumerate() {
            one(bt, out, ::gemm::Parallelism::Rayon(threads));
        }
    } else if g.batch > 1 && macs * g.batch >= SGEMM_PARALLEL_MACS {
        blocks
            .par_iter_mut()
            .enumerate()
            .for_each(|(bt, out)| one(bt, out, ::gemm::Parallelism::None));
    } else {
        for (bt, out) in blocks.iter_mut().enumerate() {
            one(bt, out, ::gemm::Parallelism::None);
        }
    }
    if let Some(bias) = bias {
        for out in blocks {
            // ~64k elements per task.
            let rows_per = (65_536 / g.n).max(1);
            out.par_chunks_mut(rows_per * g.n).for_each(|rows| {
                for row in rows.chunks_mut(g.n) {
                    for (v, bv) in row.iter_mut().zip(bias) {
                        *v = act(*v + bv);
                    }
                }
            });
        }
    }
}

/// The f64 matmul reference (already validated): per element of C, `s = Σ_q load(a)·load(b)` in
/// `q` order from 0, then `v = α·s`, `+ β·C` when β ≠ 0, `+ bias[j]` when given, and
/// `C = act(v)`. `load` is applied to every input as read (the rounding of f16 storage, or the
/// identity). Three plain loops, no blocking: slow and obviously right.
#[allow(clippy::too_many_arguments)]
pub fn dgemm_reference(
    g: &GemmShape,
    a: &[f64],
    b: &[f64],
    bias: Option<&[f64]>,
    load: impl Fn(f64) -> f64,
    act: impl Fn(f64) -> f64,
    c: &mut [f64],
) {
    let (ra, ca) = g.strides_a;
    let (rb, cb) = g.strides_b;
    for bt in 0..g.batch {
        let (oa, ob, oc) = (bt * g.stride_a, bt * g.stride_b, bt * g.stride_c);
        for i in 0..g.m {
            for j in 0..g.n {
                let mut s = 0.0;
                for q in 0..g.k {
                    s += load(a[oa + i * ra + q * ca]) * load(b[ob + q * rb + j * cb]);
                }
                let mut v = g.alpha * s;
                if g.beta != 0.0 {
                    v += g.beta * c[oc + i * g.n + j];
                }
                if let Some(bias) = bias {
                    v += bias[j];
                }
                c[oc + i * g.n + j] = act(v);
            }
        }
    }
}

/// The f64 CPU trainers' product: `C[m][n] = op(A)·op(B)` (`+ C` when `acc`), `op(A)` `A`
/// (`[m][k]`) or `Aᵀ` of `A` stored `[k][m]` with `ta`, likewise `B` (`[k][n]`, or `[n][k]`
/// with `tb`). Plain loops in `i–p–j` order accumulating into C (see the module documentation
/// for why this is not [`dgemm_reference`]).
#[allow(clippy::too_many_arguments)]
pub fn dgemm_accumulate(
    m: usize,
    n: usize,
    k: usize,
    a: &[f64],
    ta: bool,
    b: &[f64],
    tb: bool,
    c: &mut [f64],
    acc: bool,
) {
    if !acc {
        c[..m * n].iter_mut().for_each(|v| *v = 0.0);
    }
    for i in 0..m {
        for p in 0..k {
            let av = if ta { a[p * m + i] } else { a[i * k + p] };
            let row = &mut c[i * n..(i + 1) * n];
            for (j, cv) in row.iter_mut().enumerate() {
                let bv = if tb { b[j * k + p] } else { b[p * n + j] };
                *cv += av * bv;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic, non-trivial inputs in [−0.5, 0.5).
    fn fill(n: usize, seed: u64) -> Vec<f32> {
        let mut v = Vec::with_capacity(n);
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        for _ in 0..n {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            v.push((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5);
        }
        v
    }

    /// The f32 product on every transpose, small and large (split over threads), with β and a
    /// bias: within 1e-5 norm-wise relative error of the f64 reference, and bit-identical with 1
    /// and 2 threads (the sum order never depends on the split). C is poisoned with NaN first
    /// when β = 0 (C must not be read).
    #[test]
    fn sgemm_matches_the_reference_and_ignores_the_thread_count() {
        for &(m, n, k) in &[(7, 5, 3), (128, 20, 400), (300, 257, 129), (128, 384, 2048)] {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                for beta in [0.0, 0.5] {
                    let g = GemmShape::single(m, n, k, ta, tb, beta);
                    let (a, b) = (fill(m * k, 1), fill(k * n, 2));
                    let bias = fill(n, 3);
                    let c0 = if beta == 0.0 {
                        vec![f32::NAN; m * n]
                    } else {
                        fill(m * n, 4)
                    };
                    let run = |threads: usize| {
                        let pool = rayon::ThreadPoolBuilder::new()
                            .num_threads(threads)
                            .build()
                            .unwrap();
                        let mut c = c0.clone();
                        pool.install(|| sgemm(&g, &a, &b, Some(&bias), |v| v.max(0.0), &mut c));
                        c
                    };
                    let (one, two) = (run(1), run(2));
                    assert!(
                        one.iter()
                            .zip(&two)
                            .all(|(x, y)| x.to_bits() == y.to_bits()),
                        "{m}x{n}x{k} ta {ta} tb {tb}: 1 vs 2 threads"
                    );
                    let wide = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
                    let mut want = if beta == 0.0 {
                        vec![0.0; m * n]
                    } else {
                        wide(&c0)
                    };
                    let bias64 = wide(&bias);
                    dgemm_reference(
                        &g,
                        &wide(&a),
                        &wide(&b),
                        Some(&bias64),
                        |v| v,
                        |v: f64| v.max(0.0),
                        &mut want,
                    );
                    let (mut num, mut den) = (0.0f64, 0.0f64);
                    for (x, y) in two.iter().zip(&want) {
                        assert!(x.is_finite(), "{m}x{n}x{k}: NaN");
                        num += (*x as f64 - y).powi(2);
                        den += y * y;
                    }
                    assert!(den > 0.0);
                    let err = (num / den).sqrt();
                    assert!(err < 1e-5, "{m}x{n}x{k} ta {ta} tb {tb} β {beta}: {err:e}");
                }
            }
        }
    }
}
