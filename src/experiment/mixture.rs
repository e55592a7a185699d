//! The mixture models in the generational loop (`collapse run --model gaussian|gmm`): a fitted
//! [`GmmParams`] is the model. `gaussian` is the maximum-likelihood mean and per-dimension
//! variance (no regularisation: σ may reach 0), `gmm` a Gaussian mixture fitted by EM
//! ([`crate::models::gmm`]). Samples come from the backend's mixture sampler; the `verify` score
//! is the exact log-density (f64, host). Checkpoints: one line of `params.jsonl` per generation
//! (every replicate's parameters). Metrics: see [`super::metrics`].

use super::checkpoint::{Checkpoint, RunState};
use super::config::{ModelKind, RunConfig};
use super::data::RealData;
use super::metrics::{self, TailRegion};
use super::model::{MetricContext, Model};
use super::pool::Generator;
use crate::error::{Error, Result};
use crate::io::Matrix;
use crate::models::gmm::{GmmConfig, fit};
use crate::ops::Backend;
use crate::ops::gmm::{CovarianceType, GmmParams, PassLayout};
use crate::rng::StreamKey;
use crate::trainers::Engine;

/// Log-density of each row of `x` under `p` (f64, host).
fn log_densities(p: &GmmParams, x: &Matrix) -> Result<Vec<f64>> {
    let e = p.estep_params()?;
    Ok((0..x.rows).map(|i| e.log_density(x.row(i))).collect())
}

impl Generator for GmmParams {
    fn generate(&self, backend: &Engine, count: usize, key: StreamKey) -> Result<Matrix> {
        crate::models::gmm::sample(backend, self, count, key)
    }
    /// The exact log-density (f64, host, whatever the backend).
    fn score(&self, _backend: &Engine, x: &Matrix) -> Result<Vec<f64>> {
        log_densities(self, x)
    }
}

/// Fit the configured mixture to `x` with Philox `seed` (EM's initialisation).
pub(super) fn fit_mixture(
    backend: &Engine,
    cfg: &RunConfig,
    x: &Matrix,
    seed: u64,
) -> Result<GmmParams> {
    match cfg.model {
        ModelKind::Gmm => {
            let gc = GmmConfig {
                k: cfg.k,
                covariance_type: cfg.covariance_type,
                tol: cfg.tol,
                max_iter: cfg.max_iter,
                reg_covar: cfg.reg_covar,
                n_init: 1,
                init: cfg.init,
                seed,
            };
            Ok(fit(backend, x, &gc, &mut |_, _, _| {})?.params)
        }
        // Gaussian. MLE: responsibilities all 1, one M-step: mean and scatter / M (no
        // regularisation).
        _ => {
            let mut pass = backend.gmm_pass(x)?;
            pass.set_responsibilities(&vec![1.0; x.rows])?;
            let s = pass.mstep(PassLayout::Diag)?;
            Ok(GmmParams {
                k: 1,
                d: x.cols,
                covariance_type: CovarianceType::Diag,
                weights: vec![1.0],
                means: s.means,
                covariances: s.scatter.iter().map(|v| (v / s.nk[0]).max(0.0)).collect(),
            })
        }
    }
}

impl Model for GmmParams {
    /// The truth's outer 1% region, once the reference density is known.
    type Setup = Option<TailRegion>;

    fn check(cfg: &RunConfig) -> Result<()> {
        if cfg.model == ModelKind::Gmm && cfg.k > cfg.samples {
            return Err(Error::InvalidArgument(format!(
                "--k {} exceeds --samples {}",
                cfg.k, cfg.samples
            )));
        }
        Ok(())
    }

    fn columns(cfg: &RunConfig, d: usize) -> Vec<String> {
        metrics::columns(cfg, d)
    }

    fn fit(
        backend: &Engine,
        cfg: &RunConfig,
        pool: &Matrix,
        seed: u64,
        _gen0: Option<&Self>,
    ) -> Result<Self> {
        fit_mixture(backend, cfg, pool, seed)
    }

    /// Fitted to every held-out point.
    fn held_out_verifier(
        cpu: &Engine,
        cfg: &RunConfig,
        real: &RealData,
        seed: u64,
    ) -> Result<Self> {
        fit_mixture(cpu, cfg, &real.held_out, seed)
    }

    /// A data file has no known density: replicate 0's generation-0 fit stands in for it.
    fn first_fit(real: &mut RealData, replicate0: &Self) {
        if real.truth.is_none() {
            real.truth = Some(replicate0.clone());
        }
    }

    fn setup(cfg: &RunConfig, real: &RealData, cpu: &Engine) -> Result<Self::Setup> {
        real.truth
            .as_ref()
            .map(|t| TailRegion::new(cfg.seed, t, cpu))
            .transpose()
    }

    fn metrics(&self, ctx: &MetricContext<'_>, setup: &Self::Setup) -> Result<Vec<String>> {
        metrics::values(ctx, setup.as_ref(), self)
    }

    fn load_history(
        ck: &mut Checkpoint,
        state: &mut RunState,
        _real: &RealData,
    ) -> Result<Vec<Vec<Self>>> {
        ck.load_params(state)?;
        Ok(std::mem::take(&mut state.history))
    }

    fn save_generation(
        ck: &mut Checkpoint,
        _state: &mut RunState,
        _n: usize,
        models: &[&Self],
    ) -> Result<()> {
        ck.append_params(models)
    }
}
