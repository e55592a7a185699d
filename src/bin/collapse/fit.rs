//! `collapse fit gmm`: fit a Gaussian mixture by EM to a data file and write the fit as JSON.

use std::path::PathBuf;
use std::time::Instant;

use clap::Subcommand;

use collapse_kernels::backend::BackendKind;
use collapse_kernels::gpu::GpuOptions;
use collapse_kernels::io::{read_table, write_atomic};
use collapse_kernels::models::gmm::{GmmConfig, check_start as em_check_start, fit_from as em_fit};
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
    /// Warm start: EM from the parameters of an earlier FIT.json (same K, D and --covariance)
    /// instead of --init; one run, whatever --n-init (scikit-learn's `warm_start`).
    #[arg(long, value_name = "FIT.json")]
    pub init_from: Option<PathBuf>,
    /// Philox seed of the initialisation: the same seed gives the same start on every backend.
    #[arg(long, default_value_t = defaults().seed)]
    pub seed: u64,
    /// Backend running the E- and M-step passes.
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu32)]
    pub backend: BackendKind,
    /// Where to write the fit (JSON, written atomically): weights [K], means [K][D],
    /// covariances in scikit-learn's `covariances_` layout ([K][D][D] full, [D][D] tied, [K][D]
    /// diag, [K] spherical), covariance_type, mean_log_likelihood (nats per point, under these
    /// parameters), n_iter (EM updates behind them, scikit-learn's n_iter_), converged, n_samples,
    /// n_parameters, bic, aic (scikit-learn's definitions), reseeded, backend, adapter.
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
    let cfg = GmmConfig {
        k: a.k,
        covariance_type: a.em.covariance,
        tol: a.em.tol,
        max_iter: a.em.max_iter,
        reg_covar: a.em.reg_covar,
        n_init: a.n_init,
        init: a.em.init,
        seed: a.seed,
    };
    // A warm start is read and checked against the flags before anything is fitted.
    let start = match &a.init_from {
        Some(path) => {
            let p = crate::gmm::read_fit(path)?;
            em_check_start(&p, &cfg, x.cols).map_err(|e| {
                Error::InvalidArgument(format!("--init-from {}: {e}", path.display()))
            })?;
            Some(p)
        }
        None => None,
    };
    let cost = check_cost(&cfg, x.rows, x.cols)?;
    let b = Engine::open(a.backend, options)?;
    eprintln!(
        "fitting a {}-component {} GMM to {} points in {} dimensions on {} ({}), init {}",
        a.k,
        cfg.covariance_type.name(),
        x.rows,
        x.cols,
        b.name(),
        b.device(),
        cfg.init.name()
    );
    let runs = if start.is_some() { 1 } else { cfg.n_init };
    let per_run = cfg.max_iter.saturating_add(1);
    let bar = progress_bar(
        per_run.saturating_mul(runs) as u64,
        "{bar:30} {pos}/{len} EM iterations, {elapsed} {msg}",
    );
    // Redrawn on its own, so the elapsed time moves even while one iteration takes long.
    bar.enable_steady_tick(std::time::Duration::from_millis(500));
    if cost >= SLOW_ITERATION_FLOP {
        bar.set_message(format!("≈ {cost:.1e} flop per iteration"));
    }
    let t = Instant::now();
    // Time to each initialisation's first E-step (the start: k-means or a draw, one M-step, one
    // E-step) and time over the EM iterations after it, summed over initialisations.
    let (mut last, mut start_secs, mut em_secs, mut em_iters) = (t, 0.0, 0.0, 0usize);
    let result = em_fit(&b, &x, &cfg, start.as_ref(), &mut |init, it, ll| {
        let now = Instant::now();
        let dt = (now - last).as_secs_f64();
        if it == 0 {
            start_secs += dt;
        } else {
            em_secs += dt;
            em_iters += 1;
        }
        last = now;
        bar.set_position(init.saturating_mul(per_run).saturating_add(it + 1) as u64);
        bar.set_message(format!("init {init}: mean log-likelihood {ll:.6}"));
    });
    bar.finish_and_clear();
    let f = result?;
    let secs = t.elapsed().as_secs_f64();
    let json = serde_json::to_string_pretty(&f.to_json()).expect("JSON of plain data");
    write_atomic(&a.out, json.as_bytes())?;
    println!(
        "mean log-likelihood {:.6} after {} iterations ({}), {:.3} s: starts {:.3} s ({} × {}, \
         each with its first E-step), EM {:.2} ms/iteration over {} iterations; wrote {}",
        f.mean_log_likelihood,
        f.n_iter,
        if f.converged {
            "converged"
        } else {
            "not converged"
        },
        secs,
        start_secs,
        runs,
        if start.is_some() {
            "--init-from"
        } else {
            cfg.init.name()
        },
        em_secs * 1e3 / em_iters.max(1) as f64,
        em_iters,
        a.out.display()
    );
    if !f.converged {
        eprintln!(
            "warning (ConvergenceWarning): the best of {runs} initialisation(s) did not \
             converge: {} EM iterations (--max-iter) left the mean log-likelihood still \
             changing by ≥ --tol {}; raise --max-iter or --tol, or check the model",
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

/// Floating-point operations per EM iteration from which `fit gmm` warns (about a second or
/// more on a CPU backend), and refuses a degenerate full fit.
const SLOW_ITERATION_FLOP: f64 = 1e10;

/// Check what fitting a `cfg.k`-component mixture to `n` points in `d` dimensions costs before
/// anything is fitted: refuse (one line naming the flags) when the covariances, statistics and
/// responsibilities cannot fit in memory, or when full covariances are degenerate (`d ≥ n`: each
/// is mostly `--reg-covar`) and an iteration costs ≥ [`SLOW_ITERATION_FLOP`]; warn (one line on
/// stderr) when an iteration costs that much otherwise. Returns the flops per iteration:
/// `2·N·K·D²` for the E- and M-step passes plus `K·D³/3` for the factorisations (full and
/// tied), or `4·N·K·D` (diag and spherical).
fn check_cost(cfg: &GmmConfig, n: usize, d: usize) -> Result<f64> {
    use collapse_kernels::io::budget::Tally;
    use collapse_kernels::ops::gmm::PassLayout;
    let k = cfg.k;
    // Tied covariances run through the full passes (one factor repeated per component).
    let full = cfg.covariance_type.layout() == PassLayout::Full;
    let per = if full { d.saturating_mul(d) } else { d };
    let hint = if full {
        "use --covariance diag or lower --k"
    } else {
        "lower --k"
    };
    let mut t = Tally::new(
        format!(
            "fit gmm (K = {k}, {n} points in {d} dimensions, {})",
            cfg.covariance_type.name()
        ),
        hint,
    );
    // Parameters, statistics, factors and the update (4 × K·D² or K·D), the responsibilities
    // (f64 and the backend's), and the backend's f32 copy of the points.
    t.add(&[k, per, 4], 8).add(&[n, k, 2], 8).add(&[n, d], 4);
    t.check()?;
    let (nf, kf, df) = (n as f64, k as f64, d as f64);
    let cost = if full {
        2.0 * nf * kf * df * df + kf * df * df * df / 3.0
    } else {
        4.0 * nf * kf * df
    };
    if full && cost >= SLOW_ITERATION_FLOP {
        if d >= n {
            return Err(Error::InvalidArgument(format!(
                "fit gmm: full covariances in D = {d} dimensions from N = {n} points are \
                 degenerate (D ≥ N: each is mostly --reg-covar) and cost ≈ {cost:.1e} flop per EM \
                 iteration (K·D³/3 to factorise, 2·N·K·D² per pass); use --covariance diag, or \
                 more points than dimensions"
            )));
        }
        eprintln!(
            "warning: full covariances in D = {d} dimensions cost ≈ {cost:.1e} flop per EM \
             iteration (up to --max-iter {} × --n-init {} iterations); --covariance diag costs \
             ≈ {:.1e}",
            cfg.max_iter,
            cfg.n_init,
            4.0 * nf * kf * df
        );
    }
    Ok(cost)
}
