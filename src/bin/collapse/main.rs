//! `collapse`: the command-line front end. It parses flags, calls the library, prints.
//!
//! One file per command family, each holding its clap arguments and its handler: [`info`],
//! [`rng`], [`fit`], [`train`], [`sample`], [`run`] (`run`, `plot`), [`check`], [`bench`],
//! [`drift`], [`metrics`]; [`common`] holds what several share (GPU options and context, progress bars,
//! records flags, the EM and LM shape flags). A new command is one new file here plus its
//! variant in [`Command`] and its arm in [`dispatch`].

mod bench;
mod check;
mod common;
mod drift;
mod fit;
mod gmm;
mod info;
mod metrics;
mod rng;
mod run;
mod sample;
mod sweep;
mod train;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use collapse_kernels::Result;

/// GPU kernels for studying model collapse, with f64 CPU references.
#[derive(Parser, Debug)]
#[command(name = "collapse", version, about, long_about = None)]
struct Cli {
    /// Use the first GPU adapter whose name contains this text (case-insensitive), instead of the
    /// automatic choice (discrete GPU, then integrated, then a CPU adapter such as lavapipe).
    #[arg(long, global = true, env = "COLLAPSE_ADAPTER")]
    adapter: Option<String>,

    /// Worker threads for everything that computes: rayon's global pool (the cpu32 backend, the
    /// CPU trainers, EM initialisation, cpu64's parallel loops), the replicates run at once
    /// when --replicate-jobs is 0 (run, drift run), and lavapipe's threads (LP_NUM_THREADS,
    /// unless already set). At least 1; default: every core (or RAYON_NUM_THREADS when set).
    /// `--threads 1` runs the computation on one core. The numbers do not depend on it, only
    /// the time.
    #[arg(long, global = true, env = "COLLAPSE_THREADS", value_name = "N", value_parser = parse_threads)]
    threads: Option<usize>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List every adapter wgpu finds, which one is chosen and why, and its limits and features.
    Info(info::InfoArgs),
    /// Draw random numbers from one Philox stream on a backend, print the first few, the time
    /// taken, and the largest difference from the cpu64 reference.
    Rng(rng::RngArgs),
    /// Fit a model to a data file.
    #[command(subcommand)]
    Fit(fit::FitCommand),
    /// Use a fitted Gaussian mixture (FIT.json of `collapse fit gmm`) on data: score (mean
    /// log-likelihood, BIC, AIC), predict, predict-proba, as scikit-learn's GaussianMixture.
    #[command(subcommand)]
    Gmm(gmm::GmmCommand),
    /// Train a model (the VAE on images, the language model on text).
    #[command(subcommand)]
    Train(train::TrainCommand),
    /// Sample from a trained model.
    #[command(subcommand)]
    Sample(sample::SampleCommand),
    /// Run a generational model-collapse experiment: generation 0 fits real data, generation n
    /// fits samples of generation n−1 (mixed with real data by --policy). Writes metrics.csv,
    /// summary.json and state.json (the checkpoint; see --checkpoint-secs) into --out.
    #[command(after_long_help = metrics::run_help())]
    Run(Box<run::RunArgs>),
    /// Overlay the collapse curves of several runs: one SVG per metric shared by all of them
    /// (mean over replicates, band ± 1 sd), e.g. one run per policy.
    Plot(run::PlotArgs),
    /// Numeric regression check: run every kernel on fixed seeded inputs and compare with the
    /// golden fingerprints (reference summary + each kernel's promised tolerance vs cpu64).
    /// Exits non-zero on drift.
    Check(check::CheckArgs),
    /// Time kernels and print a table (criterion benches under benches/ measure the same).
    Bench(bench::BenchArgs),
    /// Computational error as a collapse source: the same experiment on several backends and
    /// precisions (`drift run`), and each kernel's error vs size and input scale
    /// (`drift kernels`).
    #[command(subcommand)]
    Drift(drift::DriftCommand),
    /// Sweeps: a grid of `collapse run`s (seeds × policies × sizes × backends …) from a TOML
    /// spec, planned into one directory, run here (`sweep run`) or as a Slurm job array
    /// (`sweep slurm`), followed (`sweep status`) and gathered into tidy tables with 95%
    /// confidence intervals (`sweep collect`); `collapse plot DIR` draws them grouped.
    #[command(subcommand)]
    Sweep(sweep::SweepCommand),
    /// Define every metrics.csv column: what it measures, its units, its formula, and what it
    /// means when --data replaces a built-in truth.
    Metrics(metrics::MetricsArgs),
}

/// `--threads`: a positive thread count.
fn parse_threads(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1 (it is the number of worker threads)".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{e} (a positive thread count)")),
    }
}

/// Size every thread pool to `threads` (see [`Cli::threads`]) before any computation starts:
/// rayon's global pool, and lavapipe's threads when `LP_NUM_THREADS` is unset.
fn set_threads(threads: Option<usize>) -> Result<()> {
    let Some(n) = threads else {
        return Ok(());
    };
    if std::env::var_os("LP_NUM_THREADS").is_none() {
        // SAFETY: called from main before any other thread of this process exists.
        unsafe { std::env::set_var("LP_NUM_THREADS", n.to_string()) };
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .map_err(|e| collapse_kernels::Error::InvalidArgument(format!("--threads {n}: {e}")))
}

fn main() -> ExitCode {
    common::quiet_mesa();
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let given = matches
        .subcommand()
        .map(|(_, m)| given_on_command_line(m))
        .unwrap_or_default();
    if let Err(e) = set_threads(cli.threads) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    match dispatch(cli, &given) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The ids of the flags typed on the command line (not defaults or environment) of one
/// subcommand's matches: `run --resume` refuses experiment flags it would ignore.
fn given_on_command_line(m: &clap::ArgMatches) -> Vec<String> {
    m.ids()
        .filter(|id| m.value_source(id.as_str()) == Some(clap::parser::ValueSource::CommandLine))
        .map(|id| id.to_string())
        .collect()
}

/// Run the command `cli` names; `given` holds the flags typed for it (see
/// [`given_on_command_line`]).
fn dispatch(cli: Cli, given: &[String]) -> Result<()> {
    let options = common::gpu_options(cli.adapter);
    match cli.command {
        Command::Info(a) => info::info(&options, &a),
        Command::Rng(a) => rng::rng(&options, &a),
        Command::Fit(c) => fit::fit(&options, &c),
        Command::Gmm(c) => gmm::gmm(&options, &c),
        Command::Train(c) => train::train(&options, &c),
        Command::Sample(c) => sample::sample(&options, &c),
        Command::Run(a) => run::run(&options, &a, given),
        Command::Plot(a) => run::plot(&a),
        Command::Check(a) => check::check(&options, &a),
        Command::Bench(a) => bench::bench(&options, &a),
        Command::Drift(c) => drift::drift(&options, &c),
        Command::Sweep(c) => sweep::sweep(&options, &c),
        Command::Metrics(a) => metrics::metrics(&a),
    }
}
