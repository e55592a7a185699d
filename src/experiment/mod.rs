//! The generational driver behind `collapse run`: generation 0 fits real data; generation `n`
//! fits data sampled from generation `n − 1`, mixed with real data by a [`Policy`]. Every
//! computation (sampling, fitting) goes through one [`Backend`], so rerunning with another
//! backend changes only the arithmetic.
//!
//! # Randomness
//!
//! All draws come from Philox stream `(seed, stream_id(purpose, replicate, generation))`: real
//! data, synthetic samples, mixing choices and EM initialisation each have their own purpose,
//! so replicate chains are independent and every generation is reproducible on its own.
//!
//! # Checkpoint and resume
//!
//! After every generation the driver appends that generation's fitted parameters to
//! `params.jsonl` (one line per generation; the VAE and the LM write weight files instead) and
//! its rows to `metrics.csv`, each synced to disk, then writes `state.json` atomically: the
//! configuration and the lengths of both files at that point. The parameters of every generation
//! so far determine every sample drawn, so the data pool is rebuilt exactly on resume.
//! `collapse run --resume DIR` truncates both files to the recorded lengths (dropping a
//! generation whose checkpoint never landed) and continues; the finished `metrics.csv` is
//! byte-identical to an uninterrupted run's. A checkpoint costs the size of one generation, not
//! of the whole history.

pub mod lm;
pub mod metrics;
pub mod replicates;
pub mod trained;
pub mod vae;

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::io::{Matrix, write_atomic};
use crate::models::gmm::{GmmConfig, Init, fit};
use crate::ops::Backend;
use crate::ops::gmm::{CovarianceType, GmmParams};
use crate::ops::sampling::{Factor, MixtureBatch, cholesky};
use crate::rng::{StreamKey, unit_f64};
use crate::trainers::Engine;

/// Which model each generation fits.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Mean and per-dimension variance by maximum likelihood (no regularisation: σ may reach 0).
    Gaussian,
    /// A Gaussian mixture fitted by EM.
    Gmm,
    /// A variational autoencoder on images (pixels in [0, 1]), trained from scratch each
    /// generation (see [`vae`]).
    Vae,
    /// A byte-level transformer language model on text (see [`lm`]).
    Lm,
}

/// How each generation's training pool is formed.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Policy {
    /// Only the previous generation's samples.
    Replace,
    /// All real data and every synthetic sample so far.
    Accumulate,
    /// A fraction F of the pool is real data (drawn from the real set), the rest synthetic.
    Mix(f64),
    /// A fraction F of the pool is *new* real data each generation, the rest synthetic.
    Fresh(f64),
    /// Verified synthetic data (Feng et al. 2024): draw `⌈M/F⌉` synthetic candidates, score each
    /// by the verifier's log-likelihood, keep the best `M`.
    Verify(Verifier, f64),
}

/// Who scores synthetic candidates under [`Policy::Verify`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Verifier {
    /// The replicate's own generation-0 model (fitted on real data).
    Gen0,
    /// A model of the same kind fitted once (cpu64) to the held-out real data.
    HeldOut,
}

impl std::str::FromStr for Policy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let frac = |v: &str| -> Result<f64> {
            let f: f64 = v.parse().map_err(|_| {
                Error::InvalidArgument(format!("policy fraction {v:?} is not a number"))
            })?;
            if (0.0..=1.0).contains(&f) {
                Ok(f)
            } else {
                Err(Error::InvalidArgument(format!(
                    "policy fraction {f} is not in [0, 1]"
                )))
            }
        };
        match s.split_once(':') {
            None if s == "replace" => Ok(Policy::Replace),
            None if s == "accumulate" => Ok(Policy::Accumulate),
            Some(("mix", f)) => Ok(Policy::Mix(frac(f)?)),
            Some(("fresh", f)) => Ok(Policy::Fresh(frac(f)?)),
            Some(("verify", rest)) => {
                let (mode, f) = rest.split_once(':').unwrap_or((rest, ""));
                let mode = match mode {
                    "gen0" => Verifier::Gen0,
                    "heldout" => Verifier::HeldOut,
                    _ => {
                        return Err(Error::InvalidArgument(format!(
                            "verify mode {mode:?}: use verify:gen0:F or verify:heldout:F"
                        )));
                    }
                };
                let f = frac(f)?;
                if f == 0.0 {
                    return Err(Error::InvalidArgument("verify fraction must be > 0".into()));
                }
                Ok(Policy::Verify(mode, f))
            }
            _ => Err(Error::InvalidArgument(format!(
                "unknown policy {s:?}; use replace, accumulate, mix:F, fresh:F or verify:MODE:F"
            ))),
        }
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Policy::Replace => write!(f, "replace"),
            Policy::Accumulate => write!(f, "accumulate"),
            Policy::Mix(x) => write!(f, "mix:{x}"),
            Policy::Fresh(x) => write!(f, "fresh:{x}"),
            Policy::Verify(Verifier::Gen0, x) => write!(f, "verify:gen0:{x}"),
            Policy::Verify(Verifier::HeldOut, x) => write!(f, "verify:heldout:{x}"),
        }
    }
}

/// Where the real data comes from.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum Truth {
    /// A built-in ground truth: a known mixture (see [`builtin_truth`]).
    Builtin(String),
    /// Rows of a data file (CSV or NPY).
    File(PathBuf),
}

/// The configuration of a run (stored in `state.json` and `summary.json`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct RunConfig {
    /// Model fitted each generation.
    pub model: ModelKind,
    /// Real data.
    pub truth: Truth,
    /// Generations after generation 0.
    pub generations: usize,
    /// Samples per generation (and real points at generation 0 for built-in truths).
    pub samples: usize,
    /// Independent chains.
    pub replicates: usize,
    /// Pool policy.
    pub policy: Policy,
    /// Philox seed.
    pub seed: u64,
    /// GMM: components.
    pub k: usize,
    /// GMM: covariance type.
    pub covariance_type: CovarianceType,
    /// GMM: EM tolerance.
    pub tol: f64,
    /// GMM: EM iteration cap.
    pub max_iter: usize,
    /// GMM: added to covariance diagonals.
    pub reg_covar: f64,
    /// Backend name (recorded; the caller creates the backend).
    pub backend: String,
    /// A data-file truth: real rows per replicate, a Philox choice without replacement from the
    /// training split (stream `REAL` of the replicate); `None` uses every training row.
    #[serde(default)]
    pub real_rows: Option<usize>,
    /// VAE: the network and its training each generation (ignored by the other models).
    #[serde(default)]
    pub vae: vae::VaeRunConfig,
    /// LM: the network, its training and sampling each generation (ignored by the others).
    #[serde(default)]
    pub lm: lm::LmRunConfig,
}

/// Built-in ground truths:
/// - `normal` / `normal:D`: N(0, I) in D dimensions (default 1);
/// - `shumailov-gmm`: two equally weighted 2-D Gaussians with means (±1.5, 0) and covariance
///   0.5·I — a small, well-separated mixture in the spirit of Shumailov et al.'s GMM
///   experiment (Nature 2024), where N = 1000 samples per generation show the tails vanish.
pub fn builtin_truth(name: &str) -> Result<GmmParams> {
    let diag = |k, d, weights, means, var: f64| GmmParams {
        k,
        d,
        covariance_type: CovarianceType::Diag,
        weights,
        means,
        covariances: vec![var; k * d],
    };
    match name.split_once(':') {
        None if name == "normal" => Ok(diag(1, 1, vec![1.0], vec![0.0], 1.0)),
        Some(("normal", d)) => {
            let d: usize = d
                .parse()
                .ok()
                .filter(|d| *d >= 1)
                .ok_or_else(|| Error::InvalidArgument(format!("normal:{d}: D must be ≥ 1")))?;
            Ok(diag(1, d, vec![1.0], vec![0.0; d], 1.0))
        }
        None if name == "shumailov-gmm" => {
            Ok(diag(2, 2, vec![0.5, 0.5], vec![-1.5, 0.0, 1.5, 0.0], 0.5))
        }
        _ => Err(Error::InvalidArgument(format!(
            "unknown ground truth {name:?}; built-in: normal, normal:D, shumailov-gmm"
        ))),
    }
}

/// Philox stream purposes.
mod purpose {
    pub const REAL: u64 = 1;
    pub const SYNTHETIC: u64 = 2;
    pub const MIX: u64 = 3;
    pub const EM_INIT: u64 = 4;
    pub const HELD_OUT: u64 = 5;
    pub const TAIL: u64 = 6;
}

/// The stream of `purpose` for `replicate` at `generation`.
pub fn stream_id(purpose: u64, replicate: usize, generation: usize) -> u64 {
    (purpose << 56) | ((replicate as u64 & 0xFF_FFFF) << 32) | (generation as u64 & 0xFFFF_FFFF)
}

/// `m` samples from `p` on `backend` using stream `key`.
pub fn sample_model(
    backend: &dyn Backend,
    p: &GmmParams,
    m: usize,
    key: StreamKey,
) -> Result<Matrix> {
    let factor = match p.covariance_type {
        CovarianceType::Diag => {
            Factor::Diagonal(p.covariances.iter().map(|v| v.max(0.0).sqrt()).collect())
        }
        CovarianceType::Full => {
            let d = p.d;
            let mut l = Vec::with_capacity(p.covariances.len());
            for c in p.covariances.chunks(d * d) {
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

/// What a training pool needs of a fitted model: samples, and a plausibility score per point for
/// the `verify` policies.
pub trait Generator {
    /// `count` samples (rows) from Philox stream `key`, computed on `backend`.
    fn generate(&self, backend: &Engine, count: usize, key: StreamKey) -> Result<Matrix>;
    /// A score per row of `x`, higher = more plausible (a log-likelihood or a bound on it).
    fn score(&self, backend: &Engine, x: &Matrix) -> Result<Vec<f64>>;
}

impl Generator for GmmParams {
    fn generate(&self, backend: &Engine, count: usize, key: StreamKey) -> Result<Matrix> {
        sample_model(backend, self, count, key)
    }
    /// The exact log-density (f64, host, whatever the backend).
    fn score(&self, _backend: &Engine, x: &Matrix) -> Result<Vec<f64>> {
        log_densities(self, x)
    }
}

/// Fit the configured model to `x`.
fn fit_model(backend: &Engine, cfg: &RunConfig, x: &Matrix, seed_stream: u64) -> Result<GmmParams> {
    match cfg.model {
        ModelKind::Gaussian => {
            // MLE: responsibilities all 1, one M-step: mean and scatter / M (no regularisation).
            let mut pass = backend.gmm_pass(x)?;
            pass.set_responsibilities(&vec![1.0; x.rows])?;
            let s = pass.mstep(CovarianceType::Diag)?;
            Ok(GmmParams {
                k: 1,
                d: x.cols,
                covariance_type: CovarianceType::Diag,
                weights: vec![1.0],
                means: s.means,
                covariances: s.scatter.iter().map(|v| (v / s.nk[0]).max(0.0)).collect(),
            })
        }
        ModelKind::Vae | ModelKind::Lm => Err(Error::InvalidArgument(
            "the VAE and the LM are trained by driver::trained, not fitted as mixtures".into(),
        )),
        ModelKind::Gmm => {
            let gc = GmmConfig {
                k: cfg.k,
                covariance_type: cfg.covariance_type,
                tol: cfg.tol,
                max_iter: cfg.max_iter,
                reg_covar: cfg.reg_covar,
                n_init: 1,
                init: Init::KMeansPP,
                seed: cfg.seed ^ seed_stream,
            };
            Ok(fit(backend, x, &gc, &mut |_, _, _| {})?.params)
        }
    }
}

/// Persistent run state (`state.json`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct RunState {
    /// The configuration.
    pub config: RunConfig,
    /// Fitted parameters per replicate, per completed generation. Saved one generation per
    /// line in `params.jsonl`, not in `state.json` (rewriting the whole history at every
    /// checkpoint made long runs quadratic); a `state.json` that still holds it (written before
    /// `params.jsonl` existed) resumes and is migrated.
    #[serde(default, skip_serializing)]
    pub history: Vec<Vec<GmmParams>>,
    /// Bytes of `metrics.csv` written when this state was saved.
    pub metrics_bytes: u64,
    /// Bytes of `params.jsonl` written when this state was saved (gaussian and gmm runs).
    #[serde(default)]
    pub params_bytes: u64,
    /// VAE and LM runs: the weight files (relative to the run directory) per replicate, per
    /// completed generation; `history` stays empty.
    #[serde(default, alias = "vae_weights")]
    pub model_files: Vec<Vec<String>>,
}

/// What the driver needs besides the backend: the real data and what metrics compare to.
pub struct RealData {
    /// Real points available to generation 0 and to mixing, per replicate: `samples` draws of a
    /// built-in truth from each replicate's own stream (independent chains), or the training
    /// rows of a file (shared).
    pub train: Vec<Matrix>,
    /// Held-out real points for the held-out log-likelihood.
    pub held_out: Matrix,
    /// The reference density: the built-in truth, or for a file the generation-0 fit.
    pub truth: Option<GmmParams>,
    /// The `verify:heldout` verifier: the model fitted (cpu64) to `held_out`.
    pub held_out_model: Option<GmmParams>,
    /// A data-file truth: every training row, where `fresh:F` draws new real data from (with
    /// `real_rows` the replicates' own real sets are subsets of it).
    pub all_train: Option<Matrix>,
}

fn load_real(cfg: &RunConfig, cpu: &Engine) -> Result<RealData> {
    if cfg.model == ModelKind::Lm {
        return lm::load_real(cfg);
    }
    match &cfg.truth {
        Truth::Builtin(name) => {
            let t = builtin_truth(name)?;
            let train = (0..cfg.replicates)
                .map(|r| {
                    sample_model(
                        cpu,
                        &t,
                        cfg.samples,
                        StreamKey::new(cfg.seed, stream_id(purpose::REAL, r, 0)),
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(RealData {
                train,
                all_train: None,
                held_out_model: None,
                held_out: sample_model(
                    cpu,
                    &t,
                    10_000,
                    StreamKey::new(cfg.seed, stream_id(purpose::HELD_OUT, 0, 0)),
                )?,
                truth: Some(t),
            })
        }
        Truth::File(path) => {
            let m = crate::io::read_table(path)?;
            if cfg.model == ModelKind::Vae
                && let Some(i) = m.data.iter().position(|v| !(0.0..=1.0).contains(v))
            {
                return Err(Error::Data(format!(
                    "{}: row {}, column {} is {}; the VAE needs values in [0, 1] (pixels)",
                    path.display(),
                    i / m.cols + 1,
                    i % m.cols + 1,
                    m.data[i]
                )));
            }
            // Deterministic 80/20 split by a Philox uniform per row.
            let key = StreamKey::new(cfg.seed, stream_id(purpose::HELD_OUT, 0, 0));
            let (mut tr, mut ho) = (Vec::new(), Vec::new());
            for i in 0..m.rows {
                if unit_f64(key.u32_at(i as u64)) < 0.2 {
                    &mut ho
                } else {
                    &mut tr
                }
                .extend_from_slice(m.row(i));
            }
            let d = m.cols;
            if tr.len() < d || ho.len() < d {
                return Err(Error::Data(format!(
                    "{}: too few rows to split 80/20",
                    path.display()
                )));
            }
            let all = Matrix::new(tr.len() / d, d, tr)?;
            let train = match cfg.real_rows {
                None => vec![all.clone(); cfg.replicates],
                Some(k) if k == 0 || k > all.rows => {
                    return Err(Error::InvalidArgument(format!(
                        "--real-rows {k}: the training split of {} has {} rows",
                        path.display(),
                        all.rows
                    )));
                }
                Some(k) => (0..cfg.replicates)
                    .map(|r| {
                        let key = StreamKey::new(cfg.seed, stream_id(purpose::REAL, r, 0));
                        let mut idx = crate::models::vae::train::permutation(all.rows, key);
                        idx.truncate(k);
                        idx.sort_unstable();
                        let data = idx.iter().flat_map(|&i| all.row(i).to_vec()).collect();
                        Matrix::new(k, d, data)
                    })
                    .collect::<Result<Vec<_>>>()?,
            };
            Ok(RealData {
                held_out_model: None,
                train,
                all_train: Some(all),
                held_out: Matrix::new(ho.len() / d, d, ho)?,
                truth: None,
            })
        }
    }
}

/// `count` rows of `x` drawn uniformly with replacement by Philox stream `key`.
fn draw_rows(x: &Matrix, count: usize, key: StreamKey) -> Result<Matrix> {
    let mut pick = Vec::with_capacity(count * x.cols);
    for i in 0..count {
        let idx = ((unit_f64(key.u32_at(i as u64)) * x.rows as f64) as usize).min(x.rows - 1);
        pick.extend_from_slice(x.row(idx));
    }
    Matrix::new(count, x.cols, pick)
}

/// A training pool and its provenance.
pub struct Pool {
    /// The points.
    pub x: Matrix,
    /// `(origin, count)` in pool order: `real` (the real training data), `fresh` (new real
    /// data), `gJ` (sampled from generation J's model).
    pub composition: Vec<(String, usize)>,
}

impl Pool {
    /// Fraction of real (`real` or `fresh`) points.
    pub fn real_fraction(&self) -> f64 {
        let real: usize = self
            .composition
            .iter()
            .filter(|(o, _)| o == "real" || o == "fresh")
            .map(|(_, c)| c)
            .sum();
        real as f64 / self.x.rows as f64
    }

    /// The composition as `origin:count|origin:count…` (one CSV field).
    pub fn composition_field(&self) -> String {
        self.composition
            .iter()
            .map(|(o, c)| format!("{o}:{c}"))
            .collect::<Vec<_>>()
            .join("|")
    }
}

/// Log-density of each row of `x` under `p` (f64, host).
fn log_densities(p: &GmmParams, x: &Matrix) -> Result<Vec<f64>> {
    let e = p.estep_params()?;
    Ok((0..x.rows)
        .map(|i| {
            let l: Vec<f64> = (0..e.k)
                .map(|c| crate::backend::cpu64::gmm::log_gauss(x.row(i), &e, c) + e.log_weights[c])
                .collect();
            let m = l.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            m + l.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
        })
        .collect())
}

/// Each replicate's synthetic sets drawn so far (`[r][j − 1]`: the samples generation `j` drew
/// from generation `j − 1`'s model), kept so `accumulate` does not draw every earlier set again
/// each generation. A set is a pure function of its model and Philox stream, so a resumed run,
/// whose cache starts empty, draws exactly the same.
pub(crate) struct SynthCache(Vec<std::sync::Mutex<Vec<Matrix>>>);

impl SynthCache {
    /// An empty cache for `replicates` chains.
    pub(crate) fn new(replicates: usize) -> Self {
        Self((0..replicates).map(|_| Default::default()).collect())
    }

    /// Set `j` of replicate `r` from the cache, or drawn by `draw` (and kept when it is the
    /// next one in order).
    fn get(&self, r: usize, j: usize, draw: impl FnOnce() -> Result<Matrix>) -> Result<Matrix> {
        let mut sets = self.0[r].lock().unwrap_or_else(|e| e.into_inner());
        if let Some(x) = sets.get(j - 1) {
            return Ok(x.clone());
        }
        let x = draw()?;
        if sets.len() == j - 1 {
            sets.push(x.clone());
        }
        Ok(x)
    }
}

/// The training pool of generation `n` of replicate `r`, given the models of its earlier
/// generations (`history`), the `verify:heldout` verifier and the synthetic sets drawn so far.
#[allow(clippy::too_many_arguments)]
fn pool<G: Generator>(
    backend: &Engine,
    cfg: &RunConfig,
    real: &RealData,
    history: &[G],
    held_out_judge: Option<&G>,
    cache: &SynthCache,
    r: usize,
    n: usize,
) -> Result<Pool> {
    let train = &real.train[r];
    let d = train.cols;
    if n == 0 {
        return Ok(Pool {
            x: train.clone(),
            composition: vec![("real".into(), train.rows)],
        });
    }
    let g = |j: usize| format!("g{}", j - 1);
    let m = cfg.samples;
    let synth = |j: usize, count: usize| {
        history[j - 1].generate(
            backend,
            count,
            StreamKey::new(cfg.seed, stream_id(purpose::SYNTHETIC, r, j)),
        )
    };
    let concat = |parts: Vec<Matrix>| -> Result<Matrix> {
        let rows = parts.iter().map(|p| p.rows).sum();
        Matrix::new(rows, d, parts.into_iter().flat_map(|p| p.data).collect())
    };
    match cfg.policy {
        Policy::Replace => Ok(Pool {
            x: synth(n, m)?,
            composition: vec![(g(n), m)],
        }),
        Policy::Accumulate => {
            let mut parts = vec![train.clone()];
            let mut composition = vec![("real".to_string(), train.rows)];
            for j in 1..=n {
                parts.push(cache.get(r, j, || synth(j, m))?);
                composition.push((g(j), m));
            }
            Ok(Pool {
                x: concat(parts)?,
                composition,
            })
        }
        Policy::Mix(f) => {
            let nr = (f * m as f64).round() as usize;
            let key = StreamKey::new(cfg.seed, stream_id(purpose::MIX, r, n));
            let x = concat(vec![draw_rows(train, nr, key)?, synth(n, m - nr)?])?;
            Ok(Pool {
                x,
                composition: vec![("real".into(), nr), (g(n), m - nr)],
            })
        }
        Policy::Verify(verifier, f) => {
            let candidates = synth(n, ((m as f64) / f).ceil() as usize)?;
            let judge = match verifier {
                Verifier::Gen0 => &history[0],
                Verifier::HeldOut => held_out_judge.ok_or_else(|| {
                    Error::InvalidArgument("verify:heldout needs the held-out model".into())
                })?,
            };
            let score = judge.score(backend, &candidates)?;
            let mut order: Vec<usize> = (0..candidates.rows).collect();
            order.sort_by(|&a, &b| score[b].total_cmp(&score[a]).then(a.cmp(&b)));
            order.truncate(m);
            order.sort_unstable();
            let data = order
                .iter()
                .flat_map(|&i| candidates.row(i).to_vec())
                .collect();
            Ok(Pool {
                x: Matrix::new(m, d, data)?,
                composition: vec![(g(n), m)],
            })
        }
        Policy::Fresh(f) => {
            let nr = (f * m as f64).round() as usize;
            let fresh = match (&cfg.truth, &real.truth) {
                (Truth::Builtin(_), Some(t)) => sample_model(
                    backend,
                    t,
                    nr,
                    StreamKey::new(cfg.seed, stream_id(purpose::REAL, r, n)),
                )?,
                // A file has no generator: draw rows (with replacement) as new real data.
                _ => draw_rows(
                    real.all_train.as_ref().unwrap_or(train),
                    nr,
                    StreamKey::new(cfg.seed, stream_id(purpose::REAL, r, n)),
                )?,
            };
            let x = concat(vec![fresh, synth(n, m - nr)?])?;
            Ok(Pool {
                x,
                composition: vec![("fresh".into(), nr), (g(n), m - nr)],
            })
        }
    }
}

/// Reject configurations no run can use (too few samples, no replicates, K > samples).
pub fn check_config(cfg: &RunConfig) -> Result<()> {
    let bad = |m: String| Err(Error::InvalidArgument(m));
    if cfg.samples < 2 {
        return bad("--samples must be at least 2".into());
    }
    if cfg.replicates == 0 {
        return bad("--replicates must be at least 1".into());
    }
    if cfg.model == ModelKind::Gmm && cfg.k > cfg.samples {
        return bad(format!("--k {} exceeds --samples {}", cfg.k, cfg.samples));
    }
    if cfg.model == ModelKind::Vae {
        if matches!(cfg.truth, Truth::Builtin(_)) {
            return bad(
                "the VAE needs image data: --data FILE (IDX images, or CSV/NPY rows in [0, 1])"
                    .into(),
            );
        }
        cfg.vae.check()?;
    }
    if cfg.real_rows.is_some()
        && (cfg.model == ModelKind::Lm || !matches!(cfg.truth, Truth::File(_)))
    {
        return bad(
            "--real-rows applies to --data files of the gaussian, gmm and vae models (the LM's \
             generation 0 trains on --samples windows of its text)"
                .into(),
        );
    }
    if cfg.model == ModelKind::Lm {
        cfg.lm.check()?;
        if matches!(&cfg.truth, Truth::Builtin(n) if n != "fortunes") {
            return bad("the language model learns text: --truth fortunes or --data FILE".into());
        }
    }
    Ok(())
}

/// The fitted parameters of one run held in memory (no files): what [`crate::drift`] compares.
pub struct Simulation {
    /// Fitted parameters per replicate, per generation (`[R][generations + 1]`).
    pub history: Vec<Vec<GmmParams>>,
    /// The reference density: the built-in truth, or for a data file this run's generation-0
    /// fit of replicate 0.
    pub truth: GmmParams,
}

/// Run the experiment `cfg` on `backend` in memory, exactly as [`run`] does (same streams, same
/// pools, same fits), without metrics or checkpoints, `jobs` replicates at a time (0 =
/// automatic, see [`replicates::jobs`]). `progress(generations_done, total)` is called after
/// each generation.
pub fn simulate(
    backend: &Engine,
    cpu_reference: &Engine,
    cfg: &RunConfig,
    jobs: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Simulation> {
    check_config(cfg)?;
    if matches!(cfg.model, ModelKind::Vae | ModelKind::Lm) {
        return Err(Error::InvalidArgument(
            "drift compares gaussian and gmm runs (the VAE and the LM have no closed-form \
             parameters)"
                .into(),
        ));
    }
    let mut real = load_real(cfg, cpu_reference)?;
    if matches!(cfg.policy, Policy::Verify(Verifier::HeldOut, _)) {
        let stream = stream_id(purpose::EM_INIT, 0xFF_FFFF, 0);
        real.held_out_model = Some(fit_model(cpu_reference, cfg, &real.held_out, stream)?);
    }
    let total = cfg.generations + 1;
    let jobs = replicates::jobs(jobs, cfg.replicates);
    let mut history = vec![Vec::with_capacity(total); cfg.replicates];
    let cache = SynthCache::new(cfg.replicates);
    for n in 0..total {
        let fits = fit_generation(backend, cfg, &real, &history, &cache, n, jobs)?;
        if n == 0 && real.truth.is_none() {
            real.truth = Some(fits[0].1.clone());
        }
        for (h, (_, p)) in history.iter_mut().zip(fits) {
            h.push(p);
        }
        progress(n + 1, total);
    }
    Ok(Simulation {
        history,
        truth: real.truth.expect("generation 0 sets the truth"),
    })
}

/// Run (or, with `resume`, continue) the experiment into `dir`: `metrics.csv`, `state.json`,
/// `summary.json`. Each generation runs up to `jobs` replicates at once (0 = automatic, see
/// [`replicates::jobs`]; the numbers do not depend on it).
/// `progress(generations_done, total)` is called after each generation.
pub fn run(
    backend: &Engine,
    cpu_reference: &Engine,
    config: Option<RunConfig>,
    dir: &Path,
    jobs: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<RunState> {
    let io = |e: std::io::Error| Error::Io(format!("{}: {e}", dir.display()));
    if let Some(c) = &config {
        check_config(c)?;
    }
    std::fs::create_dir_all(dir).map_err(io)?;
    let state_path = dir.join("state.json");
    let mut state = match config {
        Some(config) => {
            if state_path.exists() {
                return Err(Error::InvalidArgument(format!(
                    "{} already holds a run; use --resume {} to continue it, or another --out",
                    dir.display(),
                    dir.display()
                )));
            }
            RunState {
                history: vec![Vec::new(); config.replicates],
                model_files: vec![Vec::new(); config.replicates],
                config,
                metrics_bytes: 0,
                params_bytes: 0,
            }
        }
        None => {
            let text = std::fs::read_to_string(&state_path).map_err(|e| {
                Error::Io(format!("{}: {e} (nothing to resume)", state_path.display()))
            })?;
            serde_json::from_str(&text)
                .map_err(|e| Error::Data(format!("{}: {e}", state_path.display())))?
        }
    };
    let cfg = state.config.clone();
    let jobs = replicates::jobs(jobs, cfg.replicates);
    let mut real = load_real(&cfg, cpu_reference)?;
    let mut ck = Checkpoint::open(dir, state.metrics_bytes)?;
    if cfg.model == ModelKind::Vae {
        let (real, state) = (&real, &mut state);
        trained::generations::<vae::VaeModel>(
            backend,
            cpu_reference,
            real,
            state,
            &mut ck,
            jobs,
            progress,
        )?;
    } else if cfg.model == ModelKind::Lm {
        let (real, state) = (&real, &mut state);
        trained::generations::<lm::LmModel>(
            backend,
            cpu_reference,
            real,
            state,
            &mut ck,
            jobs,
            progress,
        )?;
    } else {
        mixture_generations(
            backend,
            cpu_reference,
            &mut real,
            &mut state,
            &mut ck,
            jobs,
            progress,
        )?;
    }
    metrics::write_summary(dir, &cfg, ck.reference.take())?;
    Ok(state)
}

/// The mixtures' fitted parameters, one generation per line (see [`RunState::history`]).
pub const PARAMS_FILE: &str = "params.jsonl";

/// `metrics.csv` and `state.json` of a run directory: rows are appended and synced, then the
/// state naming the file's new length is written atomically.
pub struct Checkpoint {
    dir: PathBuf,
    metrics: std::io::BufWriter<std::fs::File>,
    /// Reference values of the real data for `summary.json` (e.g. the VAE's diversity of real
    /// images), set by the model's loop.
    pub reference: Option<serde_json::Value>,
}

impl Checkpoint {
    /// Open `dir/metrics.csv`, truncated to `bytes` (drops rows of a generation whose checkpoint
    /// never landed).
    fn open(dir: &Path, bytes: u64) -> Result<Self> {
        let io = |e: std::io::Error| Error::Io(format!("{}: {e}", dir.display()));
        let mf = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("metrics.csv"))
            .map_err(io)?;
        mf.set_len(bytes).map_err(io)?;
        let mut metrics = std::io::BufWriter::new(mf);
        use std::io::Seek;
        metrics.seek(std::io::SeekFrom::End(0)).map_err(io)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            metrics,
            reference: None,
        })
    }

    /// The run directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reload the mixtures' fitted parameters from `params.jsonl` (one line per generation: the
    /// replicates' parameters as a JSON array) into `state.history`, dropping bytes past
    /// `state.params_bytes` (a generation whose checkpoint never landed). A state that still
    /// holds its history (the format before `params.jsonl`) writes the file from it instead.
    fn load_params(&mut self, state: &mut RunState) -> Result<()> {
        let path = self.dir.join(PARAMS_FILE);
        let io = |e: std::io::Error| Error::Io(format!("{}: {e}", path.display()));
        let replicates = state.config.replicates;
        if state.history.len() != replicates {
            state.history.resize(replicates, Vec::new());
        }
        if state.history.iter().any(|h| !h.is_empty()) {
            if state.params_bytes == 0 {
                let f = std::fs::File::create(&path).map_err(io)?;
                let mut w = std::io::BufWriter::new(f);
                for n in 0..state.history[0].len() {
                    let generation: Vec<&GmmParams> = state.history.iter().map(|h| &h[n]).collect();
                    let line =
                        serde_json::to_string(&generation).map_err(|e| Error::Io(e.to_string()))?;
                    writeln!(w, "{line}").map_err(io)?;
                }
                w.flush().map_err(io)?;
                w.get_ref().sync_all().map_err(io)?;
                state.params_bytes = w.get_ref().metadata().map_err(io)?.len();
            }
            return Ok(());
        }
        if state.params_bytes == 0 {
            return Ok(());
        }
        let bytes = std::fs::read(&path).map_err(io)?;
        let len = state.params_bytes as usize;
        if bytes.len() < len {
            return Err(Error::Data(format!(
                "{}: {} bytes, the checkpoint names {len}",
                path.display(),
                bytes.len()
            )));
        }
        let text = std::str::from_utf8(&bytes[..len])
            .map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
        for (i, line) in text.lines().enumerate() {
            let generation: Vec<GmmParams> = serde_json::from_str(line)
                .map_err(|e| Error::Data(format!("{} line {}: {e}", path.display(), i + 1)))?;
            if generation.len() != replicates {
                return Err(Error::Data(format!(
                    "{} line {}: {} replicates, the run has {replicates}",
                    path.display(),
                    i + 1,
                    generation.len()
                )));
            }
            for (h, p) in state.history.iter_mut().zip(generation) {
                h.push(p);
            }
        }
        Ok(())
    }

    /// Append one generation's fitted parameters (one per replicate) to `params.jsonl`,
    /// truncated first to `state.params_bytes`, sync, and record the new length in `state`.
    fn append_params(&mut self, state: &mut RunState, fits: &[GmmParams]) -> Result<()> {
        let path = self.dir.join(PARAMS_FILE);
        let io = |e: std::io::Error| Error::Io(format!("{}: {e}", path.display()));
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        f.set_len(state.params_bytes).map_err(io)?;
        use std::io::Seek;
        f.seek(std::io::SeekFrom::End(0)).map_err(io)?;
        let line = serde_json::to_string(fits).map_err(|e| Error::Io(e.to_string()))?;
        writeln!(f, "{line}").map_err(io)?;
        f.sync_all().map_err(io)?;
        state.params_bytes = f.metadata().map_err(io)?.len();
        Ok(())
    }

    /// Append generation `n`'s rows (after `header` when the file is empty), sync, and save
    /// `state` (which already holds generation `n`) atomically.
    fn commit(
        &mut self,
        state: &mut RunState,
        n: usize,
        header: &str,
        rows: &[String],
    ) -> Result<()> {
        let io = |e: std::io::Error| Error::Io(format!("{}: {e}", self.dir.display()));
        let mf = &mut self.metrics;
        if state.metrics_bytes == 0 {
            writeln!(mf, "{header}").map_err(io)?;
        }
        for row in rows {
            writeln!(mf, "{row}").map_err(io)?;
        }
        mf.flush().map_err(io)?;
        mf.get_ref().sync_all().map_err(io)?;
        state.metrics_bytes = mf.get_ref().metadata().map_err(io)?.len();
        if std::env::var("COLLAPSE_TEST_ABORT_BEFORE_CHECKPOINT").is_ok_and(|v| v == n.to_string())
        {
            // Test hook: die like SIGKILL after writing metrics rows but before the checkpoint.
            std::process::abort();
        }
        let json = serde_json::to_vec(state).map_err(|e| Error::Io(e.to_string()))?;
        write_atomic(&self.dir.join("state.json"), &json)
    }
}

/// Generation `n` of every replicate, `jobs` replicates at a time (see [`replicates`]): its
/// training pool and the model fitted to it, in replicate order.
fn fit_generation(
    backend: &Engine,
    cfg: &RunConfig,
    real: &RealData,
    history: &[Vec<GmmParams>],
    cache: &SynthCache,
    n: usize,
    jobs: usize,
) -> Result<Vec<(Pool, GmmParams)>> {
    replicates::for_each(cfg.replicates, jobs, |r| {
        let judge = real.held_out_model.as_ref();
        let pool = pool(backend, cfg, real, &history[r], judge, cache, r, n)?;
        let p = fit_model(backend, cfg, &pool.x, stream_id(purpose::EM_INIT, r, n))?;
        Ok((pool, p))
    })
}

/// The generational loop of the mixture models (gaussian, gmm).
fn mixture_generations(
    backend: &Engine,
    cpu_reference: &Engine,
    real: &mut RealData,
    state: &mut RunState,
    ck: &mut Checkpoint,
    jobs: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<()> {
    let cfg = state.config.clone();
    if matches!(cfg.policy, Policy::Verify(Verifier::HeldOut, _)) {
        let stream = stream_id(purpose::EM_INIT, 0xFF_FFFF, 0);
        real.held_out_model = Some(fit_model(cpu_reference, &cfg, &real.held_out, stream)?);
    }
    ck.load_params(state)?;
    let total = cfg.generations + 1;
    let done = state.history[0].len();
    if done > 0 && real.truth.is_none() {
        real.truth = Some(state.history[0][0].clone());
    }
    // The tail region needs the reference density: for a file that is the generation-0 fit, so
    // it is built at first use (the same point in a fresh and a resumed run).
    let mut tails: Option<metrics::TailRegion> = None;
    let header = metrics::header(&cfg, real.train[0].cols);
    progress(done, total);
    let cache = SynthCache::new(cfg.replicates);
    for n in done..total {
        let fits = fit_generation(backend, &cfg, real, &state.history, &cache, n, jobs)?;
        if n == 0 && real.truth.is_none() {
            real.truth = Some(fits[0].1.clone());
        }
        if tails.is_none()
            && let Some(t) = &real.truth
        {
            tails = Some(metrics::TailRegion::new(&cfg, t, cpu_reference)?);
        }
        let ctx = metrics::RowContext {
            cfg: &cfg,
            real,
            tails: tails.as_ref(),
            cpu: cpu_reference,
        };
        let rows = replicates::for_each(cfg.replicates, jobs, |r| {
            metrics::row(&ctx, &fits[r].1, n, r, &fits[r].0)
        })?;
        let params: Vec<GmmParams> = fits.into_iter().map(|(_, p)| p).collect();
        ck.append_params(state, &params)?;
        for (h, p) in state.history.iter_mut().zip(params) {
            h.push(p);
        }
        ck.commit(state, n, &header, &rows)?;
        progress(n + 1, total);
    }
    Ok(())
}
