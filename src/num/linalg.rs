//! Small dense linear algebra on the host: the Cholesky factorisation (one algorithm, with a
//! checked and an unchecked front), the eigenvalues of a small symmetric matrix (cyclic Jacobi:
//! the `eigen:N` task's truth) and the column sums of the CPU trainers' bias gradients.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::num::float::HostFloat;

/// The Cholesky–Banachiewicz factorisation of the `d×d` row-major `a`, reading its lower
/// triangle: rows `i` in order, columns `j ≤ i`, `s = a_ij − Σ_{t<j} l_it·l_jt` (in `t` order),
/// `l_ii = √s`, `l_ij = s / l_jj`. `check(i, j)` runs before entry `(i, j)` is formed (an error
/// stops there); a pivot `s` that is not positive and finite stops with `pivot(i, s)`.
fn factor<E>(
    a: &[f64],
    d: usize,
    mut check: impl FnMut(usize, usize) -> std::result::Result<(), E>,
    pivot: impl Fn(usize, f64) -> E,
) -> std::result::Result<Vec<f64>, E> {
    let mut l = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            check(i, j)?;
            let mut s = a[i * d + j];
            for t in 0..j {
                s -= l[i * d + t] * l[j * d + t];
            }
            if i == j {
                if !(s > 0.0 && s.is_finite()) {
                    return Err(pivot(i, s));
                }
                l[i * d + i] = s.sqrt();
            } else {
                l[i * d + j] = s / l[j * d + j];
            }
        }
    }
    Ok(l)
}

/// The eigenvalues of the symmetric `n×n` row-major `a` (its upper triangle is read and
/// mirrored), in descending order, by the cyclic Jacobi method in f64: sweeps of plane rotations
/// (each zeroing one off-diagonal pair, Rutishauser's stable form) until the off-diagonal mass
/// is below `1e-30` of the matrix's squared Frobenius norm or 100 sweeps have run (quadratic
/// convergence: a 5×5 matrix needs about 6). Simple and accurate to a few ulps of the norm: the
/// reference for matrices of a few rows, not a LAPACK replacement. An error on a wrong length or
/// a non-finite entry.
pub fn symmetric_eigenvalues(a: &[f64], n: usize) -> Result<Vec<f64>> {
    if n.checked_mul(n) != Some(a.len()) {
        return Err(Error::InvalidArgument(format!(
            "symmetric matrix has {} entries, expected {n}×{n}",
            a.len()
        )));
    }
    if let Some(i) = a.iter().position(|v| !v.is_finite()) {
        return Err(Error::InvalidArgument(format!(
            "matrix entry ({}, {}) is {}",
            i / n,
            i % n,
            a[i]
        )));
    }
    let mut m = vec![0.0; n * n];
    for i in 0..n {
        for j in i..n {
            m[i * n + j] = a[i * n + j];
            m[j * n + i] = a[i * n + j];
        }
    }
    let norm2: f64 = m.iter().map(|v| v * v).sum();
    let off = |m: &[f64]| -> f64 {
        let mut s = 0.0;
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    s += m[i * n + j] * m[i * n + j];
                }
            }
        }
        s
    };
    for _ in 0..100 {
        if off(&m) <= 1e-30 * norm2 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = m[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                // The rotation angle: t = tan θ, the smaller root of t² + 2τt − 1 = 0.
                let tau = (m[q * n + q] - m[p * n + p]) / (2.0 * apq);
                let t = tau.signum() / (tau.abs() + (1.0 + tau * tau).sqrt());
                let t = if tau == 0.0 { 1.0 } else { t };
                let c = 1.0 / (1.0 + t * t).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (mkp, mkq) = (m[k * n + p], m[k * n + q]);
                    m[k * n + p] = c * mkp - s * mkq;
                    m[k * n + q] = s * mkp + c * mkq;
                }
                for k in 0..n {
                    let (mpk, mqk) = (m[p * n + k], m[q * n + k]);
                    m[p * n + k] = c * mpk - s * mqk;
                    m[q * n + k] = s * mpk + c * mqk;
                }
            }
        }
    }
    let mut ev: Vec<f64> = (0..n).map(|i| m[i * n + i]).collect();
    ev.sort_by(|x, y| y.total_cmp(x));
    Ok(ev)
}

/// Lower Cholesky factor `L` (`a = L Lᵀ`, `[d][d]` row-major, zeros above the diagonal) of the
/// symmetric positive definite `a`, reading only its lower triangle; `None` when a pivot is not
/// positive and finite. No other checks: for matrices symmetric by construction (the EM's
/// covariances, sums of covariances).
pub fn cholesky_lower(a: &[f64], d: usize) -> Option<Vec<f64>> {
    factor(a, d, |_, _| Ok(()), |_, _| ()).ok()
}

/// [`cholesky_lower`] of a caller's covariance `a` (`[d][d]` row-major), checked: errors name
/// a wrong length, a NaN/inf entry, an asymmetry (relative 1e-12) or a pivot that is not
/// positive (the matrix is not positive definite).
pub fn cholesky(a: &[f64], d: usize) -> Result<Vec<f64>> {
    if a.len() != d * d {
        return Err(Error::InvalidArgument(format!(
            "covariance has {} entries, expected {d}×{d}",
            a.len()
        )));
    }
    if let Some(i) = a.iter().position(|v| !v.is_finite()) {
        return Err(Error::InvalidArgument(format!(
            "covariance entry ({}, {}) is {}",
            i / d,
            i % d,
            a[i]
        )));
    }
    let symmetric = |i: usize, j: usize| {
        let asym = (a[i * d + j] - a[j * d + i]).abs();
        if asym > 1e-12 * (a[i * d + j].abs() + a[j * d + i].abs()).max(1e-300) {
            return Err(Error::InvalidArgument(format!(
                "covariance is not symmetric at ({i}, {j})"
            )));
        }
        Ok(())
    };
    factor(a, d, symmetric, |i, s| {
        Error::InvalidArgument(format!(
            "covariance is not positive definite (pivot {i} is {s:e})"
        ))
    })
}

/// Columns per parallel task of the column sums.
const COL_BLOCK: usize = 64;

/// Column sums of `g` (`[rows][cols]`) into `out` (`[cols]`, overwritten), **pairwise over
/// rows**: the rows are split in halves down to blocks of ≤ 16 rows summed in row order, and
/// the halves' sums added elementwise. The VAE's CPU trainer forms its bias gradients this way.
/// Blocks of columns run in parallel; each column's order is the same whatever the split.
pub fn col_sums_pairwise<T: HostFloat>(g: &[T], cols: usize, out: &mut [T]) {
    let rows = g.len() / cols;
    out.par_chunks_mut(COL_BLOCK)
        .enumerate()
        .with_min_len(par_blocks(rows, cols))
        .for_each(|(bi, o)| pairwise_block(g, cols, bi * COL_BLOCK, 0..rows, o));
}

/// Column blocks per task, so a task reads at least ~64k elements.
fn par_blocks(rows: usize, cols: usize) -> usize {
    (65_536 / (rows * COL_BLOCK.min(cols)).max(1)).max(1)
}

/// [`col_sums_pairwise`] of columns `j0..j0 + out.len()` over rows `r`.
fn pairwise_block<T: HostFloat>(
    g: &[T],
    cols: usize,
    j0: usize,
    r: std::ops::Range<usize>,
    out: &mut [T],
) {
    let w = out.len();
    if r.len() <= 16 {
        out.iter_mut().for_each(|v| *v = T::zero());
        for i in r {
            for (o, v) in out.iter_mut().zip(&g[i * cols + j0..i * cols + j0 + w]) {
                *o = *o + *v;
            }
        }
        return;
    }
    let mid = r.start + r.len() / 2;
    let mut tmp = vec![T::zero(); w];
    pairwise_block(g, cols, j0, r.start..mid, out);
    pairwise_block(g, cols, j0, mid..r.end, &mut tmp);
    for (o, t) in out.iter_mut().zip(&tmp) {
        *o = *o + *t;
    }
}

/// Column sums of `x` (`[n][c]`) into `out` (`[c]`, overwritten), each column **summed in row
/// order** from 0: `((0 + x₀ⱼ) + x₁ⱼ) + …`. The language model's CPU trainer forms its bias and
/// LayerNorm gradients this way. In f64 these are the bits of the ones-vector product `onesᵀ·x`
/// through [`crate::num::gemm::dgemm_accumulate`] that it used before (`1·x` is exact); blocks
/// of columns run in parallel. Not [`col_sums_pairwise`]: the two orders round differently, and
/// each trainer's results depend on its own.
pub fn col_sums_rows<T: HostFloat>(x: &[T], n: usize, c: usize, out: &mut [T]) {
    out.par_chunks_mut(COL_BLOCK)
        .enumerate()
        .with_min_len(par_blocks(n, c))
        .for_each(|(bi, o)| {
            let j0 = bi * COL_BLOCK;
            o.iter_mut().for_each(|v| *v = T::zero());
            for row in x.chunks(c).take(n) {
                for (s, v) in o.iter_mut().zip(&row[j0..]) {
                    *s = *s + *v;
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Column sums on a ragged shape (columns not a multiple of the block, rows not a power of
    /// two): `col_sums_rows` in f64 gives the bits of the ones-vector product it replaced, and
    /// in f32 is the plain row-order loop; `col_sums_pairwise` equals the one-block recursion
    /// whatever the column split. Outputs poisoned first.
    #[test]
    fn column_sums_keep_their_orders() {
        let (n, c) = (1037, 150);
        let x: Vec<f64> = (0..n * c)
            .map(|i| ((i * 7919 % 1013) as f64 / 1013.0 - 0.5) * (1.0 + (i % 5) as f64))
            .collect();
        let mut got = vec![f64::NAN; c];
        col_sums_rows(&x, n, c, &mut got);
        let mut want = vec![f64::NAN; c];
        crate::num::gemm::dgemm_accumulate(
            1,
            c,
            n,
            &vec![1.0; n],
            false,
            &x,
            false,
            &mut want,
            false,
        );
        assert!(
            got.iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let mut got32 = vec![f32::NAN; c];
        col_sums_rows(&x32, n, c, &mut got32);
        for j in 0..c {
            let s = (0..n).fold(0.0f32, |s, i| s + x32[i * c + j]);
            assert_eq!(got32[j].to_bits(), s.to_bits());
        }
        let mut par = vec![f32::NAN; c];
        col_sums_pairwise(&x32, c, &mut par);
        let mut one = vec![f32::NAN; c];
        pairwise_block(&x32, c, 0, 0..n, &mut one);
        assert!(
            par.iter()
                .zip(&one)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
        let exact: Vec<f64> = (0..c).map(|j| (0..n).map(|i| x[i * c + j]).sum()).collect();
        assert!(
            par.iter()
                .zip(&exact)
                .all(|(a, b)| (*a as f64 - b).abs() < 1e-3)
        );
    }

    /// Jacobi's eigenvalues: closed-form 2×2 cases, a diagonal matrix, and on random symmetric
    /// matrices the invariants Σλ = trace, Σλ² = ‖A‖²_F and det(A − λI) ≈ 0 per eigenvalue
    /// (the determinant by Gaussian elimination with partial pivoting).
    #[test]
    fn symmetric_eigenvalues_are_right() {
        let ev = symmetric_eigenvalues(&[2.0, 1.0, 1.0, 2.0], 2).unwrap();
        assert!(
            (ev[0] - 3.0).abs() < 1e-14 && (ev[1] - 1.0).abs() < 1e-14,
            "{ev:?}"
        );
        let ev = symmetric_eigenvalues(&[0.0, 0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0, -1.0], 3).unwrap();
        assert_eq!(ev, vec![5.0, 0.0, -1.0]);
        let det = |a: &[f64], n: usize| -> f64 {
            let mut m = a.to_vec();
            let mut d = 1.0;
            for c in 0..n {
                let p = (c..n)
                    .max_by(|&x, &y| m[x * n + c].abs().total_cmp(&m[y * n + c].abs()))
                    .unwrap();
                if p != c {
                    for k in 0..n {
                        m.swap(p * n + k, c * n + k);
                    }
                    d = -d;
                }
                let piv = m[c * n + c];
                d *= piv;
                if piv == 0.0 {
                    return 0.0;
                }
                for r in c + 1..n {
                    let f = m[r * n + c] / piv;
                    for k in c..n {
                        m[r * n + k] -= f * m[c * n + k];
                    }
                }
            }
            d
        };
        let mut z = vec![0.0; 5 * 5 * 20];
        crate::rng::host_normals_f64(crate::rng::StreamKey::new(31, 7), 0, &mut z);
        for (case, n) in [2usize, 3, 4, 5].iter().cycle().take(20).enumerate() {
            let n = *n;
            let mut a = vec![0.0; n * n];
            for i in 0..n {
                for j in i..n {
                    let v = 10.0 * z[case * 25 + i * n + j];
                    a[i * n + j] = v;
                    a[j * n + i] = v;
                }
            }
            let ev = symmetric_eigenvalues(&a, n).unwrap();
            assert!(ev.windows(2).all(|w| w[0] >= w[1]), "{ev:?}");
            let norm2: f64 = a.iter().map(|v| v * v).sum();
            let trace: f64 = (0..n).map(|i| a[i * n + i]).sum();
            let scale = norm2.sqrt();
            assert!(
                (ev.iter().sum::<f64>() - trace).abs() < 1e-12 * scale,
                "{ev:?}"
            );
            assert!((ev.iter().map(|v| v * v).sum::<f64>() - norm2).abs() < 1e-12 * norm2);
            for l in &ev {
                let mut s = a.clone();
                for i in 0..n {
                    s[i * n + i] -= l;
                }
                assert!(
                    det(&s, n).abs() < 1e-10 * scale.powi(n as i32),
                    "n {n}: {l} of {ev:?}"
                );
            }
        }
        assert!(symmetric_eigenvalues(&[1.0, 2.0, 3.0], 2).is_err());
        let e = symmetric_eigenvalues(&[1.0, f64::NAN, 0.0, 1.0], 2).unwrap_err();
        assert!(e.to_string().contains("(0, 1)"), "{e}");
    }

    #[test]
    fn cholesky_factors_and_rejects() {
        let a = [4.0, 2.0, 2.0, 3.0];
        let l = cholesky(&a, 2).unwrap();
        assert_eq!(l, vec![2.0, 0.0, 1.0, 2f64.sqrt()]);
        assert_eq!(cholesky_lower(&a, 2), Some(l));
        assert!(cholesky(&[1.0, 2.0, 2.0, 1.0], 2).is_err()); // indefinite
        assert_eq!(cholesky_lower(&[1.0, 2.0, 2.0, 1.0], 2), None);
        assert!(cholesky(&[1.0, 0.5, 0.0, 1.0], 2).is_err()); // not symmetric
        assert!(cholesky_lower(&[1.0, 0.5, 0.0, 1.0], 2).is_some()); // upper triangle unread
        assert!(cholesky(&[f64::NAN, 0.0, 0.0, 1.0], 2).is_err());
        assert!(cholesky(&[1.0; 3], 2).is_err());
    }

    #[test]
    fn column_sums_agree_on_exact_values() {
        // Small integers: every order gives the exact sum.
        let (rows, cols) = (37, 3);
        let g: Vec<f64> = (0..rows * cols).map(|i| (i % 7) as f64).collect();
        let want: Vec<f64> = (0..cols)
            .map(|j| (0..rows).map(|i| g[i * cols + j]).sum())
            .collect();
        let (mut a, mut b) = (vec![9.0; cols], vec![9.0; cols]);
        col_sums_pairwise(&g, cols, &mut a);
        col_sums_rows(&g, rows, cols, &mut b);
        assert_eq!(a, want);
        assert_eq!(b, want);
    }
}
