//! Fitting a Gaussian mixture by EM, written against [`Backend`] only: the same loop, the same
//! Philox-seeded initialisation and the same host-side D×D work on every backend, so two fits
//! from one seed differ only by the passes' arithmetic.
//!
//! Options follow scikit-learn's `GaussianMixture`: `k`, `covariance_type` (`full`, `tied`,
//! `diag`, `spherical`), `tol`, `max_iter`, `reg_covar`, `n_init`, `init` (`kmeans`,
//! `k-means++`, `random`, `random_from_data`), `seed`, and a warm start ([`fit_from`]).
//!
//! - **Initialisation** (host, f64, Philox stream `INIT_STREAM + init`, see [`Init`]):
//!   responsibilities from k-means (Lloyd from greedy k-means++ seeds, the default), from the
//!   k-means++ seeds alone, uniform random, or K distinct data points; then one M-step.
//! - **Iteration**: E-step under the start (mean log-likelihood), then up to `max_iter` EM
//!   updates (M-step, E-step), stopping when an update changes the mean log-likelihood by less
//!   than `tol`. The reported parameters are the ones the reported log-likelihood was computed
//!   under; `n_iter` counts the updates behind them (scikit-learn's `n_iter_` for them).
//! - **Covariance types**: the passes run `tied` as full and `spherical` as diagonal
//!   ([`crate::ops::gmm::PassLayout`]); [`params_from_stats`] sums or averages on the host.
//! - **Degenerate components**: a component whose responsibility mass `N_k` falls below
//!   [`MIN_COMPONENT_MASS`] is re-seeded: mean at a data point drawn by Philox, covariance the
//!   data's per-dimension variance (diagonal; its mean for spherical; a tied covariance is
//!   shared and stays) plus `reg_covar`, weight `1/N` before renormalising. The fit counts
//!   re-seeds. `reg_covar` is added to every covariance diagonal; a covariance still not
//!   positive definite is an error that says to raise it.
//! - **Bad input**: K = 0, K > N, D mismatch, non-finite data (row named), bad options.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::io::Matrix;
use crate::num::linalg::cholesky;
use crate::ops::Backend;
use crate::ops::gmm::{CovarianceType, GmmParams, GmmPass, MStats, PassLayout};
use crate::ops::sampling::{Factor, MixtureBatch};
use crate::rng::{StreamKey, unit_f64};

// The Philox streams of initialisation (`+ init index`) and of re-seeding, named in the registry.
pub use crate::rng::streams::{GMM_INIT as INIT_STREAM, GMM_RESEED as RESEED_STREAM};
/// Most Lloyd (k-means) iterations of the `kmeans` initialisation.
pub const LLOYD_ITERATIONS: usize = 100;
/// A component with less responsibility mass than this (in points) is re-seeded.
pub const MIN_COMPONENT_MASS: f64 = 1e-3;

/// How EM starts (scikit-learn's `init_params`). Every start is drawn on the host in f64 from
/// Philox stream `INIT_STREAM + init index`, so it is the same on every backend.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
pub enum Init {
    /// Lloyd's k-means from greedy k-means++ seeds until no point changes centre (at most
    /// [`LLOYD_ITERATIONS`]); the final assignment as hard responsibilities (the default, as
    /// scikit-learn's `kmeans`). Earlier versions called it `kmeans++`; stored configurations
    /// with that name read as this.
    #[value(name = "kmeans")]
    #[serde(rename = "kmeans", alias = "kmeans++")]
    KMeans,
    /// The K greedy k-means++ seeds alone: responsibility 1 of seed `i` for component `i`, 0
    /// elsewhere (scikit-learn's `k-means++`).
    #[value(name = "k-means++")]
    #[serde(rename = "k-means++")]
    KMeansPlusPlus,
    /// Random responsibilities `r_nk ∝ u_nk` (scikit-learn's `random`).
    #[value(name = "random")]
    #[serde(rename = "random")]
    Random,
    /// K distinct data points drawn uniformly: responsibility 1 of point `i` for component `i`
    /// (scikit-learn's `random_from_data`).
    #[value(name = "random_from_data")]
    #[serde(rename = "random_from_data")]
    RandomFromData,
}

impl Default for Init {
    /// [`Init::KMeans`], scikit-learn's default.
    fn default() -> Self {
        Init::KMeans
    }
}

impl Init {
    /// The name the CLI and scikit-learn use.
    pub fn name(self) -> &'static str {
        match self {
            Init::KMeans => "kmeans",
            Init::KMeansPlusPlus => "k-means++",
            Init::Random => "random",
            Init::RandomFromData => "random_from_data",
        }
    }
}

/// EM options (scikit-learn's names and defaults).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct GmmConfig {
    /// Components.
    pub k: usize,
    /// Full, tied, diagonal or spherical covariances.
    pub covariance_type: CovarianceType,
    /// Convergence threshold on the change of the mean log-likelihood per sample (nats).
    pub tol: f64,
    /// Maximum EM updates per initialisation.
    pub max_iter: usize,
    /// Added to every covariance diagonal.
    pub reg_covar: f64,
    /// Initialisations; the best final log-likelihood wins.
    pub n_init: usize,
    /// How to initialise.
    pub init: Init,
    /// Philox seed of the initialisation (and re-seeding).
    pub seed: u64,
}

impl GmmConfig {
    /// scikit-learn's defaults for `k` components.
    pub fn new(k: usize) -> Self {
        Self {
            k,
            covariance_type: CovarianceType::Full,
            tol: 1e-3,
            max_iter: 100,
            reg_covar: 1e-6,
            n_init: 1,
            init: Init::KMeans,
            seed: 0,
        }
    }
}

/// A fitted mixture, as written to `FIT.json`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct GmmFit {
    /// The parameters (covariances flat, in [`GmmParams::covariances`]' layouts).
    pub params: GmmParams,
    /// Mean log-likelihood per sample (natural log) under `params`.
    pub mean_log_likelihood: f64,
    /// EM updates (M-steps after the start) behind `params` in the winning initialisation
    /// (scikit-learn's `n_iter_`), at most `max_iter`.
    pub n_iter: usize,
    /// Points the mixture was fitted to (N of BIC and AIC).
    pub n_samples: usize,
    /// Whether the last update changed the mean log-likelihood by less than `tol`.
    pub converged: bool,
    /// Components re-seeded during the winning initialisation.
    pub reseeded: usize,
    /// The backend that ran the passes.
    pub backend: String,
    /// Where it ran.
    pub adapter: String,
}

/// What the fit reports as it goes: `(init, iteration, mean log-likelihood)`.
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize, f64);

fn check(x: &Matrix, cfg: &GmmConfig) -> Result<()> {
    let bad = |m: String| Err(Error::InvalidArgument(m));
    if cfg.k == 0 {
        return bad("k must be at least 1".into());
    }
    if cfg.k > x.rows {
        return bad(format!(
            "k = {} exceeds the number of points N = {}",
            cfg.k, x.rows
        ));
    }
    if x.cols == 0 {
        return bad("data has no columns".into());
    }
    let finite = |name: &str, v: f64| {
        if !v.is_finite() {
            bad(format!("{name} must be a finite number ≥ 0, got {v}"))
        } else if v < 0.0 {
            bad(format!("{name} must be ≥ 0, got {v}"))
        } else {
            Ok(())
        }
    };
    finite("tol (--tol)", cfg.tol)?;
    finite("reg_covar (--reg-covar)", cfg.reg_covar)?;
    if cfg.max_iter == 0 || cfg.n_init == 0 {
        return bad("max_iter and n_init must be at least 1".into());
    }
    x.check_finite("data")
}

/// Greedy k-means++ seeds (as scikit-learn): the first uniformly, then each of the other K − 1
/// the best of `2 + ⌊ln K⌋` D²-sampled candidates (the one that lowers the total potential
/// most); uniforms from `next_u`. Returns K row indices.
fn kmeanspp_seeds(x: &Matrix, k: usize, next_u: &mut dyn FnMut() -> f64) -> Vec<usize> {
    let n = x.rows;
    let first = ((next_u() * n as f64) as usize).min(n - 1);
    let mut centres = vec![first];
    let mut best: Vec<f64> = (0..n).map(|i| dist2(x.row(i), x.row(first))).collect();
    let trials = 2 + (k as f64).ln().floor() as usize;
    while centres.len() < k {
        let total: f64 = best.iter().sum();
        let mut chosen: Option<(f64, usize, Vec<f64>)> = None;
        for _ in 0..trials {
            let cand = if total > 0.0 {
                let target = next_u() * total;
                let mut acc = 0.0;
                best.iter()
                    .position(|&b| {
                        acc += b;
                        acc > target
                    })
                    .unwrap_or(n - 1)
            } else {
                // Every point coincides with a chosen centre: take an unused index.
                (0..n).find(|i| !centres.contains(i)).unwrap_or(0)
            };
            let nb: Vec<f64> = (0..n)
                .into_par_iter()
                .map(|i| best[i].min(dist2(x.row(i), x.row(cand))))
                .collect();
            let pot: f64 = nb.iter().sum();
            if chosen.as_ref().is_none_or(|(p, _, _)| pot < *p) {
                chosen = Some((pot, cand, nb));
            }
        }
        let (_, pick, nb) = chosen.expect("at least two trials");
        centres.push(pick);
        best = nb;
    }
    centres
}

/// Squared Euclidean distance.
fn dist2(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(p, q)| (p - q) * (p - q)).sum::<f64>()
}

/// Lloyd's k-means from the centres at rows `seeds`, until no point changes centre (at most
/// [`LLOYD_ITERATIONS`]); assignments in parallel, centre sums in point order. Returns each
/// point's centre.
pub fn lloyd(x: &Matrix, seeds: &[usize]) -> Vec<usize> {
    let (n, d, k) = (x.rows, x.cols, seeds.len());
    let mut c: Vec<f64> = seeds.iter().flat_map(|&i| x.row(i).to_vec()).collect();
    let mut label = vec![usize::MAX; n];
    for _ in 0..LLOYD_ITERATIONS {
        let new: Vec<usize> = (0..n)
            .into_par_iter()
            .map(|i| {
                (0..k)
                    .min_by(|&a, &b| {
                        dist2(x.row(i), &c[a * d..(a + 1) * d])
                            .total_cmp(&dist2(x.row(i), &c[b * d..(b + 1) * d]))
                    })
                    .unwrap_or(0)
            })
            .collect();
        if new == label {
            break;
        }
        label = new;
        let mut sum = vec![0.0; k * d];
        let mut count = vec![0usize; k];
        for (i, &l) in label.iter().enumerate() {
            count[l] += 1;
            for j in 0..d {
                sum[l * d + j] += x.row(i)[j];
            }
        }
        for cc in 0..k {
            if count[cc] > 0 {
                for j in 0..d {
                    c[cc * d + j] = sum[cc * d + j] / count[cc] as f64;
                }
            }
        }
    }
    label
}

/// Initial responsibilities `[N][K]` for initialisation `init` (host, f64, Philox stream
/// `INIT_STREAM + init`; see [`Init`]).
pub fn initial_responsibilities(x: &Matrix, cfg: &GmmConfig, init: usize) -> Vec<f64> {
    let (n, k) = (x.rows, cfg.k);
    let key = StreamKey::new(cfg.seed, INIT_STREAM + init as u64);
    let mut r = vec![0.0; n * k];
    let mut draw = 0u64;
    let mut next_u = || {
        draw += 1;
        unit_f64(key.u32_at(draw - 1))
    };
    match cfg.init {
        Init::Random => {
            for (i, row) in r.chunks_mut(k).enumerate() {
                for (c, v) in row.iter_mut().enumerate() {
                    *v = unit_f64(key.u32_at((i * k + c) as u64)) + 1e-12;
                }
                let s: f64 = row.iter().sum();
                row.iter_mut().for_each(|v| *v /= s);
            }
        }
        Init::KMeans => {
            let seeds = kmeanspp_seeds(x, k, &mut next_u);
            for (row, &l) in r.chunks_mut(k).zip(&lloyd(x, &seeds)) {
                row[l] = 1.0;
            }
        }
        Init::KMeansPlusPlus => {
            for (c, &i) in kmeanspp_seeds(x, k, &mut next_u).iter().enumerate() {
                r[i * k + c] = 1.0;
            }
        }
        Init::RandomFromData => {
            // A partial Fisher–Yates shuffle: K distinct rows, uniformly.
            let mut idx: Vec<usize> = (0..n).collect();
            for c in 0..k {
                let j = c + ((next_u() * (n - c) as f64) as usize).min(n - c - 1);
                idx.swap(c, j);
                r[idx[c] * k + c] = 1.0;
            }
        }
    }
    r
}

/// Per-dimension variance of the data (f64, two-pass), for re-seeding.
fn data_variance(x: &Matrix) -> Vec<f64> {
    let n = x.rows as f64;
    let mean: Vec<f64> = (0..x.cols)
        .map(|j| (0..x.rows).map(|i| x.row(i)[j]).sum::<f64>() / n)
        .collect();
    (0..x.cols)
        .map(|j| {
            (0..x.rows)
                .map(|i| (x.row(i)[j] - mean[j]).powi(2))
                .sum::<f64>()
                / n
        })
        .collect()
}

/// Turn M-step statistics (from a pass in the type's [`CovarianceType::layout`]) into
/// parameters, as scikit-learn's `_estimate_gaussian_parameters`: weights `N_k/N`; covariances
/// `scatter_k/N_k` (full; made exactly symmetric from the lower triangle), `Σ_k scatter_k / Σ_k
/// N_k` (tied), the diagonal `scatter_k/N_k` (diag) or its mean over the dimensions
/// (spherical), each plus `reg_covar` on the diagonal. Components below [`MIN_COMPONENT_MASS`]
/// are re-seeded (see the module). Returns the parameters and how many were re-seeded.
pub fn params_from_stats(
    s: &MStats,
    x: &Matrix,
    cfg: &GmmConfig,
    reseed_draw: &mut u64,
    variance: &mut Option<Vec<f64>>,
) -> (GmmParams, usize) {
    let (n, d, k) = (x.rows, x.cols, cfg.k);
    let ct = cfg.covariance_type;
    let per = match ct.layout() {
        PassLayout::Full => d * d,
        PassLayout::Diag => d,
    };
    // The lower triangle of a full scatter mirrored: GPU M-steps sum every entry on its own, so
    // (a, b) and (b, a) can differ in the last bit; cpu64 computes the lower triangle.
    let symmetric = |c: usize| {
        let mut m = s.scatter[c * per..(c + 1) * per].to_vec();
        for a in 0..d {
            for b in 0..a {
                m[b * d + a] = m[a * d + b];
            }
        }
        m
    };
    let moved = |c: usize| s.nk[c] < MIN_COMPONENT_MASS;
    let mut weights = Vec::with_capacity(k);
    let mut means = s.means.clone();
    let mut reseeded = 0;
    for c in 0..k {
        if moved(c) {
            reseeded += 1;
            let key = StreamKey::new(cfg.seed, RESEED_STREAM);
            let i = ((unit_f64(key.u32_at(*reseed_draw)) * n as f64) as usize).min(n - 1);
            *reseed_draw += 1;
            means[c * d..(c + 1) * d].copy_from_slice(x.row(i));
            weights.push(1.0 / n as f64);
        } else {
            weights.push(s.nk[c] / n as f64);
        }
    }
    let mut data_var = || -> Vec<f64> {
        variance
            .get_or_insert_with(|| data_variance(x))
            .iter()
            .map(|v| v.max(0.0) + cfg.reg_covar)
            .collect()
    };
    let cov = match ct {
        CovarianceType::Tied => {
            // Σ_k scatter_k = XᵀX − Σ_k N_k μ_k μ_kᵀ, over Σ_k N_k = N (scikit-learn's
            // `_estimate_gaussian_covariances_tied`); a re-seeded component adds nothing.
            let mut m = vec![0.0; d * d];
            let mut mass = 0.0;
            for c in (0..k).filter(|&c| !moved(c)) {
                for (o, v) in m.iter_mut().zip(symmetric(c)) {
                    *o += v;
                }
                mass += s.nk[c];
            }
            for v in m.iter_mut() {
                *v /= mass;
            }
            for j in 0..d {
                m[j * d + j] += cfg.reg_covar;
            }
            m
        }
        _ => {
            let mut cov = Vec::with_capacity(ct.stored_values(k, d).unwrap_or(0));
            for c in 0..k {
                match (ct, moved(c)) {
                    (CovarianceType::Full, true) => {
                        let v = data_var();
                        cov.extend((0..d * d).map(
                            |ij| {
                                if ij % (d + 1) == 0 { v[ij / d] } else { 0.0 }
                            },
                        ));
                    }
                    (CovarianceType::Full, false) => {
                        let mut m = symmetric(c);
                        for v in m.iter_mut() {
                            *v /= s.nk[c];
                        }
                        for j in 0..d {
                            m[j * d + j] += cfg.reg_covar;
                        }
                        cov.extend(m);
                    }
                    (CovarianceType::Diag, true) => cov.extend(data_var()),
                    (CovarianceType::Diag, false) => cov.extend(
                        s.scatter[c * d..(c + 1) * d]
                            .iter()
                            .map(|v| v / s.nk[c] + cfg.reg_covar),
                    ),
                    (_, true) => cov.push(data_var().iter().sum::<f64>() / d as f64),
                    (_, false) => cov.push(
                        s.scatter[c * d..(c + 1) * d]
                            .iter()
                            .map(|v| v / s.nk[c] + cfg.reg_covar)
                            .sum::<f64>()
                            / d as f64,
                    ),
                }
            }
            cov
        }
    };
    let tw: f64 = weights.iter().sum();
    weights.iter_mut().for_each(|w| *w /= tw);
    (
        GmmParams {
            k,
            d,
            covariance_type: ct,
            weights,
            means,
            covariances: cov,
        },
        reseeded,
    )
}

/// Whether `start` can begin a fit of `cfg` to data of `d` columns ([`fit_from`]): the same K,
/// D and covariance type; the error says both shapes.
pub fn check_start(start: &GmmParams, cfg: &GmmConfig, d: usize) -> Result<()> {
    if (start.k, start.d, start.covariance_type) == (cfg.k, d, cfg.covariance_type) {
        return Ok(());
    }
    Err(Error::InvalidArgument(format!(
        "the starting fit has K = {}, D = {}, {} covariances; this fit asks K = {}, D = {d}, {}",
        start.k,
        start.d,
        start.covariance_type.name(),
        cfg.k,
        cfg.covariance_type.name()
    )))
}

/// One E-step under `params`: the mean log-likelihood over the `n` points, an error when it is
/// not finite (`it` EM iterations in).
fn mean_log_likelihood(
    pass: &mut dyn GmmPass,
    params: &GmmParams,
    n: f64,
    it: usize,
) -> Result<f64> {
    let ll = pass.estep(&params.estep_params()?)? / n;
    if !ll.is_finite() {
        return Err(Error::Numerical(format!(
            "mean log-likelihood became {ll} after {it} EM iterations; increase reg_covar"
        )));
    }
    Ok(ll)
}

/// Fit a mixture to `x` on `backend`, calling `progress` after every E-step.
pub fn fit(
    backend: &dyn Backend,
    x: &Matrix,
    cfg: &GmmConfig,
    progress: Progress<'_>,
) -> Result<GmmFit> {
    fit_from(backend, x, cfg, None, progress)
}

/// [`fit`], or, given `start`, EM from those parameters (a warm start, scikit-learn's
/// `warm_start`): no initialisation, one run whatever `n_init`; `start` must have `cfg.k`
/// components, `x`'s dimensions and `cfg`'s covariance type.
///
/// Counting as scikit-learn: `n_iter` is the number of EM updates (M-steps after the start)
/// behind the reported parameters, at most `max_iter`; `converged` says the last of them
/// changed the mean log-likelihood by less than `tol`. The reported log-likelihood is computed
/// under the reported parameters (scikit-learn's `lower_bound_` is the one before its last
/// update, so a fit here with `n_iter = t` is scikit-learn's with `n_iter_ = t + 1` and the same
/// `lower_bound_`).
pub fn fit_from(
    backend: &dyn Backend,
    x: &Matrix,
    cfg: &GmmConfig,
    start: Option<&GmmParams>,
    progress: Progress<'_>,
) -> Result<GmmFit> {
    check(x, cfg)?;
    if let Some(p) = start {
        check_start(p, cfg, x.cols)?;
    }
    let n = x.rows as f64;
    let layout = cfg.covariance_type.layout();
    let mut pass = backend.gmm_pass(x)?;
    let mut best: Option<GmmFit> = None;
    let mut variance = None;
    let n_init = if start.is_some() { 1 } else { cfg.n_init };
    for init in 0..n_init {
        let mut reseed_draw = (init as u64) << 32;
        let (mut params, mut reseeded) = match start {
            Some(p) => (p.clone(), 0),
            None => {
                pass.set_responsibilities(&initial_responsibilities(x, cfg, init))?;
                params_from_stats(
                    &pass.mstep(layout)?,
                    x,
                    cfg,
                    &mut reseed_draw,
                    &mut variance,
                )
            }
        };
        let mut ll = mean_log_likelihood(pass.as_mut(), &params, n, 0)?;
        progress(init, 0, ll);
        let mut converged = false;
        let mut n_iter = 0;
        while n_iter < cfg.max_iter {
            let (p, r) = params_from_stats(
                &pass.mstep(layout)?,
                x,
                cfg,
                &mut reseed_draw,
                &mut variance,
            );
            n_iter += 1;
            let next = mean_log_likelihood(pass.as_mut(), &p, n, n_iter)?;
            progress(init, n_iter, next);
            params = p;
            reseeded += r;
            let change = next - ll;
            ll = next;
            if change.abs() < cfg.tol {
                converged = true;
                break;
            }
        }
        let fit = GmmFit {
            params,
            mean_log_likelihood: ll,
            n_iter,
            n_samples: x.rows,
            converged,
            reseeded,
            backend: backend.name().to_string(),
            adapter: backend.device(),
        };
        if best
            .as_ref()
            .is_none_or(|b| fit.mean_log_likelihood > b.mean_log_likelihood)
        {
            best = Some(fit);
        }
    }
    best.ok_or_else(|| Error::InvalidArgument("n_init must be at least 1".into()))
}

impl GmmFit {
    /// The `FIT.json` document: `weights` `[K]`, `means` `[K][D]`, `covariances` as
    /// scikit-learn's `covariances_` (`[K][D][D]` full, `[D][D]` tied, `[K][D]` diag, `[K]`
    /// spherical), `mean_log_likelihood`, `n_iter`, `converged`, `backend`,
    /// `adapter`, plus `covariance_type`, `reseeded`, `n_samples`, `n_parameters` and the
    /// training data's `bic` and `aic` ([`bic`], [`aic`]).
    pub fn to_json(&self) -> serde_json::Value {
        let p = &self.params;
        let d = p.d;
        let means: Vec<&[f64]> = p.means.chunks(d).collect();
        let covariances: serde_json::Value = match p.covariance_type {
            CovarianceType::Full => p
                .covariances
                .chunks(d * d)
                .map(|c| c.chunks(d).collect::<Vec<_>>())
                .collect::<Vec<_>>()
                .into(),
            CovarianceType::Tied => p.covariances.chunks(d).collect::<Vec<_>>().into(),
            CovarianceType::Diag => p.covariances.chunks(d).collect::<Vec<_>>().into(),
            CovarianceType::Spherical => p.covariances.clone().into(),
        };
        serde_json::json!({
            "weights": p.weights,
            "means": means,
            "covariances": covariances,
            "covariance_type": p.covariance_type,
            "mean_log_likelihood": self.mean_log_likelihood,
            "n_iter": self.n_iter,
            "n_samples": self.n_samples,
            "n_parameters": p.n_parameters(),
            "bic": bic(p, self.n_samples, self.mean_log_likelihood),
            "aic": aic(p, self.n_samples, self.mean_log_likelihood),
            "converged": self.converged,
            "reseeded": self.reseeded,
            "backend": self.backend,
            "adapter": self.adapter,
        })
    }
}
/// Bayesian information criterion of `p` on `n` points whose mean log-likelihood is `mean_ll`:
/// `−2·n·mean_ll + P·ln n`, `P` = [`GmmParams::n_parameters`] (scikit-learn's `bic(X)`).
pub fn bic(p: &GmmParams, n: usize, mean_ll: f64) -> f64 {
    let n = n as f64;
    -2.0 * mean_ll * n + p.n_parameters() as f64 * n.ln()
}

/// Akaike information criterion: `−2·n·mean_ll + 2·P` (scikit-learn's `aic(X)`).
pub fn aic(p: &GmmParams, n: usize, mean_ll: f64) -> f64 {
    -2.0 * mean_ll * n as f64 + 2.0 * p.n_parameters() as f64
}

/// Read the mixture back from a `FIT.json` document ([`GmmFit::to_json`]): `covariance_type`,
/// `weights` `[K]`, `means` `[K][D]`, `covariances` `[K][D][D]` or `[K][D]`. Errors name the
/// field that is missing, of the wrong shape or not finite (`covariances` `[D][D]` for tied, `[K]`
/// for spherical); weights must be ≥ 0 and sum to 1
/// (within 1e-6), covariances positive definite.
pub fn params_from_json(v: &serde_json::Value) -> Result<GmmParams> {
    let bad = |m: String| Error::InvalidArgument(m);
    let field = |name: &str| v.get(name).ok_or_else(|| bad(format!("no `{name}` field")));
    let covariance_type: CovarianceType = serde_json::from_value(field("covariance_type")?.clone())
        .map_err(|e| bad(format!("`covariance_type`: {e}")))?;
    let nums = |name: &str, x: &serde_json::Value| -> Result<Vec<f64>> {
        let a = x
            .as_array()
            .ok_or_else(|| bad(format!("`{name}` is not an array")))?;
        a.iter()
            .enumerate()
            .map(|(i, e)| {
                e.as_f64()
                    .filter(|f| f.is_finite())
                    .ok_or_else(|| bad(format!("`{name}`[{i}] is not a finite number")))
            })
            .collect()
    };
    let rows = |name: &str, x: &serde_json::Value, len: usize| -> Result<Vec<f64>> {
        let a = x
            .as_array()
            .ok_or_else(|| bad(format!("`{name}` is not an array")))?;
        let mut out = Vec::new();
        for (i, r) in a.iter().enumerate() {
            let r = nums(&format!("{name}[{i}]"), r)?;
            if r.len() != len {
                return Err(bad(format!(
                    "`{name}`[{i}] has {} entries, expected {len}",
                    r.len()
                )));
            }
            out.extend(r);
        }
        Ok(out)
    };
    let weights = nums("weights", field("weights")?)?;
    let k = weights.len();
    let means_v = field("means")?;
    let d = means_v
        .as_array()
        .and_then(|a| a.first())
        .and_then(|r| r.as_array())
        .map(Vec::len)
        .ok_or_else(|| bad("`means` is not a non-empty [K][D] array".into()))?;
    let means = rows("means", means_v, d)?;
    if k == 0 || d == 0 || means.len() != k * d {
        return Err(bad(format!(
            "`means` holds {} rows of {d}, expected K = {k} (the length of `weights`)",
            means.len() / d.max(1)
        )));
    }
    let cov_v = field("covariances")?;
    let square = |name: &str, c: &serde_json::Value| -> Result<Vec<f64>> {
        let m = rows(name, c, d)?;
        if m.len() != d * d {
            return Err(bad(format!("`{name}` is not {d}×{d}")));
        }
        Ok(m)
    };
    let covariances = match covariance_type {
        CovarianceType::Diag => rows("covariances", cov_v, d)?,
        CovarianceType::Spherical => nums("covariances", cov_v)?,
        CovarianceType::Tied => square("covariances", cov_v)?,
        CovarianceType::Full => {
            let a = cov_v
                .as_array()
                .ok_or_else(|| bad("`covariances` is not an array".into()))?;
            let mut out = Vec::new();
            for (i, c) in a.iter().enumerate() {
                out.extend(square(&format!("covariances[{i}]"), c)?);
            }
            out
        }
    };
    let want = covariance_type.stored_values(k, d).unwrap_or(usize::MAX);
    if covariances.len() != want {
        return Err(bad(format!(
            "`covariances` holds {} values; {} covariances of K = {k}, D = {d} are {want}",
            covariances.len(),
            covariance_type.name()
        )));
    }
    if weights.iter().any(|&w| w < 0.0) || (weights.iter().sum::<f64>() - 1.0).abs() > 1e-6 {
        return Err(bad("`weights` must be ≥ 0 and sum to 1".into()));
    }
    let p = GmmParams {
        k,
        d,
        covariance_type,
        weights,
        means,
        covariances,
    };
    p.estep_params()?;
    Ok(p)
}

/// What a fitted mixture says about data `x`, computed by one E-step on `backend`
/// (scikit-learn's `score`, `bic`, `aic` and `predict_proba`).
#[derive(Clone, Debug)]
pub struct Scores {
    /// Points scored.
    pub n_samples: usize,
    /// Mean log-likelihood per point (natural log): scikit-learn's `score(X)`.
    pub mean_log_likelihood: f64,
    /// [`bic`] on `x`.
    pub bic: f64,
    /// [`aic`] on `x`.
    pub aic: f64,
    /// Posterior component probabilities `[N][K]` (`predict_proba(X)`); rows sum to 1.
    pub responsibilities: Vec<f64>,
}

impl Scores {
    /// The most probable component of every point (`predict(X)`; ties go to the lower index).
    pub fn labels(&self, k: usize) -> Vec<usize> {
        self.responsibilities
            .chunks(k)
            .map(|r| {
                let mut best = 0;
                for (j, &v) in r.iter().enumerate() {
                    if v > r[best] {
                        best = j;
                    }
                }
                best
            })
            .collect()
    }
}

/// Score `x` (`[N][D]`) under `p` on `backend`: one E-step. Errors when `x` has another number
/// of columns than the mixture has dimensions, or is empty.
pub fn score(backend: &dyn Backend, p: &GmmParams, x: &Matrix) -> Result<Scores> {
    if x.cols != p.d {
        return Err(Error::InvalidArgument(format!(
            "data has {} columns, the mixture D = {}",
            x.cols, p.d
        )));
    }
    if x.rows == 0 {
        return Err(Error::InvalidArgument("data has no rows".into()));
    }
    let e = p.estep_params()?;
    let mut pass = backend.gmm_pass(x)?;
    let mean_log_likelihood = pass.estep(&e)? / x.rows as f64;
    Ok(Scores {
        n_samples: x.rows,
        mean_log_likelihood,
        bic: bic(p, x.rows, mean_log_likelihood),
        aic: aic(p, x.rows, mean_log_likelihood),
        responsibilities: pass.responsibilities()?,
    })
}

/// `m` samples (`[m][D]`) from the mixture `p` on `backend`, sample `i` being sample `i` of
/// Philox stream `key` (the layout of [`crate::ops::sampling`]).
pub fn sample(backend: &dyn Backend, p: &GmmParams, m: usize, key: StreamKey) -> Result<Matrix> {
    let q = p.per_component();
    let factor = match q.covariance_type.layout() {
        PassLayout::Diag => {
            Factor::Diagonal(q.covariances.iter().map(|v| v.max(0.0).sqrt()).collect())
        }
        PassLayout::Full => {
            let d = p.d;
            let mut l = Vec::with_capacity(q.covariances.len());
            for c in q.covariances.chunks(d * d) {
                l.extend(cholesky(c, d)?);
            }
            Factor::Cholesky(l)
        }
    };
    let prep = MixtureBatch {
        replicates: 1,
        k: p.k,
        d: p.d,
        weights: p.weights.clone(),
        means: p.means.clone(),
        factor,
    }
    .prepare()?;
    let mut x = vec![0.0; m * p.d];
    let mut c = vec![0u32; m];
    backend.sample_mixture(&prep, m, key, 0, &mut x, &mut c)?;
    Matrix::new(m, p.d, x)
}
