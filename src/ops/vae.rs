//! The kernels a GPU backend provides to the VAE's device trainer (`models::vae::device`),
//! besides its buffers and matrix products: Philox noise, reparameterisation, the BCE and KL
//! rows and their gradients, column sums, the batch loss and Adam. Implemented by
//! `backend::wgsl::vae` (`shaders/vae.wgsl`) and `backend::cube::vae`.

use super::memory::DeviceMemory;
use crate::error::Result;
use crate::rng::StreamKey;

/// Adam settings of one tensor's update (PyTorch's Adam with L2 decay).
#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    /// Learning rate.
    pub lr: f32,
    /// β₁, β₂.
    pub betas: (f32, f32),
    /// ε.
    pub eps: f32,
    /// L2 weight decay added to the gradient.
    pub weight_decay: f32,
    /// Bias corrections `1 − β₁ᵗ`, `1 − β₂ᵗ`.
    pub corr: (f32, f32),
}

/// The kernels a GPU backend provides to the VAE, besides its buffers and matrix products
/// ([`DeviceMemory`]). Buffers hold f32; counts are elements.
#[allow(clippy::too_many_arguments)]
pub trait VaeOps: DeviceMemory {
    /// Philox f32 standard normals `0..count` of `key` into `out`.
    fn normals(&self, key: StreamKey, count: usize, out: &Self::Buf) -> Result<()>;
    /// `z = μ + exp(lv/2)·ε`, element-wise.
    fn reparam(
        &self,
        mu: &Self::Buf,
        lv: &Self::Buf,
        eps: &Self::Buf,
        z: &Self::Buf,
        count: usize,
    ) -> Result<()>;
    /// [`VaeOps::normals`] of `key` into `eps` and then [`VaeOps::reparam`] into `z` (`count`
    /// latents): the same values, in one launch where the backend fuses them (both GPU
    /// backends do).
    fn reparam_noise(
        &self,
        key: StreamKey,
        [mu, lv]: [&Self::Buf; 2],
        eps: &Self::Buf,
        z: &Self::Buf,
        count: usize,
    ) -> Result<()> {
        self.normals(key, count, eps)?;
        self.reparam(mu, lv, eps, z, count)
    }
    /// Per image: BCE of the logits summed over pixels into `rows`; with `grad`,
    /// `logits ← (σ(l) − x)·inv_b`.
    fn bce_rows(
        &self,
        logits: &Self::Buf,
        x: &Self::Buf,
        rows: &Self::Buf,
        b: usize,
        d: usize,
        grad: bool,
        inv_b: f32,
    ) -> Result<()>;
    /// Per image: KL into `kl_row`; with `grad`, `dμ = dz + β·μ·inv_b` and
    /// `dlv = dz·ε·exp(lv/2)/2 + β·(exp(lv) − 1)·inv_b/2`. `inputs` are `[μ, lv, ε, dz]`,
    /// `outputs` `[dμ, dlv, kl_row]`.
    fn latent(
        &self,
        inputs: [&Self::Buf; 4],
        outputs: [&Self::Buf; 3],
        b: usize,
        z: usize,
        grad: bool,
        beta: f32,
        inv_b: f32,
    ) -> Result<()>;
    /// `grad = 0` where `act ≤ 0`.
    fn relu_grad(&self, act: &Self::Buf, grad: &Self::Buf, count: usize) -> Result<()>;
    /// `out[j] = Σ_r rows[r][j]` in order over `n` rows of `c`.
    fn col_sum(&self, rows: &Self::Buf, out: &Self::Buf, n: usize, c: usize) -> Result<()>;
    /// `loss = [bce + β·kl, bce, kl]`, the batch means (sums in order).
    fn batch_loss(
        &self,
        bce_row: &Self::Buf,
        kl_row: &Self::Buf,
        loss: &Self::Buf,
        b: usize,
        beta: f32,
        inv_b: f32,
    ) -> Result<()>;
    /// Adam on every tensor in one dispatch: `pgmv` = `[p, g, m, v]` are flat buffers in one
    /// [`FlatLayout`](super::memory::FlatLayout) whose block table is `blocks` (`n_blocks` blocks).
    fn adam(
        &self,
        pgmv: [&Self::Buf; 4],
        blocks: &Self::Buf,
        n_blocks: usize,
        s: &AdamStep,
    ) -> Result<()>;
}
