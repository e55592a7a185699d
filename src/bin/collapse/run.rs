//! `collapse run` (a generational model-collapse experiment, or its resumption) and
//! `collapse plot` (several runs' curves overlaid). [`ExperimentArgs`], the experiment's
//! flags, are shared with `collapse drift run`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use collapse_kernels::backend::BackendKind;
use collapse_kernels::experiment::VaeRunConfig;
use collapse_kernels::experiment::config::{Policy, TaskRunConfig};
use collapse_kernels::experiment::verifier::{TaskVerifier, VerifierSpec};
use collapse_kernels::experiment::{self, ModelKind, RunConfig, Truth};
use collapse_kernels::experiment::{LmInit, LmRunConfig};
use collapse_kernels::gpu::{self, GpuOptions};
use collapse_kernels::models::vae::train::DEFAULT_TRAIN_IMAGES;
use collapse_kernels::ops::Backend;
use collapse_kernels::report::{Band, PlotOptions};
use collapse_kernels::sweep;
use collapse_kernels::trainers::Engine;
use collapse_kernels::{Error, Result};

use crate::common::{EmArgs, adapter_summaries, progress_bar, queued};

/// `collapse run`'s flags.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub exp: ExperimentArgs,
    /// Backend running sampling and fitting; auto = wgsl on a GPU adapter, else cpu32.
    #[arg(long, default_value = "auto")]
    pub backend: String,
    /// Output directory: new, or empty (a directory holding a run is refused: --resume it; one
    /// holding other files is refused unless --force). One process at a time writes a run
    /// directory: it holds DIR/run.lock while it runs, and a second writer is refused.
    #[arg(long, required_unless_present = "resume")]
    pub out: Option<PathBuf>,
    /// Continue the run in this directory from its last checkpoint, with the configuration in
    /// its state.json. Only --generations (to extend the run: a larger count adds generations,
    /// the earlier ones stay byte-identical), --replicate-jobs and --checkpoint-secs may be
    /// given with it; any other experiment flag is an error. The files are checked against the
    /// checkpoint first: a missing, shortened or edited metrics.csv or params.jsonl is refused.
    /// (--no-plots may be given too.)
    #[arg(long, conflicts_with = "out")]
    pub resume: Option<PathBuf>,
    /// Write the run into --out even when that directory holds other files (not a run); the
    /// run's own files there (metrics.csv, summary.json, state.json, params.jsonl, plots/,
    /// weights/) are replaced, nothing else is touched.
    #[arg(long, conflicts_with = "resume")]
    pub force: bool,
    /// Seconds between checkpoints at most (besides after generation 0 and at the end): the
    /// finished generations' rows and models are written and synced, then state.json. A killed
    /// run loses at most this much work, which --resume recomputes to the same bytes. 0 =
    /// after every generation.
    #[arg(long, default_value_t = 5.0, value_parser = parse_seconds)]
    pub checkpoint_secs: f64,
    /// Replicates each generation runs at once (threads; on a GPU backend their launches are in
    /// flight on the device together). 0 = one per CPU core; at most --replicates and 256. The numbers
    /// do not depend on it, only the time; 1 runs the replicates one after another.
    #[arg(long, default_value_t = 0)]
    pub replicate_jobs: usize,
    /// Do not draw DIR/plots/ at the end (sweeps of many small runs plot their groups
    /// instead: `collapse plot SWEEP_DIR`); `collapse plot DIR --out …` draws them later.
    #[arg(long)]
    pub no_plots: bool,
}

/// `collapse plot`'s flags.
#[derive(clap::Args, Debug)]
pub struct PlotArgs {
    /// Run directories (each with a summary.json), or one sweep directory (with a sweep.json:
    /// its finished jobs, grouped by --group-by), or a `drift run` directory (its backends'
    /// runs overlaid).
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Directory for the SVG files (one per metric). A directory that already holds SVG files
    /// is refused unless --force.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace SVG files already in --out.
    #[arg(long)]
    pub force: bool,
    /// The band around each curve: ci95 (95% Student-t confidence interval of the mean over
    /// the replicates, and over the seeds of a sweep group), sd (± 1 sample sd), none.
    #[arg(long, value_enum, default_value_t = Band::Ci95)]
    pub band: Band,
    /// Logarithmic y axis (points ≤ 0 are left out).
    #[arg(long)]
    pub log_y: bool,
    /// A sweep: one line per group of these axes, comma-separated (default: every axis but
    /// seed that takes more than one value); labels are the group's axis values.
    #[arg(long, value_delimiter = ',')]
    pub group_by: Option<Vec<String>>,
}

/// The experiment flags shared by `collapse run` and `collapse drift run`. The VAE's and the
/// LM's defaults are `VaeRunConfig::default()` and `LmRunConfig::default()`, the EM's
/// `GmmConfig::new`'s.
#[derive(clap::Args, Debug)]
pub struct ExperimentArgs {
    /// Model each generation fits: gaussian (MLE mean and per-dimension variance, no
    /// regularisation), gmm (EM), vae (a VAE trained from scratch each generation on images;
    /// its samples are decoder means; real data defaults to Fashion-MNIST), lm (a byte-level
    /// transformer on text; real data defaults to Debian's fortunes; --data takes a text file)
    /// or task (the byte-level transformer on a checkable task, --task: each generation answers
    /// fresh problems, its successor trains on the answers --verifier keeps).
    #[arg(long, value_enum, default_value_t = ModelKind::Gaussian)]
    pub model: ModelKind,
    /// Built-in ground truth: normal, normal:D (N(0, I) in D dims), shumailov-gmm (two 2-D
    /// Gaussians), fortunes (text, for lm). Default: normal for gaussian, shumailov-gmm for gmm,
    /// fortunes for lm.
    #[arg(long, conflicts_with = "data")]
    pub truth: Option<String>,
    /// Real data from a file (CSV, NPY, or IDX images named *-ubyte[.gz]; a directory such
    /// as /usr/share/datasets/fashion-mnist stands for the train-images file in it) instead of a
    /// built-in truth; 20% of the rows (a Philox choice) is held out. Default for vae:
    /// /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// With --data (gaussian, gmm, vae): real rows per replicate for generation 0 and mix:F, a
    /// Philox choice from the training split (default: every training row); fresh:F draws from
    /// the whole split.
    #[arg(long)]
    pub real_rows: Option<usize>,
    /// Generations after generation 0.
    #[arg(long, default_value_t = 100)]
    pub generations: usize,
    /// Samples drawn per generation (and real points at generation 0).
    #[arg(long, default_value_t = 100)]
    pub samples: usize,
    /// Independent replicate chains (seeds derived from --seed).
    #[arg(long, default_value_t = 8)]
    pub replicates: usize,
    /// Index of the first replicate: the run holds replicates OFFSET .. OFFSET + --replicates
    /// (so numbered in metrics.csv), each drawing the random numbers replicate i of the same
    /// experiment (same --seed and settings) draws in any run: `--replicates 1
    /// --replicate-offset 3` is replicate 3 of `--replicates 5`, bit for bit. (--seed names
    /// the experiment; a different seed is a different experiment, not another replicate.)
    #[arg(long, default_value_t = 0)]
    pub replicate_offset: usize,
    /// Training pool: replace (last generation's samples), accumulate (all real and synthetic
    /// data so far), mix:F (fraction F real, drawn from the real set), fresh:F (fraction F new
    /// real data each generation), verify:gen0:F / verify:heldout:F (draw ⌈samples/F⌉
    /// synthetic candidates, keep the `samples` the verifier finds likeliest: the replicate's
    /// generation-0 model, or a model fitted once to held-out real data; not for --model task,
    /// which verifies with --verifier).
    #[arg(long, default_value = "replace")]
    pub policy: String,
    /// Who keeps synthetic data. For --model task: none (every answer), oracle (the task's exact
    /// check), noisy:P (the oracle's verdict flipped with probability P, an independent draw
    /// per candidate), confidence:F (the fraction F of answers the generating model finds
    /// likeliest; no ground truth). For the other models: gen0:F or heldout:F, another spelling
    /// of --policy verify:MODE:F (with --policy replace only). Default: none.
    #[arg(long)]
    pub verifier: Option<String>,
    /// --model task: the task, add:N (two integers of up to N digits and their sum; the answer
    /// is written least-significant digit first) or eigen:N (the eigenvalues of a symmetric N×N
    /// matrix with entries in [-10, 10], one decimal; 3 significant digits).
    #[arg(long)]
    pub task: Option<String>,
    /// --task eigen:N: an answer is correct when Σ|pred − true| / Σ|true| < this.
    #[arg(long, default_value_t = TaskRunConfig::default().tol)]
    pub task_tol: f64,
    /// --model task: held-out problems (a fixed set) of heldout_accuracy and val_loss.
    #[arg(long, default_value_t = TaskRunConfig::default().eval)]
    pub task_eval: usize,
    /// --model task: candidate answers per problem and round; the verifier keeps the first it
    /// accepts (confidence:F: the likeliest; none: the first).
    #[arg(long, default_value_t = 1)]
    pub best_of: usize,
    /// --model task with --verifier oracle or noisy:P: a problem whose candidates were all
    /// rejected is sampled again, up to this many more rounds (execution feedback without the
    /// feedback: the model sees no checker output, only its prompt again); metrics.csv's
    /// mean_attempts records the rounds.
    #[arg(long, default_value_t = 0)]
    pub retries: usize,
    /// Philox seed of the whole experiment.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// GMM: components.
    #[arg(long, default_value_t = 2)]
    pub k: usize,
    #[command(flatten)]
    pub em: EmArgs,
    /// VAE: hidden width.
    #[arg(long, default_value_t = VaeRunConfig::default().hidden)]
    pub vae_hidden: usize,
    /// VAE: latent dimensions.
    #[arg(long, default_value_t = VaeRunConfig::default().latent)]
    pub vae_latent: usize,
    /// VAE: passes over each generation's pool.
    #[arg(long, default_value_t = VaeRunConfig::default().epochs)]
    pub vae_epochs: usize,
    /// VAE: images per Adam step.
    #[arg(long, default_value_t = VaeRunConfig::default().batch)]
    pub vae_batch: usize,
    /// VAE: Adam learning rate.
    #[arg(long, default_value_t = VaeRunConfig::default().lr)]
    pub vae_lr: f64,
    /// VAE: weight of the KL term (1 = the ELBO).
    #[arg(long, default_value_t = VaeRunConfig::default().beta)]
    pub vae_beta: f64,
    /// LM: width C.
    #[arg(long, default_value_t = LmRunConfig::default().width)]
    pub lm_width: usize,
    /// LM: transformer blocks.
    #[arg(long, default_value_t = LmRunConfig::default().layers)]
    pub lm_layers: usize,
    /// LM: attention heads.
    #[arg(long, default_value_t = LmRunConfig::default().heads)]
    pub lm_heads: usize,
    /// LM: context; a sample (and a training row) is `\n` plus this many bytes.
    #[arg(long, default_value_t = LmRunConfig::default().context)]
    pub lm_context: usize,
    /// LM: AdamW steps per generation.
    #[arg(long, default_value_t = LmRunConfig::default().steps)]
    pub lm_steps: usize,
    /// LM: rows per step.
    #[arg(long, default_value_t = LmRunConfig::default().batch)]
    pub lm_batch: usize,
    /// LM: AdamW learning rate.
    #[arg(long, default_value_t = LmRunConfig::default().lr)]
    pub lm_lr: f64,
    /// LM: where each generation's training starts: scratch (fresh weights) or gen0
    /// (fine-tune the replicate's generation-0 model, as Shumailov et al.).
    #[arg(long, value_enum, default_value_t = LmRunConfig::default().init)]
    pub lm_init: LmInit,
    /// LM: sampling temperature.
    #[arg(long, default_value_t = LmRunConfig::default().temperature)]
    pub lm_temperature: f64,
    /// LM: sample only among the k likeliest bytes.
    #[arg(long)]
    pub lm_top_k: Option<usize>,
}

impl ExperimentArgs {
    /// The run configuration these flags describe, recording `backend`.
    pub fn config(&self, backend: String) -> Result<RunConfig> {
        let a = self;
        let truth = match (&a.data, &a.truth) {
            (Some(p), _) => Truth::File(p.clone()),
            (None, Some(t)) => Truth::Builtin(t.clone()),
            (None, None) if a.model == ModelKind::Lm => Truth::Builtin("fortunes".into()),
            (None, None) if a.model == ModelKind::Task => Truth::Builtin("task".into()),
            (None, None) if a.model == ModelKind::Vae => Truth::File(DEFAULT_TRAIN_IMAGES.into()),
            (None, None) => Truth::Builtin(
                match a.model {
                    ModelKind::Gaussian => "normal",
                    _ => "shumailov-gmm",
                }
                .into(),
            ),
        };
        let mut policy: Policy = a.policy.parse()?;
        let mut task_verifier = TaskVerifier::None;
        match a
            .verifier
            .as_deref()
            .map(str::parse::<VerifierSpec>)
            .transpose()?
        {
            None => {}
            Some(VerifierSpec::Task(v)) if a.model == ModelKind::Task => task_verifier = v,
            Some(VerifierSpec::Task(v)) => {
                return Err(Error::InvalidArgument(format!(
                    "--verifier {v} judges task answers (--model task); the {} model takes                      gen0:F or heldout:F",
                    format!("{:?}", a.model).to_lowercase()
                )));
            }
            Some(VerifierSpec::Likelihood(..)) if a.model == ModelKind::Task => {
                return Err(Error::InvalidArgument(
                    "--model task takes --verifier none, oracle, noisy:P or confidence:F".into(),
                ));
            }
            Some(VerifierSpec::Likelihood(mode, f)) => {
                if policy != Policy::Replace {
                    return Err(Error::InvalidArgument(format!(
                        "--verifier {} is --policy verify:…:F, which replaces the pool: use it                          with --policy replace (not {policy})",
                        a.verifier.as_deref().unwrap_or_default()
                    )));
                }
                policy = Policy::Verify(mode, f);
            }
        }
        let task_flags = a.task.is_some()
            || a.best_of != 1
            || a.retries != 0
            || a.task_eval != TaskRunConfig::default().eval
            || a.task_tol != TaskRunConfig::default().tol;
        let task = if a.model == ModelKind::Task {
            Some(TaskRunConfig {
                task: a.task.clone().ok_or_else(|| {
                    Error::InvalidArgument("--model task needs --task (add:N or eigen:N)".into())
                })?,
                tol: a.task_tol,
                verifier: task_verifier,
                best_of: a.best_of,
                retries: a.retries,
                eval: a.task_eval,
            })
        } else if task_flags {
            return Err(Error::InvalidArgument(
                "--task, --task-tol, --task-eval, --best-of and --retries apply to --model task"
                    .into(),
            ));
        } else {
            None
        };
        Ok(RunConfig {
            model: a.model,
            truth,
            generations: a.generations,
            samples: a.samples,
            replicates: a.replicates,
            replicate_offset: a.replicate_offset,
            task,
            policy,
            seed: a.seed,
            k: a.k,
            covariance_type: a.em.covariance,
            tol: a.em.tol,
            max_iter: a.em.max_iter,
            reg_covar: a.em.reg_covar,
            init: a.em.init,
            backend,
            real_rows: a.real_rows,
            vae: VaeRunConfig {
                hidden: a.vae_hidden,
                latent: a.vae_latent,
                epochs: a.vae_epochs,
                batch: a.vae_batch,
                lr: a.vae_lr,
                beta: a.vae_beta,
            },
            lm: LmRunConfig {
                width: a.lm_width,
                layers: a.lm_layers,
                heads: a.lm_heads,
                context: a.lm_context,
                steps: a.lm_steps,
                batch: a.lm_batch,
                lr: a.lm_lr,
                init: a.lm_init,
                temperature: a.lm_temperature,
                top_k: a.lm_top_k,
            },
        })
    }
}

/// `collapse run`: a new run into `--out`, or `--resume DIR` with the configuration stored in
/// its `state.json`.
pub fn run(options: &GpuOptions, a: &RunArgs, given: &[String]) -> Result<()> {
    let (config, dir) = match &a.resume {
        Some(dir) => {
            let allowed = [
                "generations",
                "replicate_jobs",
                "checkpoint_secs",
                "resume",
                "no_plots",
            ];
            let ignored: Vec<String> = given
                .iter()
                .filter(|g| {
                    !allowed.contains(&g.as_str()) && !["adapter", "threads"].contains(&g.as_str())
                })
                .map(|g| format!("--{}", g.replace('_', "-")))
                .collect();
            if !ignored.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "--resume continues the run with the configuration in its state.json; {} \
                     cannot be changed (only --generations, to extend the run, \
                     --replicate-jobs and --checkpoint-secs may be given)",
                    ignored.join(", ")
                )));
            }
            (experiment::RunState::read(dir)?.config, dir.clone())
        }
        None => {
            let backend = if a.backend == "auto" {
                auto_backend(options)
            } else {
                a.backend.parse::<BackendKind>()?
            };
            (
                a.exp.config(backend.name().into())?,
                a.out.clone().expect("clap requires --out without --resume"),
            )
        }
    };
    let extend = (a.resume.is_some() && given.iter().any(|g| g == "generations"))
        .then_some(a.exp.generations);
    let mut config = config;
    if let Some(g) = extend {
        config.generations = config.generations.max(g);
    }
    let run_options = experiment::RunOptions {
        jobs: a.replicate_jobs,
        checkpoint_every: std::time::Duration::from_secs_f64(a.checkpoint_secs),
        force: a.force,
        generations: extend,
    };
    run_with(
        options,
        config,
        dir,
        a.resume.is_some(),
        &run_options,
        !a.no_plots,
    )
}

/// A number of seconds: finite and ≥ 0.
fn parse_seconds(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds (finite, ≥ 0)")),
    }
}

/// `collapse plot`: one SVG per metric over every run of `a.runs` (or the groups of a sweep).
pub fn plot(a: &PlotArgs) -> Result<()> {
    collapse_kernels::io::output::refuse_overwrite(
        &collapse_kernels::io::output::svg_files(&a.out),
        a.force,
        &format!("--out {}", a.out.display()),
    )?;
    let o = PlotOptions {
        band: a.band,
        log_y: a.log_y,
    };
    let sweep_dir = (a.runs.len() == 1 && a.runs[0].join(sweep::manifest::MANIFEST_FILE).exists())
        .then(|| a.runs[0].clone());
    let files = if let Some(root) = sweep_dir {
        let m = sweep::Manifest::read(&root)?;
        let group_by = a
            .group_by
            .clone()
            .unwrap_or_else(|| sweep::plot::default_group_by(&m));
        sweep::plot::plot_sweep(&root, &m, &group_by, &a.out, &o)?
    } else {
        if a.group_by.is_some() {
            return Err(Error::InvalidArgument(
                "--group-by applies to a sweep directory (one holding sweep.json)".into(),
            ));
        }
        collapse_kernels::report::plot_runs_with(&expand_drift(&a.runs), &a.out, &o)?
    };
    for f in files {
        println!("wrote {}", f.display());
    }
    Ok(())
}

/// A `drift run` directory (pairs.csv, and one run directory per backend inside) stands for
/// its backends' runs.
fn expand_drift(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for d in dirs {
        // A drift run's directory holds pairs.csv (and its own summary.json, not a run's).
        let subs: Vec<PathBuf> = if !d.join("pairs.csv").exists() {
            Vec::new()
        } else {
            let mut v: Vec<PathBuf> = std::fs::read_dir(d)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.join("summary.json").exists())
                .collect();
            v.sort();
            v
        };
        if subs.is_empty() {
            out.push(d.clone());
        } else {
            out.extend(subs);
        }
    }
    out
}

/// Run (or resume) the generational experiment `config` into `dir`, with a progress bar; then
/// plot it and print its first and last generation.
fn run_with(
    options: &GpuOptions,
    config: RunConfig,
    dir: PathBuf,
    resume: bool,
    run_options: &experiment::RunOptions,
    plot: bool,
) -> Result<()> {
    let replicate_jobs = run_options.jobs;
    let kind: BackendKind = config.backend.parse()?;
    let b = Engine::open(kind, &queued(options))?;
    let cpu = Engine::create(BackendKind::Cpu64, None)?;
    let task = config.task.as_ref().map_or(String::new(), |t| {
        format!(
            " (task {}, verifier {}, best of {}, {} retries)",
            t.task, t.verifier, t.best_of, t.retries
        )
    });
    eprintln!(
        "{:?} model{task}, {} generations × {} replicates ({} at once), {} samples each, policy {}, on {} ({}) → {}",
        config.model,
        config.generations,
        config.replicates,
        experiment::replicates::jobs(replicate_jobs, config.replicates),
        config.samples,
        config.policy,
        b.name(),
        b.device(),
        dir.display()
    );
    let bar = progress_bar(
        config.generations as u64 + 1,
        "{bar:30} {pos}/{len} generations, {elapsed} (eta {eta})",
    );
    let t = Instant::now();
    let r = experiment::run(
        &b,
        &cpu,
        (!resume).then_some(config),
        &dir,
        run_options,
        &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64)
        },
    );
    bar.finish_and_clear();
    let report = r?;
    let t_plots = Instant::now();
    let plots = if plot {
        collapse_kernels::report::plot_runs(std::slice::from_ref(&dir), &dir.join("plots"))?
    } else {
        Vec::new()
    };
    let plot_seconds = t_plots.elapsed().as_secs_f64();
    print_first_and_last(&dir)?;
    let s = report.seconds;
    println!(
        "done in {:.2} s (fits {:.2} s, metrics {:.2} s, checkpoints {:.2} s in {} commits, \
         plots {plot_seconds:.2} s): {}/metrics.csv, summary.json, state.json{}",
        t.elapsed().as_secs_f64(),
        s.fit,
        s.metrics,
        s.checkpoint,
        s.commits,
        dir.display(),
        if plot {
            format!(", plots/ ({} SVG)", plots.len())
        } else {
            String::new()
        }
    );
    Ok(())
}

/// Print each metric's mean ± sd over replicates at the first and the last generation of the
/// run in `dir` (from its summary.json), so the collapse shows at a glance.
fn print_first_and_last(dir: &Path) -> Result<()> {
    let path = dir.join("summary.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
    let gens = v["generations"].as_array().cloned().unwrap_or_default();
    let (Some(first), Some(last)) = (gens.first(), gens.last()) else {
        return Ok(());
    };
    let cell = |g: &serde_json::Value, m: &str| {
        let x = &g["metrics"][m];
        match (x["mean"].as_f64(), x["std"].as_f64()) {
            (Some(mean), Some(sd)) => format!("{:>25}", format!("{mean:.5} ± {sd:.4}")),
            _ => format!("{:>25}", "-"),
        }
    };
    let label = |g: &serde_json::Value| format!("generation {}", g["generation"]);
    println!(
        "{:<20} {:>25} {:>25}   (mean ± sd over replicates)",
        "metric",
        label(first),
        label(last)
    );
    if let Some(metrics) = last["metrics"].as_object() {
        for m in metrics.keys() {
            println!("{m:<20} {} {}", cell(first, m), cell(last, m));
        }
    }
    Ok(())
}

/// wgsl when the chosen adapter is a real GPU, else cpu32 (lavapipe is correct but far too
/// slow for generational runs).
fn auto_backend(options: &GpuOptions) -> BackendKind {
    let found = adapter_summaries();
    match gpu::choose_adapter(&found, options.adapter.as_deref()) {
        Ok(c) if !found[c.index].is_cpu() => BackendKind::Wgsl,
        _ => BackendKind::Cpu32,
    }
}
