//! The pieces of the CPU language model, forward and backward, generic over the float type:
//! LayerNorm, the linear layer, GELU, the causal softmax and the per-head slicing of `[q|k|v]`.
//! Sums over rows are the host's ([`HostFloat::psum`], [`col_sums_gemm`]); the order of every
//! operation is fixed, so results never depend on thread scheduling.

use std::ops::Range;

use rayon::prelude::*;

use crate::num::activation::{gelu_of, gelu_tanh};
use crate::num::float::HostFloat;
use crate::num::linalg::col_sums_gemm;

/// LayerNorm's ε.
pub const LN_EPS: f64 = 1e-5;

/// LayerNorm output, normalised input and reciprocal standard deviation per row.
pub(super) struct Norm<T> {
    /// `x̂·γ + β`, `[n][C]`.
    pub y: Vec<T>,
    /// `x̂ = (x − mean)·rstd`, `[n][C]`.
    pub xhat: Vec<T>,
    /// `1/√(var + ε)`, `[n]`.
    pub rstd: Vec<T>,
}

/// LayerNorm of the rows of `x` (`[n][c]`) with γ = `g`, β = `b` (biased variance; each row's
/// mean and variance pairwise sums).
pub(super) fn layer_norm<T: HostFloat>(x: &[T], c: usize, g: &[T], b: &[T]) -> Norm<T> {
    let n = x.len() / c;
    let (mut y, mut xhat, mut rstd) = (
        vec![T::zero(); n * c],
        vec![T::zero(); n * c],
        vec![T::zero(); n],
    );
    let cf = T::of(c as f64);
    // Rows in parallel; each row's sums in its own (pairwise) order.
    x.par_chunks(c)
        .zip(y.par_chunks_mut(c))
        .zip(xhat.par_chunks_mut(c))
        .zip(rstd.par_iter_mut())
        .for_each(|(((row, yr), xr), rs)| {
            let mean = T::psum(row) / cf;
            let dev: Vec<T> = row.iter().map(|v| (*v - mean) * (*v - mean)).collect();
            let var = T::psum(&dev) / cf;
            let r = T::one() / (var + T::of(LN_EPS)).sqrt();
            *rs = r;
            for j in 0..c {
                let xh = (row[j] - mean) * r;
                xr[j] = xh;
                yr[j] = xh * g[j] + b[j];
            }
        });
    Norm { y, xhat, rstd }
}

/// LayerNorm backward: returns `dx`; `dg`, `db` receive the column sums `Σ dy ⊙ x̂`, `Σ dy`
/// (overwritten).
pub(super) fn layer_norm_back<T: HostFloat>(
    dy: &[T],
    nm: &Norm<T>,
    g: &[T],
    c: usize,
    dg: &mut [T],
    db: &mut [T],
) -> Vec<T> {
    let n = dy.len() / c;
    let prod: Vec<T> = dy.iter().zip(&nm.xhat).map(|(a, b)| *a * *b).collect();
    col_sums_gemm(&prod, n, c, dg);
    col_sums_gemm(dy, n, c, db);
    let mut dx = vec![T::zero(); n * c];
    let cf = T::of(c as f64);
    dx.par_chunks_mut(c).enumerate().for_each(|(i, dxr)| {
        let dxh: Vec<T> = (0..c).map(|j| dy[i * c + j] * g[j]).collect();
        let xh = &nm.xhat[i * c..(i + 1) * c];
        let m1 = T::psum(&dxh) / cf;
        let m2 = T::psum(&dxh.iter().zip(xh).map(|(a, b)| *a * *b).collect::<Vec<_>>()) / cf;
        for j in 0..c {
            dxr[j] = nm.rstd[i] * (dxh[j] - m1 - xh[j] * m2);
        }
    });
    dx
}

/// `y = x·W (+ b)` for `x` `[n][k]`, `W` `[k][m]`.
pub(super) fn linear<T: HostFloat>(
    x: &[T],
    n: usize,
    k: usize,
    w: &[T],
    b: Option<&[T]>,
    m: usize,
) -> Vec<T> {
    let mut y = vec![T::zero(); n * m];
    T::gemm(n, m, k, x, false, w, false, &mut y, false);
    if let Some(b) = b {
        for row in y.chunks_mut(m) {
            for (v, bb) in row.iter_mut().zip(b) {
                *v = *v + *bb;
            }
        }
    }
    y
}

/// Backward of [`linear`] over `n` rows of `k` → `m` (input `x`, output gradient `dy`, weight
/// `w`): `dW = xᵀ·dy` into `grad[w_range]`, `db = Σ dy` into `grad[b_range]` (when the layer
/// has a bias); returns `dx = dy·Wᵀ`.
pub(super) fn linear_back<T: HostFloat>(
    x: &[T],
    dy: &[T],
    w: &[T],
    (n, k, m): (usize, usize, usize),
    grad: &mut [T],
    w_range: Range<usize>,
    b_range: Option<Range<usize>>,
) -> Vec<T> {
    T::gemm(k, m, n, x, true, dy, false, &mut grad[w_range], false);
    if let Some(b) = b_range {
        col_sums_gemm(dy, n, m, &mut grad[b]);
    }
    let mut dx = vec![T::zero(); n * k];
    T::gemm(n, k, m, dy, false, w, true, &mut dx, false);
    dx
}

/// `(tanh terms, GELU)` of `f`, elements in parallel ([`gelu_tanh`], [`gelu_of`]).
pub(super) fn gelu_forward<T: HostFloat>(f: &[T]) -> (Vec<T>, Vec<T>) {
    let t: Vec<T> = f.par_iter().map(|x| gelu_tanh(*x)).collect();
    let g = f.par_iter().zip(&t).map(|(x, t)| gelu_of(*x, *t)).collect();
    (t, g)
}

/// Softmax over `row[..=last]` in place (the rest set to 0).
pub(super) fn causal_softmax<T: HostFloat>(row: &mut [T], last: usize) {
    let m = row[..=last]
        .iter()
        .cloned()
        .fold(T::neg_infinity(), |a, b| a.max(b));
    for v in row[..=last].iter_mut() {
        *v = (*v - m).exp();
    }
    let z = T::psum(&row[..=last]);
    for v in row[..=last].iter_mut() {
        *v = *v / z;
    }
    for v in row[last + 1..].iter_mut() {
        *v = T::zero();
    }
}

/// Softmax backward of one row of probabilities `p` in place on `dp`:
/// `dS = P ⊙ (dP − Σ P ⊙ dP)`, times the score scale.
pub(super) fn softmax_back<T: HostFloat>(p: &[T], dp: &mut [T], scale: T) {
    let prod: Vec<T> = p.iter().zip(dp.iter()).map(|(a, b)| *a * *b).collect();
    let s = T::psum(&prod);
    for (d, pv) in dp.iter_mut().zip(p) {
        *d = *pv * (*d - s) * scale;
    }
}

/// Copy head `hh` of part `part` (0 = q, 1 = k, 2 = v) of sequence `r` out of `qkv` → `[len][d]`.
pub(super) fn head_slice<T: HostFloat>(
    qkv: &[T],
    c: usize,
    len: usize,
    r: usize,
    part: usize,
    hh: usize,
    d: usize,
) -> Vec<T> {
    let mut out = Vec::with_capacity(len * d);
    for t in 0..len {
        let base = (r * len + t) * 3 * c + part * c + hh * d;
        out.extend_from_slice(&qkv[base..base + d]);
    }
    out
}
