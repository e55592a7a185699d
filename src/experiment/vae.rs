//! The VAE in the generational loop (`collapse run --model vae`).
//!
//! # Fitting and sampling
//!
//! Each generation trains a fresh VAE ([`crate::models::vae`]; weights initialised from Philox seed
//! `seed ^ stream_id(EM_INIT, r, n)`) for `epochs` passes over its pool in batches of `batch`,
//! on the run's backend. Its samples are decoder means `sigmoid(logits)` at latents
//! `z ~ N(0, I)` (drawn in f64 from the replicate's `SYNTHETIC` stream): grey images with pixels
//! in [0, 1], what the next generation trains on. (Bernoulli draws would binarise Fashion-MNIST's
//! grey images in the first generation; decoder means are the usual choice in collapse
//! experiments.)
//!
//! # Verification
//!
//! `verify:MODE:F` scores a candidate image by its reconstruction log-likelihood under the
//! verifier VAE, `−BCE(x, decode(μ(x)))` (nats; the posterior mean, so the score is
//! deterministic): the generation-0 VAE (`gen0`) or a VAE trained once on cpu64 on the last
//! `samples` held-out real images (`heldout`).
//!
//! # Checkpoints
//!
//! As for every trained model ([`super::weights::Weights`]): weights in `weights/r{R}-g{N}.f64`
//! ([`crate::models::vae::layout`] order).
//!
//! # Metrics (columns after the pool's)
//!
//! Computed on cpu64 from the f64 weights, so runs on different backends are measured alike:
//! - `heldout_neg_elbo`: mean negative ELBO of the first ≤ 1000 held-out real images (nats per
//!   image; one noise draw per image from a fixed stream);
//! - `sample_diversity`: mean pairwise Euclidean distance between 128 decoded samples (fixed
//!   latents per replicate, the same every generation);
//! - `pixel_std`: the per-pixel standard deviation of those samples, averaged over pixels.
//!
//! `summary.json` holds the same two diversity measures of 128 held-out real images under
//! `reference`; `samples/gNNNN.png` shows 64 of replicate 0's samples per generation.

use super::checkpoint::{Checkpoint, RunState};
use super::config::{RunConfig, Truth, VaeRunConfig};
use super::data::RealData;
use super::model::{MetricContext, Model};
use super::pool::Generator;
use super::weights::{self, Weights};
use crate::error::{Error, Result};
use crate::io::Matrix;
use crate::models::vae::train::run_epoch;
use crate::models::vae::{VaeConfig, init_params};
use crate::rng::StreamKey;
use crate::rng::streams::{VAE_EVAL, purpose, stream_id};
use crate::trainers::Engine;

/// The VAE columns of `metrics.csv`.
pub const METRIC_COLUMNS: [&str; 3] = ["heldout_neg_elbo", "sample_diversity", "pixel_std"];

/// Held-out images in the negative-ELBO metric.
const HELDOUT_EVAL: usize = 1000;
/// Samples in the diversity metrics.
const DIVERSITY_SAMPLES: usize = 128;
/// Samples drawn per generation in `samples/gNNNN.png`.
const PNG_SAMPLES: usize = 64;

/// One generation's trained VAE.
#[derive(Clone, Debug)]
pub struct VaeModel {
    /// The network.
    pub cfg: VaeConfig,
    /// Its weights, flat, f64.
    pub params: Vec<f64>,
}

impl VaeModel {
    /// Train a fresh VAE (initialised from Philox `seed`) on the rows of `x` on `backend`.
    pub fn fit(backend: &Engine, run: &VaeRunConfig, x: &Matrix, seed: u64) -> Result<Self> {
        let cfg = run.network(x.cols);
        let mut vae = backend.vae(&cfg, &init_params(&cfg, seed))?;
        let mut step = 0;
        let gather = |idx: &[usize]| idx.iter().flat_map(|&i| x.row(i).to_vec()).collect();
        for epoch in 1..=run.epochs {
            run_epoch(
                vae.as_mut(),
                x.rows,
                run.batch,
                seed,
                epoch,
                &mut step,
                &gather,
                &mut |_, _, _| Ok(()),
            )?;
        }
        vae.last_loss()?; // errors when training diverged
        Ok(Self {
            cfg,
            params: vae.params()?,
        })
    }

    /// Decoder means at latents `z` (`[n][Z]`) on `backend`.
    fn decode(&self, backend: &Engine, z: &[f64]) -> Result<Matrix> {
        let x = backend.vae(&self.cfg, &self.params)?.decode(z)?;
        Matrix::new(z.len() / self.cfg.z, self.cfg.d, x)
    }
}

/// Standard normal latents `[n][z]` from `key` (f64, the same on every backend).
fn latents(n: usize, z: usize, key: StreamKey) -> Result<Vec<f64>> {
    let mut v = vec![0.0; n * z];
    crate::rng::host_normals_f64(key, 0, &mut v);
    Ok(v)
}

impl Generator for VaeModel {
    fn generate(&self, backend: &Engine, count: usize, key: StreamKey) -> Result<Matrix> {
        if count == 0 {
            return Matrix::new(0, self.cfg.d, Vec::new());
        }
        self.decode(backend, &latents(count, self.cfg.z, key)?)
    }

    /// `−BCE(x, reconstruction through the posterior mean)` per image, nats.
    fn score(&self, backend: &Engine, x: &Matrix) -> Result<Vec<f64>> {
        let rec = backend.vae(&self.cfg, &self.params)?.reconstruct(&x.data)?;
        let eps = 1e-7;
        Ok((0..x.rows)
            .map(|i| {
                let r = &rec[i * x.cols..(i + 1) * x.cols];
                x.row(i)
                    .iter()
                    .zip(r)
                    .map(|(&t, &p)| {
                        let p = p.clamp(eps, 1.0 - eps);
                        t * p.ln() + (1.0 - t) * (1.0 - p).ln()
                    })
                    .sum()
            })
            .collect())
    }
}

/// Mean pairwise Euclidean distance between the rows of `x`, and the per-column standard
/// deviation averaged over columns.
pub fn diversity(x: &Matrix) -> (f64, f64) {
    let n = x.rows;
    let mut dist = 0.0;
    for i in 0..n {
        for j in i + 1..n {
            let d2: f64 = x
                .row(i)
                .iter()
                .zip(x.row(j))
                .map(|(a, b)| (a - b) * (a - b))
                .sum();
            dist += d2.sqrt();
        }
    }
    let pairs = (n * (n - 1) / 2).max(1) as f64;
    let mut sd = 0.0;
    for c in 0..x.cols {
        let mean = (0..n).map(|i| x.row(i)[c]).sum::<f64>() / n as f64;
        let var = (0..n).map(|i| (x.row(i)[c] - mean).powi(2)).sum::<f64>() / n as f64;
        sd += var.sqrt();
    }
    (dist / pairs, sd / x.cols as f64)
}

/// The first `count` rows of `x`.
fn head(x: &Matrix, count: usize) -> Result<Matrix> {
    let k = count.min(x.rows);
    Matrix::new(k, x.cols, x.data[..k * x.cols].to_vec())
}

/// Image side of `d`-pixel images (square when `d` is a square, else one row).
fn image_shape(d: usize) -> (usize, usize) {
    let s = (d as f64).sqrt().round() as usize;
    if s * s == d { (s, s) } else { (1, d) }
}

impl Weights for VaeModel {
    fn weights(&self) -> &[f64] {
        &self.params
    }

    fn from_weights(cfg: &RunConfig, real: &RealData, params: Vec<f64>) -> Result<Self> {
        let net = cfg.vae.network(real.train[0].cols);
        crate::models::vae::check_params(&net, &params)?;
        Ok(Self { cfg: net, params })
    }
}

impl Model for VaeModel {
    type Setup = ();

    fn check(cfg: &RunConfig) -> Result<()> {
        if matches!(cfg.truth, Truth::Builtin(_)) {
            return Err(Error::InvalidArgument(
                "the VAE needs image data: --data FILE (IDX images, or CSV/NPY rows in [0, 1])"
                    .into(),
            ));
        }
        cfg.vae.check()
    }

    /// A data file's rows, every value a pixel in [0, 1].
    fn load_real(cfg: &RunConfig, cpu: &Engine) -> Result<RealData> {
        super::data::load_rows(cfg, cpu, &|path, m| {
            if let Some(i) = m.data.iter().position(|v| !(0.0..=1.0).contains(v)) {
                return Err(Error::Data(format!(
                    "{}: row {}, column {} is {}; the VAE needs values in [0, 1] (pixels)",
                    path.display(),
                    i / m.cols + 1,
                    i % m.cols + 1,
                    m.data[i]
                )));
            }
            Ok(())
        })
    }

    fn columns(_cfg: &RunConfig, _d: usize) -> Vec<String> {
        METRIC_COLUMNS.iter().map(|c| c.to_string()).collect()
    }

    fn fit(
        backend: &Engine,
        cfg: &RunConfig,
        pool: &Matrix,
        seed: u64,
        _gen0: Option<&Self>,
    ) -> Result<Self> {
        VaeModel::fit(backend, &cfg.vae, pool, seed)
    }

    /// Trained on cpu64 on the last `samples` held-out images.
    fn held_out_verifier(
        cpu: &Engine,
        cfg: &RunConfig,
        real: &RealData,
        seed: u64,
    ) -> Result<Self> {
        VaeModel::fit(cpu, &cfg.vae, &real.held_out_tail(cfg.samples)?, seed)
    }

    fn setup(_cfg: &RunConfig, _real: &RealData, _cpu: &Engine) -> Result<()> {
        Ok(())
    }

    fn metrics(&self, ctx: &MetricContext<'_>, _setup: &()) -> Result<Vec<String>> {
        Ok(self
            .metric_values(ctx)?
            .iter()
            .map(|x| x.to_string())
            .collect())
    }

    fn reference(_cfg: &RunConfig, real: &RealData) -> Result<Option<serde_json::Value>> {
        let (div, sd) = diversity(&head(&real.held_out, DIVERSITY_SAMPLES)?);
        Ok(Some(serde_json::json!({
            "source": "held-out real images",
            "images": DIVERSITY_SAMPLES.min(real.held_out.rows),
            "sample_diversity": div,
            "pixel_std": sd,
        })))
    }

    fn load_history(
        ck: &mut Checkpoint,
        state: &mut RunState,
        real: &RealData,
    ) -> Result<Vec<Vec<Self>>> {
        weights::load_weight_history(ck, state, real)
    }

    fn save_generation(
        ck: &mut Checkpoint,
        state: &mut RunState,
        n: usize,
        models: &[&Self],
    ) -> Result<()> {
        weights::save_weight_generation(ck, state, n, models)
    }
}

impl VaeModel {
    /// `heldout_neg_elbo`, `sample_diversity`, `pixel_std` (see the module documentation), and
    /// replicate 0's sample grid.
    fn metric_values(&self, ctx: &MetricContext<'_>) -> Result<Vec<f64>> {
        let d = self.cfg.d;
        let held_out = head(&ctx.real.held_out, HELDOUT_EVAL)?;
        let mut ref_vae = ctx.cpu.vae(&self.cfg, &self.params)?;
        let key = StreamKey::new(ctx.cfg.seed, VAE_EVAL);
        let neg_elbo = ref_vae.neg_elbo(&held_out.data, key)?;
        let z = latents(
            DIVERSITY_SAMPLES,
            self.cfg.z,
            StreamKey::new(
                ctx.cfg.seed,
                stream_id(purpose::TAIL, ctx.cfg.replicate_index(ctx.replicate), 0),
            ),
        )?;
        let samples = self.decode(ctx.cpu, &z)?;
        let (div, sd) = diversity(&samples);
        if ctx.replicate == 0 {
            let dir = ctx.dir.join("samples");
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
            crate::io::idx::write_png_grid(
                &dir.join(format!("g{:04}.png", ctx.generation)),
                &samples.data[..PNG_SAMPLES.min(samples.rows) * d],
                image_shape(d),
                8,
            )?;
        }
        Ok(vec![neg_elbo, div, sd])
    }
}
