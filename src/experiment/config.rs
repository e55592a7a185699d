//! What a generational run is: the model, where the real data comes from, the pool policy and
//! every setting ([`RunConfig`], stored in `state.json` and `summary.json`).

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::models::gmm::Init;
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
    /// The byte-level transformer on a checkable task (`--task add:N`, `eigen:N`): each
    /// generation answers fresh problems and its successor trains on the answers the verifier
    /// keeps (see [`task`]).
    Task,
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
    /// by the verifier's log-likelihood, keep the best `M`. The candidates (and a score each)
    /// are held at once, so F is bounded below: `⌈M/F⌉` must be below 2⁵³ (see
    /// [`Policy::verify_candidates`]) and the run's memory check ([`check_memory`]) counts
    /// them before the run starts.
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

impl Policy {
    /// The synthetic candidates `verify:MODE:F` draws per replicate and generation for `m`
    /// samples, `⌈m/F⌉`; an error naming `--policy` when that is not below 2⁵³ (beyond it the
    /// count is not even exact in f64; long before it, the memory check refuses). Other
    /// policies draw no candidates: `m`.
    pub fn verify_candidates(&self, m: usize) -> Result<usize> {
        let Policy::Verify(_, f) = *self else {
            return Ok(m);
        };
        let c = (m as f64 / f).ceil();
        if c.is_finite() && c < (1u64 << 53) as f64 {
            Ok(c as usize)
        } else {
            Err(Error::InvalidArgument(format!(
                "--policy {self} with --samples {m} would draw ⌈{m}/{}⌉ ≈ {c:.1e} candidates per \
                 generation (at most 2^53); raise F",
                short_f64(f)
            )))
        }
    }
}

/// `x` in the shorter of its plain and exponent forms (`0.5`, `1e-300`), both of which parse
/// back to `x` exactly.
fn short_f64(x: f64) -> String {
    let (plain, exp) = (format!("{x}"), format!("{x:e}"));
    if exp.len() < plain.len() { exp } else { plain }
}

impl std::fmt::Display for Policy {
    /// The form [`Policy`]'s `from_str` reads back to the same policy, fractions in their short
    /// form (`verify:gen0:1e-300`, not 300 digits).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Policy::Replace => write!(f, "replace"),
            Policy::Accumulate => write!(f, "accumulate"),
            Policy::Mix(x) => write!(f, "mix:{}", short_f64(*x)),
            Policy::Fresh(x) => write!(f, "fresh:{}", short_f64(*x)),
            Policy::Verify(Verifier::Gen0, x) => write!(f, "verify:gen0:{}", short_f64(*x)),
            Policy::Verify(Verifier::HeldOut, x) => {
                write!(f, "verify:heldout:{}", short_f64(*x))
            }
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
    /// GMM: EM's initialisation (configurations written before it existed read as `kmeans`,
    /// what they ran).
    #[serde(default)]
    pub init: Init,
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
    /// The index of the first replicate: the run's replicates are `replicate_offset ..
    /// replicate_offset + replicates`, and replicate `i` draws from the Philox streams of index
    /// `i` (and is written as replicate `i` in `metrics.csv`). So replicate `i` of an
    /// experiment draws the same numbers whether it runs among all of them in one process or
    /// alone (`--replicates 1 --replicate-offset i`) in an array task.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub replicate_offset: usize,
    /// `--model task`: the task, its verifier and the answering settings (absent for the other
    /// models, so their files are unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskRunConfig>,
}

/// A task verifier (see [`super::verifier`], which parses `--verifier`).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TaskVerifier {
    /// Keep every answer.
    #[default]
    None,
    /// The exact check.
    Oracle,
    /// The exact check flipped with probability P.
    Noisy(f64),
    /// Keep the fraction F most likely under the generating model.
    Confidence(f64),
}

impl std::fmt::Display for TaskVerifier {
    /// The form `--verifier` reads back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskVerifier::None => write!(f, "none"),
            TaskVerifier::Oracle => write!(f, "oracle"),
            TaskVerifier::Noisy(p) => write!(f, "noisy:{p}"),
            TaskVerifier::Confidence(x) => write!(f, "confidence:{x}"),
        }
    }
}

impl TaskVerifier {
    /// Whether it judges answers one at a time (so `--retries` applies).
    pub fn rejects_single_answers(&self) -> bool {
        matches!(self, TaskVerifier::Oracle | TaskVerifier::Noisy(_))
    }
}

/// The task, the verifier and the answering of a `--model task` run.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskRunConfig {
    /// The task as typed (`add:3`, `eigen:2`; see [`crate::tasks::parse`]).
    pub task: String,
    /// `eigen`'s relative L1 tolerance.
    pub tol: f64,
    /// Who keeps answers (see [`super::verifier`]).
    pub verifier: TaskVerifier,
    /// Candidates per problem and round.
    pub best_of: usize,
    /// Extra rounds for a problem whose candidates were all rejected.
    pub retries: usize,
    /// Held-out problems (a fixed set, the same every generation) of the accuracy and the
    /// validation loss.
    pub eval: usize,
}

impl Default for TaskRunConfig {
    fn default() -> Self {
        Self {
            task: "add:3".into(),
            tol: 0.05,
            verifier: TaskVerifier::None,
            best_of: 1,
            retries: 0,
            eval: 500,
        }
    }
}

/// Columns of a `--model task` pool row of `task` (see [`super::task`]): the sequence bytes,
/// the answer length, the oracle's verdict, the rounds, the problem's values.
pub fn task_row_width(task: &dyn crate::tasks::Task) -> usize {
    task.sequence_len() + 3 + task.values()
}

impl TaskRunConfig {
    /// The task.
    pub fn parsed(&self) -> Result<Box<dyn crate::tasks::Task>> {
        crate::tasks::parse(&self.task, self.tol)
    }
}

/// Whether `n` is 0 (serde: fields at their default are left out, so older files stay
/// byte-identical).
fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl RunConfig {
    /// The experiment-wide index of local replicate `r` (`0 ≤ r < replicates`):
    /// `replicate_offset + r`, the replicate field of every stream it draws from.
    pub fn replicate_index(&self, r: usize) -> usize {
        self.replicate_offset + r
    }
}

/// Built-in ground truths:
/// - `normal` / `normal:D`: N(0, I) in D dimensions (default 1);
/// - `shumailov-gmm`: two equally weighted 2-D Gaussians with means (±1.5, 0) and covariance
///   0.5·I — a small, well-separated mixture in the spirit of Shumailov et al.'s GMM
///   experiment (Nature 2024), where N = 1000 samples per generation show the tails vanish.
pub fn builtin_truth(name: &str) -> Result<GmmParams> {
    let (k, d) = builtin_shape(name)?;
    let diag = |weights, means, var: f64| GmmParams {
        k,
        d,
        covariance_type: CovarianceType::Diag,
        weights,
        means,
        covariances: vec![var; k * d],
    };
    if k == 2 {
        Ok(diag(vec![0.5, 0.5], vec![-1.5, 0.0, 1.5, 0.0], 0.5))
    } else {
        Ok(diag(vec![1.0], vec![0.0; d], 1.0))
    }
}

/// `(K, D)` of the built-in truth `name` (see [`builtin_truth`]), read from the name without
/// building it: what the memory check sizes a run by.
pub fn builtin_shape(name: &str) -> Result<(usize, usize)> {
    match name.split_once(':') {
        None if name == "normal" => Ok((1, 1)),
        Some(("normal", d)) => d
            .parse()
            .ok()
            .filter(|d| *d >= 1)
            .map(|d| (1, d))
            .ok_or_else(|| Error::InvalidArgument(format!("normal:{d}: D must be ≥ 1"))),
        None if name == "shumailov-gmm" => Ok((2, 2)),
        _ => Err(Error::InvalidArgument(format!(
            "unknown ground truth {name:?}; built-in: normal, normal:D, shumailov-gmm"
        ))),
    }
}

/// Held-out points drawn from a built-in truth.
pub const BUILTIN_HELD_OUT: usize = 10_000;

/// The rows of a run's real data, for [`check_memory`].
#[derive(Clone, Copy, Debug)]
pub struct DataShape {
    /// Real rows per replicate (generation 0's pool).
    pub rows: usize,
    /// Rows shared by every replicate (held-out points; a file's whole training split).
    pub shared_rows: usize,
    /// Columns.
    pub d: usize,
}

/// Refuse, before anything is allocated, a run whose data and models cannot fit in the
/// machine's memory (see [`crate::io::budget`]): every replicate at once holds its real rows,
/// its last generation's pool (`accumulate`: every generation's samples, also kept in the
/// synthetic cache; `verify`: the `⌈M/F⌉` candidates with a score and an index each; `mix`,
/// `fresh`: the parts and their concatenation), the EM responsibilities (gmm) and every
/// generation's fitted model; plus the shared rows and one training step (vae, lm). A lower
/// bound: the message says how many bytes and which flags to lower.
///
/// `data`: the real data's shape, or `None` to derive it from a built-in truth (a data file is
/// checked once read, by [`super::data::load_rows`]; `None` with a file checks nothing).
pub fn check_memory(cfg: &RunConfig, data: Option<DataShape>) -> Result<()> {
    match run_tally(cfg, data)? {
        Some(t) => t.check().map(|_| ()),
        None => Ok(()),
    }
}

/// The bytes [`check_memory`] counts (`None`: a data file not read yet); errors on a policy
/// whose candidate count is out of range.
pub fn run_tally(
    cfg: &RunConfig,
    data: Option<DataShape>,
) -> Result<Option<crate::io::budget::Tally>> {
    use crate::io::budget::Tally;
    use crate::models::size::{add_count, gmm_value_count, lm_param_count, vae_param_count};
    let data = match (data, &cfg.truth, cfg.model) {
        (Some(s), _, _) => s,
        (None, _, ModelKind::Lm) => DataShape {
            rows: cfg.samples,
            shared_rows: 0,
            d: cfg.lm.context.saturating_add(1),
        },
        (None, _, ModelKind::Task) => {
            let t = cfg.task.clone().unwrap_or_default();
            DataShape {
                rows: cfg.samples.saturating_mul(t.best_of.max(1)),
                shared_rows: t.eval,
                d: task_row_width(t.parsed()?.as_ref()),
            }
        }
        (None, Truth::Builtin(name), ModelKind::Gaussian | ModelKind::Gmm) => DataShape {
            rows: cfg.samples,
            shared_rows: BUILTIN_HELD_OUT,
            d: builtin_shape(name)?.1,
        },
        (None, _, _) => return Ok(None),
    };
    let (m, g, d) = (cfg.samples, cfg.generations, data.d);
    let candidates = cfg.policy.verify_candidates(m)?;
    let mut hint = "lower --replicates, --samples or --generations".to_string();
    let mut rep = Tally::new("", "");
    rep.add(&[data.rows, d], 8);
    if g > 0 {
        match cfg.policy {
            Policy::Replace => rep.add(&[m, d], 8),
            Policy::Accumulate => {
                hint = "lower --generations, --samples or --replicates (accumulate keeps every \
                        generation's samples)"
                    .into();
                rep.add(&[g, m, d, 2], 8)
            }
            Policy::Mix(_) | Policy::Fresh(_) => rep.add(&[m, d, 2], 8),
            Policy::Verify(..) => {
                hint = "raise the F of --policy verify (it draws ⌈M/F⌉ candidates), or lower \
                        --samples or --replicates"
                    .into();
                rep.add(&[candidates, d], 8)
                    .add(&[candidates, 2], 8)
                    .add(&[m, d], 8)
            }
        };
    }
    let models = g.saturating_add(1);
    match cfg.model {
        ModelKind::Gaussian => add_count(
            &mut rep,
            gmm_value_count(1, d, CovarianceType::Diag),
            models,
            8,
        ),
        ModelKind::Gmm => {
            rep.add(&[m.max(data.rows), cfg.k], 8);
            add_count(
                &mut rep,
                gmm_value_count(cfg.k, d, cfg.covariance_type),
                models,
                8,
            )
        }
        ModelKind::Vae => add_count(&mut rep, vae_param_count(&cfg.vae.network(d)), models, 8),
        ModelKind::Lm | ModelKind::Task => {
            add_count(&mut rep, lm_param_count(&cfg.lm.network()), models, 8)
        }
    }
    match cfg.model {
        ModelKind::Lm | ModelKind::Task => {
            hint += ", or --lm-width, --lm-layers, --lm-context or --lm-batch"
        }
        ModelKind::Vae => hint += ", or --vae-hidden or --vae-batch",
        ModelKind::Gmm => hint += ", or --k",
        ModelKind::Gaussian => {}
    }
    if matches!(&cfg.truth, Truth::Builtin(n) if n.starts_with("normal:")) {
        hint += ", or the D of --truth normal:D";
    }
    let mut t = Tally::new(
        format!(
            "the run ({} replicates × {} generations, {m} samples of D = {d}, --policy {})",
            cfg.replicates, models, cfg.policy
        ),
        hint,
    );
    t.add_tally(&rep).times(cfg.replicates);
    t.add(&[data.shared_rows, d], 8);
    match cfg.model {
        ModelKind::Vae => {
            crate::models::size::vae_step_tally(&mut t, &cfg.vae.network(d), cfg.vae.batch)
        }
        ModelKind::Lm | ModelKind::Task => {
            crate::models::size::lm_step_tally(&mut t, &cfg.lm.network(), cfg.lm.batch)
        }
        _ => {}
    }
    Ok(Some(t))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_print_short_and_parse_back() {
        for (text, short) in [
            ("verify:gen0:1e-300", "verify:gen0:1e-300"),
            ("verify:heldout:0.5", "verify:heldout:0.5"),
            ("mix:0.1", "mix:0.1"),
            ("fresh:1", "fresh:1"),
            ("mix:0.000001", "mix:1e-6"),
            ("verify:gen0:5e-324", "verify:gen0:5e-324"),
            ("replace", "replace"),
            ("accumulate", "accumulate"),
        ] {
            let p: Policy = text.parse().unwrap();
            assert_eq!(p.to_string(), short, "{text}");
            assert_eq!(short.parse::<Policy>().unwrap(), p, "{text} round-trips");
        }
    }

    #[test]
    fn verify_candidates_are_bounded() {
        let p = |s: &str| s.parse::<Policy>().unwrap();
        assert_eq!(p("verify:gen0:0.5").verify_candidates(100).unwrap(), 200);
        assert_eq!(p("verify:gen0:0.3").verify_candidates(100).unwrap(), 334);
        assert_eq!(p("replace").verify_candidates(100).unwrap(), 100);
        assert_eq!(
            p("verify:gen0:1e-9").verify_candidates(100).unwrap(),
            100_000_000_000
        );
        let e = p("verify:gen0:1e-300")
            .verify_candidates(100)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--policy verify:gen0:1e-300") && e.contains("raise F"),
            "{e}"
        );
        assert!(!e.contains("00000000000"), "short form: {e}");
    }

    fn gaussian(policy: &str, samples: usize, generations: usize) -> RunConfig {
        RunConfig {
            model: ModelKind::Gaussian,
            truth: Truth::Builtin("normal:3".into()),
            generations,
            samples,
            replicates: 2,
            policy: policy.parse().unwrap(),
            seed: 0,
            k: 1,
            covariance_type: CovarianceType::Diag,
            tol: 1e-3,
            max_iter: 100,
            reg_covar: 1e-6,
            init: Init::KMeans,
            backend: "cpu64".into(),
            real_rows: None,
            replicate_offset: 0,
            task: None,
            vae: VaeRunConfig::default(),
            lm: LmRunConfig::default(),
        }
    }

    #[test]
    fn the_run_tally_counts_pools_models_and_replicates() {
        let bytes = |c: &RunConfig| run_tally(c, None).unwrap().unwrap().bytes();
        // Per replicate: real 100×3, pool 100×3, 11 models of 1 + 3 + 3 values; ×2, plus the
        // 10 000 held-out points; f64.
        let per = 100 * 3 + 100 * 3 + 11 * 7;
        let held = 10_000 * 3;
        assert_eq!(
            bytes(&gaussian("replace", 100, 10)),
            Some(8 * (2 * per + held))
        );
        // accumulate: every generation's samples, in the pool and in the cache.
        let acc = 100 * 3 + 2 * 10 * 100 * 3 + 11 * 7;
        assert_eq!(
            bytes(&gaussian("accumulate", 100, 10)),
            Some(8 * (2 * acc + held))
        );
        // verify:F: ⌈M/F⌉ candidates with a score and an index each, and the kept pool.
        let ver = 100 * 3 + 400 * 3 + 400 * 2 + 100 * 3 + 11 * 7;
        assert_eq!(
            bytes(&gaussian("verify:gen0:0.25", 100, 10)),
            Some(8 * (2 * ver + held))
        );
        // Sizes whose products wrap are overflows, not small numbers.
        assert_eq!(bytes(&gaussian("accumulate", usize::MAX / 2, 10)), None);
        let e = check_memory(&gaussian("replace", usize::MAX / 2, 10), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("overflows 64 bits") && e.contains("--samples"),
            "{e}"
        );
        // A data file is checked once read.
        let mut f = gaussian("replace", 100, 10);
        f.truth = Truth::File("x.csv".into());
        assert!(run_tally(&f, None).unwrap().is_none());
        let shape = DataShape {
            rows: 80,
            shared_rows: 100,
            d: 3,
        };
        let want = 8 * (2 * (80 * 3 + 100 * 3 + 11 * 7) + 100 * 3);
        assert_eq!(
            run_tally(&f, Some(shape)).unwrap().unwrap().bytes(),
            Some(want)
        );
    }

    #[test]
    fn builtin_shapes_are_read_without_building() {
        assert_eq!(builtin_shape("normal").unwrap(), (1, 1));
        assert_eq!(builtin_shape("normal:100000000").unwrap(), (1, 100_000_000));
        assert_eq!(builtin_shape("shumailov-gmm").unwrap(), (2, 2));
        assert!(builtin_shape("normal:0").is_err() && builtin_shape("nope").is_err());
        let t = builtin_truth("shumailov-gmm").unwrap();
        assert_eq!((t.k, t.d, t.means.len()), (2, 2, 4));
        assert_eq!(t.covariances, vec![0.5; 4]);
        let t = builtin_truth("normal:3").unwrap();
        assert_eq!(
            (t.weights.clone(), t.means.clone()),
            (vec![1.0], vec![0.0; 3])
        );
    }
}
