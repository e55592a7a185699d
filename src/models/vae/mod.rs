//! A multilayer-perceptron variational autoencoder (Kingma & Welling 2014) for images in
//! [0, 1], trained on every backend from identical Philox-initialised weights.
//!
//! # Model
//!
//! Encoder `x [D] → h₁ = relu(x·W_enc + b_enc) [H] → μ = h₁·W_μ + b_μ, log σ² = h₁·W_lv + b_lv
//! [Z]`; reparameterisation `z = μ + exp(½ log σ²)·ε` with `ε` Philox standard normals;
//! decoder `z → h₂ = relu(z·W_dec + b_dec) [H] → logits = h₂·W_out + b_out [D]`, pixel
//! probabilities `sigmoid(logits)`. Weights are stored `[in][out]` row-major.
//!
//! # Loss (per image, nats; the step minimises its mean over the batch)
//!
//! `BCE(x, sigmoid(l)) + β·KL`, with `BCE = Σ_d softplus(l_d) − x_d·l_d` (computed as
//! `max(l, 0) − x·l + ln(1 + e^{−|l|})`, exact for any `l`) and
//! `KL(N(μ, σ²) ‖ N(0, I)) = −½ Σ_j (1 + log σ²_j − μ_j² − σ²_j)`. With `β = 1` it is the
//! negative ELBO.
//!
//! # Parameters and optimiser
//!
//! All parameters live in one flat vector in [`layout`] order. Initialisation follows PyTorch's
//! `nn.Linear`: weights and biases uniform in `±1/√fan_in`, drawn from Philox stream
//! `(seed, VAE_INIT + tensor)` so every backend starts from the same numbers. Adam as in
//! PyTorch (`weight_decay` adds `wd·θ` to the gradient; bias-corrected moments).
//!
//! # Where it runs
//!
//! [`crate::trainers::Engine::vae`] gives a [`VaeTrainer`] holding the weights and Adam state
//! on that backend: `cpu64` (plain loops, the reference) and `cpu32` (f32, the `gemm` crate)
//! through [`cpu::CpuVae`]; `wgsl` and `cube` through [`device::DeviceVae`], one trainer over
//! each backend's kernels (`backend::wgsl::vae`: the matmul kernels plus `shaders/vae.wgsl`;
//! `backend::cube::vae`: the cubecl matmul plus `#[cube]` kernels): on the GPU backends weights,
//! gradients, Adam state and activations stay on the device.

pub mod cpu;
pub mod device;
pub mod train;

use crate::error::{Error, Result};
use crate::rng::streams::{VAE_INIT, chunk_stream};
use crate::rng::{StreamKey, unit_f64};

/// Adam's settings (PyTorch's names and defaults).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Adam {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Added to √v̂.
    pub eps: f64,
    /// L2 penalty added to the gradient (`wd·θ`).
    pub weight_decay: f64,
}

impl Default for Adam {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// Shape and training settings of a VAE.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VaeConfig {
    /// Pixels per image D.
    pub d: usize,
    /// Hidden width H.
    pub h: usize,
    /// Latent dimensions Z.
    pub z: usize,
    /// Weight of the KL term.
    pub beta: f64,
    /// Optimiser.
    pub adam: Adam,
}

impl Default for VaeConfig {
    fn default() -> Self {
        Self {
            d: 784,
            h: 400,
            z: 20,
            beta: 1.0,
            adam: Adam::default(),
        }
    }
}

impl VaeConfig {
    /// Errors on zero sizes or unusable settings.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        if self.d == 0 || self.h == 0 || self.z == 0 {
            return bad(format!(
                "VAE sizes D = {}, H = {}, Z = {} must all be ≥ 1",
                self.d, self.h, self.z
            ));
        }
        let a = &self.adam;
        if !(a.lr > 0.0 && a.lr.is_finite()) {
            return bad(format!("learning rate {} must be > 0", a.lr));
        }
        if !((0.0..1.0).contains(&a.beta1) && (0.0..1.0).contains(&a.beta2)) {
            return bad("Adam betas must be in [0, 1)".into());
        }
        if !(a.eps > 0.0 && a.weight_decay >= 0.0) {
            return bad("Adam eps must be > 0 and weight decay ≥ 0".into());
        }
        if !(self.beta >= 0.0 && self.beta.is_finite()) {
            return bad(format!("beta {} must be ≥ 0", self.beta));
        }
        Ok(())
    }
}

/// One parameter tensor of the flat vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tensor {
    /// Name (`enc_w`, `enc_b`, …).
    pub name: &'static str,
    /// Rows (the layer's input width for weights; 1 for biases).
    pub rows: usize,
    /// Columns (the layer's output width).
    pub cols: usize,
    /// Offset in the flat parameter vector.
    pub offset: usize,
    /// Fan-in of the layer (for initialisation).
    pub fan_in: usize,
}

impl Tensor {
    /// Elements.
    pub fn len(&self) -> usize {
        self.rows * self.cols
    }
    /// Whether it has no elements (never, for a valid config).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Its range in the flat vector.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// The parameter tensors in storage order: `enc_w [D][H], enc_b [H], mu_w [H][Z], mu_b [Z],
/// lv_w [H][Z], lv_b [Z], dec_w [Z][H], dec_b [H], out_w [H][D], out_b [D]`.
pub fn layout(c: &VaeConfig) -> Vec<Tensor> {
    let shapes = [
        ("enc_w", c.d, c.h, c.d),
        ("enc_b", 1, c.h, c.d),
        ("mu_w", c.h, c.z, c.h),
        ("mu_b", 1, c.z, c.h),
        ("lv_w", c.h, c.z, c.h),
        ("lv_b", 1, c.z, c.h),
        ("dec_w", c.z, c.h, c.z),
        ("dec_b", 1, c.h, c.z),
        ("out_w", c.h, c.d, c.h),
        ("out_b", 1, c.d, c.h),
    ];
    let mut off = 0;
    shapes
        .iter()
        .map(|&(name, rows, cols, fan_in)| {
            let t = Tensor {
                name,
                rows,
                cols,
                offset: off,
                fan_in,
            };
            off += rows * cols;
            t
        })
        .collect()
}

/// Total number of parameters.
pub fn param_count(c: &VaeConfig) -> usize {
    layout(c).iter().map(Tensor::len).sum()
}

/// Initial parameters (see the module documentation), f64.
pub fn init_params(c: &VaeConfig, seed: u64) -> Vec<f64> {
    let mut p = vec![0.0; param_count(c)];
    for (i, t) in layout(c).iter().enumerate() {
        let key = StreamKey::new(seed, VAE_INIT + i as u64);
        let bound = 1.0 / (t.fan_in as f64).sqrt();
        for (j, v) in p[t.range()].iter_mut().enumerate() {
            *v = (2.0 * unit_f64(key.u32_at(j as u64)) - 1.0) * bound;
        }
    }
    p
}

/// Loss and its parts for one batch (means over its images, nats).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct VaeLoss {
    /// `BCE + β·KL`, what the step minimises.
    pub loss: f64,
    /// Reconstruction term (binary cross-entropy summed over pixels).
    pub bce: f64,
    /// KL divergence of the posterior to N(0, I).
    pub kl: f64,
}

/// What builds a [`VaeTrainer`] on some backend: the composition root ([`crate::trainers::Engine`])
/// implements it, so the training loops here never name a backend.
pub trait MakeVae {
    /// A trainer with parameters `params` (flat, f64, rounded to the backend's precision) and
    /// fresh optimiser state.
    fn vae<'a>(&'a self, cfg: &VaeConfig, params: &[f64]) -> Result<Box<dyn VaeTrainer + 'a>>;
}

/// A VAE with its weights and Adam state on one backend.
pub trait VaeTrainer {
    /// The configuration.
    fn config(&self) -> &VaeConfig;

    /// One training step on the batch `x` (`[B][D]`, values in [0, 1]) with reparameterisation
    /// noise from Philox stream `key` (normal `b·Z + j` is `ε` of image b, latent j): forward,
    /// loss, backward, Adam. See [`VaeTrainer::last_loss`] for its loss.
    fn step(&mut self, x: &[f64], key: StreamKey) -> Result<()>;

    /// The loss of the latest step (GPU backends read it back only when asked).
    fn last_loss(&mut self) -> Result<VaeLoss>;

    /// Loss and gradient (flat, [`layout`] order) at the current weights, without a step.
    fn loss_and_gradient(&mut self, x: &[f64], key: StreamKey) -> Result<(VaeLoss, Vec<f64>)>;

    /// Mean negative ELBO per image (β = 1, one ε draw per image from `key`), nats.
    fn neg_elbo(&mut self, x: &[f64], key: StreamKey) -> Result<f64>;

    /// Pixel probabilities decoded from latents `z` (`[n][Z]`) → `[n][D]`.
    fn decode(&mut self, z: &[f64]) -> Result<Vec<f64>>;

    /// Reconstructions of `x` through the posterior mean (`z = μ`) → `[n][D]`.
    fn reconstruct(&mut self, x: &[f64]) -> Result<Vec<f64>>;

    /// The current parameters, flat, widened to f64.
    fn params(&self) -> Result<Vec<f64>>;
}

impl Adam {
    /// Bias corrections `(1 − β₁ᵗ, 1 − β₂ᵗ)` of step `t` (1-based).
    pub fn corrections(&self, t: u32) -> (f64, f64) {
        crate::num::adam::bias_corrections(self.beta1, self.beta2, t)
    }

    /// These settings as the host update takes them ([`crate::num::adam::adam_l2_step`]).
    pub fn hyper(&self) -> crate::num::adam::Hyper {
        crate::num::adam::Hyper {
            lr: self.lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
        }
    }
}

impl VaeLoss {
    /// The loss from its parts, or an error when training has diverged (non-finite loss).
    pub fn checked(bce: f64, kl: f64, loss: f64) -> Result<Self> {
        if !loss.is_finite() {
            return Err(Error::Numerical(format!(
                "VAE loss is {loss} (BCE {bce}, KL {kl}): training diverged; lower --lr"
            )));
        }
        Ok(Self { loss, bce, kl })
    }
}

/// Check a configuration and a flat parameter vector for it (length, finiteness): what every
/// trainer's constructor accepts.
pub fn check_params(cfg: &VaeConfig, params: &[f64]) -> Result<()> {
    cfg.validate()?;
    crate::num::check_flat_params(params, param_count(cfg), "the VAE")
}

/// Check latents for decoding: finite, a whole number of `z`-vectors. Returns their count.
pub fn check_latents(latents: &[f64], z: usize) -> Result<usize> {
    if latents.is_empty()
        || !latents.len().is_multiple_of(z)
        || latents.iter().any(|v| !v.is_finite())
    {
        return Err(Error::InvalidArgument(format!(
            "latents must be finite and a whole number of {z}-vectors"
        )));
    }
    Ok(latents.len() / z)
}

/// The mean negative ELBO of `x` (`[n][d]`) evaluated in chunks of 1000 images, chunk `c` with
/// noise from stream `chunk_stream(key.stream, c)` (`key.stream ^ c << 40`); `chunk_loss(images, key)` gives a chunk's mean
/// loss with β = 1. Every trainer evaluates through this, so all draw the same noise.
pub fn chunked_neg_elbo(
    x: &[f64],
    d: usize,
    key: StreamKey,
    chunk_loss: &mut dyn FnMut(&[f64], StreamKey) -> Result<f64>,
) -> Result<f64> {
    let n = check_batch(x, d)?;
    let mut total = 0.0;
    for (ci, chunk) in x.chunks(1000 * d).enumerate() {
        let sub = StreamKey::new(key.seed, chunk_stream(key.stream, ci as u64));
        total += chunk_loss(chunk, sub)? * (chunk.len() / d) as f64;
    }
    Ok(total / n as f64)
}

/// Check a batch: a whole number of images of `d` values, each in [0, 1] (NaN fails).
pub fn check_batch(x: &[f64], d: usize) -> Result<usize> {
    if x.is_empty() || !x.len().is_multiple_of(d) {
        return Err(Error::InvalidArgument(format!(
            "batch of {} values is not a whole number of {d}-pixel images",
            x.len()
        )));
    }
    if let Some(i) = x.iter().position(|v| !(0.0..=1.0).contains(v)) {
        return Err(Error::Data(format!(
            "pixel {} of image {} is {} (must be in [0, 1])",
            i % d,
            i / d,
            x[i]
        )));
    }
    Ok(x.len() / d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_contiguous_and_init_is_bounded() {
        let c = VaeConfig {
            d: 7,
            h: 5,
            z: 3,
            ..Default::default()
        };
        let l = layout(&c);
        assert_eq!(l.len(), 10);
        assert_eq!(
            param_count(&c),
            7 * 5 + 5 + 2 * (5 * 3 + 3) + 3 * 5 + 5 + 5 * 7 + 7
        );
        let p = init_params(&c, 1);
        for t in &l {
            let b = 1.0 / (t.fan_in as f64).sqrt();
            assert!(p[t.range()].iter().all(|v| v.abs() <= b && *v != 0.0));
        }
        assert_ne!(init_params(&c, 2), p);
    }
}
