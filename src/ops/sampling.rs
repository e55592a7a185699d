//! Parameters of the batched samplers, their validation, and the random-draw layout every
//! backend follows.
//!
//! # Mixtures (and Gaussians)
//!
//! A [`MixtureBatch`] holds `R` independent Gaussian mixtures (one per replicate chain), each with
//! `K` components in `D` dimensions. A Gaussian N(μ, Σ) is the `K = 1` case, so one kernel family
//! samples both. Shapes (row-major, f64 on the host):
//! - `weights` `[R][K]`, `means` `[R][K][D]`;
//! - [`Factor::Cholesky`] `[R][K][D][D]`: the lower-triangular Cholesky factor `L` of each
//!   covariance (`Σ = L Lᵀ`; only the lower triangle is read), or [`Factor::Diagonal`] `[R][K][D]`:
//!   the standard deviations (0 is allowed: a point mass in that dimension, the absorbing state
//!   of a collapsing Gaussian chain).
//!
//! # Draw layout (identical on every backend)
//!
//! Sample `i` of a call (replicate `r = i / M`, sample `m = i % M`, with `M` samples per
//! replicate) owns Philox blocks `(first + i)·SB .. (first + i + 1)·SB` of the stream, where
//! `first` is the call's first sample index and `SB = 1 + ⌈D/4⌉` ([`blocks_per_sample`]):
//! - word 0 of its first block, shifted right by one, is the component draw `x` in `[0, 2³¹)`;
//!   the component is the number of thresholds `c_0 ≤ … ≤ c_{K−2}` with `c_k ≤ x`, where
//!   `c_k = ⌊2³¹·Σ_{j≤k} w_j⌋ ≤ 2³¹` is computed once on the host in f64. This integer
//!   comparison makes component indices **bit-identical on every backend** (no float arithmetic
//!   is involved); a zero weight is never chosen (31 bits: weights resolve to 4.7e-10);
//! - the next `⌈D/4⌉` blocks give `D` standard normals `z` (Box–Muller as in [`crate::rng`]);
//! - `x_d = μ_d + Σ_{j ≤ d} L_{dj} z_j`, accumulated in the order `j = 0, 1, …, d` starting from
//!   `μ_d` (diagonal: `x_d = μ_d + s_d z_d`), in the backend's precision.

use crate::error::{Error, Result};
use crate::num::linalg::cholesky;

/// Largest dimension the GPU samplers accept (their per-invocation normal buffer).
pub const MAX_DIM: usize = 128;

/// How far the weights of one mixture may sum from 1 before it is an error. Within this
/// tolerance they are renormalised (divided by their sum) — floating-point round-off in a
/// fitted model is expected; a larger gap means the caller passed something that is not a
/// probability vector.
pub const WEIGHT_SUM_TOLERANCE: f64 = 1e-6;

/// The covariance factors of a [`MixtureBatch`].
#[derive(Clone, Debug, PartialEq)]
pub enum Factor {
    /// Lower-triangular Cholesky factors, `[R][K][D][D]` row-major.
    Cholesky(Vec<f64>),
    /// Standard deviations of a diagonal covariance, `[R][K][D]`.
    Diagonal(Vec<f64>),
}

/// `R` Gaussian mixtures of `K` components in `D` dimensions (a Gaussian when `K = 1`).
#[derive(Clone, Debug, PartialEq)]
pub struct MixtureBatch {
    /// Number of independent mixtures (replicate chains).
    pub replicates: usize,
    /// Components per mixture.
    pub k: usize,
    /// Dimensions.
    pub d: usize,
    /// Mixture weights `[R][K]`: non-negative, each row summing to 1.
    pub weights: Vec<f64>,
    /// Component means `[R][K][D]`.
    pub means: Vec<f64>,
    /// Covariance factors.
    pub factor: Factor,
}

/// Philox blocks one sample of a `d`-dimensional mixture uses: one for the component, then
/// `⌈d/4⌉` for the normals.
pub fn blocks_per_sample(d: usize) -> u64 {
    1 + d.div_ceil(4) as u64
}

/// A validated [`MixtureBatch`]: weights renormalised, component thresholds computed.
#[derive(Clone, Debug)]
pub struct PreparedMixture {
    /// The batch, with each weight row renormalised to sum to 1.
    pub batch: MixtureBatch,
    /// Component thresholds `[R][K]` (`c_k` for `k < K−1`; the last entry of each row is
    /// never compared). See the module docs.
    pub thresholds: Vec<u32>,
}

impl MixtureBatch {
    /// Check shapes and values and compute the component thresholds. Errors name what is
    /// wrong: K = 0, D = 0, length mismatches, negative/NaN/inf weights, weights that do not sum
    /// to 1 within [`WEIGHT_SUM_TOLERANCE`], non-finite means, a Cholesky factor whose diagonal
    /// is not positive and finite (the covariance would not be positive definite), a
    /// negative standard deviation.
    pub fn prepare(&self) -> Result<PreparedMixture> {
        let (r, k, d) = (self.replicates, self.k, self.d);
        let bad = |m: String| Err(Error::InvalidArgument(m));
        if r == 0 || k == 0 || d == 0 {
            return bad(format!(
                "a mixture needs R ≥ 1, K ≥ 1 and D ≥ 1 (got R = {r}, K = {k}, D = {d})"
            ));
        }
        if self.weights.len() != r * k {
            return bad(format!(
                "weights have {} entries, expected R·K = {}",
                self.weights.len(),
                r * k
            ));
        }
        if self.means.len() != r * k * d {
            return bad(format!(
                "means have {} entries, expected R·K·D = {}",
                self.means.len(),
                r * k * d
            ));
        }
        let (factor, per) = match &self.factor {
            Factor::Cholesky(f) => (f, d * d),
            Factor::Diagonal(f) => (f, d),
        };
        if factor.len() != r * k * per {
            return bad(format!(
                "covariance factors have {} entries, expected {}",
                factor.len(),
                r * k * per
            ));
        }
        let mut weights = self.weights.clone();
        let mut thresholds = vec![u32::MAX; r * k];
        for rep in 0..r {
            let row = &mut weights[rep * k..(rep + 1) * k];
            if let Some(j) = row.iter().position(|w| !w.is_finite() || *w < 0.0) {
                return bad(format!(
                    "weight {j} of mixture {rep} is {} (weights must be finite and ≥ 0)",
                    row[j]
                ));
            }
            let sum: f64 = row.iter().sum();
            if (sum - 1.0).abs() > WEIGHT_SUM_TOLERANCE {
                return bad(format!(
                    "weights of mixture {rep} sum to {sum}, not 1 (tolerance {WEIGHT_SUM_TOLERANCE:e})"
                ));
            }
            row.iter_mut().for_each(|w| *w /= sum);
            let mut acc = 0.0;
            for j in 0..k - 1 {
                acc += row[j];
                thresholds[rep * k + j] =
                    (acc * 2_147_483_648.0).floor().min(2_147_483_648.0) as u32;
            }
        }
        if let Some(i) = self.means.iter().position(|v| !v.is_finite()) {
            return bad(format!("mean entry {i} is {}", self.means[i]));
        }
        for (c, f) in factor.chunks(per).enumerate() {
            if let Some(i) = f.iter().position(|v| !v.is_finite()) {
                return bad(format!(
                    "covariance factor of component {c} has entry {i} = {}",
                    f[i]
                ));
            }
            let diag_ok = match &self.factor {
                Factor::Cholesky(_) => (0..d).all(|i| f[i * d + i] > 0.0),
                Factor::Diagonal(_) => f.iter().all(|s| *s >= 0.0),
            };
            if !diag_ok {
                return bad(format!(
                    "covariance of component {c} (replicate {}, component {}) is invalid: a \
                     Cholesky diagonal entry ≤ 0 (not positive definite) or a negative \
                     standard deviation",
                    c / k,
                    c % k
                ));
            }
        }
        Ok(PreparedMixture {
            batch: MixtureBatch {
                weights,
                ..self.clone()
            },
            thresholds,
        })
    }

    /// A batch from full covariances `[R][K][D][D]`, factorised here (errors if one is not
    /// symmetric positive definite).
    pub fn from_covariances(
        replicates: usize,
        k: usize,
        d: usize,
        weights: Vec<f64>,
        means: Vec<f64>,
        covariances: &[f64],
    ) -> Result<Self> {
        if covariances.len() != replicates * k * d * d {
            return Err(Error::InvalidArgument(format!(
                "covariances have {} entries, expected R·K·D·D = {}",
                covariances.len(),
                replicates * k * d * d
            )));
        }
        let mut l = Vec::with_capacity(covariances.len());
        for (c, cov) in covariances.chunks(d * d.max(1)).enumerate() {
            l.extend(
                cholesky(cov, d)
                    .map_err(|e| Error::InvalidArgument(format!("component {c}: {e}")))?,
            );
        }
        Ok(Self {
            replicates,
            k,
            d,
            weights,
            means,
            factor: Factor::Cholesky(l),
        })
    }
}

impl PreparedMixture {
    /// Whether the factors are full Cholesky factors (else diagonal).
    pub fn is_full(&self) -> bool {
        matches!(self.batch.factor, Factor::Cholesky(_))
    }

    /// The factor values.
    pub fn factor(&self) -> &[f64] {
        match &self.batch.factor {
            Factor::Cholesky(f) | Factor::Diagonal(f) => f,
        }
    }

    /// Component of a sample whose raw first word is `word`, in mixture `rep`.
    #[inline]
    pub fn component(&self, rep: usize, word: u32) -> u32 {
        let k = self.batch.k;
        let x = word >> 1;
        self.thresholds[rep * k..rep * k + k - 1]
            .iter()
            .map(|&c| (x >= c) as u32)
            .sum()
    }
}

/// Check the output shapes of a mixture sampling call of `m` samples per replicate.
pub fn check_mixture_outputs(
    p: &PreparedMixture,
    m: usize,
    out: &[f64],
    comps: &[u32],
) -> Result<()> {
    let n = p.batch.replicates * m;
    if out.len() != n * p.batch.d || comps.len() != n {
        return Err(Error::InvalidArgument(format!(
            "outputs hold {} values and {} components; R·M·D = {} and R·M = {n} needed",
            out.len(),
            comps.len(),
            n * p.batch.d
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> MixtureBatch {
        MixtureBatch {
            replicates: 1,
            k: 3,
            d: 2,
            weights: vec![0.25, 0.0, 0.75],
            means: vec![0.0; 6],
            factor: Factor::Diagonal(vec![1.0; 6]),
        }
    }

    #[test]
    fn thresholds_pick_components_by_weight() {
        let p = batch().prepare().unwrap();
        assert_eq!(p.thresholds[..2], [1 << 29, 1 << 29]);
        assert_eq!(p.component(0, 0), 0);
        assert_eq!(p.component(0, (1 << 30) - 1), 0);
        assert_eq!(p.component(0, 1 << 30), 2); // the zero-weight component is skipped
        assert_eq!(p.component(0, u32::MAX), 2);
        // A trailing zero weight is never reached, even by the largest draw.
        let q = MixtureBatch {
            weights: vec![0.25, 0.75, 0.0],
            ..batch()
        }
        .prepare()
        .unwrap();
        assert_eq!(q.component(0, u32::MAX), 1);
    }

    #[test]
    fn bad_parameters_are_errors() {
        let cases: Vec<(&str, MixtureBatch)> = vec![
            (
                "K = 0",
                MixtureBatch {
                    k: 0,
                    weights: vec![],
                    means: vec![],
                    factor: Factor::Diagonal(vec![]),
                    ..batch()
                },
            ),
            (
                "negative",
                MixtureBatch {
                    weights: vec![-0.25, 0.5, 0.75],
                    ..batch()
                },
            ),
            (
                "NaN",
                MixtureBatch {
                    weights: vec![f64::NAN, 0.25, 0.75],
                    ..batch()
                },
            ),
            (
                "sum",
                MixtureBatch {
                    weights: vec![0.5, 0.5, 0.5],
                    ..batch()
                },
            ),
            (
                "dims",
                MixtureBatch {
                    means: vec![0.0; 5],
                    ..batch()
                },
            ),
            (
                "std",
                MixtureBatch {
                    factor: Factor::Diagonal(vec![1.0, 1.0, -1.0, 1.0, 1.0, 1.0]),
                    ..batch()
                },
            ),
            (
                "mean inf",
                MixtureBatch {
                    means: vec![0.0, f64::INFINITY, 0.0, 0.0, 0.0, 0.0],
                    ..batch()
                },
            ),
        ];
        for (what, b) in cases {
            assert!(b.prepare().is_err(), "{what} was accepted");
        }
        // Within tolerance: renormalised.
        let p = MixtureBatch {
            weights: vec![0.25, 0.0, 0.75 + 5e-7],
            ..batch()
        }
        .prepare()
        .unwrap();
        assert!((p.batch.weights.iter().sum::<f64>() - 1.0).abs() < 1e-15);
    }

    #[test]
    fn covariances_that_do_not_factor_are_errors() {
        assert!(
            MixtureBatch::from_covariances(1, 1, 2, vec![1.0], vec![0.0; 2], &[1.0, 2.0, 2.0, 1.0])
                .is_err()
        );
    }
}

/// Logits at or below this (after conversion to the backend's precision) count as −∞:
/// probability 0 on every backend. A logit of −∞ may be passed directly.
pub const EXCLUDED_LOGIT: f64 = -1e30;

/// `B` rows of `V` logits to sample classes from: `p(v) ∝ exp((l_v − max) / T)` over the
/// `top_k` largest logits of the row (all when `None`).
///
/// # Method: inverse CDF
///
/// Sample `j` of row `b` is sample `i = b·S + j` of the call (`S` samples per row), i.e. draw
/// `first + i` of the stream: one Philox word converted to a uniform `u` in `[0, 1)` at the
/// backend's precision. The backend computes, in its precision and in index order
/// `v = 0, 1, …, V−1`: the row maximum `m`; the top-k cut (the `k`-th largest logit `t`; logits
/// above `t` are kept, and logits equal to `t` in index order until `k` are kept);
/// `p_v = exp((l_v − m)/T)` for kept classes; the total `Z = Σ p_v`; and returns the first `v`
/// whose running sum exceeds `u·Z` (the last kept class if rounding leaves none). One uniform
/// per sample keeps draws aligned across backends; sequential sums make cpu32 and the GPU
/// kernels add in the same order. Indices agree across backends except when `u` falls within
/// rounding distance of a CDF boundary (probability ~ V·ε per sample; the tests bound it).
#[derive(Clone, Debug, PartialEq)]
pub struct Categorical {
    /// Rows `B`.
    pub rows: usize,
    /// Classes `V`.
    pub classes: usize,
    /// Logits `[B][V]`.
    pub logits: Vec<f64>,
    /// Temperature `T > 0`.
    pub temperature: f64,
    /// Keep only the `k` most likely classes (1 ≤ k ≤ V).
    pub top_k: Option<usize>,
}

impl Categorical {
    /// Check shapes and values: B, V ≥ 1; `logits.len() = B·V`; no NaN or +∞ logit (error
    /// names row and column); every row has a finite logit; `T` finite and > 0;
    /// `1 ≤ top_k ≤ V`.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        let (b, v) = (self.rows, self.classes);
        if b == 0 || v == 0 {
            return bad(format!(
                "categorical needs B ≥ 1 rows and V ≥ 1 classes (got {b}, {v})"
            ));
        }
        if self.logits.len() != b * v {
            return bad(format!(
                "logits have {} entries, expected B·V = {}",
                self.logits.len(),
                b * v
            ));
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return bad(format!(
                "temperature must be finite and > 0, got {}",
                self.temperature
            ));
        }
        if let Some(k) = self.top_k
            && (k == 0 || k > v)
        {
            return bad(format!("top_k must be in 1..={v}, got {k}"));
        }
        for (r, row) in self.logits.chunks(v).enumerate() {
            if let Some(c) = row.iter().position(|l| l.is_nan() || *l == f64::INFINITY) {
                return bad(format!("logit at row {r}, column {c} is {}", row[c]));
            }
            if row.iter().all(|l| *l <= EXCLUDED_LOGIT) {
                return bad(format!(
                    "row {r} has no finite logit (every class has probability 0)"
                ));
            }
        }
        Ok(())
    }

    /// The effective k (V when no top-k).
    pub fn k(&self) -> usize {
        self.top_k.unwrap_or(self.classes)
    }
}

/// Check the output shape of a categorical call of `s` samples per row.
pub fn check_categorical_outputs(c: &Categorical, s: usize, out: &[u32]) -> Result<()> {
    c.validate()?;
    if out.len() != c.rows * s {
        return Err(Error::InvalidArgument(format!(
            "output holds {} classes; B·S = {} needed",
            out.len(),
            c.rows * s
        )));
    }
    Ok(())
}
