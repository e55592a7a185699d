//! The VAE as `#[cube]` kernels: the same steps, layouts and summation orders as the WGSL
//! trainer ([`crate::backend::wgsl::vae`], `shaders/vae.wgsl`), launched by cubecl on the shared
//! device. The layers' products use the cubecl matmul kernel with its bias and ReLU epilogues;
//! the noise comes from the cubecl Philox fill. One unit per image (BCE rows: the row's pixels
//! summed in order; KL and latent gradients), per element (reparameterisation, ReLU masks,
//! Adam) or per column (bias gradients); cubes of 64 units on `(x, y)` grids.

use cubecl::prelude::*;

use super::matmul::{CubeOperands, check_device, launch};
use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::matmul::{Epilogue, Matmul};
use crate::rng::StreamKey;
use crate::vae::{VaeConfig, VaeLoss, VaeTrainer, check_batch, layout};

const CUBE_DIM: u32 = 64;

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

#[cube(launch)]
fn col_sum_kernel(rows: &[f32], sums: &mut [f32], b: u32, cols: u32) {
    let j = ABSOLUTE_POS as u32;
    if j < cols {
        let mut s = f32::new(0.0);
        for r in 0..b {
            s += rows[(r * cols + j) as usize];
        }
        sums[j as usize] = s;
    }
}

#[cube(launch)]
fn batch_loss_kernel(
    bce_row: &[f32],
    kl_row: &[f32],
    loss: &mut [f32],
    b: u32,
    beta: f32,
    inv_b: f32,
) {
    if ABSOLUTE_POS == 0 {
        let mut sb = f32::new(0.0);
        let mut sk = f32::new(0.0);
        for r in 0..b {
            sb += bce_row[r as usize];
            sk += kl_row[r as usize];
        }
        loss[1] = sb * inv_b;
        loss[2] = sk * inv_b;
        loss[0] = sb * inv_b + beta * (sk * inv_b);
    }
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn adam_kernel(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    n: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    wd: f32,
    c1: f32,
    c2: f32,
) {
    let i = ABSOLUTE_POS as u32;
    if i < n {
        let k = i as usize;
        let gi = g[k] + wd * p[k];
        m[k] = beta1 * m[k] + (1.0f32 - beta1) * gi;
        v[k] = beta2 * v[k] + (1.0f32 - beta2) * gi * gi;
        let mh = m[k] / c1;
        let vh = v[k] / c2;
        p[k] -= lr * mh / (f32::sqrt(vh) + eps);
    }
}

/// Activations and their gradients for one batch size (handles, f32).
struct Acts {
    b: usize,
    x: Handle,
    h1: Handle,
    mu: Handle,
    lv: Handle,
    eps: Handle,
    z: Handle,
    h2: Handle,
    logits: Handle,
    dh2: Handle,
    dz: Handle,
    dmu: Handle,
    dlv: Handle,
    dh1: Handle,
    bce_row: Handle,
    kl_row: Handle,
}

/// A VAE whose state lives in cubecl handles.
pub struct CubeVae<'a> {
    client: &'a Client,
    gpu: &'a GpuContext,
    cfg: VaeConfig,
    p: Vec<Handle>,
    g: Vec<Handle>,
    m: Vec<Handle>,
    v: Vec<Handle>,
    loss: Handle,
    dummy: Handle,
    t: u32,
    stepped: bool,
    acts: Option<Acts>,
}

fn grid(units: usize) -> CubeCount {
    let (gx, gy) = GpuContext::grid((units as u32).div_ceil(CUBE_DIM));
    CubeCount::Static(gx, gy, 1)
}

fn arg(h: &Handle, len: usize) -> BufferArg {
    // SAFETY: every handle here was created with at least `len` f32 elements.
    unsafe { BufferArg::from_raw_parts(h.clone(), len.max(1)) }
}

impl<'a> CubeVae<'a> {
    /// Upload `params` (flat, [`layout`] order) and zero Adam state.
    pub fn new(
        client: &'a Client,
        gpu: &'a GpuContext,
        cfg: &VaeConfig,
        params: &[f64],
    ) -> Result<Self> {
        crate::vae::check_params(cfg, params)?;
        let up = |v: &[f64]| {
            let f: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            client.create_from_slice(bytemuck::cast_slice(&f))
        };
        let mut s = Self {
            client,
            gpu,
            cfg: *cfg,
            p: Vec::new(),
            g: Vec::new(),
            m: Vec::new(),
            v: Vec::new(),
            loss: up(&[0.0; 3]),
            dummy: up(&[0.0]),
            t: 0,
            stepped: false,
            acts: None,
        };
        for t in layout(cfg) {
            s.p.push(up(&params[t.range()]));
            s.g.push(s.output(t.len()));
            s.m.push(up(&vec![0.0; t.len()]));
            s.v.push(up(&vec![0.0; t.len()]));
        }
        Ok(s)
    }

    fn output(&self, len: usize) -> Handle {
        let fill = if self.gpu.poisoning() {
            f32::from_bits(crate::gpu::POISON_WORD)
        } else {
            0.0
        };
        self.client
            .create_from_slice(bytemuck::cast_slice(&vec![fill; len.max(1)]))
    }

    fn acts(&mut self, b: usize) {
        if self.acts.as_ref().is_some_and(|a| a.b == b) {
            return;
        }
        let (d, h, z) = (self.cfg.d, self.cfg.h, self.cfg.z);
        self.acts = Some(Acts {
            b,
            x: self.output(b * d),
            h1: self.output(b * h),
            mu: self.output(b * z),
            lv: self.output(b * z),
            eps: self.output(b * z),
            z: self.output(b * z),
            h2: self.output(b * h),
            logits: self.output(b * d),
            dh2: self.output(b * h),
            dz: self.output(b * z),
            dmu: self.output(b * z),
            dlv: self.output(b * z),
            dh1: self.output(b * h),
            bce_row: self.output(b),
            kl_row: self.output(b),
        });
    }

    /// `C[m][n] = op(A)·op(B) (+ C when acc) (+ bias, then ReLU when the flag is set)`.
    #[allow(clippy::too_many_arguments)]
    fn mm(
        &self,
        (m, n, k): (usize, usize, usize),
        a: &Handle,
        ta: bool,
        b: &Handle,
        tb: bool,
        c: &Handle,
        acc: bool,
        bias: Option<(&Handle, bool)>,
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
        check_device(self.gpu, &p)?;
        let (bias_h, bias_len) = match bias {
            Some((h, _)) => (h.clone(), n),
            None => (self.dummy.clone(), 1),
        };
        let ops = CubeOperands::from_handles(a.clone(), b.clone(), bias_h, bias_len, c.clone());
        launch(self.client, &p, &ops);
        Ok(())
    }

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

    fn decode_into(&self, a: &Acts, zh: &Handle) -> Result<()> {
        let (b, d, h, z) = (a.b, self.cfg.d, self.cfg.h, self.cfg.z);
        let p = &self.p;
        self.mm(
            (b, h, z),
            zh,
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

    fn upload_into(&mut self, which: fn(&mut Acts) -> &mut Handle, v: &[f64]) {
        let f: Vec<f32> = v.iter().map(|&x| x as f32).collect();
        let h = self.client.create_from_slice(bytemuck::cast_slice(&f));
        *which(self.acts.as_mut().expect("allocated")) = h;
    }

    fn forward(&mut self, x: &[f64], key: StreamKey, grad: bool, beta: f64) -> Result<()> {
        let b = check_batch(x, self.cfg.d)?;
        self.acts(b);
        self.upload_into(|a| &mut a.x, x);
        let a = self.acts.as_ref().expect("allocated above");
        let (d, z) = (self.cfg.d, self.cfg.z);
        self.encode(a)?;
        super::rng::fill_into(
            self.client,
            super::rng::Fill::NormalF32,
            key,
            0,
            b * z,
            &a.eps,
        );
        reparam_kernel::launch(
            self.client,
            grid(b * z),
            CubeDim::new_1d(CUBE_DIM),
            arg(&a.mu, b * z),
            arg(&a.lv, b * z),
            arg(&a.eps, b * z),
            arg(&a.z, b * z),
            (b * z) as u32,
        );
        self.decode_into(a, &a.z)?;
        bce_rows_kernel::launch(
            self.client,
            grid(b),
            CubeDim::new_1d(CUBE_DIM),
            arg(&a.logits, b * d),
            arg(&a.x, b * d),
            arg(&a.bce_row, b),
            b as u32,
            d as u32,
            grad as u32,
            (1.0 / b as f64) as f32,
        );
        if !grad {
            self.latent_and_loss(a, false, beta);
        }
        Ok(())
    }

    fn latent_and_loss(&self, a: &Acts, grad: bool, beta: f64) {
        let (b, z) = (a.b, self.cfg.z);
        let inv_b = (1.0 / b as f64) as f32;
        latent_kernel::launch(
            self.client,
            grid(b),
            CubeDim::new_1d(CUBE_DIM),
            arg(&a.mu, b * z),
            arg(&a.lv, b * z),
            arg(&a.eps, b * z),
            arg(&a.dz, b * z),
            arg(&a.dmu, b * z),
            arg(&a.dlv, b * z),
            arg(&a.kl_row, b),
            b as u32,
            z as u32,
            grad as u32,
            beta as f32,
            inv_b,
        );
        batch_loss_kernel::launch(
            self.client,
            CubeCount::Static(1, 1, 1),
            CubeDim::new_1d(1),
            arg(&a.bce_row, b),
            arg(&a.kl_row, b),
            arg(&self.loss, 3),
            b as u32,
            beta as f32,
            inv_b,
        );
    }

    fn col_sum(&self, rows: &Handle, b: usize, cols: usize, out: &Handle) {
        col_sum_kernel::launch(
            self.client,
            grid(cols),
            CubeDim::new_1d(CUBE_DIM),
            arg(rows, b * cols),
            arg(out, cols),
            b as u32,
            cols as u32,
        );
    }

    fn relu_grad(&self, act: &Handle, g: &Handle, n: usize) {
        relu_grad_kernel::launch(
            self.client,
            grid(n),
            CubeDim::new_1d(CUBE_DIM),
            arg(act, n),
            arg(g, n),
            n as u32,
        );
    }

    fn backward(&self) -> Result<()> {
        let a = self.acts.as_ref().expect("forward ran");
        let (b, d, h, z) = (a.b, self.cfg.d, self.cfg.h, self.cfg.z);
        let (p, g) = (&self.p, &self.g);
        self.mm((h, d, b), &a.h2, true, &a.logits, false, &g[8], false, None)?;
        self.col_sum(&a.logits, b, d, &g[9]);
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
        self.relu_grad(&a.h2, &a.dh2, b * h);
        self.mm((z, h, b), &a.z, true, &a.dh2, false, &g[6], false, None)?;
        self.col_sum(&a.dh2, b, h, &g[7]);
        self.mm((b, z, h), &a.dh2, false, &p[6], true, &a.dz, false, None)?;
        self.latent_and_loss(a, true, self.cfg.beta);
        self.mm((h, z, b), &a.h1, true, &a.dmu, false, &g[2], false, None)?;
        self.col_sum(&a.dmu, b, z, &g[3]);
        self.mm((h, z, b), &a.h1, true, &a.dlv, false, &g[4], false, None)?;
        self.col_sum(&a.dlv, b, z, &g[5]);
        self.mm((b, h, z), &a.dmu, false, &p[2], true, &a.dh1, false, None)?;
        self.mm((b, h, z), &a.dlv, false, &p[4], true, &a.dh1, true, None)?;
        self.relu_grad(&a.h1, &a.dh1, b * h);
        self.mm((d, h, b), &a.x, true, &a.dh1, false, &g[0], false, None)?;
        self.col_sum(&a.dh1, b, h, &g[1]);
        Ok(())
    }

    fn adam(&mut self) {
        self.t += 1;
        let a = self.cfg.adam;
        let (c1, c2) = a.corrections(self.t);
        let (c1, c2) = (c1 as f32, c2 as f32);
        for (i, t) in layout(&self.cfg).iter().enumerate() {
            let n = t.len();
            adam_kernel::launch(
                self.client,
                grid(n),
                CubeDim::new_1d(CUBE_DIM),
                arg(&self.p[i], n),
                arg(&self.g[i], n),
                arg(&self.m[i], n),
                arg(&self.v[i], n),
                n as u32,
                a.lr as f32,
                a.beta1 as f32,
                a.beta2 as f32,
                a.eps as f32,
                a.weight_decay as f32,
                c1,
                c2,
            );
        }
    }

    fn read(&self, h: &Handle, len: usize) -> Result<Vec<f32>> {
        let bytes = self
            .client
            .read_one(h.clone())
            .map_err(|e| Error::Cubecl(format!("{e:?}")))?;
        Ok(bytemuck::cast_slice::<u8, f32>(&bytes[..len * 4]).to_vec())
    }

    fn read_loss(&self) -> Result<VaeLoss> {
        let l = self.read(&self.loss, 3)?;
        VaeLoss::checked(l[1] as f64, l[2] as f64, l[0] as f64)
    }

    fn read_all(&self, hs: &[Handle]) -> Result<Vec<f64>> {
        let mut out = Vec::new();
        for (t, h) in layout(&self.cfg).iter().zip(hs) {
            out.extend(self.read(h, t.len())?.iter().map(|&x| x as f64));
        }
        Ok(out)
    }

    fn logits_to_probs(&self, n: usize) -> Result<Vec<f64>> {
        let a = self.acts.as_ref().expect("decoded");
        let l = self.read(&a.logits, n * self.cfg.d)?;
        Ok(l.iter()
            .map(|&v| 1.0 / (1.0 + (-(v as f64)).exp()))
            .collect())
    }
}

impl VaeTrainer for CubeVae<'_> {
    fn config(&self) -> &VaeConfig {
        &self.cfg
    }

    fn step(&mut self, x: &[f64], key: StreamKey) -> Result<()> {
        self.forward(x, key, true, self.cfg.beta)?;
        self.backward()?;
        self.adam();
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
        self.acts(n);
        self.upload_into(|a| &mut a.z, z);
        let a = self.acts.as_ref().expect("allocated above");
        self.decode_into(a, &a.z)?;
        self.logits_to_probs(n)
    }

    fn reconstruct(&mut self, x: &[f64]) -> Result<Vec<f64>> {
        let n = check_batch(x, self.cfg.d)?;
        self.acts(n);
        self.upload_into(|a| &mut a.x, x);
        let a = self.acts.as_ref().expect("allocated above");
        self.encode(a)?;
        self.decode_into(a, &a.mu)?;
        self.logits_to_probs(n)
    }

    fn params(&self) -> Result<Vec<f64>> {
        self.read_all(&self.p)
    }
}
