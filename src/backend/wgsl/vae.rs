//! The VAE on wgpu: [`VaeOps`] for [`WgslKernels`] (whose matmul kernels serve the layers, with
//! their bias and ReLU epilogues) with `shaders/vae.wgsl` and the Philox fill of `rng.wgsl`
//! (`fill_normal_f32`, the same f32 normals as cpu32); the orchestration is
//! [`crate::models::vae::device`]'s, shared with the cubecl backend. Bias gradients and the batch loss
//! are two-level sums in a fixed order (chunks of the batch, then the chunks: the same bits
//! every run). Training and generational
//! runs queue the dispatches ([`crate::gpu::GpuOptions::queued`]); benches and tests wait for
//! and time each one.

use super::memory::WgslKernels;
use crate::backend::launch::{COL_BLOCK, LOSS_BLOCK, col_chunks};
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::ops::vae::{AdamStep, AdamTensor, VaeOps};
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

/// `AdamParams` of `vae.wgsl` (uniform, two tensors, 48 bytes).
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
    count: u32,
    count1: u32,
    off0: u32,
    off1: u32,
    pad: u32,
}

impl WgslKernels {
    /// Dispatch `entry` of `vae.wgsl` with `params` (binding 0) over `groups` workgroups.
    fn run_vae(
        &self,
        entry: &str,
        params: Option<Params>,
        buffers: &[(u32, &wgpu::Buffer)],
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
        buffers: &[(u32, &wgpu::Buffer)],
        grid: (u32, u32),
    ) -> Result<()> {
        let pipe = self.gpu.pipeline("vae.wgsl", entry)?;
        let uniform;
        let mut all: Vec<(u32, &wgpu::Buffer)> = buffers.to_vec();
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
    fn normals(&self, key: StreamKey, count: usize, out: &wgpu::Buffer) -> Result<()> {
        super::rng::fill_into(&self.gpu, super::rng::Fill::NormalF32, key, 0, count, out)
    }

    fn reparam(
        &self,
        mu: &wgpu::Buffer,
        lv: &wgpu::Buffer,
        eps: &wgpu::Buffer,
        z: &wgpu::Buffer,
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

    fn bce_rows(
        &self,
        logits: &wgpu::Buffer,
        x: &wgpu::Buffer,
        rows: &wgpu::Buffer,
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
        [mu, lv, eps, dz]: [&wgpu::Buffer; 4],
        [dmu, dlv, kl_row]: [&wgpu::Buffer; 3],
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

    fn relu_grad(&self, act: &wgpu::Buffer, grad: &wgpu::Buffer, count: usize) -> Result<()> {
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

    fn col_sum(&self, rows: &wgpu::Buffer, out: &wgpu::Buffer, n: usize, c: usize) -> Result<()> {
        let (chunk, chunks) = col_chunks(n);
        let parts = self.scratch(chunks * c)?;
        let p = Params {
            b: n as u32,
            d: chunk as u32,
            z: chunks as u32,
            count: c as u32,
            ..Default::default()
        };
        let grid = (c.div_ceil(COL_BLOCK) as u32, chunks as u32);
        self.run_vae_grid("col_partial", Some(p), &[(14, rows), (22, &parts)], grid)?;
        self.run_vae(
            "col_final",
            Some(p),
            &[(22, &parts), (15, out)],
            c.div_ceil(256),
        )
    }

    fn batch_loss(
        &self,
        bce_row: &wgpu::Buffer,
        kl_row: &wgpu::Buffer,
        loss: &wgpu::Buffer,
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
        tensors: &[AdamTensor<'_, wgpu::Buffer>],
        m: &wgpu::Buffer,
        v: &wgpu::Buffer,
        s: &AdamStep,
    ) -> Result<()> {
        for two in tensors.chunks(2) {
            let (t0, t1) = (&two[0], two.get(1));
            let ap = AdamParams {
                lr: s.lr,
                beta1: s.betas.0,
                beta2: s.betas.1,
                eps: s.eps,
                wd: s.weight_decay,
                c1: s.corr.0,
                c2: s.corr.1,
                count: t0.count as u32,
                count1: t1.map_or(0, |t| t.count as u32),
                off0: t0.offset as u32,
                off1: t1.map_or(0, |t| t.offset as u32),
                pad: 0,
            };
            let u = self
                .gpu
                .uniform_buffer("adam params", bytemuck::bytes_of(&ap))?;
            // A lone last tensor binds an unused writable slot and its own gradient again.
            let (p1, g1) = t1.map_or((&self.dummy_rw, t0.g), |t| (t.p, t.g));
            let groups = t0.count.div_ceil(256) + t1.map_or(0, |t| t.count.div_ceil(256));
            self.run_vae(
                "adam",
                None,
                &[
                    (17, &u),
                    (18, t0.p),
                    (19, t0.g),
                    (23, p1),
                    (24, g1),
                    (20, m),
                    (21, v),
                ],
                groups,
            )?;
        }
        Ok(())
    }
}
