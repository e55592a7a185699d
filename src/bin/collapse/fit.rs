//! `collapse fit gmm`: fit a Gaussian mixture by EM to a data file and write the fit as JSON.

use std::path::PathBuf;
use std::time::Instant;

use clap::Subcommand;

use collapse_kernels::backend::BackendKind;
use collapse_kernels::gpu::GpuOptions;
use collapse_kernels::io::{read_table, write_atomic};
use collapse_kernels::models::gmm::{GmmConfig, Init, fit as em_fit};
use collapse_kernels::ops::Backend;
use collapse_kernels::trainers::Engine;
use collapse_kernels::{Error, Result};

use crate::common::{EmArgs, progress_bar};

/// `collapse fit`'s subcommands.
#[derive(Subcommand, Debug)]
pub enum FitCommand {
    /// Fit a Gaussian mixture by EM (scikit-learn's options) and write FIT.json.
    Gmm(FitGmmArgs),
}

/// The library's defaults for the flags `collapse fit gmm` has beyond [`EmArgs`].
fn defaults() -> GmmConfig {
    GmmConfig::new(1)
}

/// `collapse fit gmm`'s flags.
#[derive(clap::Args, Debug)]
pub struct FitGmmArgs {
    /// Data: CSV (numeric columns, optional header line) or NPY (2-D float32/float64), one row per
    /// point. Non-finite values are an error naming the row.
    #[arg(long)]
    pub data: PathBuf,
    /// Number of mixture components K (1 ≤ K ≤ N).
    #[arg(long)]
    pub k: usize,
    #[command(flatten)]
    pub em: EmArgs,
    /// Number of initialisations; the best final log-likelihood is kept.
    #[arg(long, default_value_t = defaults().n_init)]
    pub n_init: usize,
    /// Initialisation: k-means++ seeding with hard assignment, or random responsibilities.
    #[arg(long, value_enum, default_value_t = defaults().init)]
    pub init: Init,
    /// Philox seed of the initialisation: the same seed gives the same start on every backend.
    #[arg(long, default_value_t = defaults().seed)]
    pub seed: u64,
    /// Backend running the E- and M-step passes.
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu32)]
    pub backend: BackendKind,
    /// Where to write the fit (JSON, written atomically).
    #[arg(long)]
    pub out: PathBuf,
}

/// Run a `collapse fit` subcommand.
pub fn fit(options: &GpuOptions, c: &FitCommand) -> Result<()> {
    match c {
        FitCommand::Gmm(a) => fit_gmm(options, a),
    }
}

/// Fit the mixture with a progress bar, write the fit, print its log-likelihood and time, and
/// warn when EM did not converge or re-seeded empty components.
fn fit_gmm(options: &GpuOptions, a: &FitGmmArgs) -> Result<()> {
    // Make sure the result can be written before spending the time to fit.
    if let Some(parent) = a.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::Io(format!("{}: {e}", parent.display())))?;
    }
    let x = read_table(&a.data)?;
    let b = Engine::open(a.backend, options)?;
    let cfg = GmmConfig {
        k: a.k,
        covariance_type: a.em.covariance,
        tol: a.em.tol,
        max_iter: a.em.max_iter,
        reg_covar: a.em.reg_covar,
        n_init: a.n_init,
        init: a.init,
        seed: a.seed,
    };
    eprintln!(
        "fitting a {}-component {:?} GMM to {} points in {} dimensions on {} ({})",
        a.k,
        cfg.covariance_type,
        x.rows,
        x.cols,
        b.name(),
        b.device()
    );
    let bar = progress_bar(
        (cfg.max_iter * cfg.n_init) as u64,
        "{bar:30} {pos}/{len} EM iterations, {elapsed} {msg}",
    );
    let t = Instant::now();
    let result = em_fit(&b, &x, &cfg, &mut |init, it, ll| {
        bar.set_position((init * cfg.max_iter + it) as u64);
        bar.set_message(format!("init {init}: mean log-likelihood {ll:.6}"));
    });
    bar.finish_and_clear();
    let f = result?;
    let secs = t.elapsed().as_secs_f64();
    let json = serde_json::to_string_pretty(&f.to_json()).expect("JSON of plain data");
    write_atomic(&a.out, json.as_bytes())?;
    println!(
        "mean log-likelihood {:.6} after {} iterations ({}), {:.3} s ({:.1} ms/iteration); wrote {}",
        f.mean_log_likelihood,
        f.n_iter,
        if f.converged {
            "converged"
        } else {
            "not converged"
        },
        secs,
        secs * 1e3 / f.n_iter.max(1) as f64,
        a.out.display()
    );
    if !f.converged {
        eprintln!(
            "warning: EM did not converge within --max-iter {} (tol {}); raise --max-iter \
             or --tol",
            cfg.max_iter, cfg.tol
        );
    }
    if f.reseeded > 0 {
        eprintln!(
            "note: {} empty component(s) were re-seeded during the fit",
            f.reseeded
        );
    }
    Ok(())
}
