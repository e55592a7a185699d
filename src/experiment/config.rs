//! What a generational run is: the model, where the real data comes from, the pool policy and
//! every setting ([`RunConfig`], stored in `state.json` and `summary.json`).

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::models::lm::sample::SampleConfig;
use crate::models::lm::{AdamW, LmConfig};
use crate::models::vae::{Adam, VaeConfig};
use crate::ops::gmm::{CovarianceType, GmmParams};

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
    pub vae: VaeRunConfig,
    /// LM: the network, its training and sampling each generation (ignored by the others).
    #[serde(default)]
    pub lm: LmRunConfig,
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

/// The network and its training in every generation of a VAE run.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VaeRunConfig {
    /// Hidden width H.
    pub hidden: usize,
    /// Latent dimensions Z.
    pub latent: usize,
    /// Passes over the pool per generation.
    pub epochs: usize,
    /// Images per Adam step.
    pub batch: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Weight of the KL term (1 = the ELBO).
    pub beta: f64,
}

impl Default for VaeRunConfig {
    fn default() -> Self {
        Self {
            hidden: 200,
            latent: 10,
            epochs: 5,
            batch: 64,
            lr: 1e-3,
            beta: 1.0,
        }
    }
}

impl VaeRunConfig {
    /// The VAE for `d`-pixel images.
    pub fn network(&self, d: usize) -> VaeConfig {
        VaeConfig {
            d,
            h: self.hidden,
            z: self.latent,
            beta: self.beta,
            adam: Adam {
                lr: self.lr,
                ..Adam::default()
            },
        }
    }

    /// Errors on settings no generation can train with.
    pub fn check(&self) -> Result<()> {
        if self.epochs == 0 || self.batch == 0 {
            return Err(Error::InvalidArgument(
                "--vae-epochs and --vae-batch must be ≥ 1".into(),
            ));
        }
        self.network(1).validate()
    }
}

/// Where each generation's training starts.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum LmInit {
    /// Fresh Philox-initialised weights.
    Scratch,
    /// The replicate's generation-0 weights (fine-tuning).
    Gen0,
}

/// The network, its training and its sampling in every generation of an LM run.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LmRunConfig {
    /// Width C.
    pub width: usize,
    /// Blocks.
    pub layers: usize,
    /// Heads.
    pub heads: usize,
    /// Context (a row is `context + 1` bytes).
    pub context: usize,
    /// AdamW steps per generation.
    pub steps: usize,
    /// Rows per step.
    pub batch: usize,
    /// Learning rate.
    pub lr: f64,
    /// Where training starts.
    pub init: LmInit,
    /// Sampling temperature.
    pub temperature: f64,
    /// Sampling top-k.
    pub top_k: Option<usize>,
}

impl Default for LmRunConfig {
    fn default() -> Self {
        Self {
            width: 64,
            layers: 2,
            heads: 4,
            context: 64,
            steps: 300,
            batch: 16,
            lr: 2e-3,
            init: LmInit::Scratch,
            temperature: 1.0,
            top_k: None,
        }
    }
}

impl LmRunConfig {
    /// The network.
    pub fn network(&self) -> LmConfig {
        LmConfig {
            width: self.width,
            layers: self.layers,
            heads: self.heads,
            context: self.context,
            adam: AdamW {
                lr: self.lr,
                ..AdamW::default()
            },
        }
    }

    /// Errors on settings no generation can use.
    pub fn check(&self) -> Result<()> {
        if self.steps == 0 || self.batch == 0 {
            return Err(Error::InvalidArgument(
                "--lm-steps and --lm-batch must be ≥ 1".into(),
            ));
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(Error::InvalidArgument(format!(
                "--lm-temperature {} must be > 0",
                self.temperature
            )));
        }
        if self
            .top_k
            .is_some_and(|k| k == 0 || k > crate::models::lm::VOCAB)
        {
            return Err(Error::InvalidArgument(
                "--lm-top-k must be in 1..=256".into(),
            ));
        }
        self.network().validate()
    }

    /// The sampling settings of every generation's synthetic rows.
    pub fn sampling(&self) -> SampleConfig {
        SampleConfig {
            temperature: self.temperature,
            top_k: self.top_k,
        }
    }
}
