//! The pieces of the CPU language model, forward and backward, generic over the float type:
//! LayerNorm, the linear layer, GELU, the causal softmax and the per-head slicing of `[q|k|v]`.
//! Sums over rows are the host's ([`HostFloat::psum`], [`col_sums_rows`]); the order of every
//! operation is fixed, so results never depend on thread scheduling.

use std::ops::Range;

use rayon::prelude::*;

use crate::num::PAR_ELEMENTS;
#[cfg(test)]
use crate::num::activation::gelu_tanh;
use crate::num::activation::{GELU_A, GELU_S, gelu_of};
use crate::num::float::HostFloat;
use crate::num::linalg::col_sums_rows;

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
        .with_min_len(min_rows(c))
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
    col_sums_rows(&prod, n, c, dg);
    col_sums_rows(dy, n, c, db);
    let mut dx = vec![T::zero(); n * c];
    let cf = T::of(c as f64);
    dx.par_chunks_mut(c)
        .enumerate()
        .with_min_len(min_rows(c))
        .for_each(|(i, dxr)| {
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
        col_sums_rows(dy, n, m, &mut grad[b]);
    }
    let mut dx = vec![T::zero(); n * k];
    T::gemm(n, k, m, dy, false, w, true, &mut dx, false);
    dx
}

/// `(tanh terms, GELU)` of `f`, in parallel chunks: `t = tanh(√(2/π)(x + 0.044715x³))` with
/// [`HostFloat::tanh_slice`] (f64: the platform's `tanh`, the same bits as
/// [`crate::num::activation::gelu_tanh`]; f32:
/// the vectorised rational form), then `g = ½x(1 + t)` ([`gelu_of`]).
pub(super) fn gelu_forward<T: HostFloat>(f: &[T]) -> (Vec<T>, Vec<T>) {
    let (s, a) = (T::of(GELU_S), T::of(GELU_A));
    let mut t: Vec<T> = f
        .par_iter()
        .with_min_len(PAR_ELEMENTS)
        .map(|&x| s * (x + a * x * x * x))
        .collect();
    t.par_chunks_mut(PAR_ELEMENTS).for_each(T::tanh_slice);
    let g = f
        .par_iter()
        .zip(&t)
        .with_min_len(PAR_ELEMENTS)
        .map(|(x, t)| gelu_of(*x, *t))
        .collect();
    (t, g)
}

/// Rows of `c` per parallel task of the row-wise passes ([`PAR_ELEMENTS`] elements, ≥ 1 row).
fn min_rows(c: usize) -> usize {
    (PAR_ELEMENTS / c).max(1)
}

/// Softmax over `row[..=last]` in place (the rest set to 0).
pub(super) fn causal_softmax<T: HostFloat>(row: &mut [T], last: usize) {
    let m = row[..=last]
        .iter()
        .cloned()
        .fold(T::neg_infinity(), |a, b| a.max(b));
    for v in row[..=last].iter_mut() {
        *v = *v - m;
    }
    T::exp_slice(&mut row[..=last]);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// At f64 the sliced GELU gives exactly [`gelu_tanh`]'s and [`gelu_of`]'s bits (the
    /// reference did not move); at f32 it is within 1e-6 of f64.
    #[test]
    fn gelu_forward_is_the_reference_at_f64() {
        let f: Vec<f64> = (0..40_000).map(|i| (i as f64 - 20_000.0) * 4e-4).collect();
        let (t, g) = gelu_forward(&f);
        for i in 0..f.len() {
            assert_eq!(t[i].to_bits(), gelu_tanh(f[i]).to_bits());
            assert_eq!(g[i].to_bits(), gelu_of(f[i], t[i]).to_bits());
        }
        let f32s: Vec<f32> = f.iter().map(|&v| v as f32).collect();
        let (_, g32) = gelu_forward(&f32s);
        for i in 0..f.len() {
            let want = crate::num::activation::gelu(f32s[i] as f64);
            assert!(
                (g32[i] as f64 - want).abs() < 1e-6 * (1.0 + want.abs()),
                "{}",
                f[i]
            );
        }
    }
}
