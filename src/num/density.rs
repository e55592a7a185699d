//! Gaussian and mixture log-densities on the host, and the log-sum-exp they reduce with: the
//! cpu64 E-step, the drift study's f32 variants and the experiment's metrics all evaluate
//! through these, so a log-density has one definition.
//!
//! A component is given by its mean and its **precision factor** ([`PrecisionFactor`]): the
//! upper-triangular `U` with `Σ⁻¹ = U Uᵀ` (scikit-learn's `precisions_cholesky_`), or `1/σ` per
//! dimension for a diagonal covariance, so that
//! `ln N(x | μ, Σ) = −½‖(x − μ)ᵀ U‖² − (D/2) ln 2π + ln det U`.

use crate::num::float::HostFloat;
use crate::num::linalg::cholesky_lower;

/// ½ ln 2π.
pub const HALF_LN_2PI: f64 = 0.918_938_533_204_672_8;

/// The precision factor of one Gaussian component in `D` dimensions.
#[derive(Clone, Copy, Debug)]
pub enum PrecisionFactor<'a, T> {
    /// Upper-triangular `U` (`Σ⁻¹ = U Uᵀ`), `[D][D]` row-major (only `i ≤ j` is read).
    Full(&'a [T]),
    /// `1/σ_i`, `[D]`.
    Diag(&'a [T]),
}

/// The squared Mahalanobis distance `‖(x − μ)ᵀ U‖²` (`Σ_i ((x_i − μ_i)/σ_i)²` for a diagonal
/// factor), at the precision of `T`: for each column `j` in order, `y_j = Σ_{i≤j} (x_i − μ_i)·U_ij`
/// summed in `i` order from 0, then `q = Σ_j y_j²` in `j` order from 0.
pub fn mahalanobis_sq<T: HostFloat>(x: &[T], mu: &[T], u: PrecisionFactor<'_, T>) -> T {
    let d = mu.len();
    let mut q = T::zero();
    match u {
        PrecisionFactor::Full(u) => {
            for j in 0..d {
                let mut y = T::zero();
                for i in 0..=j {
                    y = y + (x[i] - mu[i]) * u[i * d + j];
                }
                q = q + y * y;
            }
        }
        PrecisionFactor::Diag(s) => {
            for i in 0..d {
                let y = (x[i] - mu[i]) * s[i];
                q = q + y * y;
            }
        }
    }
    q
}

/// `ln N(x | μ, Σ)` in f64 from the precision factor `u` of Σ and `log_det = ln det U`
/// (`= −½ ln det Σ`): `−½·q − D·½ln 2π + log_det` with `q` from [`mahalanobis_sq`].
pub fn log_gauss(x: &[f64], mu: &[f64], u: PrecisionFactor<'_, f64>, log_det: f64) -> f64 {
    let q = mahalanobis_sq(x, mu, u);
    -0.5 * q - mu.len() as f64 * HALF_LN_2PI + log_det
}

/// `ln Σ exp(l_i)`, max-shifted (no overflow or underflow at large |l|): `m = max l`, then
/// `m + ln Σ_i exp(l_i − m)` with the sum in index order.
pub fn logsumexp<T: HostFloat>(l: &[T]) -> T {
    let m = l.iter().cloned().fold(T::neg_infinity(), T::max);
    // exp(0) = 1 exactly: the largest term's exp is skipped (same bits, one exp fewer).
    let finite = m.is_finite();
    let s = l.iter().fold(T::zero(), |a, v| {
        a + if finite && *v == m {
            T::one()
        } else {
            (*v - m).exp()
        }
    });
    m + s.ln()
}

/// How far below the largest term every other term must lie for [`logsumexp_columns`] to skip
/// the exps and the log of a column: `exp(−40) < 4.3·10⁻¹⁸`, so with at most
/// [`SEPARATED_MAX_TERMS`] terms the sum `1 + Σ exp(l_c − m)` rounds to exactly 1 (every partial
/// sum of the small terms stays below 2⁻⁵³, half an ulp of 1) and `m + ln 1 = m + 0`.
pub const SEPARATED_GAP: f64 = 40.0;

/// The most terms a column may have for the [`SEPARATED_GAP`] shortcut: `25 · exp(−40)` is
/// still below 2⁻⁵³.
pub const SEPARATED_MAX_TERMS: usize = 26;

/// [`logsumexp`] of every column of `l` (`[K][B]`, `l[c·B + r]`, `B = out.len()`) into `out`
/// (`[B]`), bit for bit: the largest term of each column first (a pass over the rows per
/// component, which vectorises), then the sum in component order with the largest term's
/// `exp(0)` skipped, as [`logsumexp`] does. A column whose other terms all lie more than
/// [`SEPARATED_GAP`] below its largest (well-separated components, and every point of a
/// collapsed mixture) is `m + 0.0` without an exp or a log: the same bits, since the sum it
/// skips rounds to exactly 1.
pub fn logsumexp_columns(l: &[f64], out: &mut [f64]) {
    let b = out.len();
    out.fill(f64::NEG_INFINITY);
    for col in l.chunks_exact(b.max(1)) {
        for (m, v) in out.iter_mut().zip(col) {
            *m = m.max(*v);
        }
    }
    let few = l.len() <= SEPARATED_MAX_TERMS * b.max(1);
    for (r, o) in out.iter_mut().enumerate() {
        let m = *o;
        let finite = m.is_finite();
        if finite && few {
            let floor = m - SEPARATED_GAP;
            let mut seen_max = false;
            let separated = l.iter().skip(r).step_by(b).all(|v| {
                if *v == m && !seen_max {
                    seen_max = true;
                    true
                } else {
                    *v < floor
                }
            });
            if separated {
                *o = m + 0.0;
                continue;
            }
        }
        let mut s = 0.0;
        for v in l.iter().skip(r).step_by(b) {
            s += if finite && *v == m {
                1.0
            } else {
                (v - m).exp()
            };
        }
        *o = m + s.ln();
    }
}

/// [`logsumexp`] of `l`, and `l` replaced by the normalised `exp(l_i − lse)` (responsibilities
/// from per-component log-densities).
pub fn lse_normalise<T: HostFloat>(l: &mut [T]) -> T {
    let lse = logsumexp(l);
    for v in l.iter_mut() {
        *v = (*v - lse).exp();
    }
    lse
}

/// `ln p(x)` of a mixture: the [`logsumexp`] over components `c = 0 … K−1` (`K` =
/// `log_weights.len()`) of `log_component(c) + ln w_c`, where `log_component(c)` is
/// `ln N(x | μ_c, Σ_c)` (e.g. [`log_gauss`]).
pub fn log_mixture_density(log_weights: &[f64], log_component: impl Fn(usize) -> f64) -> f64 {
    let k = log_weights.len();
    let term = |c: usize| log_component(c) + log_weights[c];
    if k <= 16 {
        // Same terms on the stack (this runs once per point of every metric).
        let mut l = [0.0; 16];
        for (c, v) in l[..k].iter_mut().enumerate() {
            *v = term(c);
        }
        return logsumexp(&l[..k]);
    }
    let l: Vec<f64> = (0..k).map(term).collect();
    logsumexp(&l)
}

/// The density `N(a; b, Σ)` in f64 from the covariance `cov` (`[D][D]`, symmetric; through
/// [`cholesky_lower`] `L`, the solve `L y = a − b` in row order, `q = Σ y²` and
/// `ln det L = Σ ln l_ii`): `exp(−½q − ln det L − D·½ln 2π)`. NaN when `Σ` is not positive
/// definite. (The closed-form L2 distance between mixtures integrates products of these.)
pub fn gauss_density(a: &[f64], b: &[f64], cov: &[f64]) -> f64 {
    let d = a.len();
    let Some(l) = cholesky_lower(cov, d) else {
        return f64::NAN;
    };
    let mut y = vec![0.0; d];
    for i in 0..d {
        let mut s = a[i] - b[i];
        for t in 0..i {
            s -= l[i * d + t] * y[t];
        }
        y[i] = s / l[i * d + i];
    }
    let q: f64 = y.iter().map(|v| v * v).sum();
    let logdet: f64 = (0..d).map(|i| l[i * d + i].ln()).sum();
    (-0.5 * q - logdet - d as f64 * HALF_LN_2PI).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_diagonal_factors_agree_on_a_diagonal_covariance() {
        let (x, mu) = ([0.3, -1.2, 2.0], [0.1, 0.4, -0.5]);
        let s = [2.0, 0.5, 1.25];
        let mut u = [0.0; 9];
        (0..3).for_each(|i| u[i * 3 + i] = s[i]);
        let ld: f64 = s.iter().map(|v: &f64| v.ln()).sum();
        let a = log_gauss(&x, &mu, PrecisionFactor::Full(&u), ld);
        let b = log_gauss(&x, &mu, PrecisionFactor::Diag(&s), ld);
        assert!((a - b).abs() < 1e-14, "{a} vs {b}");
        // N(x; μ, Σ) from the covariance gives the same density.
        let mut cov = [0.0; 9];
        (0..3).for_each(|i| cov[i * 3 + i] = 1.0 / (s[i] * s[i]));
        assert!((gauss_density(&x, &mu, &cov).ln() - a).abs() < 1e-12);
    }

    /// The separated-terms shortcut gives the full formula's bits: gaps straddling
    /// [`SEPARATED_GAP`], ties, −0, −∞ terms, NaN and up to [`SEPARATED_MAX_TERMS`] + 2 terms.
    #[test]
    fn logsumexp_columns_shortcut_is_bit_identical() {
        let full = |col: &[f64]| -> f64 {
            let m = col.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = col
                .iter()
                .map(|v| {
                    if m.is_finite() && *v == m {
                        1.0
                    } else {
                        (v - m).exp()
                    }
                })
                .fold(0.0, |a, e| a + e);
            m + s.ln()
        };
        let mut z = vec![0.0; 4096];
        crate::rng::host_normals_f64(crate::rng::StreamKey::new(8, 3), 0, &mut z);
        let mut shortcuts = 0;
        for k in [1, 2, 3, 5, SEPARATED_MAX_TERMS, SEPARATED_MAX_TERMS + 2] {
            let b = 37;
            let mut l = vec![0.0; k * b];
            for (i, v) in l.iter_mut().enumerate() {
                let (c, r) = (i / b, i % b);
                let base = [0.0, -0.0, 3.5, -1e6, 1e300][r % 5];
                // Gaps from 0 to ~80 nats, the first component the largest.
                *v = if c == 0 {
                    base
                } else {
                    base - 40.0 + 8.0 * z[i] * (r % 3) as f64
                };
                if r == 7 && c == k - 1 {
                    *v = f64::NEG_INFINITY;
                }
                if r == 11 && c == k - 1 && k > 1 {
                    *v = base; // a tie with the largest
                }
                if r == 13 && c == k - 1 {
                    *v = f64::NAN;
                }
            }
            let mut out = vec![f64::NAN; b];
            logsumexp_columns(&l, &mut out);
            for r in 0..b {
                let col: Vec<f64> = (0..k).map(|c| l[c * b + r]).collect();
                let want = full(&col);
                assert_eq!(out[r].to_bits(), want.to_bits(), "k {k} row {r}: {col:?}");
                let m = col.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let gap = col
                    .iter()
                    .filter(|v| **v != m)
                    .all(|v| *v < m - SEPARATED_GAP);
                shortcuts += usize::from(gap && k <= SEPARATED_MAX_TERMS);
            }
        }
        assert!(
            shortcuts > 20,
            "the shortcut was taken only {shortcuts} times"
        );
    }

    #[test]
    fn logsumexp_is_shift_safe_and_normalises() {
        let mut l = [1000.0f64, 1000.0];
        let lse = lse_normalise(&mut l);
        assert!((lse - (1000.0 + 2f64.ln())).abs() < 1e-12);
        assert!(l.iter().all(|v| (v - 0.5).abs() < 1e-13), "{l:?}");
        assert_eq!(logsumexp(&[-1e300f64, 0.0]), 0.0);
        assert!((logsumexp(&[0.5f32, 0.5]) - (0.5 + 2f32.ln())).abs() < 1e-6);
    }
}
