//! The host matrix products, all in one place. There are three, and they stay three because each
//! rounds differently and something bit-for-bit depends on each:
//!
//! - [`sgemm`]: f32 through `matrixmultiply`'s packed SGEMM, row blocks of C split across
//!   rayon's threads, then the bias and activation. The cpu32 backend's matmul and the f32 CPU
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

/// Rows of C per rayon task when one product is split (a multiple of the SGEMM kernel's 8-row
/// micro-tile, large enough that packing B per task stays cheap).
const ROW_BLOCK: usize = 128;

/// The f32 product on f32 slices (already validated): `C = α·op(A)·op(B) + β·C`, then, when a
/// `bias` (`[n]`) is given, `C ← act(C + bias)` per element. What the cpu32 matmul and the bench
/// run.
pub fn sgemm(
    g: &GemmShape,
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    act: impl Fn(f32) -> f32 + Sync,
    c: &mut [f32],
) {
    let (ra, ca) = g.strides_a;
    let (rb, cb) = g.strides_b;
    let (alpha, beta) = (g.alpha as f32, g.beta as f32);
    let mn = g.m * g.n;
    // Tasks: (batch, first row, rows) over disjoint row blocks of C.
    let blocks = g.m.div_ceil(ROW_BLOCK);
    let mut tasks: Vec<(usize, usize, &mut [f32])> = Vec::with_capacity(g.batch * blocks);
    let mut rest = &mut c[..];
    for bt in 0..g.batch {
        let skip = if bt == 0 { 0 } else { g.stride_c - mn };
        let (_, tail) = rest.split_at_mut(skip);
        let (mine, tail) = tail.split_at_mut(mn);
        rest = tail;
        for (blk, rows) in mine.chunks_mut(ROW_BLOCK * g.n).enumerate() {
            tasks.push((bt, blk * ROW_BLOCK, rows));
        }
    }
    tasks.into_par_iter().for_each(|(bt, i0, out)| {
        let rows = out.len() / g.n;
        let a0 = &a[bt * g.stride_a + i0 * ra..];
        let b0 = &b[bt * g.stride_b..];
        // SAFETY: the pointers cover `rows × K` of A and `K × N` of B at the given strides
        // (checked by the caller, e.g. `Matmul::validate`), and `out` is exactly `rows × N` of C.
        unsafe {
            matrixmultiply::sgemm(
                rows,
                g.k,
                g.n,
                alpha,
                a0.as_ptr(),
                ra as isize,
                ca as isize,
                b0.as_ptr(),
                rb as isize,
                cb as isize,
                beta,
                out.as_mut_ptr(),
                g.n as isize,
                1,
            );
        }
        if let Some(bias) = bias {
            for row in out.chunks_mut(g.n) {
                for (v, bv) in row.iter_mut().zip(bias) {
                    *v = act(*v + bv);
                }
            }
        }
    });
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
