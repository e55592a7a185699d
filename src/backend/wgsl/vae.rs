//! The VAE on wgpu: [`VaeOps`] for [`WgslKernels`] (whose matmul kernels serve the layers, with
//! their bias and ReLU epilogues) with `shaders/vae.wgsl` and the Philox fill of `rng.wgsl`
//! (`fill_normal_f32`, the same f32 normals as cpu32); the orchestration is
//! [`crate::models::vae::device`]'s, shared with the cubecl backend. Bias gradients and the batch loss
//! are two-level sums in a fixed order (chunks of the batch, then the chunks: the same bits
//! every run). Training and generational
//! runs queue the dispatches ([`crate::gpu::GpuOptions::queued`]); benches and tests wait for
//! and time each one.

use super::memory::WgslKernels;
use crate::backend::launch::LOSS_BLOCK;
use crate::error::Result;
use crate::gpu::{Bindable, BufferRange, GpuContext};
use crate::ops::vae::{AdamStep, VaeOps};
use crate::rng::StreamKey;

/// `VaeParams` of `vae.wgsl` (uniform, 32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    b: u32,
    d: u32,
    z: u32,
    flags: u32,
    count: u32,
    inv_b: f32,
    beta: f32,
    pad: u32,
}

/// `AdamParams` of `vae.wgsl` (uniform, a flat layout's blocks, 32 bytes).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct AdamParams {
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    wd: f32,
    c1: f32,
    c2: f32,
    blocks: u32,
}

/// `NoiseParams` of `vae.wgsl` (uniform of reparam_noise, 32 bytes).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct NoiseParams {
    key: [u32; 2],
    stream: [u32; 2],
    count: u32,
    pad: [u32; 3],
}

impl WgslKernels {
    /// Dispatch `entry` of `vae.wgsl` with `params` (binding 0) over `groups` workgroups.
    fn run_vae(
        &self,
        entry: &str,
        params: Option<Params>,
        buffers: &[(u32, &dyn Bindable)],
        groups: usize,
    ) -> Result<()> {
        let grid = GpuContext::grid((groups as u32).max(1));
        self.run_vae_grid(entry, params, buffers, grid)
    }

    /// [`Self::run_vae`] over an explicit `(x, y)` grid of workgroups.
    fn run_vae_grid(
        &self,
        entry: &str,
        params: Option<Params>,
        buffers: &[(u32, &dyn Bindable)],
        grid: (u32, u32),
    ) -> Result<()> {
        let pipe = self.gpu.pipeline("vae.wgsl", entry)?;
        let uniform;
        let mut all: Vec<(u32, &dyn Bindable)> = buffers.to_vec();
        if let Some(p) = params {
            uniform = self
                .gpu
                .uniform_buffer("vae params", bytemuck::bytes_of(&p))?;
            all.push((0, &uniform));
        }
        let bind = self.gpu.bind_at(&pipe, &all)?;
        self.gpu
            .dispatch(&format!("vae.wgsl:{entry}"), &pipe, &bind, grid)?;
        Ok(())
    }
}

impl VaeOps for WgslKernels {
    fn normals(&self, key: StreamKey, count: usize, out: &BufferRange) -> Result<()> {
        super::rng::fill_into(&self.gpu, super::rng::Fill::NormalF32, key, 0, count, out)
    }

    fn reparam(
        &self,
        mu: &BufferRange,
        lv: &BufferRange,
        eps: &BufferRange,
        z: &BufferRange,
        count: usize,
    ) -> Result<()> {
        let p = Params {
            b: 1,
            z: count as u32,
            ..Default::default()
        };
        self.run_vae(
            "reparam",
            Some(p),
            &[(4, mu), (5, lv), (6, eps), (11, z)],
            count.div_ceil(256),
        )
    }

    fn reparam_noise(
        &self,
        key: StreamKey,
        [mu, lv]: [&BufferRange; 2],
        eps: &BufferRange,
        z: &BufferRange,
        count: usize,
    ) -> Result<()> {
        let np = NoiseParams {
            key: key.key_words(),
            stream: [key.stream as u32, (key.stream >> 32) as u32],
            count: count as u32,
            pad: [0; 3],
        };
        let u = self
            .gpu
            .uniform_buffer("noise params", bytemuck::bytes_of(&np))?;
        let blocks = crate::backend::launch::philox_blocks(count, 0) as usize;
        self.run_vae(
            "reparam_noise",
            None,
            &[(25, &u), (4, mu), (5, lv), (26, eps), (11, z)],
            blocks.div_ceil(crate::backend::launch::WORKGROUP as usize),
        )
    }

    fn bce_rows(
        &self,
        logits: &BufferRange,
        x: &BufferRange,
        rows: &BufferRange,
        b: usize,
        d: usize,
        grad: bool,
        inv_b: f32,
    ) -> Result<()> {
        let p = Params {
            b: b as u32,
            d: d as u32,
            flags: grad as u32,
            inv_b,
            ..Default::default()
        };
        self.run_vae("bce_rows", Some(p), &[(1, logits), (2, x), (3, rows)], b)
    }

    fn latent(
        &self,
        [mu, lv, eps, dz]: [&BufferRange; 4],
        [dmu, dlv, kl_row]: [&BufferRange; 3],
        b: usize,
        z: usize,
        grad: bool,
        beta: f32,
        inv_b: f32,
    ) -> Result<()> {
        let p = Params {
            b: b as u32,
            z: z as u32,
            flags: grad as u32,
            inv_b,
            beta,
            ..Default::default()
        };
        self.run_vae(
            "latent",
            Some(p),
            &[
                (4, mu),
                (5, lv),
                (6, eps),
                (7, dz),
                (8, dmu),
                (9, dlv),
                (10, kl_row),
            ],
            b.div_ceil(64),
        )
    }

    fn relu_grad(&self, act: &BufferRange, grad: &BufferRange, count: usize) -> Result<()> {
        let p = Params {
            count: count as u32,
            ..Default::default()
        };
        self.run_vae(
            "relu_grad",
            Some(p),
            &[(12, act), (13, grad)],
            count.div_ceil(256),
        )
    }

    fn col_sum(&self, rows: &BufferRange, out: &BufferRange, n: usize, c: usize) -> Result<()> {
        self.col_sums(rows, out, n, c, c)
    }

    fn batch_loss(
        &self,
        bce_row: &BufferRange,
        kl_row: &BufferRange,
        loss: &BufferRange,
        b: usize,
        beta: f32,
        inv_b: f32,
    ) -> Result<()> {
        let blocks = b.div_ceil(LOSS_BLOCK).max(1);
        let parts = self.scratch(2 * blocks)?;
        let p = Params {
            b: b as u32,
            z: blocks as u32,
            inv_b,
            beta,
            ..Default::default()
        };
        let single = blocks == 1;
        let p = Params {
            flags: if single { 2 } else { 0 },
            ..p
        };
        self.run_vae(
            "loss_partial",
            Some(p),
            &[(3, bce_row), (10, kl_row), (22, &parts), (16, loss)],
            blocks,
        )?;
        if single {
            return Ok(());
        }
        self.run_vae("loss_final", Some(p), &[(22, &parts), (16, loss)], 1)
    }

    fn adam(
        &self,
        [p, g, m, v]: [&BufferRange; 4],
        blocks: &BufferRange,
        n_blocks: usize,
        s: &AdamStep,
    ) -> Result<()> {
        let ap = AdamParams {
            lr: s.lr,
            beta1: s.betas.0,
            beta2: s.betas.1,
            eps: s.eps,
            wd: s.weight_decay,
            c1: s.corr.0,
            c2: s.corr.1,
            blocks: n_blocks as u32,
        };
        let u = self
            .gpu
            .uniform_buffer("adam params", bytemuck::bytes_of(&ap))?;
        self.run_vae(
            "adam",
            None,
            &[(17, &u), (18, p), (19, g), (20, m), (21, v), (23, blocks)],
            n_blocks,
        )
    }
}
