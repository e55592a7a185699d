//! The VAE as `#[cube]` kernels: [`VaeOps`] for [`CubeKernels`], with the steps, layouts and
//! summation orders of `shaders/vae.wgsl`; the orchestration is [`crate::models::vae::device`]'s,
//! shared with the WGSL backend. The layers' products use the cubecl matmul kernel with its bias
//! and ReLU epilogues; the noise comes from the cubecl Philox fill. One unit per image (BCE
//! rows: the row's pixels summed in order; KL and latent gradients), per element
//! (reparameterisation, ReLU masks, Adam); the bias gradients and the batch loss are the shared
//! deterministic two-level reductions of `reduce.rs`; cubes of 64 units on `(x, y)` grids.

use cubecl::prelude::*;

use super::memory::{CubeKernels, arg, arg_whole, dim, grid};
use super::reduce::Terms;
use super::rng::{normals as box_muller4, philox};
use crate::error::Result;
use crate::ops::vae::{AdamStep, VaeOps};
use crate::rng::StreamKey;

type Handle = cubecl::server::Handle;

#[cube(launch)]
fn bce_rows_kernel(
    logits: &mut [f32],
    x: &[f32],
    bce_row: &mut [f32],
    b: u32,
    d: u32,
    grad: u32,
    inv_b: f32,
) {
    let row = ABSOLUTE_POS as u32;
    if row < b {
        let mut acc = f32::new(0.0);
        for j in 0..d {
            let i = (row * d + j) as usize;
            let l = logits[i];
            let xv = x[i];
            let mut al = l;
            let mut mx = l;
            if l < 0.0f32 {
                al = -l;
                mx = f32::new(0.0);
            }
            let e = f32::exp(-al);
            acc += mx - xv * l + f32::ln(1.0f32 + e);
            if grad == 1 {
                let mut s = 1.0f32 / (1.0f32 + e);
                if l < 0.0f32 {
                    s = e / (1.0f32 + e);
                }
                logits[i] = (s - xv) * inv_b;
            }
        }
        bce_row[row as usize] = acc;
    }
}

#[cube(launch)]
fn reparam_kernel(mu: &[f32], lv: &[f32], eps: &[f32], z: &mut [f32], n: u32) {
    let i = ABSOLUTE_POS as u32;
    if i < n {
        let k = i as usize;
        z[k] = mu[k] + f32::exp(0.5f32 * lv[k]) * eps[k];
    }
}

/// Philox normals `4g .. 4g + 4` of `(k0, k1; s0, s1)` (as `rng::philox_fill` draws them from
/// value 0) into `eps`, and `z = μ + exp(lv/2)·ε`, one unit per block `g`, for `i < n`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn reparam_noise_kernel(
    mu: &[f32],
    lv: &[f32],
    eps: &mut [f32],
    z: &mut [f32],
    k0: u32,
    k1: u32,
    s0: u32,
    s1: u32,
    n: u32,
) {
    let g = ABSOLUTE_POS as u32;
    if 4 * g < n {
        let mut x = Array::<u32>::new(4usize);
        philox(&mut x, g, 0u32, s0, s1, k0, k1);
        let mut e = Array::<f32>::new(4usize);
        box_muller4(&x, &mut e, 0usize);
        #[unroll]
        for l in 0..4u32 {
            let i = 4 * g + l;
            if i < n {
                let k = i as usize;
                eps[k] = e[l as usize];
                z[k] = mu[k] + f32::exp(0.5f32 * lv[k]) * e[l as usize];
            }
        }
    }
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn latent_kernel(
    mu: &[f32],
    lv: &[f32],
    eps: &[f32],
    dz: &[f32],
    dmu: &mut [f32],
    dlv: &mut [f32],
    kl_row: &mut [f32],
    b: u32,
    zd: u32,
    grad: u32,
    beta: f32,
    inv_b: f32,
) {
    let row = ABSOLUTE_POS as u32;
    if row < b {
        let mut kl = f32::new(0.0);
        for j in 0..zd {
            let i = (row * zd + j) as usize;
            let m0 = mu[i];
            let l = lv[i];
            let el = f32::exp(l);
            kl -= 0.5f32 * (1.0f32 + l - m0 * m0 - el);
            if grad == 1 {
                dmu[i] = dz[i] + beta * m0 * inv_b;
                dlv[i] = dz[i] * eps[i] * 0.5f32 * f32::exp(0.5f32 * l)
                    + beta * 0.5f32 * (el - 1.0f32) * inv_b;
            }
        }
        kl_row[row as usize] = kl;
    }
}

#[cube(launch)]
fn relu_grad_kernel(act: &[f32], g: &mut [f32], n: u32) {
    let i = ABSOLUTE_POS as u32;
    if i < n && act[i as usize] <= 0.0f32 {
        g[i as usize] = f32::new(0.0);
    }
}

/// `loss[0] = loss[1] + β·loss[2]` (the batch means of BCE and KL, already in place), by unit 0.
#[cube(launch)]
fn loss_combine_kernel(loss: &mut [f32], beta: f32) {
    if ABSOLUTE_POS == 0 {
        loss[0] = loss[1] + beta * loss[2];
    }
}

/// PyTorch's Adam with L2 decay over one block per cube of a flat layout (`blocks`: `[w][4]`
/// u32 `start, count, …`; [`crate::ops::memory::FlatLayout`]), 256 units, 16 elements each.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn adam_kernel(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    blocks: &[u32],
    n_blocks: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    wd: f32,
    c1: f32,
    c2: f32,
) {
    let w = CUBE_POS_X + CUBE_POS_Y * CUBE_COUNT_X;
    if w < n_blocks {
        let start = blocks[(w * 4) as usize];
        let count = blocks[(w * 4 + 1) as usize];
        for q in 0..16u32 {
            let jj = q * 256 + UNIT_POS_X;
            if jj < count {
                let j = (start + jj) as usize;
                let gi = g[j] + wd * p[j];
                m[j] = beta1 * m[j] + (1.0f32 - beta1) * gi;
                v[j] = beta2 * v[j] + (1.0f32 - beta2) * gi * gi;
                let mh = m[j] / c1;
                let vh = v[j] / c2;
                p[j] -= lr * mh / (f32::sqrt(vh) + eps);
            }
        }
    }
}

impl VaeOps for CubeKernels<'_> {
    fn normals(&self, key: StreamKey, count: usize, out: &Handle) -> Result<()> {
        super::rng::fill_into(self.client, super::rng::Fill::NormalF32, key, 0, count, out);
        Ok(())
    }

    fn reparam(&self, mu: &Handle, lv: &Handle, eps: &Handle, z: &Handle, n: usize) -> Result<()> {
        reparam_kernel::launch(
            self.client,
            grid(n),
            dim(),
            arg(mu, n),
            arg(lv, n),
            arg(eps, n),
            arg(z, n),
            n as u32,
        );
        Ok(())
    }

    fn reparam_noise(
        &self,
        key: StreamKey,
        [mu, lv]: [&Handle; 2],
        eps: &Handle,
        z: &Handle,
        n: usize,
    ) -> Result<()> {
        let [k0, k1] = key.key_words();
        let blocks = crate::backend::launch::philox_blocks(n, 0) as usize;
        reparam_noise_kernel::launch(
            self.client,
            grid(blocks),
            dim(),
            arg(mu, n),
            arg(lv, n),
            arg(eps, n),
            arg(z, n),
            k0,
            k1,
            key.stream as u32,
            (key.stream >> 32) as u32,
            n as u32,
        );
        Ok(())
    }

    fn bce_rows(
        &self,
        logits: &Handle,
        x: &Handle,
        rows: &Handle,
        b: usize,
        d: usize,
        grad: bool,
        inv_b: f32,
    ) -> Result<()> {
        bce_rows_kernel::launch(
            self.client,
            grid(b),
            dim(),
            arg(logits, b * d),
            arg(x, b * d),
            arg(rows, b),
            b as u32,
            d as u32,
            grad as u32,
            inv_b,
        );
        Ok(())
    }

    fn latent(
        &self,
        [mu, lv, eps, dz]: [&Handle; 4],
        [dmu, dlv, kl_row]: [&Handle; 3],
        b: usize,
        z: usize,
        grad: bool,
        beta: f32,
        inv_b: f32,
    ) -> Result<()> {
        latent_kernel::launch(
            self.client,
            grid(b),
            dim(),
            arg(mu, b * z),
            arg(lv, b * z),
            arg(eps, b * z),
            arg(dz, b * z),
            arg(dmu, b * z),
            arg(dlv, b * z),
            arg(kl_row, b),
            b as u32,
            z as u32,
            grad as u32,
            beta,
            inv_b,
        );
        Ok(())
    }

    fn relu_grad(&self, act: &Handle, g: &Handle, n: usize) -> Result<()> {
        relu_grad_kernel::launch(
            self.client,
            grid(n),
            dim(),
            arg(act, n),
            arg(g, n),
            n as u32,
        );
        Ok(())
    }

    fn col_sum(&self, rows: &Handle, out: &Handle, n: usize, c: usize) -> Result<()> {
        self.col_sums(rows, out, n, c, c)
    }

    fn batch_loss(
        &self,
        bce_row: &Handle,
        kl_row: &Handle,
        loss: &Handle,
        b: usize,
        beta: f32,
        inv_b: f32,
    ) -> Result<()> {
        self.total(bce_row, None, b, Terms::Plain, (loss, 1, 1), inv_b)?;
        self.total(kl_row, None, b, Terms::Plain, (loss, 2, 1), inv_b)?;
        loss_combine_kernel::launch(
            self.client,
            CubeCount::Static(1, 1, 1),
            CubeDim::new_1d(1),
            arg(loss, 3),
            beta,
        );
        Ok(())
    }

    fn adam(
        &self,
        [p, g, m, v]: [&Handle; 4],
        blocks: &Handle,
        n_blocks: usize,
        s: &AdamStep,
    ) -> Result<()> {
        adam_kernel::launch(
            self.client,
            super::reduce::block_grid(n_blocks),
            CubeDim::new_1d(super::reduce::FLAT_UNITS),
            arg_whole(p),
            arg_whole(g),
            arg_whole(m),
            arg_whole(v),
            arg(blocks, n_blocks * 4),
            n_blocks as u32,
            s.lr,
            s.betas.0,
            s.betas.1,
            s.eps,
            s.weight_decay,
            s.corr.0,
            s.corr.1,
        );
        Ok(())
    }
}
