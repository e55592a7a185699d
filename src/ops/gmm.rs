//! Gaussian-mixture parameters as the EM kernels consume and produce them, and the host-side
//! per-component D×D work between passes (Cholesky factors, precision factors, log-determinants).
//!
//! The E- and M-step passes over the N data points run on a backend ([`GmmPass`]); what they
//! exchange with the host is small (`K·D²` numbers), so the per-component Cholesky work runs on
//! the host in f64 for every backend: it costs `O(K·D³)`, nothing beside the `O(N·K·D²)` passes,
//! and doing it identically everywhere keeps the backends' differences in the passes.

use crate::error::{Error, Result};
use crate::num::density::{
    HALF_LN_2PI, PrecisionFactor, log_gauss, log_mixture_density, logsumexp_columns,
};
use crate::num::linalg::cholesky_lower;

/// scikit-learn's `covariance_type`: what each component's covariance may be.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum CovarianceType {
    /// A full D×D covariance per component.
    Full,
    /// One full D×D covariance shared by every component.
    Tied,
    /// A diagonal covariance per component.
    Diag,
    /// One variance per component, the same in every dimension (`σ_k² I`).
    Spherical,
}

/// How the backends' passes see a covariance type: per-component full D×D factors and
/// scatters, or per-component diagonals. `tied` runs as `Full` (its one factor repeated for
/// every component; the M-step sums the components' scatters on the host) and `spherical` as
/// `Diag` (its variance repeated over the dimensions; the M-step averages the diagonal), so the
/// four types share the E- and M-step kernels of every backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PassLayout {
    /// `[K][D][D]` precision factors and scatters.
    Full,
    /// `[K][D]` precision factors and scatters.
    Diag,
}

impl CovarianceType {
    /// Every type, in scikit-learn's order.
    pub const ALL: [CovarianceType; 4] = [
        CovarianceType::Full,
        CovarianceType::Tied,
        CovarianceType::Diag,
        CovarianceType::Spherical,
    ];

    /// The layout the passes run this type in (see [`PassLayout`]).
    pub fn layout(self) -> PassLayout {
        match self {
            CovarianceType::Full | CovarianceType::Tied => PassLayout::Full,
            CovarianceType::Diag | CovarianceType::Spherical => PassLayout::Diag,
        }
    }

    /// The name scikit-learn and the CLI use (`full`, `tied`, `diag`, `spherical`).
    pub fn name(self) -> &'static str {
        match self {
            CovarianceType::Full => "full",
            CovarianceType::Tied => "tied",
            CovarianceType::Diag => "diag",
            CovarianceType::Spherical => "spherical",
        }
    }

    /// Stored covariance values of `k` components in `d` dimensions: `K·D²` (full), `D²`
    /// (tied), `K·D` (diag), `K` (spherical); `None` on overflow.
    pub fn stored_values(self, k: usize, d: usize) -> Option<usize> {
        match self {
            CovarianceType::Full => k.checked_mul(d.checked_mul(d)?),
            CovarianceType::Tied => d.checked_mul(d),
            CovarianceType::Diag => k.checked_mul(d),
            CovarianceType::Spherical => Some(k),
        }
    }
}

/// Mixture parameters on the host, f64.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GmmParams {
    /// Components.
    pub k: usize,
    /// Dimensions.
    pub d: usize,
    /// Covariance type.
    pub covariance_type: CovarianceType,
    /// Weights `[K]`, summing to 1.
    pub weights: Vec<f64>,
    /// Means `[K][D]`.
    pub means: Vec<f64>,
    /// Covariances as scikit-learn's `covariances_`: `[K][D][D]` (full), `[D][D]` (tied),
    /// `[K][D]` (diagonal variances) or `[K]` (spherical variances).
    pub covariances: Vec<f64>,
}

/// What an E-step needs, computed from [`GmmParams`] on the host.
///
/// `prec_chol` is the upper-triangular `U_k` with `Σ_k⁻¹ = U_k U_kᵀ` (scikit-learn's
/// `precisions_cholesky_`), `[K][D][D]` row-major ([`PassLayout::Full`]), or `[K][D]` = `1/σ`
/// ([`PassLayout::Diag`]), so `log N(x | μ_k, Σ_k) = −½(D ln 2π + ‖(x − μ_k)ᵀ U_k‖²) + log_det[k]`.
#[derive(Clone, Debug)]
pub struct EStepParams {
    /// Components.
    pub k: usize,
    /// Dimensions.
    pub d: usize,
    /// Layout of `prec_chol` (a tied or spherical mixture's factors are repeated per component).
    pub layout: PassLayout,
    /// `ln w_k`, `[K]`.
    pub log_weights: Vec<f64>,
    /// Means `[K][D]`.
    pub means: Vec<f64>,
    /// Precision Cholesky factors (see above).
    pub prec_chol: Vec<f64>,
    /// `ln det U_k = −½ ln det Σ_k`, `[K]`.
    pub log_det: Vec<f64>,
}

/// Sufficient statistics from one M-step over the data under the last responsibilities `r`:
/// `nk[k] = Σ_n r_nk`, `means[k] = Σ_n r_nk x_n / nk[k]`, and the *centred* scatter
/// `scatter[k] = Σ_n r_nk (x_n − means[k])(x_n − means[k])ᵀ` (`[K][D][D]` for
/// [`PassLayout::Full`], its diagonal `[K][D]` for [`PassLayout::Diag`]),
/// computed in a second pass after the means (two-pass: no `Σ r x xᵀ − N μ μᵀ` cancellation).
#[derive(Clone, Debug)]
pub struct MStats {
    /// `Σ_n r_nk`, `[K]`.
    pub nk: Vec<f64>,
    /// Weighted means `[K][D]` (0 where `nk = 0`).
    pub means: Vec<f64>,
    /// Centred weighted scatter (see above).
    pub scatter: Vec<f64>,
}

impl GmmParams {
    /// Free parameters, counted as scikit-learn's `GaussianMixture._n_parameters()`: `K·D` means,
    /// `K·D(D+1)/2` (full), `D(D+1)/2` (tied), `K·D` (diag) or `K` (spherical) covariance
    /// entries, and `K − 1` weights. BIC and AIC use it.
    pub fn n_parameters(&self) -> usize {
        let (k, d) = (self.k, self.d);
        let cov = match self.covariance_type {
            CovarianceType::Full => k * d * (d + 1) / 2,
            CovarianceType::Tied => d * (d + 1) / 2,
            CovarianceType::Diag => k * d,
            CovarianceType::Spherical => k,
        };
        k * d + cov + k.saturating_sub(1)
    }

    /// The same mixture with one covariance per component in its pass layout: `full` and
    /// `diag` as they are; `tied` as `full` with the shared matrix repeated K times;
    /// `spherical` as `diag` with each variance repeated D times. The density, the E-step, the
    /// samplers and the metrics read this form, so they need only the two layouts.
    pub fn per_component(&self) -> std::borrow::Cow<'_, GmmParams> {
        let (k, d) = (self.k, self.d);
        let expanded = |covariance_type, covariances| GmmParams {
            covariance_type,
            covariances,
            ..self.clone()
        };
        match self.covariance_type {
            CovarianceType::Full | CovarianceType::Diag => std::borrow::Cow::Borrowed(self),
            CovarianceType::Tied => {
                std::borrow::Cow::Owned(expanded(CovarianceType::Full, self.covariances.repeat(k)))
            }
            CovarianceType::Spherical => std::borrow::Cow::Owned(expanded(
                CovarianceType::Diag,
                self.covariances
                    .iter()
                    .flat_map(|&v| std::iter::repeat_n(v, d))
                    .collect(),
            )),
        }
    }

    /// The dense D×D covariance of component `c` (row-major), whatever the type.
    pub fn component_covariance(&self, c: usize) -> Vec<f64> {
        let d = self.d;
        let p = self.per_component();
        match p.covariance_type {
            CovarianceType::Full | CovarianceType::Tied => {
                p.covariances[c * d * d..(c + 1) * d * d].to_vec()
            }
            CovarianceType::Diag | CovarianceType::Spherical => {
                let mut m = vec![0.0; d * d];
                for j in 0..d {
                    m[j * d + j] = p.covariances[c * d + j];
                }
                m
            }
        }
    }

    /// The variances (diagonal of every component's covariance), `[K][D]`, whatever the type.
    pub fn variances(&self) -> Vec<f64> {
        let (k, d) = (self.k, self.d);
        let p = self.per_component();
        match p.covariance_type {
            CovarianceType::Diag | CovarianceType::Spherical => p.covariances.clone(),
            CovarianceType::Full | CovarianceType::Tied => (0..k * d)
                .map(|i| p.covariances[(i / d) * d * d + (i % d) * (d + 1)])
                .collect(),
        }
    }

    /// The E-step's view of these parameters: precision Cholesky factors and log-determinants,
    /// in the type's [`PassLayout`] (a tied factor is computed once and repeated).
    /// Errors when a covariance is not positive definite (suggesting a larger `reg_covar`).
    pub fn estep_params(&self) -> Result<EStepParams> {
        let (k, d) = (self.k, self.d);
        let layout = self.covariance_type.layout();
        // Spherical as the diagonal it stands for; tied's one matrix factorised once.
        let (p, blocks) = match self.covariance_type {
            CovarianceType::Tied => (std::borrow::Cow::Borrowed(self), 1),
            _ => (self.per_component(), k),
        };
        let mut prec = Vec::with_capacity(k * if layout == PassLayout::Full { d * d } else { d });
        let mut log_det = Vec::with_capacity(k);
        for c in 0..blocks {
            match layout {
                PassLayout::Full => {
                    let cov = &p.covariances[c * d * d..(c + 1) * d * d];
                    let what = if blocks == 1 && self.covariance_type == CovarianceType::Tied {
                        "the tied covariance".to_string()
                    } else {
                        format!("covariance of component {c}")
                    };
                    let l = cholesky_lower(cov, d).ok_or_else(|| {
                        Error::Numerical(format!(
                            "{what} is not positive definite; increase reg_covar"
                        ))
                    })?;
                    // U = (L⁻¹)ᵀ: solve L V = I for V = L⁻¹ (lower), then transpose.
                    let mut v = vec![0.0; d * d];
                    for col in 0..d {
                        for i in col..d {
                            let mut s = if i == col { 1.0 } else { 0.0 };
                            for t in col..i {
                                s -= l[i * d + t] * v[t * d + col];
                            }
                            v[i * d + col] = s / l[i * d + i];
                        }
                    }
                    let mut u = vec![0.0; d * d];
                    for i in 0..d {
                        for j in 0..d {
                            u[i * d + j] = v[j * d + i];
                        }
                    }
                    log_det.push(-(0..d).map(|i| l[i * d + i].ln()).sum::<f64>());
                    prec.extend(u);
                }
                PassLayout::Diag => {
                    let var = &p.covariances[c * d..(c + 1) * d];
                    if let Some(i) = var.iter().position(|v| !(*v > 0.0 && v.is_finite())) {
                        return Err(Error::Numerical(format!(
                            "variance {i} of component {c} is {}; increase reg_covar",
                            var[i]
                        )));
                    }
                    prec.extend(var.iter().map(|v| 1.0 / v.sqrt()));
                    log_det.push(-0.5 * var.iter().map(|v| v.ln()).sum::<f64>());
                }
            }
        }
        if blocks == 1 && k > 1 {
            prec = prec.repeat(k);
            log_det = log_det.repeat(k);
        }
        Ok(EStepParams {
            k,
            d,
            layout,
            log_weights: self.weights.iter().map(|w| w.ln()).collect(),
            means: self.means.clone(),
            prec_chol: prec,
            log_det,
        })
    }
}

/// Rows per block of [`EStepParams::terms_block`] and [`EStepParams::terms_cols`].
pub const TERMS_BLOCK: usize = 64;

/// The block `rows` (`[B][D]`, row-major) as columns: `cols[i·B + r] = rows[r·D + i]`
/// (`cols` `[D][B]`), the layout [`EStepParams::terms_cols`] reads.
pub fn transpose_block(rows: &[f64], d: usize, cols: &mut [f64]) {
    let b = rows.len() / d.max(1);
    for (r, row) in rows.chunks_exact(d.max(1)).enumerate() {
        for (i, v) in row.iter().enumerate() {
            cols[i * b + r] = *v;
        }
    }
}

impl EStepParams {
    /// `ln N(x | μ_c, Σ_c)` of component `c` at `x` (`[D]`), f64
    /// ([`crate::num::density::log_gauss`]).
    pub fn log_gauss(&self, x: &[f64], c: usize) -> f64 {
        let d = self.d;
        let u = match self.layout {
            PassLayout::Full => PrecisionFactor::Full(&self.prec_chol[c * d * d..(c + 1) * d * d]),
            PassLayout::Diag => PrecisionFactor::Diag(&self.prec_chol[c * d..(c + 1) * d]),
        };
        log_gauss(x, &self.means[c * d..(c + 1) * d], u, self.log_det[c])
    }

    /// `ln p(x)` of the mixture at `x` (`[D]`), f64: the log-sum-exp over components of
    /// `ln N(x | μ_c, Σ_c) + ln w_c` ([`crate::num::density::log_mixture_density`]).
    pub fn log_density(&self, x: &[f64]) -> f64 {
        log_mixture_density(&self.log_weights, |c| self.log_gauss(x, c))
    }

    /// `ln w_c + ln N(x_b | μ_c, Σ_c)` for every row `b` of `rows` (`[B][D]`, row-major, at most
    /// [`TERMS_BLOCK`] rows) and component `c`, into `terms` (`[K][B]`): the same bits as
    /// [`Self::log_gauss`]` + ln w_c` row by row. The rows are transposed and evaluated by
    /// [`Self::terms_cols`]; a caller with its own column block calls that directly.
    pub fn terms_block(&self, rows: &[f64], terms: &mut [f64]) {
        let b = rows.len() / self.d.max(1);
        let mut cols = vec![0.0; self.d * b];
        transpose_block(rows, self.d, &mut cols);
        self.terms_cols(&cols, b, terms);
    }

    /// [`Self::terms_block`] for a block given by columns: `cols` is `[D][B]` (`cols[i·B + r]` is
    /// coordinate `i` of row `r`, `B = b` at most [`TERMS_BLOCK`]), `terms` `[K][B]`. The same
    /// operations in the same order as [`Self::log_gauss`]` + ln w_c` for each row (so the same
    /// bits), a component at a time over contiguous coordinates, so the loops over rows vectorise.
    pub fn terms_cols(&self, cols: &[f64], b: usize, terms: &mut [f64]) {
        let d = self.d;
        debug_assert!(b <= TERMS_BLOCK && cols.len() >= d * b && terms.len() >= self.k * b);
        let mut q = [0.0f64; TERMS_BLOCK];
        let mut y = [0.0f64; TERMS_BLOCK];
        let (q, y) = (&mut q[..b], &mut y[..b]);
        let half = d as f64 * HALF_LN_2PI;
        for c in 0..self.k {
            let mu = &self.means[c * d..(c + 1) * d];
            q.fill(0.0);
            match self.layout {
                PassLayout::Full => {
                    let u = &self.prec_chol[c * d * d..(c + 1) * d * d];
                    for j in 0..d {
                        y.fill(0.0);
                        for i in 0..=j {
                            let (m, w) = (mu[i], u[i * d + j]);
                            for (yv, x) in y.iter_mut().zip(&cols[i * b..(i + 1) * b]) {
                                *yv += (x - m) * w;
                            }
                        }
                        for (qv, yv) in q.iter_mut().zip(y.iter()) {
                            *qv += yv * yv;
                        }
                    }
                }
                PassLayout::Diag => {
                    let s = &self.prec_chol[c * d..(c + 1) * d];
                    for i in 0..d {
                        let (m, w) = (mu[i], s[i]);
                        for (qv, x) in q.iter_mut().zip(&cols[i * b..(i + 1) * b]) {
                            let yv = (x - m) * w;
                            *qv += yv * yv;
                        }
                    }
                }
            }
            let (log_det, log_w) = (self.log_det[c], self.log_weights[c]);
            for (t, qv) in terms[c * b..(c + 1) * b].iter_mut().zip(q.iter()) {
                *t = -0.5 * qv - half + log_det + log_w;
            }
        }
    }

    /// [`Self::log_density`] of every row of `x` (`[N][D]`, row-major) into `out` (`[N]`), bit
    /// for bit, a block of [`TERMS_BLOCK`] rows at a time through [`Self::terms_cols`] and
    /// [`logsumexp_columns`]: the metrics' held-out log-likelihood evaluates 10 000 rows per
    /// replicate and generation. Allocates its scratch once per call.
    pub fn log_density_rows(&self, x: &[f64], out: &mut [f64]) {
        let d = self.d.max(1);
        let mut cols = vec![0.0; self.d * TERMS_BLOCK];
        let mut terms = vec![0.0; self.k * TERMS_BLOCK];
        for (block, o) in x.chunks(TERMS_BLOCK * d).zip(out.chunks_mut(TERMS_BLOCK)) {
            let b = (block.len() / d).min(o.len());
            transpose_block(&block[..b * self.d], self.d, &mut cols[..self.d * b]);
            self.terms_cols(&cols[..self.d * b], b, &mut terms);
            logsumexp_columns(&terms[..self.k * b], &mut o[..b]);
        }
    }

    /// Per-component constants `ln w_k + ln det U_k − (D/2) ln 2π`, `[K]`: the log-density of
    /// component k at x is `−½‖(x − μ_k)ᵀU_k‖² + constant_k`.
    pub fn log_constants(&self) -> Vec<f64> {
        (0..self.k)
            .map(|c| self.log_det[c] + self.log_weights[c] - self.d as f64 * HALF_LN_2PI)
            .collect()
    }
}

/// `(N_k, means)` from the first M-step sums laid out `[K][D + 1]` (columns `Σ r x_j`, then
/// `Σ r`), as the GPU passes produce them; a component with no mass gets mean 0.
pub fn first_pass_stats(first: &[f32], k: usize, d: usize) -> (Vec<f32>, Vec<f32>) {
    let nk: Vec<f32> = (0..k).map(|c| first[c * (d + 1) + d]).collect();
    let means = (0..k * d)
        .map(|i| {
            let (c, j) = (i / d, i % d);
            if nk[c] > 0.0 {
                first[c * (d + 1) + j] / nk[c]
            } else {
                0.0
            }
        })
        .collect();
    (nk, means)
}

/// The number of components `K` of a responsibilities table of `len` entries over `n` points
/// (`[N][K]`); an error when `len` is not a positive multiple of `n`.
pub fn components_of(len: usize, n: usize) -> Result<usize> {
    if n == 0 || len == 0 || !len.is_multiple_of(n) {
        return Err(Error::InvalidArgument(format!(
            "{len} responsibilities for {n} points"
        )));
    }
    Ok(len / n)
}

/// Points per block of the CPU passes: partial sums are formed per block, then combined with
/// [`PairwiseAcc`].
pub const CPU_BLOCK: usize = 1024;

/// Repeated E/M passes over one data set on one backend (GPU backends keep the data and the
/// responsibilities on the device between passes).
pub trait GmmPass {
    /// E-step: `log p(x_n)` and responsibilities `r_nk` for every point under `p` (kept for the
    /// next [`GmmPass::mstep`]); returns `Σ_n log p(x_n)` summed pairwise.
    fn estep(&mut self, p: &EStepParams) -> Result<f64>;

    /// Replace the responsibilities (`[N][K]`, rows summing to 1), e.g. from an initialisation.
    fn set_responsibilities(&mut self, r: &[f64]) -> Result<()>;

    /// The current responsibilities, `[N][K]` (tests and diagnostics).
    fn responsibilities(&self) -> Result<Vec<f64>>;

    /// M-step statistics under the current responsibilities (see [`MStats`]).
    fn mstep(&mut self, layout: PassLayout) -> Result<MStats>;
}

/// Which sums one M-step summation launch forms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MSum {
    /// `k·(D + 1)` columns: column `c·(D+1) + j` sums `r_nc·x_nj` for `j < D` and `r_nc` for
    /// `j = D` (the first pass: `N_k` and the unnormalised means).
    First,
    /// The centred scatter about the given means: `k·D·D` columns (full) or `k·D` (diagonal).
    Scatter,
}

impl PassLayout {
    /// The number the GPU kernels take for this layout (`cov` of `gmm.wgsl`'s uniform, the
    /// comptime `cov` of the cubecl kernels): 0 diagonal, 1 full. The kernels branch on it
    /// where the layout differs.
    pub fn code(self) -> u32 {
        match self {
            PassLayout::Diag => 0,
            PassLayout::Full => 1,
        }
    }
}

/// Points per E-step workgroup (cube) of the GPU kernels: the E-step writes one partial sum of
/// `ln p(x_n)` per this many points.
pub const ESTEP_POINTS: usize = 64;

/// The shape of one E-step launch: `n` points of one chunk, `d` dimensions, `k` components,
/// the covariance type, and the first row of the `[⌈N/64⌉]` table of per-workgroup
/// log-likelihood sums this chunk writes.
#[derive(Clone, Copy, Debug)]
pub struct EStepShape {
    /// Points in the chunk.
    pub n: usize,
    /// Dimensions.
    pub d: usize,
    /// Components.
    pub k: usize,
    /// The layout of the precision factors.
    pub cov: PassLayout,
    /// Row of the partial-sum table of the chunk's first workgroup of [`ESTEP_POINTS`] points.
    pub row0: usize,
}

impl EStepShape {
    /// Workgroups (rows of the partial-sum table) of this launch.
    pub fn workgroups(&self) -> usize {
        self.n.div_ceil(ESTEP_POINTS)
    }
}

/// The shape of one M-step summation launch over the `n` points of one chunk into `cols`
/// columns, in `tiles` tiles of `tile` points (the last one shorter), written to rows
/// `row0 .. row0 + tiles` of the `[rows][cols]` table of partial sums.
#[derive(Clone, Copy, Debug)]
pub struct MSumShape {
    /// Points in the chunk.
    pub n: usize,
    /// Dimensions.
    pub d: usize,
    /// Components.
    pub k: usize,
    /// The scatter's layout (ignored by [`MSum::First`]).
    pub cov: PassLayout,
    /// Which sums.
    pub sum: MSum,
    /// Points per tile.
    pub tile: usize,
    /// Tiles of this chunk.
    pub tiles: usize,
    /// Columns.
    pub cols: usize,
    /// Row of the table this chunk's first tile writes.
    pub row0: usize,
}

/// Output block (rows and columns) of one M-step summation workgroup: 8 × 8 units, each a 4 × 4
/// register block.
pub const MSUM_BLOCK: usize = 32;

impl MSumShape {
    /// The `mode` number the kernels take: 0 [`MSum::First`], 1 the diagonal scatter, 2 the
    /// full scatter.
    pub fn mode(&self) -> u32 {
        match (self.sum, self.cov) {
            (MSum::First, _) => 0,
            (MSum::Scatter, PassLayout::Diag) => 1,
            (MSum::Scatter, PassLayout::Full) => 2,
        }
    }

    /// `(groups, rows, columns)` of the sum's output: `K` groups of a `D × D` block (full
    /// scatter), else one `K × (D + 1)` (first pass) or `K × D` (diagonal scatter) block.
    pub fn output(&self) -> (usize, usize, usize) {
        match self.mode() {
            0 => (1, self.k, self.d + 1),
            1 => (1, self.k, self.d),
            _ => (self.k, self.d, self.d),
        }
    }

    /// Workgroups along x: [`MSUM_BLOCK`]² output blocks over every group.
    pub fn blocks(&self) -> usize {
        let (g, u, v) = self.output();
        g * u.div_ceil(MSUM_BLOCK) * v.div_ceil(MSUM_BLOCK)
    }
}

/// Tile lanes per column of the one-pass reduction of a `[rows][cols]` table (a power of two,
/// 1 to 64; 64 / lanes columns per workgroup of 64): about 16 rows per lane, summed in order,
/// then a fixed tree over the lanes. A function of `rows` only, so the order is fixed.
pub fn reduce_lanes(rows: usize) -> usize {
    rows.div_ceil(16).next_power_of_two().clamp(1, 64)
}

/// The kernels of the GPU EM passes, which a GPU backend provides and the backend layer's
/// `DeviceGmm` (`src/backend/device_gmm.rs`) drives: buffers of f32, the E-step, the tiled
/// M-step sums and the one-pass reduction of a table of partial sums. Every sum over points is
/// in order within a unit, by a fixed tree within a workgroup and by [`GmmOps::reduce`] over
/// the partials, so it takes at most two launches and gives the same bits every run.
pub trait GmmOps {
    /// A device buffer of f32.
    type Buf;

    /// The backend's name in messages ("WGSL", "cubecl").
    fn label(&self) -> &'static str;
    /// f32 values one storage binding may hold.
    fn binding_elements(&self) -> usize;
    /// A buffer holding `data`.
    fn upload(&self, label: &str, data: &[f32]) -> Result<Self::Buf>;
    /// A buffer of `len` f32 the kernels write (contents undefined; poisoned when poisoning is on).
    fn alloc(&self, label: &str, len: usize) -> Result<Self::Buf>;
    /// The first `len` values of `buf` (one host wait).
    fn read(&self, buf: &Self::Buf, len: usize) -> Result<Vec<f32>>;
    /// E-step over one chunk: for each point `x_n` (`x` `[n][d]`), the component log-densities
    /// `l_nk = −½‖(x_n − μ_k)ᵀU_k‖² + cst_k` (`means` `[k][d]`, `prec` the factors of
    /// [`EStepParams`], `cst` [`EStepParams::log_constants`]) and `resp[n][k] = exp(l_nk −
    /// logsumexp_k l_nk)`; `lse_part[s.row0 + w]` is the sum of `logsumexp_k l_nk` over the
    /// points `64w .. 64w + 64` of the chunk ([`ESTEP_POINTS`], a fixed tree).
    #[allow(clippy::too_many_arguments)]
    fn estep(
        &self,
        s: &EStepShape,
        x: &Self::Buf,
        means: &Self::Buf,
        prec: &Self::Buf,
        cst: &Self::Buf,
        resp: &Self::Buf,
        lse_part: &Self::Buf,
    ) -> Result<()>;
    /// M-step sums over one chunk (`x` `[n][d]`, `resp` `[n][k]`, `means` `[k][d]` for
    /// [`MSum::Scatter`], any one-value buffer for [`MSum::First`]): `partial[s.row0 + t][c]`
    /// is column `c` summed in order over the points of tile `t`.
    fn msum(
        &self,
        s: &MSumShape,
        x: &Self::Buf,
        means: &Self::Buf,
        resp: &Self::Buf,
        partial: &Self::Buf,
    ) -> Result<()>;
    /// `dst[c] = Σ_t src[t][c]` over the `rows` rows of the `[rows][cols]` table `src`, in the
    /// fixed order of [`reduce_lanes`] (one launch).
    fn reduce(&self, src: &Self::Buf, dst: &Self::Buf, cols: usize, rows: usize) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The blocked evaluation gives exactly the row-by-row log-densities (the metrics rely on
    /// it for byte-identical results), for every covariance type and a partial last block; and
    /// a tied or spherical mixture's factors are those of its per-component form, bit for bit.
    #[test]
    fn log_density_rows_is_bit_identical_to_log_density() {
        let (k, d, n) = (3, 5, 150);
        let mut v = vec![0.0; n * d + k * d + k * d * d];
        crate::rng::host_normals_f64(crate::rng::StreamKey::new(4, 9), 0, &mut v);
        let (x, rest) = v.split_at(n * d);
        let (means, a) = rest.split_at(k * d);
        for cov in CovarianceType::ALL {
            let blocks = if cov == CovarianceType::Tied { 1 } else { k };
            let covariances: Vec<f64> = match cov {
                // A Aᵀ + I per component: symmetric positive definite, not diagonal.
                CovarianceType::Full | CovarianceType::Tied => (0..blocks)
                    .flat_map(|c| {
                        let a = &a[c * d * d..(c + 1) * d * d];
                        (0..d * d).map(move |ij| {
                            let (i, j) = (ij / d, ij % d);
                            let s: f64 = (0..d).map(|t| a[i * d + t] * a[j * d + t]).sum();
                            s + if i == j { 1.0 } else { 0.0 }
                        })
                    })
                    .collect(),
                CovarianceType::Diag => a[..k * d].iter().map(|v| 0.5 + v * v).collect(),
                CovarianceType::Spherical => a[..k].iter().map(|v| 0.5 + v * v).collect(),
            };
            let p = GmmParams {
                k,
                d,
                covariance_type: cov,
                weights: vec![0.2, 0.3, 0.5],
                means: means.to_vec(),
                covariances,
            };
            let e = p.estep_params().unwrap();
            let expanded = p.per_component().estep_params().unwrap();
            assert_eq!(e.layout, cov.layout());
            assert_eq!(e.prec_chol, expanded.prec_chol, "{cov:?}");
            assert_eq!(e.log_det, expanded.log_det, "{cov:?}");
            let mut out = vec![f64::NAN; n];
            e.log_density_rows(x, &mut out);
            for (i, got) in out.iter().enumerate() {
                let want = e.log_density(&x[i * d..(i + 1) * d]);
                assert!(want.is_finite());
                assert_eq!(got.to_bits(), want.to_bits(), "{cov:?} row {i}");
            }
        }
    }

    /// scikit-learn's parameter counts (`_n_parameters`) for K = 3, D = 4.
    #[test]
    fn parameter_counts_are_scikit_learns() {
        let count = |cov: CovarianceType| {
            GmmParams {
                k: 3,
                d: 4,
                covariance_type: cov,
                weights: vec![1.0 / 3.0; 3],
                means: vec![0.0; 12],
                covariances: vec![1.0; cov.stored_values(3, 4).unwrap()],
            }
            .n_parameters()
        };
        // means 12 + weights 2, plus 30 / 10 / 12 / 3 covariance entries.
        assert_eq!(count(CovarianceType::Full), 44);
        assert_eq!(count(CovarianceType::Tied), 24);
        assert_eq!(count(CovarianceType::Diag), 26);
        assert_eq!(count(CovarianceType::Spherical), 17);
    }

    #[test]
    fn precision_cholesky_inverts_the_covariance() {
        let p = GmmParams {
            k: 1,
            d: 2,
            covariance_type: CovarianceType::Full,
            weights: vec![1.0],
            means: vec![0.0, 0.0],
            covariances: vec![4.0, 2.0, 2.0, 3.0],
        };
        let e = p.estep_params().unwrap();
        let u = &e.prec_chol;
        // U Uᵀ = Σ⁻¹ = [[3, -2], [-2, 4]] / 8.
        let uut = |i: usize, j: usize| (0..2).map(|t| u[i * 2 + t] * u[j * 2 + t]).sum::<f64>();
        assert!((uut(0, 0) - 3.0 / 8.0).abs() < 1e-12);
        assert!((uut(0, 1) + 2.0 / 8.0).abs() < 1e-12);
        assert!((uut(1, 1) - 4.0 / 8.0).abs() < 1e-12);
        assert_eq!(u[2], 0.0); // upper triangular
        assert!((e.log_det[0] + 0.5 * 8f64.ln()).abs() < 1e-12);
    }
}
