//! The VAE on a GPU, written once over [`VaeOps`] — the kernels a backend provides — so the WGSL
//! and cubecl trainers run the same sequence of operations as `src/models/vae/cpu.rs` (see there for
//! the maths). Weights, gradients, Adam moments and activations stay in device buffers, one per
//! tensor; the reparameterisation noise is drawn on the device (the backend's Philox fill, the
//! same f32 normals as cpu32). A training step uploads its batch and reads nothing back;
//! [`VaeTrainer::last_loss`] reads the three loss values.
//!
//! Layouts: f32, row-major; activations `[B][width]`; weights `[in][out]` as in
//! [`super::layout`].

use super::{VaeConfig, VaeLoss, VaeTrainer, check_batch, layout};
use crate::error::{Error, Result};
use crate::ops::matmul::{Epilogue, Matmul};
use crate::ops::memory::{FlatLayout, VIEW_ALIGN};
use crate::ops::vae::{AdamStep, VaeOps};
use crate::rng::StreamKey;

/// Activations and their gradients for one batch size.
struct Acts<B> {
    b: usize,
    x: B,
    h1: B,
    mu: B,
    lv: B,
    eps: B,
    z: B,
    h2: B,
    logits: B,
    dh2: B,
    dz: B,
    /// `dμ` and `dlv`, views of one buffer `[2][stride]` (`stride` = `B·Z` rounded up to a
    /// view's alignment), so their weight gradients are one batched product.
    dmu: B,
    dlv: B,
    dmulv: B,
    dmulv_stride: usize,
    dh1: B,
    bce_row: B,
    kl_row: B,
}

/// A VAE whose state lives on a device reached through `O`.
pub struct DeviceVae<O: VaeOps> {
    ops: O,
    cfg: VaeConfig,
    /// Views of every tensor's weights and gradient in `p_flat` and `g_flat`.
    p: Vec<O::Buf>,
    g: Vec<O::Buf>,
    /// Where each tensor lives in the flat buffers (weights, gradients and Adam's moments share
    /// it; [`layout`] order).
    flat: FlatLayout,
    p_flat: O::Buf,
    g_flat: O::Buf,
    m: O::Buf,
    v: O::Buf,
    /// `flat`'s block table (u32) and its length.
    blocks: O::Buf,
    n_blocks: usize,
    loss: O::Buf,
    t: u32,
    stepped: bool,
    acts: Option<Acts<O::Buf>>,
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// One `[m][k]·[k][n]` product.
fn mm(m: usize, n: usize, k: usize) -> Matmul {
    Matmul::new(m, n, k)
}

impl<O: VaeOps> DeviceVae<O> {
    /// Upload `params` (flat, [`layout`] order) and zero Adam state.
    pub fn new(ops: O, cfg: &VaeConfig, params: &[f64]) -> Result<Self> {
        super::check_params(cfg, params)?;
        let counts: Vec<usize> = layout(cfg).iter().map(|t| t.len()).collect();
        let flat = FlatLayout::new(&counts);
        flat.check_fits(&ops, "the VAE")?;
        let p_flat = ops.upload("vae weights", &flat.pack(&f32s(params)))?;
        let g_flat = ops.alloc("vae gradients", flat.len())?;
        let zeros = vec![0.0; flat.len()];
        Ok(Self {
            p: flat.views(&ops, &p_flat)?,
            g: flat.views(&ops, &g_flat)?,
            m: ops.upload("adam m", &zeros)?,
            v: ops.upload("adam v", &zeros)?,
            blocks: ops.upload_u32("vae flat blocks", &flat.blocks(|_| false))?,
            n_blocks: flat.n_blocks(),
            flat,
            p_flat,
            g_flat,
            loss: ops.alloc("vae loss", 3)?,
            ops,
            cfg: *cfg,
            t: 0,
            stepped: false,
            acts: None,
        })
    }

    fn acts(&mut self, b: usize) -> Result<()> {
        if self.acts.as_ref().is_some_and(|a| a.b == b) {
            return Ok(());
        }
        self.acts = None;
        let (d, h, z) = (self.cfg.d, self.cfg.h, self.cfg.z);
        let o = &self.ops;
        let what = format!("a batch of {b} images");
        crate::ops::memory::check_batch_fits(o, &what, b, d.max(h), "images")?;
        let stride = (b * z).next_multiple_of(VIEW_ALIGN);
        let dmulv = o.alloc("vae dmu dlv", 2 * stride)?;
        self.acts = Some(Acts {
            b,
            x: o.alloc("vae x", b * d)?,
            h1: o.alloc("vae h1", b * h)?,
            mu: o.alloc("vae mu", b * z)?,
            lv: o.alloc("vae lv", b * z)?,
            eps: o.alloc("vae eps", b * z)?,
            z: o.alloc("vae z", b * z)?,
            h2: o.alloc("vae h2", b * h)?,
            logits: o.alloc("vae logits", b * d)?,
            dh2: o.alloc("vae dh2", b * h)?,
            dz: o.alloc("vae dz", b * z)?,
            dmu: o.view(&dmulv, 0, b * z)?,
            dlv: o.view(&dmulv, stride, b * z)?,
            dmulv,
            dmulv_stride: stride,
            dh1: o.alloc("vae dh1", b * h)?,
            bce_row: o.alloc("vae bce rows", b)?,
            kl_row: o.alloc("vae kl rows", b)?,
        });
        Ok(())
    }

    /// Replace one activation buffer with an upload of `v`.
    fn upload_into(
        &mut self,
        which: fn(&mut Acts<O::Buf>) -> &mut O::Buf,
        v: &[f64],
    ) -> Result<()> {
        let buf = self.ops.upload("vae input", &f32s(v))?;
        *which(self.acts.as_mut().expect("allocated")) = buf;
        Ok(())
    }

    /// `y = act(x·W + b)` with parameter tensors `w`, `w + 1`.
    fn layer(
        &self,
        (b, n, k): (usize, usize, usize),
        x: &O::Buf,
        w: usize,
        y: &O::Buf,
        relu: bool,
    ) -> Result<()> {
        let e = if relu {
            Epilogue::BiasRelu
        } else {
            Epilogue::Bias
        };
        self.ops.gemm(
            &mm(b, n, k).with_epilogue(e),
            x,
            &self.p[w],
            y,
            Some(&self.p[w + 1]),
        )
    }

    /// Encoder into `h1`, `mu`, `lv`.
    fn encode(&self, a: &Acts<O::Buf>) -> Result<()> {
        let (b, d, h, z) = (a.b, self.cfg.d, self.cfg.h, self.cfg.z);
        self.layer((b, h, d), &a.x, 0, &a.h1, true)?;
        self.layer((b, z, h), &a.h1, 2, &a.mu, false)?;
        self.layer((b, z, h), &a.h1, 4, &a.lv, false)
    }

    /// Decoder from latents `zb` into `h2`, `logits`.
    fn decode_into(&self, a: &Acts<O::Buf>, zb: &O::Buf) -> Result<()> {
        let (b, d, h, z) = (a.b, self.cfg.d, self.cfg.h, self.cfg.z);
        self.layer((b, h, z), zb, 6, &a.h2, true)?;
        self.layer((b, d, h), &a.h2, 8, &a.logits, false)
    }

    /// Upload `x`, run the forward pass with noise from `key` and the per-image BCE (the logits
    /// become dlogits when `grad`); without `grad` also the KL and the batch loss with `beta`.
    fn forward(&mut self, x: &[f64], key: StreamKey, grad: bool, beta: f64) -> Result<()> {
        let b = check_batch(x, self.cfg.d)?;
        self.acts(b)?;
        self.upload_into(|a| &mut a.x, x)?;
        let a = self.acts.as_ref().expect("allocated above");
        let (d, z) = (self.cfg.d, self.cfg.z);
        self.encode(a)?;
        self.ops
            .reparam_noise(key, [&a.mu, &a.lv], &a.eps, &a.z, b * z)?;
        self.decode_into(a, &a.z)?;
        let inv_b = (1.0 / b as f64) as f32;
        self.ops
            .bce_rows(&a.logits, &a.x, &a.bce_row, b, d, grad, inv_b)?;
        if !grad {
            self.latent_and_loss(a, false, beta)?;
        }
        Ok(())
    }

    fn latent_and_loss(&self, a: &Acts<O::Buf>, grad: bool, beta: f64) -> Result<()> {
        let inv_b = (1.0 / a.b as f64) as f32;
        self.ops.latent(
            [&a.mu, &a.lv, &a.eps, &a.dz],
            [&a.dmu, &a.dlv, &a.kl_row],
            a.b,
            self.cfg.z,
            grad,
            beta as f32,
            inv_b,
        )?;
        self.ops
            .batch_loss(&a.bce_row, &a.kl_row, &self.loss, a.b, beta as f32, inv_b)
    }

    /// Gradients into `g` after `forward(…, grad = true, …)`; also the batch loss.
    fn backward(&self) -> Result<()> {
        let a = self.acts.as_ref().expect("forward ran");
        let (b, d, h, z) = (a.b, self.cfg.d, self.cfg.h, self.cfg.z);
        let (o, p, g) = (&self.ops, &self.p, &self.g);
        let tn = |m, n, k| mm(m, n, k).transposed(true, false);
        let nt = |m, n, k| mm(m, n, k).transposed(false, true);
        // a.logits holds dlogits now.
        o.gemm(&tn(h, d, b), &a.h2, &a.logits, &g[8], None)?;
        o.col_sum(&a.logits, &g[9], b, d)?;
        o.gemm(&nt(b, h, d), &a.logits, &p[8], &a.dh2, None)?;
        o.relu_grad(&a.h2, &a.dh2, b * h)?;
        o.gemm(&tn(z, h, b), &a.z, &a.dh2, &g[6], None)?;
        o.col_sum(&a.dh2, &g[7], b, h)?;
        o.gemm(&nt(b, z, h), &a.dh2, &p[6], &a.dz, None)?;
        self.latent_and_loss(a, true, self.cfg.beta)?;
        // g[2] = h1ᵀ·dμ and g[4] = h1ᵀ·dlv as one product batched over the two: A shared,
        // B the two halves of dmulv, C the flat gradient from g[2] (stride: g[4] − g[2]).
        let (g2, g4) = (self.flat.range(2).0, self.flat.range(4).0);
        let mut both = tn(h, z, b).batched(2);
        (both.stride_a, both.stride_b, both.stride_c) = (0, a.dmulv_stride, g4 - g2);
        let g24 = o.view(&self.g_flat, g2, g4 - g2 + h * z)?;
        o.gemm(&both, &a.h1, &a.dmulv, &g24, None)?;
        o.col_sum(&a.dmu, &g[3], b, z)?;
        o.col_sum(&a.dlv, &g[5], b, z)?;
        o.gemm(&nt(b, h, z), &a.dmu, &p[2], &a.dh1, None)?;
        o.gemm(&nt(b, h, z).scaled(1.0, 1.0), &a.dlv, &p[4], &a.dh1, None)?;
        o.relu_grad(&a.h1, &a.dh1, b * h)?;
        o.gemm(&tn(d, h, b), &a.x, &a.dh1, &g[0], None)?;
        o.col_sum(&a.dh1, &g[1], b, h)
    }

    fn adam(&mut self) -> Result<()> {
        self.t += 1;
        let a = self.cfg.adam;
        let (c1, c2) = a.corrections(self.t);
        let s = AdamStep {
            lr: a.lr as f32,
            betas: (a.beta1 as f32, a.beta2 as f32),
            eps: a.eps as f32,
            weight_decay: a.weight_decay as f32,
            corr: (c1 as f32, c2 as f32),
        };
        self.ops.adam(
            [&self.p_flat, &self.g_flat, &self.m, &self.v],
            &self.blocks,
            self.n_blocks,
            &s,
        )
    }

    fn read_loss(&self) -> Result<VaeLoss> {
        let l = self.ops.read(&self.loss, 3)?;
        VaeLoss::checked(l[1] as f64, l[2] as f64, l[0] as f64)
    }

    fn logits_to_probs(&self, n: usize) -> Result<Vec<f64>> {
        let a = self.acts.as_ref().expect("decoded");
        let l = self.ops.read(&a.logits, n * self.cfg.d)?;
        Ok(l.iter()
            .map(|&v| crate::num::activation::sigmoid(v as f64))
            .collect())
    }
}

impl<O: VaeOps> VaeTrainer for DeviceVae<O> {
    fn config(&self) -> &VaeConfig {
        &self.cfg
    }

    fn step(&mut self, x: &[f64], key: StreamKey) -> Result<()> {
        self.forward(x, key, true, self.cfg.beta)?;
        self.backward()?;
        self.adam()?;
        self.stepped = true;
        Ok(())
    }

    fn last_loss(&mut self) -> Result<VaeLoss> {
        if !self.stepped {
            return Err(Error::InvalidArgument("no training step yet".into()));
        }
        self.read_loss()
    }

    fn loss_and_gradient(&mut self, x: &[f64], key: StreamKey) -> Result<(VaeLoss, Vec<f64>)> {
        self.forward(x, key, true, self.cfg.beta)?;
        self.backward()?;
        self.stepped = false;
        Ok((
            self.read_loss()?,
            self.flat.read_tensors(&self.ops, &self.g_flat)?,
        ))
    }

    fn neg_elbo(&mut self, x: &[f64], key: StreamKey) -> Result<f64> {
        self.stepped = false;
        super::chunked_neg_elbo(x, self.cfg.d, key, &mut |chunk, sub| {
            self.forward(chunk, sub, false, 1.0)?;
            Ok(self.read_loss()?.loss)
        })
    }

    fn decode(&mut self, z: &[f64]) -> Result<Vec<f64>> {
        let n = super::check_latents(z, self.cfg.z)?;
        self.acts(n)?;
        self.upload_into(|a| &mut a.z, z)?;
        let a = self.acts.as_ref().expect("allocated above");
        self.decode_into(a, &a.z)?;
        self.logits_to_probs(n)
    }

    fn reconstruct(&mut self, x: &[f64]) -> Result<Vec<f64>> {
        let n = check_batch(x, self.cfg.d)?;
        self.acts(n)?;
        self.upload_into(|a| &mut a.x, x)?;
        let a = self.acts.as_ref().expect("allocated above");
        self.encode(a)?;
        self.decode_into(a, &a.mu)?;
        self.logits_to_probs(n)
    }

    fn params(&self) -> Result<Vec<f64>> {
        self.flat.read_tensors(&self.ops, &self.p_flat)
    }
}
