//! Training a VAE on IDX images, epoch by epoch, on any backend (`collapse train vae`).
//!
//! Each epoch visits the training images in a Philox permutation (stream
//! `(seed, VAE_SHUFFLE + epoch)`, Fisher–Yates), in batches of `batch` (the last one may be
//! smaller). Step `s` (counted over the whole run) draws its reparameterisation noise from stream
//! `(seed, VAE_NOISE + s)`. The loss is read back every `loss_every` steps (GPU backends pay
//! for a read-back); the epoch's training loss is the mean of those reads. After each epoch the
//! test set's negative ELBO is measured (one noise draw per image, stream
//! `(seed, VAE_EVAL)`, the same every epoch); a row with epoch 0 gives it before training.

use std::time::Instant;

use super::{MakeVae, VaeConfig, VaeTrainer, init_params};
use crate::error::{Error, Result};
use crate::io::idx::IdxImages;
use crate::rng::{StreamKey, unit_f64};

use crate::rng::streams::{VAE_EVAL, VAE_NOISE, VAE_SAMPLE, VAE_SHUFFLE};
// Kept at this path while `experiment::vae` still imports it from here.
pub use crate::rng::streams::VAE_EVAL as EVAL_STREAM;

/// What to train.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct TrainConfig {
    /// The model.
    pub vae: VaeConfig,
    /// Passes over the training images.
    pub epochs: usize,
    /// Images per step.
    pub batch: usize,
    /// Philox seed of the weights, shuffles and noise.
    pub seed: u64,
    /// Read the loss back every this many steps.
    pub loss_every: usize,
}

/// One epoch's figures.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EpochRow {
    /// Epoch (0 = before training).
    pub epoch: usize,
    /// Mean training loss over the read-backs of the epoch (nats per image; empty for 0).
    pub train_loss: Option<f64>,
    /// Test negative ELBO (nats per image).
    pub test_neg_elbo: f64,
    /// Seconds of training in the epoch (evaluation excluded).
    pub seconds: f64,
    /// Training images per second.
    pub images_per_s: f64,
}

/// `[n][D]` pixels in [0, 1] of images `idx` of `img`.
pub fn gather(img: &IdxImages, idx: &[usize]) -> Vec<f64> {
    let mut x = Vec::with_capacity(idx.len() * img.dim());
    for &i in idx {
        x.extend(img.image_f64(i));
    }
    x
}

/// A Philox permutation of `0..n` (Fisher–Yates).
pub fn permutation(n: usize, key: StreamKey) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = ((unit_f64(key.u32_at(i as u64)) * (i + 1) as f64) as usize).min(i);
        p.swap(i, j);
    }
    p
}

/// One pass over `n` examples in the Philox permutation of stream `(seed, VAE_SHUFFLE +
/// epoch)`, in batches of `batch` (the last may be smaller): `gather(indices)` gives a batch's
/// pixels; step number `*step` (counted over the whole run, incremented here) draws its noise
/// from stream `(seed, VAE_NOISE + step)`. `after(vae, s, steps)` runs after batch `s` of
/// `steps`.
#[allow(clippy::too_many_arguments)]
pub fn run_epoch(
    vae: &mut dyn VaeTrainer,
    n: usize,
    batch: usize,
    seed: u64,
    epoch: usize,
    step: &mut u64,
    gather: &dyn Fn(&[usize]) -> Vec<f64>,
    after: &mut dyn FnMut(&mut dyn VaeTrainer, usize, usize) -> Result<()>,
) -> Result<()> {
    let order = permutation(n, StreamKey::new(seed, VAE_SHUFFLE + epoch as u64));
    let steps = n.div_ceil(batch);
    for (s, idx) in order.chunks(batch).enumerate() {
        let x = gather(idx);
        vae.step(&x, StreamKey::new(seed, VAE_NOISE + *step))?;
        *step += 1;
        after(vae, s, steps)?;
    }
    Ok(())
}

/// Train on `train`, evaluating on `test`; `progress(epoch, steps_done, steps_per_epoch, loss)`
/// is called after every step. Returns the trained model and the per-epoch rows.
pub fn train<'a>(
    backend: &'a dyn MakeVae,
    cfg: &TrainConfig,
    train: &IdxImages,
    test: &IdxImages,
    progress: &mut dyn FnMut(usize, usize, usize, Option<f64>),
) -> Result<(Box<dyn VaeTrainer + 'a>, Vec<EpochRow>)> {
    cfg.vae.validate()?;
    if train.dim() != cfg.vae.d || test.dim() != cfg.vae.d {
        return Err(Error::InvalidArgument(format!(
            "images have {} (train) and {} (test) pixels; the model expects D = {}",
            train.dim(),
            test.dim(),
            cfg.vae.d
        )));
    }
    if cfg.batch == 0 || cfg.epochs == 0 || cfg.loss_every == 0 {
        return Err(Error::InvalidArgument(
            "--batch, --epochs and the loss interval must be ≥ 1".into(),
        ));
    }
    let mut vae = backend.vae(&cfg.vae, &init_params(&cfg.vae, cfg.seed))?;
    let test_x = gather(test, &(0..test.count).collect::<Vec<_>>());
    let eval = StreamKey::new(cfg.seed, VAE_EVAL);
    let mut rows = vec![EpochRow {
        epoch: 0,
        train_loss: None,
        test_neg_elbo: vae.neg_elbo(&test_x, eval)?,
        seconds: 0.0,
        images_per_s: 0.0,
    }];
    let mut step = 0u64;
    for epoch in 1..=cfg.epochs {
        let t = Instant::now();
        let mut losses = Vec::new();
        run_epoch(
            vae.as_mut(),
            train.count,
            cfg.batch,
            cfg.seed,
            epoch,
            &mut step,
            &|idx| gather(train, idx),
            &mut |vae, s, steps| {
                let read = (s + 1) % cfg.loss_every == 0 || s + 1 == steps;
                let loss = if read {
                    let l = vae.last_loss()?.loss;
                    losses.push(l);
                    Some(l)
                } else {
                    None
                };
                progress(epoch, s + 1, steps, loss);
                Ok(())
            },
        )?;
        let seconds = t.elapsed().as_secs_f64();
        rows.push(EpochRow {
            epoch,
            train_loss: Some(losses.iter().sum::<f64>() / losses.len() as f64),
            test_neg_elbo: vae.neg_elbo(&test_x, eval)?,
            seconds,
            images_per_s: train.count as f64 / seconds,
        });
    }
    Ok((vae, rows))
}

/// `n` images decoded from latents `z ~ N(0, I)` (Philox stream `(seed, VAE_SAMPLE)`,
/// drawn in f64) → `[n][D]` pixel probabilities.
pub fn sample_images(vae: &mut dyn VaeTrainer, n: usize, seed: u64) -> Result<Vec<f64>> {
    let mut z = vec![0.0; n * vae.config().z];
    crate::rng::host_normals_f64(StreamKey::new(seed, VAE_SAMPLE), 0, &mut z);
    vae.decode(&z)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_are_permutations() {
        // Test-local keys (no result or golden depends on them).
        let p = permutation(1000, StreamKey::new(1, 2));
        let mut s = p.clone();
        s.sort_unstable();
        assert_eq!(s, (0..1000).collect::<Vec<_>>());
        assert_ne!(p, (0..1000).collect::<Vec<_>>());
        assert_ne!(p, permutation(1000, StreamKey::new(1, 3)));
    }
}
