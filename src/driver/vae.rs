//! The VAE in the generational loop (`collapse run --model vae`).
//!
//! # Fitting and sampling
//!
//! Each generation trains a fresh VAE ([`crate::vae`]; weights initialised from Philox seed
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
//! Weights are not in `state.json`: each generation's are written atomically to
//! `weights/r{R}-g{N}.f64` (flat little-endian f64, [`crate::vae::layout`] order) before the
//! state naming them, so a resumed run rebuilds every earlier generation's samples exactly.
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

use std::path::Path;

use super::{
    Checkpoint, Generator, Pool, RealData, RunConfig, RunState, Verifier, pool, purpose, stream_id,
};
use crate::backend::Backend;
use crate::backend::cpu64::Cpu64;
use crate::error::{Error, Result};
use crate::io::{Matrix, write_atomic};
use crate::rng::StreamKey;
use crate::vae::train::{EVAL_STREAM, run_epoch};
use crate::vae::{Adam, VaeConfig, init_params, param_count};

/// The VAE columns of `metrics.csv`.
pub const METRIC_COLUMNS: [&str; 3] = ["heldout_neg_elbo", "sample_diversity", "pixel_std"];

/// Held-out images in the negative-ELBO metric.
const HELDOUT_EVAL: usize = 1000;
/// Samples in the diversity metrics.
const DIVERSITY_SAMPLES: usize = 128;
/// Samples drawn per generation in `samples/gNNNN.png`.
const PNG_SAMPLES: usize = 64;

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
    pub fn fit(backend: &dyn Backend, run: &VaeRunConfig, x: &Matrix, seed: u64) -> Result<Self> {
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
    fn decode(&self, backend: &dyn Backend, z: &[f64]) -> Result<Matrix> {
        let x = backend.vae(&self.cfg, &self.params)?.decode(z)?;
        Matrix::new(z.len() / self.cfg.z, self.cfg.d, x)
    }

    /// Write the weights to `path` atomically (little-endian f64).
    fn save(&self, path: &Path) -> Result<()> {
        let bytes: Vec<u8> = self.params.iter().flat_map(|v| v.to_le_bytes()).collect();
        write_atomic(path, &bytes)
    }

    /// Read weights of the VAE `cfg` from `path`.
    fn load(cfg: VaeConfig, path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
        let n = param_count(&cfg);
        if bytes.len() != 8 * n {
            return Err(Error::Data(format!(
                "{}: {} bytes, the VAE has {n} f64 parameters",
                path.display(),
                bytes.len()
            )));
        }
        let params: Vec<f64> = bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect();
        crate::vae::check_params(&cfg, &params)
            .map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
        Ok(Self { cfg, params })
    }
}

/// Standard normal latents `[n][z]` from `key` (f64, the same on every backend).
fn latents(n: usize, z: usize, key: StreamKey) -> Result<Vec<f64>> {
    let mut v = vec![0.0; n * z];
    crate::backend::Backend::normal(&Cpu64, key, 0, &mut v)?;
    Ok(v)
}

impl Generator for VaeModel {
    fn generate(&self, backend: &dyn Backend, count: usize, key: StreamKey) -> Result<Matrix> {
        if count == 0 {
            return Matrix::new(0, self.cfg.d, Vec::new());
        }
        self.decode(backend, &latents(count, self.cfg.z, key)?)
    }

    /// `−BCE(x, reconstruction through the posterior mean)` per image, nats.
    fn score(&self, backend: &dyn Backend, x: &Matrix) -> Result<Vec<f64>> {
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

/// The generational loop of the VAE: fit, checkpoint weights, measure, commit.
pub(super) fn generations(
    backend: &dyn Backend,
    cpu: &dyn Backend,
    real: &RealData,
    state: &mut RunState,
    ck: &mut Checkpoint,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<()> {
    let cfg: RunConfig = state.config.clone();
    let d = real.train[0].cols;
    let net = cfg.vae.network(d);
    let dir = ck.dir().to_path_buf();
    let io = |e: std::io::Error| Error::Io(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir.join("weights")).map_err(io)?;
    std::fs::create_dir_all(dir.join("samples")).map_err(io)?;
    if state.vae_weights.len() != cfg.replicates {
        state.vae_weights = vec![Vec::new(); cfg.replicates];
    }
    let mut history: Vec<Vec<VaeModel>> = state
        .vae_weights
        .iter()
        .map(|files| {
            files
                .iter()
                .map(|f| VaeModel::load(net, &dir.join(f)))
                .collect()
        })
        .collect::<Result<_>>()?;
    let held_out = head(&real.held_out, HELDOUT_EVAL)?;
    let (real_div, real_sd) = diversity(&head(&real.held_out, DIVERSITY_SAMPLES)?);
    ck.reference = Some(serde_json::json!({
        "source": "held-out real images",
        "images": DIVERSITY_SAMPLES.min(real.held_out.rows),
        "sample_diversity": real_div,
        "pixel_std": real_sd,
    }));
    let judge = match cfg.policy {
        super::Policy::Verify(Verifier::HeldOut, _) => {
            let k = cfg.samples.min(real.held_out.rows);
            let rows = &real.held_out.data[(real.held_out.rows - k) * d..];
            let x = Matrix::new(k, d, rows.to_vec())?;
            let seed = cfg.seed ^ stream_id(purpose::EM_INIT, 0xFF_FFFF, 0);
            Some(VaeModel::fit(cpu, &cfg.vae, &x, seed)?)
        }
        _ => None,
    };
    let header = super::metrics::header(&cfg, d);
    let total = cfg.generations + 1;
    let done = history[0].len();
    progress(done, total);
    for n in done..total {
        let mut rows = Vec::new();
        for (r, h) in history.iter_mut().enumerate() {
            let pool: Pool = pool(backend, &cfg, real, h, judge.as_ref(), r, n)?;
            let seed = cfg.seed ^ stream_id(purpose::EM_INIT, r, n);
            let m = VaeModel::fit(backend, &cfg.vae, &pool.x, seed)?;
            let file = format!("weights/r{r}-g{n}.f64");
            m.save(&dir.join(&file))?;
            // Metrics on cpu64 from the f64 weights.
            let mut ref_vae = cpu.vae(&m.cfg, &m.params)?;
            let neg_elbo =
                ref_vae.neg_elbo(&held_out.data, StreamKey::new(cfg.seed, EVAL_STREAM))?;
            let z = latents(
                DIVERSITY_SAMPLES,
                net.z,
                StreamKey::new(cfg.seed, stream_id(purpose::TAIL, r, 0)),
            )?;
            let samples = m.decode(cpu, &z)?;
            let (div, sd) = diversity(&samples);
            if r == 0 {
                crate::io::idx::write_png_grid(
                    &dir.join(format!("samples/g{n:04}.png")),
                    &samples.data[..PNG_SAMPLES.min(samples.rows) * d],
                    image_shape(d),
                    8,
                )?;
            }
            let mut v = vec![
                n.to_string(),
                r.to_string(),
                pool.x.rows.to_string(),
                pool.real_fraction().to_string(),
                pool.composition_field(),
            ];
            v.extend([neg_elbo, div, sd].iter().map(|x| x.to_string()));
            rows.push(v.join(","));
            state.vae_weights[r].push(file);
            h.push(m);
        }
        ck.commit(state, n, &header, &rows)?;
        progress(n + 1, total);
    }
    Ok(())
}
