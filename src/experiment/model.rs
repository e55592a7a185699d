//! The one trait every model of the generational loop implements ([`Model`]).
//!
//! **Adding a model**: write a module here (like [`super::vae`]) whose model type implements
//! [`Model`] (fit a pool, generate and score rows, its metric columns, where its fitted state is
//! checkpointed), add its [`super::ModelKind`] variant and one arm to [`super::with_model`],
//! its settings to [`RunConfig`] (a section like [`super::config::VaeRunConfig`]), and its flags to
//! `collapse run` (`src/bin/collapse/`). The loop, the pools and policies, checkpoints, resume,
//! replicates at once and `summary.json` come with it.

use std::path::Path;

use super::checkpoint::{Checkpoint, RunState};
use super::config::RunConfig;
use super::data::RealData;
use super::pool::Generator;
use crate::error::Result;
use crate::io::Matrix;
use crate::trainers::Engine;

/// What one metrics row is measured with.
pub struct MetricContext<'a> {
    /// The run's engine.
    pub backend: &'a Engine,
    /// The f64 reference engine.
    pub cpu: &'a Engine,
    /// The run's configuration.
    pub cfg: &'a RunConfig,
    /// Real data (and, once known, the reference density).
    pub real: &'a RealData,
    /// The run directory (for per-generation pictures or texts).
    pub dir: &'a Path,
    /// Replicate.
    pub replicate: usize,
    /// Generation.
    pub generation: usize,
    /// The pool this generation's model was trained on.
    pub pool: &'a super::pool::Pool,
}

/// A model in the generational loop: generation 0 fits real data, generation `n` fits a pool of
/// samples of generation `n − 1` (see [`super::pool`]).
pub trait Model: Generator + Clone + Send + Sync + Sized + 'static {
    /// What the metrics need beyond the model and the context, built once per run after the
    /// first generation's fits (e.g. the mixtures' tail region of the reference density).
    type Setup: Send + Sync;

    /// Errors on a configuration this model cannot run (beyond the checks every run gets).
    fn check(cfg: &RunConfig) -> Result<()>;

    /// The run's real data (default: draws of a built-in mixture or the rows of a table file,
    /// see [`super::data::load_rows`]).
    fn load_real(cfg: &RunConfig, cpu: &Engine) -> Result<RealData> {
        super::data::load_rows(cfg, cpu, &|_, _| Ok(()))
    }

    /// Its metric columns in `metrics.csv`, after the pool's, for `d`-column data.
    fn columns(cfg: &RunConfig, d: usize) -> Vec<String>;

    /// Fit to the rows of `pool` on `backend` with Philox `seed` (the run's seed xor the
    /// replicate's and generation's `EM_INIT` stream); `gen0` is the replicate's generation-0
    /// model once it exists (for models that fine-tune from it).
    fn fit(
        backend: &Engine,
        cfg: &RunConfig,
        pool: &Matrix,
        seed: u64,
        gen0: Option<&Self>,
    ) -> Result<Self>;

    /// The `verify:heldout` verifier, fitted once on cpu64 with Philox `seed`.
    fn held_out_verifier(cpu: &Engine, cfg: &RunConfig, real: &RealData, seed: u64)
    -> Result<Self>;

    /// After generation 0's fits (or on resume, with the stored one): replicate 0's
    /// generation-0 model may become the reference density (mixtures fitted to a data file).
    fn first_fit(_real: &mut RealData, _replicate0: &Self) {}

    /// Build [`Model::Setup`].
    fn setup(cfg: &RunConfig, real: &RealData, cpu: &Engine) -> Result<Self::Setup>;

    /// The metric values of this fitted model, in [`Model::columns`] order, as CSV fields.
    fn metrics(&self, ctx: &MetricContext<'_>, setup: &Self::Setup) -> Result<Vec<String>>;

    /// Reference values of the real data for `summary.json` (`None`: none).
    fn reference(_cfg: &RunConfig, _real: &RealData) -> Result<Option<serde_json::Value>> {
        Ok(None)
    }

    /// The models of every completed generation, per replicate, from the checkpoint of `state`.
    fn load_history(
        ck: &mut Checkpoint,
        state: &mut RunState,
        real: &RealData,
    ) -> Result<Vec<Vec<Self>>>;

    /// Store generation `n`'s models (one per replicate) before the state naming them is saved.
    fn save_generation(
        ck: &mut Checkpoint,
        state: &mut RunState,
        n: usize,
        models: &[&Self],
    ) -> Result<()>;
}
