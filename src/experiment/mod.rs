//! The generational driver behind `collapse run`: generation 0 fits real data; generation `n`
//! fits data sampled from generation `n − 1`, mixed with real data by a [`Policy`]. Every
//! computation (sampling, fitting) goes through one [`Engine`], so rerunning with another
//! backend changes only the arithmetic.
//!
//! One loop ([`generations`]) runs every model through the one [`model::Model`] trait: the
//! mixtures ([`mixture`]: gaussian, gmm), the VAE ([`vae`]), the language model ([`lm`]) and the language model on a checkable task
//! ([`task`], with its verifiers in [`verifier`]).
//! [`with_model`] is the one place a [`ModelKind`] becomes a model type; see
//! [`model`] for how to add one.
//!
//! # Randomness
//!
//! All draws come from Philox stream `(seed, stream_id(purpose, replicate, generation))` (see
//! [`crate::rng::streams`]): real data, synthetic samples, mixing choices and fit initialisation each have
//! their own purpose, so replicate chains are independent and every generation is reproducible
//! on its own.
//!
//! # Checkpoint and resume
//!
//! See [`checkpoint`]: after every generation its rows and models are synced to disk before
//! `state.json` names them; a resumed run's `metrics.csv` is byte-identical to an uninterrupted
//! run's.

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod dictionary;
pub mod generations;
pub mod lm;
pub mod lock;
pub mod metrics;
pub mod mixture;
pub mod model;
pub mod pool;
pub mod replicates;
pub mod task;
pub mod vae;
pub mod verifier;
pub mod weights;

use std::path::Path;

pub use crate::rng::streams::stream_id;
pub use checkpoint::{Checkpoint, METRICS_FILE, PARAMS_FILE, PhaseSeconds, RunState, STATE_FILE};
pub use config::{
    LmInit, LmRunConfig, ModelKind, Policy, RunConfig, Truth, VaeRunConfig, Verifier, builtin_truth,
};
pub use data::RealData;
pub use dictionary::{MetricDefinition, definitions, write_dictionary_csv};
pub use pool::{Generator, Pool};

use crate::error::{Error, Result};
use crate::ops::gmm::GmmParams;
use crate::trainers::Engine;
use generations::{Keep, generations};
use model::Model;

/// Something to do with the model type of a [`ModelKind`] (see [`with_model`]).
pub trait WithModel {
    /// What it returns.
    type Output;
    /// Do it with model type `M`.
    fn call<M: Model>(self) -> Result<Self::Output>;
}

/// Call `w` with the model type of `kind`: the one place the kinds map to their modules.
pub fn with_model<W: WithModel>(kind: ModelKind, w: W) -> Result<W::Output> {
    match kind {
        ModelKind::Gaussian | ModelKind::Gmm => w.call::<GmmParams>(),
        ModelKind::Vae => w.call::<vae::VaeModel>(),
        ModelKind::Lm => w.call::<lm::LmModel>(),
        ModelKind::Task => w.call::<task::TaskModel>(),
    }
}

/// Reject configurations no run can use (too few samples, no replicates, K > samples, settings
/// the model cannot take).
pub fn check_config(cfg: &RunConfig) -> Result<()> {
    let bad = |m: String| Err(Error::InvalidArgument(m));
    if cfg.samples < 2 {
        return bad("--samples must be at least 2".into());
    }
    if cfg.replicates == 0 {
        return bad("--replicates must be at least 1".into());
    }
    struct Check<'a>(&'a RunConfig);
    impl WithModel for Check<'_> {
        type Output = ();
        fn call<M: Model>(self) -> Result<()> {
            M::check(self.0)
        }
    }
    with_model(cfg.model, Check(cfg))?;
    config::check_memory(cfg, None)?;
    // Replicate indices are a 24-bit field of every stream id, the largest one reserved for
    // run-wide streams; the VAE and the LM also draw chunked sub-streams, distinct only for
    // indices below CHUNKED_REPLICATES.
    let limit = match cfg.model {
        ModelKind::Vae | ModelKind::Lm | ModelKind::Task => crate::rng::streams::CHUNKED_REPLICATES,
        _ => crate::rng::streams::RUN_WIDE_REPLICATE,
    };
    if cfg
        .replicate_offset
        .checked_add(cfg.replicates)
        .is_none_or(|end| end > limit)
    {
        return bad(format!(
            "--replicate-offset {} + --replicates {} exceeds the {limit} replicate indices a {} \
             run's random streams keep distinct",
            cfg.replicate_offset,
            cfg.replicates,
            format!("{:?}", cfg.model).to_lowercase()
        ));
    }
    if cfg.real_rows.is_some() && !matches!(cfg.truth, Truth::File(_)) {
        return bad(
            "--real-rows applies to --data files of the gaussian, gmm and vae models (the LM's \
             generation 0 trains on --samples windows of its text)"
                .into(),
        );
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
/// each generation. Mixture models only (the parameters drift compares).
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
    let mut real = GmmParams::load_real(cfg, cpu_reference)?;
    let jobs = replicates::jobs(jobs, cfg.replicates);
    let history = generations::<GmmParams>(
        backend,
        cpu_reference,
        cfg,
        &mut real,
        Keep::Memory,
        jobs,
        progress,
    )?;
    Ok(Simulation {
        history,
        truth: real.truth.expect("generation 0 sets the truth"),
    })
}

/// How [`run`] treats its directory and its time (none of it changes the numbers).
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Replicates each generation runs at once (0 = automatic, see [`replicates::jobs`]).
    pub jobs: usize,
    /// Commit (write the finished generations' rows and models, sync, save `state.json`) at
    /// most this often, besides after generation 0 and at the end; a killed run recomputes what
    /// came after its last commit. Zero commits after every generation.
    pub checkpoint_every: std::time::Duration,
    /// A new run may write into a directory that holds other files (not a run): its
    /// `metrics.csv`, `summary.json`, `state.json`, `params.jsonl`, `plots/` and `weights/` are
    /// replaced, nothing else is touched. Without it such a directory is refused.
    pub force: bool,
    /// On resume: extend the run to this many generations (after generation 0). It may not be
    /// fewer than the run's own; every earlier generation's numbers stay as they are.
    pub generations: Option<usize>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            jobs: 0,
            checkpoint_every: std::time::Duration::from_secs(5),
            force: false,
            generations: None,
        }
    }
}

/// The files of `dir` (top level) that are not the lock's, sorted; empty for a missing
/// directory.
fn other_files(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != lock::LOCK_FILE)
        .collect();
    names.sort();
    names
}

/// Run (or, with `config = None`, resume) the experiment into `dir`: `metrics.csv`,
/// `state.json`, `summary.json` (and `params.jsonl` or `weights/`). The directory has one writer:
/// its lock ([`lock::RunLock`]) is held until this returns; a second writer is refused naming
/// the holder. A new run refuses a directory that holds a run (resume it) or other files (unless
/// `options.force`); a new directory it created is removed again if the run fails before its
/// first checkpoint. `progress(generations_done, total)` is called after each generation.
pub fn run(
    backend: &Engine,
    cpu_reference: &Engine,
    config: Option<RunConfig>,
    dir: &Path,
    options: &RunOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<RunReport> {
    let io = |e: std::io::Error| Error::Io(format!("{}: {e}", dir.display()));
    let state_path = dir.join(STATE_FILE);
    let resuming = config.is_none();
    if let Some(c) = &config {
        check_config(c)?;
        if options.generations.is_some() {
            return Err(Error::InvalidArgument(
                "extending --generations applies to --resume".into(),
            ));
        }
        if state_path.exists() {
            return Err(Error::InvalidArgument(format!(
                "{} already holds a run; use --resume {} to continue it, or another --out",
                dir.display(),
                dir.display()
            )));
        }
        // A directory another process is writing: say so (not "not empty").
        let _probe = if dir.join(lock::LOCK_FILE).exists() {
            Some(lock::RunLock::acquire(dir)?)
        } else {
            None
        };
        let others = other_files(dir);
        if !others.is_empty() && !options.force {
            let shown: Vec<&str> = others.iter().take(4).map(|s| s.as_str()).collect();
            let more = if others.len() > 4 { ", …" } else { "" };
            return Err(Error::InvalidArgument(format!(
                "--out {} is not empty ({}{more}) and holds no run: use a new or empty \
                 directory, or pass --force to write the run's files into it (replacing any \
                 metrics.csv, summary.json, state.json, params.jsonl, plots/ and weights/ there)",
                dir.display(),
                shown.join(", ")
            )));
        }
    } else if !state_path.exists() {
        return Err(Error::Io(format!(
            "{}: no such file (nothing to resume: not a run directory)",
            state_path.display()
        )));
    }
    let created = !dir.exists();
    std::fs::create_dir_all(dir).map_err(io)?;
    let result = run_locked(backend, cpu_reference, config, dir, options, progress);
    if result.is_err() && created && !resuming && !state_path.exists() {
        // Nothing of this run was checkpointed: leave no half-made directory behind.
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

/// [`run`] once the directory exists: lock, open or create the state, run the generations.
fn run_locked(
    backend: &Engine,
    cpu_reference: &Engine,
    config: Option<RunConfig>,
    dir: &Path,
    options: &RunOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<RunReport> {
    let lock = lock::RunLock::acquire(dir)?;
    let state_path = dir.join(STATE_FILE);
    let mut state = match config {
        Some(config) => {
            if state_path.exists() {
                return Err(Error::InvalidArgument(format!(
                    "{} already holds a run (another process started it just now)",
                    dir.display()
                )));
            }
            RunState {
                history: vec![Vec::new(); config.replicates],
                model_files: vec![Vec::new(); config.replicates],
                config,
                metrics_bytes: 0,
                metrics_crc32: None,
                params_bytes: 0,
                params_crc32: None,
            }
        }
        None => RunState::read(dir)?,
    };
    if let Some(g) = options.generations {
        if g < state.config.generations {
            return Err(Error::InvalidArgument(format!(
                "--generations {g} with --resume: the run in {} has {} generations; a resume \
                 can extend a run, not shorten it",
                dir.display(),
                state.config.generations
            )));
        }
        state.config.generations = g;
    }
    let jobs = options.jobs;
    let mut ck = Checkpoint::open(dir, lock, &state, options.checkpoint_every)?;
    let cfg = state.config.clone();
    let jobs = replicates::jobs(jobs, cfg.replicates);
    struct Run<'a> {
        backend: &'a Engine,
        cpu: &'a Engine,
        cfg: &'a RunConfig,
        state: &'a mut RunState,
        ck: &'a mut Checkpoint,
        jobs: usize,
        progress: &'a mut dyn FnMut(usize, usize),
    }
    impl WithModel for Run<'_> {
        type Output = ();
        fn call<M: Model>(self) -> Result<()> {
            let mut real = M::load_real(self.cfg, self.cpu)?;
            generations::<M>(
                self.backend,
                self.cpu,
                self.cfg,
                &mut real,
                Keep::Dir(self.ck, self.state),
                self.jobs,
                self.progress,
            )?;
            Ok(())
        }
    }
    with_model(
        cfg.model,
        Run {
            backend,
            cpu: cpu_reference,
            cfg: &cfg,
            state: &mut state,
            ck: &mut ck,
            jobs,
            progress,
        },
    )?;
    metrics::write_summary(dir, &cfg, ck.reference.take())?;
    Ok(RunReport {
        state,
        seconds: ck.seconds,
    })
}

/// What [`run`] returns: the final state and where the time went.
#[derive(Debug)]
pub struct RunReport {
    /// The run's state as last checkpointed.
    pub state: RunState,
    /// This process's seconds per phase.
    pub seconds: PhaseSeconds,
}
