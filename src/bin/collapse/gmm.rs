//! `collapse gmm score|predict|predict-proba`: use a fitted mixture (`collapse fit gmm`'s
//! FIT.json) on new data, as scikit-learn's `GaussianMixture.score`, `bic`, `aic`, `predict`
//! and `predict_proba` do.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Subcommand;

use collapse_kernels::backend::BackendKind;
use collapse_kernels::gpu::GpuOptions;
use collapse_kernels::io::{read_table, write_atomic};
use collapse_kernels::models::gmm::{Scores, params_from_json, score};
use collapse_kernels::ops::Backend;
use collapse_kernels::ops::gmm::GmmParams;
use collapse_kernels::trainers::Engine;
use collapse_kernels::{Error, Result};

/// `collapse gmm`'s subcommands.
#[derive(Subcommand, Debug)]
pub enum GmmCommand {
    /// Mean log-likelihood per point, BIC and AIC of the data under the fit (scikit-learn's
    /// `score(X)`, `bic(X)`, `aic(X)`): one CSV row `n_samples,mean_log_likelihood,bic,aic`,
    /// also printed. BIC = −2·N·mean_log_likelihood + P·ln N, AIC = −2·N·mean_log_likelihood + 2P,
    /// P the fit's free parameters (scikit-learn's count).
    Score(GmmUseArgs),
    /// The most probable component of every point (scikit-learn's `predict(X)`): CSV with one
    /// column `label` (0-based), one row per data row.
    Predict(GmmUseArgs),
    /// Posterior probability of every component for every point (scikit-learn's
    /// `predict_proba(X)`): CSV with columns `p0 … p{K−1}`, one row per data row, rows summing to 1.
    PredictProba(GmmUseArgs),
}

/// The flags the `collapse gmm` subcommands share.
#[derive(clap::Args, Debug)]
pub struct GmmUseArgs {
    /// The fit: FIT.json written by `collapse fit gmm` (its weights, means, covariances and
    /// covariance_type are read).
    #[arg(long)]
    pub fit: PathBuf,
    /// Data: CSV (numeric columns, optional header line) or NPY (2-D float32/float64), one row per
    /// point, as many columns as the fit has dimensions.
    #[arg(long)]
    pub data: PathBuf,
    /// Backend running the E-step (cpu32 computes in f32; cpu64 is the f64 reference).
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu32)]
    pub backend: BackendKind,
    /// Where to write the CSV (atomically).
    #[arg(long)]
    pub out: PathBuf,
}

/// Read a FIT.json into mixture parameters; errors name the file.
pub fn read_fit(path: &Path) -> Result<GmmParams> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::InvalidArgument(format!("{}: not JSON: {e}", path.display())))?;
    params_from_json(&v).map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))
}

/// Run a `collapse gmm` subcommand.
pub fn gmm(options: &GpuOptions, c: &GmmCommand) -> Result<()> {
    let a = match c {
        GmmCommand::Score(a) | GmmCommand::Predict(a) | GmmCommand::PredictProba(a) => a,
    };
    let p = read_fit(&a.fit)?;
    let x = read_table(&a.data)?;
    let b = Engine::open(a.backend, options)?;
    let s: Scores = score(&b, &p, &x)
        .map_err(|e| Error::InvalidArgument(format!("{}: {e}", a.data.display())))?;
    let csv = match c {
        GmmCommand::Score(_) => {
            let row = format!(
                "{},{},{},{}",
                s.n_samples, s.mean_log_likelihood, s.bic, s.aic
            );
            println!("{row}");
            format!("n_samples,mean_log_likelihood,bic,aic\n{row}\n")
        }
        GmmCommand::Predict(_) => {
            let mut csv = String::from("label\n");
            for l in s.labels(p.k) {
                let _ = writeln!(csv, "{l}");
            }
            csv
        }
        GmmCommand::PredictProba(_) => crate::common::matrix_csv("p", &s.responsibilities, p.k),
    };
    write_atomic(&a.out, csv.as_bytes())?;
    eprintln!(
        "{} points on {} ({}); wrote {}",
        s.n_samples,
        b.name(),
        b.device(),
        a.out.display()
    );
    Ok(())
}
