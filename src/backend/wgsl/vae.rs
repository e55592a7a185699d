//! The VAE on wgpu: weights, gradients, Adam moments and activations live in device buffers;
//! the layers' products run through the matmul kernels (`matmul*.wgsl`, with their bias and
//! ReLU epilogues), the rest through `shaders/vae.wgsl`, and the reparameterisation noise is
//! drawn on the device by `rng.wgsl` (`fill_normal_f32`, the same f32 normals as cpu32). A
//! training step uploads its batch and reads nothing back; [`VaeTrainer::last_loss`] reads the
//! three loss values. The order of operations is `src/vae/cpu.rs`'s; bias gradients and the
//! batch loss are summed in order over the batch (B ≤ a few thousand terms).
//!
//! Every dispatch waits for the previous one (as all kernels of this crate do): correct, but a
//! real GPU would want one command buffer per step.

use std::sync::Arc;

use super::matmul::{DeviceOperands, TileConfig, launch};
use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::matmul::{Epilogue, Matmul};
use crate::rng::StreamKey;
use crate::vae::{VaeConfig, VaeLoss, VaeTrainer, check_batch, layout};

/// `VaeParams` of `vae.wgsl` (uniform, 32 bytes).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
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

/// `AdamParams` of `vae.wgsl` (uniform, 32 bytes).
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
}

/// Activations and their gradients for one batch size.
struct Acts {
    b: usize,
    x: wgpu::Buffer,
    h1: wgpu::Buffer,
    mu: wgpu::Buffer,
    lv: wgpu::Buffer,
    eps: wgpu::Buffer,
    z: wgpu::Buffer,
    h2: wgpu::Buffer,
    logits: wgpu::Buffer,
    dh2: wgpu::Buffer,
    dz: wgpu::Buffer,
    dmu: wgpu::Buffer,
    dlv: wgpu::Buffer,
    dh1: wgpu::Buffer,
    bce_row: wgpu::Buffer,
    kl_row: wgpu::Buffer,
}

/// A VAE whose state lives on the GPU.
pub struct WgslVae {
    gpu: Arc<GpuContext>,
    tile: TileConfig,
    cfg: VaeConfig,
    p: Vec<wgpu::Buffer>,
    g: Vec<wgpu::Buffer>,
    m: Vec<wgpu::Buffer>,
    v: Vec<wgpu::Buffer>,
    loss: wgpu::Buffer,
    dummy: wgpu::Buffer,
    t: u32,
    stepped: bool,
    acts: Option<Acts>,
}

fn f32_bytes(v: &[f64]) -> Vec<u8> {
    let f: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    bytemuck::cast_slice(&f).to_vec()
}

impl WgslVae {
    /// Upload `params` (flat, [`layout`] order) and zero Adam state.
    pub fn new(
        gpu: Arc<GpuContext>,
        tile: TileConfig,
        cfg: &VaeConfig,
        params: &[f64],
    ) -> Result<Self> {
        crate::vae::check_params(cfg, params)?;
        let mut p = Vec::new();
        let mut g = Vec::new();
        let mut m = Vec::new();
        let mut v = Vec::new();
        for t in layout(cfg) {
            p.push(gpu.input_buffer(t.name, &f32_bytes(&params[t.range()]))?);
            g.push(gpu.output_buffer("vae grad", (t.len() * 4) as u64)?);
            let zeros = vec![0u8; t.len() * 4];
            m.push(gpu.input_buffer("adam m", &zeros)?);
            v.push(gpu.input_buffer("adam v", &zeros)?);
        }
        Ok(Self {
            loss: gpu.output_buffer("vae loss", 12)?,
            dummy: gpu.input_buffer("no bias", &[0u8; 4])?,
            gpu,
            tile,
            cfg: *cfg,
            p,
            g,
            m,
            v,
            t: 0,
            stepped: false,
            acts: None,
        })
    }

    fn acts(&mut self, b: usize) -> Result<()> {
        if self.acts.as_ref().is_some_and(|a| a.b == b) {
            return Ok(());
        }
        let (d, h, z) = (self.cfg.d, self.cfg.h, self.cfg.z);
        let buf = |label: &str, n: usize| self.gpu.output_buffer(label, (n * 4) as u64);
        self.acts = Some(Acts {
            b,
            x: buf("vae x", b * d)?,
            h1: buf("vae h1", b * h)?,
            mu: buf("vae mu", b * z)?,
            lv: buf("vae lv", b * z)?,
            eps: buf("vae eps", b * z)?,
            z: buf("vae z", b * z)?,
            h2: buf("vae h2", b * h)?,
            logits: buf("vae logits", b * d)?,
            dh2: buf("vae dh2", b * h)?,
            dz: buf("vae dz", b * z)?,
            dmu: buf("vae dmu", b * z)?,
            dlv: buf("vae dlv", b * z)?,
            dh1: buf("vae dh1", b * h)?,
            bce_row: buf("vae bce rows", b)?,
            kl_row: buf("vae kl rows", b)?,
        });
        Ok(())
    }

    /// `C[m][n] = op(A)·op(B) (+ C when acc) (+ bias, then ReLU when relu)`.
    #[allow(clippy::too_many_arguments)]
    fn mm(
        &self,
        (m, n, k): (usize, usize, usize),
        a: &wgpu::Buffer,
        ta: bool,
        b: &wgpu::Buffer,
        tb: bool,
        c: &wgpu::Buffer,
        acc: bool,
        bias: Option<(&wgpu::Buffer, bool)>,
    ) -> Result<()> {
        let mut p = Matmul::new(m, n, k);
        p.trans_a = ta;
        p.trans_b = tb;
        p.beta = if acc { 1.0 } else { 0.0 };
        p.epilogue = match bias {
            None => Epilogue::None,
            Some((_, false)) => Epilogue::Bias,
            Some((_, true)) => Epilogue::BiasRelu,
        };
        let ops = DeviceOperands {
            a: a.clone(),
            b: b.clone(),
            bias: bias.map_or(&self.dummy, |(x, _)| x).clone(),
            c: c.clone(),
        };
        launch(&self.gpu, &p, &self.tile, &ops, true)?;
        Ok(())
    }

    fn run(
        &self,
        entry: &str,
        params: Option<Params>,
        buffers: &[(u32, &wgpu::Buffer)],
        groups: u32,
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
        self.gpu.dispatch(
            &format!("vae.wgsl:{entry}"),
            &pipe,
            &bind,
            GpuContext::grid(groups.max(1)),
        )?;
        Ok(())
    }

    fn params_for(&self, b: usize, flags: u32, count: usize, beta: f64) -> Params {
        Params {
            b: b as u32,
            d: self.cfg.d as u32,
            z: self.cfg.z as u32,
            flags,
            count: count as u32,
            inv_b: (1.0 / b as f64) as f32,
            beta: beta as f32,
            pad: 0,
        }
    }

    /// Encoder into `h1`, `mu`, `lv` of the current activations.
    fn encode(&self, a: &Acts) -> Result<()> {
        let (b, d, h, z) = (a.b, self.cfg.d, self.cfg.h, self.cfg.z);
        let p = &self.p;
        self.mm(
            (b, h, d),
            &a.x,
            false,
            &p[0],
            false,
            &a.h1,
            false,
            Some((&p[1], true)),
        )?;
        self.mm(
            (b, z, h),
            &a.h1,
            false,
            &p[2],
            false,
            &a.mu,
            false,
            Some((&p[3], false)),
        )?;
        self.mm(
            (b, z, h),
            &a.h1,
            false,
            &p[4],
            false,
            &a.lv,
            false,
            Some((&p[5], false)),
        )
    }

    /// Decoder from latents `zbuf` into `h2`, `logits`.
    fn decode_into(&self, a: &Acts, zbuf: &wgpu::Buffer) -> Result<()> {
        let (b, d, h, z) = (a.b, self.cfg.d, self.cfg.h, self.cfg.z);
        let p = &self.p;
        self.mm(
            (b, h, z),
            zbuf,
            false,
            &p[6],
            false,
            &a.h2,
            false,
            Some((&p[7], true)),
        )?;
        self.mm(
            (b, d, h),
            &a.h2,
            false,
            &p[8],
            false,
            &a.logits,
            false,
            Some((&p[9], false)),
        )
    }

    /// Upload `x`, run the forward pass with noise from `key`, the per-row BCE (turning the
    /// logits into dlogits when `grad`), and, when not `grad`, the per-row KL and the batch loss
    /// with weight `beta`.
    fn forward(&mut self, x: &[f64], key: StreamKey, grad: bool, beta: f64) -> Result<()> {
        let b = check_batch(x, self.cfg.d)?;
        self.acts(b)?;
        let a = self.acts.as_ref().expect("allocated above");
        let z = self.cfg.z;
        self.gpu.queue.write_buffer(&a.x, 0, &f32_bytes(x));
        self.encode(a)?;
        super::rng::fill_into(
            &self.gpu,
            super::rng::Fill::NormalF32,
            key,
            0,
            b * z,
            &a.eps,
        )?;
        let pz = self.params_for(b, 0, b * z, beta);
        self.run(
            "reparam",
            Some(pz),
            &[(4, &a.mu), (5, &a.lv), (6, &a.eps), (11, &a.z)],
            ((b * z) as u32).div_ceil(256),
        )?;
        self.decode_into(a, &a.z)?;
        let pb = self.params_for(b, grad as u32, 0, beta);
        self.run(
            "bce_rows",
            Some(pb),
            &[(1, &a.logits), (2, &a.x), (3, &a.bce_row)],
            b as u32,
        )?;
        if !grad {
            self.latent_and_loss(a, false, beta)?;
        }
        Ok(())
    }

    fn latent_and_loss(&self, a: &Acts, grad: bool, beta: f64) -> Result<()> {
        let pl = self.params_for(a.b, grad as u32, 0, beta);
        self.run(
            "latent",
            Some(pl),
            &[
                (4, &a.mu),
                (5, &a.lv),
                (6, &a.eps),
                (7, &a.dz),
                (8, &a.dmu),
                (9, &a.dlv),
                (10, &a.kl_row),
            ],
            (a.b as u32).div_ceil(64),
        )?;
        self.run(
            "batch_loss",
            Some(pl),
            &[(3, &a.bce_row), (10, &a.kl_row), (16, &self.loss)],
            1,
        )
    }

    fn col_sum(
        &self,
        rows: &wgpu::Buffer,
        b: usize,
        cols: usize,
        out: &wgpu::Buffer,
    ) -> Result<()> {
        let p = self.params_for(b, 0, cols, 0.0);
        self.run(
            "col_sum",
            Some(p),
            &[(14, rows), (15, out)],
            (cols as u32).div_ceil(64),
        )
    }

    fn relu_grad(&self, act: &wgpu::Buffer, grad: &wgpu::Buffer, count: usize) -> Result<()> {
        let p = self.params_for(1, 0, count, 0.0);
        self.run(
            "relu_grad",
            Some(p),
            &[(12, act), (13, grad)],
            (count as u32).div_ceil(256),
        )
    }

    /// Gradients into `g` after a `forward(…, grad = true, …)`; also the batch loss.
    fn backward(&self) -> Result<()> {
        let a = self.acts.as_ref().expect("forward ran");
        let (b, d, h, z) = (a.b, self.cfg.d, self.cfg.h, self.cfg.z);
        let (p, g) = (&self.p, &self.g);
        // a.logits holds dlogits now.
        self.mm((h, d, b), &a.h2, true, &a.logits, false, &g[8], false, None)?;
        self.col_sum(&a.logits, b, d, &g[9])?;
        self.mm(
            (b, h, d),
            &a.logits,
            false,
            &p[8],
            true,
            &a.dh2,
            false,
            None,
        )?;
        self.relu_grad(&a.h2, &a.dh2, b * h)?;
        self.mm((z, h, b), &a.z, true, &a.dh2, false, &g[6], false, None)?;
        self.col_sum(&a.dh2, b, h, &g[7])?;
        self.mm((b, z, h), &a.dh2, false, &p[6], true, &a.dz, false, None)?;
        self.latent_and_loss(a, true, self.cfg.beta)?;
        self.mm((h, z, b), &a.h1, true, &a.dmu, false, &g[2], false, None)?;
        self.col_sum(&a.dmu, b, z, &g[3])?;
        self.mm((h, z, b), &a.h1, true, &a.dlv, false, &g[4], false, None)?;
        self.col_sum(&a.dlv, b, z, &g[5])?;
        self.mm((b, h, z), &a.dmu, false, &p[2], true, &a.dh1, false, None)?;
        self.mm((b, h, z), &a.dlv, false, &p[4], true, &a.dh1, true, None)?;
        self.relu_grad(&a.h1, &a.dh1, b * h)?;
        self.mm((d, h, b), &a.x, true, &a.dh1, false, &g[0], false, None)?;
        self.col_sum(&a.dh1, b, h, &g[1])
    }

    fn adam(&mut self) -> Result<()> {
        self.t += 1;
        let a = self.cfg.adam;
        let (c1, c2) = a.corrections(self.t);
        for (i, t) in layout(&self.cfg).iter().enumerate() {
            let ap = AdamParams {
                lr: a.lr as f32,
                beta1: a.beta1 as f32,
                beta2: a.beta2 as f32,
                eps: a.eps as f32,
                wd: a.weight_decay as f32,
                c1: c1 as f32,
                c2: c2 as f32,
                count: t.len() as u32,
            };
            let u = self
                .gpu
                .uniform_buffer("adam params", bytemuck::bytes_of(&ap))?;
            self.run(
                "adam",
                None,
                &[
                    (17, &u),
                    (18, &self.p[i]),
                    (19, &self.g[i]),
                    (20, &self.m[i]),
                    (21, &self.v[i]),
                ],
                (t.len() as u32).div_ceil(256),
            )?;
        }
        Ok(())
    }

    fn read_loss(&self) -> Result<VaeLoss> {
        let l: Vec<f32> = self.gpu.read_buffer(&self.loss, 3)?;
        VaeLoss::checked(l[1] as f64, l[2] as f64, l[0] as f64)
    }

    fn read_all(&self, bufs: &[wgpu::Buffer]) -> Result<Vec<f64>> {
        let mut out = Vec::new();
        for (t, buf) in layout(&self.cfg).iter().zip(bufs) {
            let v: Vec<f32> = self.gpu.read_buffer(buf, t.len())?;
            out.extend(v.iter().map(|&x| x as f64));
        }
        Ok(out)
    }

    fn logits_to_probs(&self, n: usize) -> Result<Vec<f64>> {
        let a = self.acts.as_ref().expect("decoded");
        let l: Vec<f32> = self.gpu.read_buffer(&a.logits, n * self.cfg.d)?;
        Ok(l.iter()
            .map(|&v| 1.0 / (1.0 + (-(v as f64)).exp()))
            .collect())
    }
}

impl VaeTrainer for WgslVae {
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
        Ok((self.read_loss()?, self.read_all(&self.g)?))
    }

    fn neg_elbo(&mut self, x: &[f64], key: StreamKey) -> Result<f64> {
        self.stepped = false;
        crate::vae::chunked_neg_elbo(x, self.cfg.d, key, &mut |chunk, sub| {
            self.forward(chunk, sub, false, 1.0)?;
            Ok(self.read_loss()?.loss)
        })
    }

    fn decode(&mut self, z: &[f64]) -> Result<Vec<f64>> {
        let n = crate::vae::check_latents(z, self.cfg.z)?;
        self.acts(n)?;
        let a = self.acts.as_ref().expect("allocated above");
        self.gpu.queue.write_buffer(&a.z, 0, &f32_bytes(z));
        self.decode_into(a, &a.z)?;
        self.logits_to_probs(n)
    }

    fn reconstruct(&mut self, x: &[f64]) -> Result<Vec<f64>> {
        let n = check_batch(x, self.cfg.d)?;
        self.acts(n)?;
        let a = self.acts.as_ref().expect("allocated above");
        self.gpu.queue.write_buffer(&a.x, 0, &f32_bytes(x));
        self.encode(a)?;
        self.decode_into(a, &a.mu)?;
        self.logits_to_probs(n)
    }

    fn params(&self) -> Result<Vec<f64>> {
        self.read_all(&self.p)
    }
}
