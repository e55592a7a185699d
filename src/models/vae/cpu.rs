//! The VAE on the CPU, generic over the float type: `f64` with plain loops (the cpu64
//! reference) and `f32` with the `gemm` crate through the cpu32 matmul (cpu32).
//!
//! # Backward pass (B images, gradients of the batch-mean loss)
//!
//! ```text
//! dlogits = (sigmoid(logits) − x) / B
//! dW_out = h₂ᵀ·dlogits,  db_out = Σ_b dlogits,  dh₂ = (dlogits·W_outᵀ) ⊙ [h₂ > 0]
//! dW_dec = zᵀ·dh₂,       db_dec = Σ_b dh₂,      dz  = dh₂·W_decᵀ
//! dμ  = dz + β·μ / B
//! dlv = dz ⊙ ε ⊙ ½·exp(½ lv) + β·½·(exp(lv) − 1) / B
//! dW_μ = h₁ᵀ·dμ, dW_lv = h₁ᵀ·dlv (biases: column sums), dh₁ = (dμ·W_μᵀ + dlv·W_lvᵀ) ⊙ [h₁ > 0]
//! dW_enc = xᵀ·dh₁,       db_enc = Σ_b dh₁
//! ```
//!
//! Sums over the batch (bias gradients, the loss) are formed pairwise.

use rayon::prelude::*;

use super::{VaeConfig, VaeLoss, VaeTrainer, check_batch, layout};
use crate::error::{Error, Result};
use crate::num::PAR_ELEMENTS;
use crate::num::activation::sigmoid;
use crate::num::adam::{AdamState, adam_l2_step};
use crate::num::float::HostFloat;
use crate::num::linalg::col_sums_pairwise;
use crate::rng::StreamKey;

/// A VAE trained on the CPU in `T` arithmetic.
pub struct CpuVae<T: HostFloat> {
    cfg: VaeConfig,
    p: Vec<T>,
    adam: AdamState<T>,
    last: Option<VaeLoss>,
}

/// Activations of one forward pass.
struct Forward<T> {
    b: usize,
    x: Vec<T>,
    h1: Vec<T>,
    mu: Vec<T>,
    lv: Vec<T>,
    eps: Vec<T>,
    z: Vec<T>,
    h2: Vec<T>,
    /// `sigmoid(logits)`.
    sig: Vec<T>,
    /// BCE per image (summed over pixels, pairwise).
    bce_img: Vec<T>,
}

/// `y[i][j] += bias[j]`, then ReLU when `relu`: rows in parallel (element-wise: the same bits
/// as one loop).
fn add_bias<T: HostFloat>(y: &mut [T], bias: &[T], relu: bool) {
    let n = bias.len();
    y.par_chunks_mut(n)
        .with_min_len((PAR_ELEMENTS / n).max(1))
        .for_each(|row| {
            for (v, b) in row.iter_mut().zip(bias) {
                *v = *v + *b;
                if relu {
                    *v = v.max(T::zero());
                }
            }
        });
}

/// ReLU's backward: `dy[i] = 0` where the layer's output `y[i] ≤ 0`, in parallel.
fn relu_mask<T: HostFloat>(dy: &mut [T], y: &[T]) {
    dy.par_iter_mut()
        .zip(y)
        .with_min_len(PAR_ELEMENTS)
        .for_each(|(v, a)| {
            if *a <= T::zero() {
                *v = T::zero();
            }
        });
}

/// `v` rounded to `T`, in parallel.
fn to_host<T: HostFloat>(v: &[f64]) -> Vec<T> {
    v.par_iter()
        .with_min_len(PAR_ELEMENTS)
        .map(|&x| T::of(x))
        .collect()
}

/// `softplus(l) − x·l`, exact for any `l`.
#[cfg(test)]
fn bce<T: HostFloat>(l: T, x: T) -> T {
    bce_sigmoid(l, x).0
}

/// One image's BCE (pairwise sum over its pixels) of logits `l` and targets `x`, writing the
/// probabilities into `sig`: per pixel [`bce_sigmoid`]'s arithmetic, with the exponentials and
/// logarithms over the row at once ([`HostFloat::exp_slice`], [`HostFloat::ln_1p_slice`]: at
/// f64 the platform's, the same bits; at f32 vectorised).
fn bce_sigmoid_row<T: HostFloat>(l: &[T], x: &[T], sig: &mut [T]) -> T {
    let mut e: Vec<T> = l.iter().map(|v| -v.abs()).collect();
    T::exp_slice(&mut e);
    let mut lp = e.clone();
    T::ln_1p_slice(&mut lp);
    let terms: Vec<T> = (0..l.len())
        .map(|j| {
            let (lj, ej) = (l[j], e[j]);
            sig[j] = if lj >= T::zero() {
                T::one() / (T::one() + ej)
            } else {
                ej / (T::one() + ej)
            };
            lj.max(T::zero()) - x[j] * lj + lp[j]
        })
        .collect();
    T::psum(&terms)
}

/// `(softplus(l) − x·l, sigmoid(l))` from one exponential, exact for any `l` (the probability
/// is formed here with the loss, not by [`sigmoid`], whose `1/(1 + e^{−l})` rounds differently).
/// The scalar definition [`bce_sigmoid_row`] follows.
#[cfg(test)]
fn bce_sigmoid<T: HostFloat>(l: T, x: T) -> (T, T) {
    let e = (-l.abs()).exp();
    let sig = if l >= T::zero() {
        T::one() / (T::one() + e)
    } else {
        e / (T::one() + e)
    };
    (l.max(T::zero()) - x * l + e.ln_1p(), sig)
}

impl<T: HostFloat> CpuVae<T> {
    /// A VAE with parameters `params` (flat, [`layout`] order, rounded to `T`).
    pub fn new(cfg: &VaeConfig, params: &[f64]) -> Result<Self> {
        super::check_params(cfg, params)?;
        let n = params.len();
        Ok(Self {
            cfg: *cfg,
            p: params.iter().map(|&v| T::of(v)).collect(),
            adam: AdamState::new(n),
            last: None,
        })
    }

    fn tensor(&self, i: usize) -> &[T] {
        &self.p[layout(&self.cfg)[i].range()]
    }

    /// Encoder: h₁, μ, log σ² of `x` (`[b][D]`).
    fn encode(&self, x: &[T], b: usize) -> (Vec<T>, Vec<T>, Vec<T>) {
        let c = &self.cfg;
        let mut h1 = vec![T::zero(); b * c.h];
        T::gemm(b, c.h, c.d, x, false, self.tensor(0), false, &mut h1, false);
        add_bias(&mut h1, self.tensor(1), true);
        let mut mu = vec![T::zero(); b * c.z];
        T::gemm(
            b,
            c.z,
            c.h,
            &h1,
            false,
            self.tensor(2),
            false,
            &mut mu,
            false,
        );
        add_bias(&mut mu, self.tensor(3), false);
        let mut lv = vec![T::zero(); b * c.z];
        T::gemm(
            b,
            c.z,
            c.h,
            &h1,
            false,
            self.tensor(4),
            false,
            &mut lv,
            false,
        );
        add_bias(&mut lv, self.tensor(5), false);
        (h1, mu, lv)
    }

    /// Decoder: h₂ and logits of `z` (`[b][Z]`).
    fn decode_logits(&self, z: &[T], b: usize) -> (Vec<T>, Vec<T>) {
        let c = &self.cfg;
        let mut h2 = vec![T::zero(); b * c.h];
        T::gemm(b, c.h, c.z, z, false, self.tensor(6), false, &mut h2, false);
        add_bias(&mut h2, self.tensor(7), true);
        let mut logits = vec![T::zero(); b * c.d];
        T::gemm(
            b,
            c.d,
            c.h,
            &h2,
            false,
            self.tensor(8),
            false,
            &mut logits,
            false,
        );
        add_bias(&mut logits, self.tensor(9), false);
        (h2, logits)
    }

    fn forward(&self, x: &[f64], key: StreamKey) -> Result<Forward<T>> {
        let c = &self.cfg;
        let b = check_batch(x, c.d)?;
        let x: Vec<T> = to_host(x);
        let (h1, mu, lv) = self.encode(&x, b);
        let eps = T::normals(key, b * c.z);
        let half = T::of(0.5);
        let z: Vec<T> = (0..b * c.z)
            .map(|i| mu[i] + (half * lv[i]).exp() * eps[i])
            .collect();
        let (h2, logits) = self.decode_logits(&z, b);
        let d = c.d;
        let mut sig = vec![T::zero(); b * d];
        let bce_img: Vec<T> = logits
            .par_chunks(d)
            .zip(x.par_chunks(d))
            .zip(sig.par_chunks_mut(d))
            .map(|((l, xr), sr)| bce_sigmoid_row(l, xr, sr))
            .collect();
        Ok(Forward {
            b,
            x,
            h1,
            mu,
            lv,
            eps,
            z,
            h2,
            sig,
            bce_img,
        })
    }

    /// Mean BCE and KL per image of a forward pass.
    fn loss_of(&self, f: &Forward<T>, beta: f64) -> Result<VaeLoss> {
        let c = &self.cfg;
        let kl_img: Vec<T> = (0..f.b)
            .map(|i| {
                let terms: Vec<T> = (0..c.z)
                    .map(|j| {
                        let (m, l) = (f.mu[i * c.z + j], f.lv[i * c.z + j]);
                        T::of(-0.5) * (T::one() + l - m * m - l.exp())
                    })
                    .collect();
                T::psum(&terms)
            })
            .collect();
        let nb = f.b as f64;
        let bce = T::psum(&f.bce_img).wide() / nb;
        let kl = T::psum(&kl_img).wide() / nb;
        VaeLoss::checked(bce, kl, bce + beta * kl)
    }

    /// Gradient of the batch-mean loss (see the module documentation).
    fn backward(&self, f: &Forward<T>) -> Vec<T> {
        let c = &self.cfg;
        let (b, d, h, zd) = (f.b, c.d, c.h, c.z);
        let l = layout(c);
        let mut g = vec![T::zero(); self.p.len()];
        let inv_b = T::of(1.0 / b as f64);
        let beta = T::of(c.beta);
        let half = T::of(0.5);
        // Output layer.
        let dlogits: Vec<T> = f
            .sig
            .par_iter()
            .zip(&f.x)
            .map(|(&s, &x)| (s - x) * inv_b)
            .collect();
        T::gemm(
            h,
            d,
            b,
            &f.h2,
            true,
            &dlogits,
            false,
            &mut g[l[8].range()],
            false,
        );
        col_sums_pairwise(&dlogits, d, &mut g[l[9].range()]);
        let mut dh2 = vec![T::zero(); b * h];
        T::gemm(
            b,
            h,
            d,
            &dlogits,
            false,
            self.tensor(8),
            true,
            &mut dh2,
            false,
        );
        relu_mask(&mut dh2, &f.h2);
        // Decoder hidden layer.
        T::gemm(
            zd,
            h,
            b,
            &f.z,
            true,
            &dh2,
            false,
            &mut g[l[6].range()],
            false,
        );
        col_sums_pairwise(&dh2, h, &mut g[l[7].range()]);
        let mut dz = vec![T::zero(); b * zd];
        T::gemm(b, zd, h, &dh2, false, self.tensor(6), true, &mut dz, false);
        // Reparameterisation and KL.
        let dmu: Vec<T> = (0..b * zd)
            .into_par_iter()
            .with_min_len(PAR_ELEMENTS)
            .map(|i| dz[i] + beta * f.mu[i] * inv_b)
            .collect();
        let dlv: Vec<T> = (0..b * zd)
            .into_par_iter()
            .with_min_len(PAR_ELEMENTS)
            .map(|i| {
                let s = (half * f.lv[i]).exp();
                dz[i] * f.eps[i] * half * s + beta * half * (f.lv[i].exp() - T::one()) * inv_b
            })
            .collect();
        T::gemm(
            h,
            zd,
            b,
            &f.h1,
            true,
            &dmu,
            false,
            &mut g[l[2].range()],
            false,
        );
        col_sums_pairwise(&dmu, zd, &mut g[l[3].range()]);
        T::gemm(
            h,
            zd,
            b,
            &f.h1,
            true,
            &dlv,
            false,
            &mut g[l[4].range()],
            false,
        );
        col_sums_pairwise(&dlv, zd, &mut g[l[5].range()]);
        let mut dh1 = vec![T::zero(); b * h];
        T::gemm(b, h, zd, &dmu, false, self.tensor(2), true, &mut dh1, false);
        T::gemm(b, h, zd, &dlv, false, self.tensor(4), true, &mut dh1, true);
        relu_mask(&mut dh1, &f.h1);
        T::gemm(
            d,
            h,
            b,
            &f.x,
            true,
            &dh1,
            false,
            &mut g[l[0].range()],
            false,
        );
        col_sums_pairwise(&dh1, h, &mut g[l[1].range()]);
        g
    }

    /// Adam with L2 decay ([`adam_l2_step`]).
    fn adam(&mut self, g: &[T]) {
        adam_l2_step(&self.cfg.adam.hyper(), &mut self.adam, &mut self.p, g);
    }
}

impl<T: HostFloat> VaeTrainer for CpuVae<T> {
    fn config(&self) -> &VaeConfig {
        &self.cfg
    }

    fn step(&mut self, x: &[f64], key: StreamKey) -> Result<()> {
        let f = self.forward(x, key)?;
        let loss = self.loss_of(&f, self.cfg.beta)?;
        let g = self.backward(&f);
        self.adam(&g);
        self.last = Some(loss);
        Ok(())
    }

    fn last_loss(&mut self) -> Result<VaeLoss> {
        self.last
            .ok_or_else(|| Error::InvalidArgument("no training step yet".into()))
    }

    fn loss_and_gradient(&mut self, x: &[f64], key: StreamKey) -> Result<(VaeLoss, Vec<f64>)> {
        let f = self.forward(x, key)?;
        let loss = self.loss_of(&f, self.cfg.beta)?;
        Ok((loss, self.backward(&f).iter().map(|v| v.wide()).collect()))
    }

    fn neg_elbo(&mut self, x: &[f64], key: StreamKey) -> Result<f64> {
        super::chunked_neg_elbo(x, self.cfg.d, key, &mut |chunk, sub| {
            let f = self.forward(chunk, sub)?;
            Ok(self.loss_of(&f, 1.0)?.loss)
        })
    }

    fn decode(&mut self, z: &[f64]) -> Result<Vec<f64>> {
        let n = super::check_latents(z, self.cfg.z)?;
        let zt: Vec<T> = z.iter().map(|&v| T::of(v)).collect();
        let (_, logits) = self.decode_logits(&zt, n);
        Ok(logits.iter().map(|&l| sigmoid(l.wide())).collect())
    }

    fn reconstruct(&mut self, x: &[f64]) -> Result<Vec<f64>> {
        let b = check_batch(x, self.cfg.d)?;
        let xt: Vec<T> = to_host(x);
        let (_, mu, _) = self.encode(&xt, b);
        let mu: Vec<f64> = mu.iter().map(|v| v.wide()).collect();
        self.decode(&mu)
    }

    fn params(&self) -> Result<Vec<f64>> {
        Ok(self.p.iter().map(|v| v.wide()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> (VaeConfig, Vec<f64>, Vec<f64>) {
        let c = VaeConfig {
            d: 9,
            h: 7,
            z: 3,
            beta: 0.7,
            ..Default::default()
        };
        let p = super::super::init_params(&c, 5);
        // Test-local keys here and below (no result or golden depends on them).
        let key = StreamKey::new(3, 9);
        let x: Vec<f64> = (0..4 * c.d)
            .map(|i| crate::rng::unit_f64(key.u32_at(i as u64)))
            .collect();
        (c, p, x)
    }

    /// Central differences on every parameter of the f64 reference: the analytic gradient
    /// matches within 1e-6 norm-wise per tensor (h = 1e-6; truncation error O(h²) ≈ 1e-12,
    /// rounding O(ε/h) ≈ 1e-10 relative to the loss).
    #[test]
    fn cpu64_gradient_passes_finite_differences() {
        let (c, p, x) = small();
        let key = StreamKey::new(1, 2);
        let mut vae = CpuVae::<f64>::new(&c, &p).unwrap();
        let (_, g) = vae.loss_and_gradient(&x, key).unwrap();
        let h = 1e-6;
        let mut num = vec![0.0; p.len()];
        for i in 0..p.len() {
            let mut q = p.clone();
            q[i] += h;
            let up = CpuVae::<f64>::new(&c, &q)
                .unwrap()
                .loss_and_gradient(&x, key)
                .unwrap()
                .0
                .loss;
            q[i] -= 2.0 * h;
            let down = CpuVae::<f64>::new(&c, &q)
                .unwrap()
                .loss_and_gradient(&x, key)
                .unwrap()
                .0
                .loss;
            num[i] = (up - down) / (2.0 * h);
        }
        for t in layout(&c) {
            let r = t.range();
            let err = crate::ops::matmul::rel_error(&g[r.clone()], &num[r]);
            assert!(err < 1e-6, "{}: relative error {err}", t.name);
        }
    }

    #[test]
    fn bce_is_exact_at_extreme_logits() {
        assert_eq!(bce(1000.0f64, 1.0), 0.0);
        assert_eq!(bce(-1000.0f64, 0.0), 0.0);
        assert!((bce(0.0f64, 0.3) - 2f64.ln()).abs() < 1e-15);
        assert_eq!(bce(-1000.0f64, 1.0), 1000.0);
    }

    /// The row kernel is the scalar definition: at f64 bit for bit (the cpu64 reference did
    /// not move), at f32 (vectorised exp and log1p) within 1e-6 of f64; probabilities
    /// poisoned first, extreme logits included.
    #[test]
    fn bce_row_is_the_scalar_definition() {
        let l: Vec<f64> = (0..1001)
            .map(|i| (i as f64 - 500.0) * 0.05)
            .chain([800.0, -800.0])
            .collect();
        let x: Vec<f64> = (0..l.len()).map(|i| (i % 5) as f64 / 4.0).collect();
        let mut sig = vec![f64::NAN; l.len()];
        let total = bce_sigmoid_row(&l, &x, &mut sig);
        let mut terms = vec![0.0; l.len()];
        for j in 0..l.len() {
            let (t, s) = bce_sigmoid(l[j], x[j]);
            terms[j] = t;
            assert_eq!(s.to_bits(), sig[j].to_bits());
        }
        assert_eq!(total.to_bits(), f64::psum(&terms).to_bits());
        let (l32, x32): (Vec<f32>, Vec<f32>) = l
            .iter()
            .zip(&x)
            .map(|(&a, &b)| (a as f32, b as f32))
            .unzip();
        let mut sig32 = vec![f32::NAN; l.len()];
        let total32 = bce_sigmoid_row(&l32, &x32, &mut sig32);
        assert!(
            (total32 as f64 - total).abs() < 1e-6 * total.abs(),
            "{total32} vs {total}"
        );
        for j in 0..l.len() {
            assert!((sig32[j] as f64 - sig[j]).abs() < 1e-6, "{}", l[j]);
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let (c, p, mut x) = small();
        let mut vae = CpuVae::<f64>::new(&c, &p).unwrap();
        assert!(vae.last_loss().is_err());
        x[5] = 1.5;
        assert!(vae.step(&x, StreamKey::new(0, 0)).is_err());
        x[5] = f64::NAN;
        assert!(vae.step(&x, StreamKey::new(0, 0)).is_err());
        assert!(vae.step(&x[..5], StreamKey::new(0, 0)).is_err());
        assert!(CpuVae::<f64>::new(&c, &p[1..]).is_err());
        assert!(vae.decode(&[0.0; 4]).is_err());
    }
}
