//! Variants of `cpu32` for the drift study (`collapse drift`): the same f32 arithmetic with one
//! thing changed, so comparing a variant with `cpu32` isolates that one thing.
//!
//! - `cpu32-naive`, `cpu32-pairwise`, `cpu32-kahan`: EM passes whose reductions over points (the
//!   log-likelihood, `N_k`, `Σ r x`, the centred scatter) are formed in one [`Summation`] order,
//!   single-threaded and in point order. (`cpu32` itself blocks and combines pairwise.)
//! - `cpu32-f16`: samples are stored in IEEE binary16 (rounded to nearest after drawing, as a
//!   pipeline that keeps synthetic data in half precision would), then fitted by `cpu32`. The
//!   GPU sampling kernels have no f16 variant, so this emulates f16 storage on the host; the
//!   arithmetic stays f32.
//!
//! Everything else (random numbers, sampling arithmetic, matmul) is `cpu32`'s.

use super::cpu32::Cpu32;
use crate::error::{Error, Result};
use crate::io::Matrix;
use crate::num::density::{PrecisionFactor, lse_normalise, mahalanobis_sq};
use crate::num::summation::Summation;
use crate::ops::gmm::{EStepParams, GmmPass, MStats, PassLayout, components_of};
use crate::ops::sampling::{Categorical, PreparedMixture};
use crate::ops::{Backend, Precision};
use crate::rng::StreamKey;

/// A `cpu32` variant (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cpu32Variant {
    /// EM reductions in this summation order, in point order.
    Sum(Summation),
    /// Samples rounded to binary16.
    F16Storage,
}

impl Cpu32Variant {
    /// Every variant, by name.
    pub const ALL: [Cpu32Variant; 4] = [
        Self::Sum(Summation::Naive),
        Self::Sum(Summation::Pairwise),
        Self::Sum(Summation::Kahan),
        Self::F16Storage,
    ];

    /// `cpu32-naive`, `cpu32-pairwise`, `cpu32-kahan` or `cpu32-f16`.
    pub fn variant_name(self) -> &'static str {
        match self {
            Self::Sum(Summation::Naive) => "cpu32-naive",
            Self::Sum(Summation::Pairwise) => "cpu32-pairwise",
            Self::Sum(Summation::Kahan) => "cpu32-kahan",
            Self::F16Storage => "cpu32-f16",
        }
    }

    /// The variant called `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.variant_name() == name)
    }

    /// Unit roundoff of the data the fit sees (2⁻¹¹ for f16 storage, else 2⁻²⁴).
    pub fn unit_roundoff(self) -> f64 {
        match self {
            Self::F16Storage => 2f64.powi(-11),
            Self::Sum(_) => 2f64.powi(-24),
        }
    }
}

impl Backend for Cpu32Variant {
    fn name(&self) -> &'static str {
        self.variant_name()
    }
    fn precision(&self) -> Precision {
        Precision::F32
    }
    fn device(&self) -> String {
        match self {
            Self::Sum(s) => format!("host CPU, 1 thread, f32, {} reductions", s.name()),
            Self::F16Storage => format!("{}, samples stored as f16", Cpu32.device()),
        }
    }
    fn uniform_u32(&self, key: StreamKey, start: u64, out: &mut [u32]) -> Result<()> {
        Cpu32.uniform_u32(key, start, out)
    }
    fn uniform(&self, key: StreamKey, start: u64, out: &mut [f64]) -> Result<()> {
        Cpu32.uniform(key, start, out)
    }
    fn normal(&self, key: StreamKey, start: u64, out: &mut [f64]) -> Result<()> {
        Cpu32.normal(key, start, out)
    }
    fn sample_mixture(
        &self,
        mix: &PreparedMixture,
        m: usize,
        key: StreamKey,
        first: u64,
        out: &mut [f64],
        comps: &mut [u32],
    ) -> Result<()> {
        Cpu32.sample_mixture(mix, m, key, first, out, comps)?;
        if *self == Self::F16Storage {
            for (i, v) in out.iter_mut().enumerate() {
                let h = half::f16::from_f64(*v);
                if !h.is_finite() {
                    return Err(Error::Numerical(format!(
                        "sample {i} = {v} is outside binary16's range (±65504)"
                    )));
                }
                *v = h.to_f64();
            }
        }
        Ok(())
    }
    fn sample_categorical(
        &self,
        cat: &Categorical,
        s: usize,
        key: StreamKey,
        first: u64,
        out: &mut [u32],
    ) -> Result<()> {
        Cpu32.sample_categorical(cat, s, key, first, out)
    }
    fn matmul(
        &self,
        p: &crate::ops::matmul::Matmul,
        a: &[f64],
        b: &[f64],
        bias: Option<&[f64]>,
        c: &mut [f64],
    ) -> Result<()> {
        Cpu32.matmul(p, a, b, bias, c)
    }
    fn gmm_pass<'a>(&'a self, x: &'a Matrix) -> Result<Box<dyn GmmPass + 'a>> {
        match *self {
            Self::Sum(s) => Ok(Box::new(OrderedPass::new(x, s))),
            Self::F16Storage => Cpu32.gmm_pass(x),
        }
    }
}

/// A single-threaded f32 EM pass whose reductions over points use one [`Summation`] order.
pub struct OrderedPass {
    x: Vec<f32>,
    n: usize,
    d: usize,
    k: usize,
    resp: Vec<f32>,
    order: Summation,
}

impl OrderedPass {
    /// A pass over `x` (`[N][D]`, rounded to f32).
    pub fn new(x: &Matrix, order: Summation) -> Self {
        Self {
            x: x.data.iter().map(|&v| v as f32).collect(),
            n: x.rows,
            d: x.cols,
            k: 0,
            resp: Vec::new(),
            order,
        }
    }

    /// `Σ_i f(i)` over the points, in this pass's order.
    fn sum(&self, buf: &mut Vec<f32>, f: impl Fn(usize) -> f32) -> f32 {
        buf.clear();
        buf.extend((0..self.n).map(f));
        self.order.sum_f32(buf)
    }
}

impl GmmPass for OrderedPass {
    fn estep(&mut self, p: &EStepParams) -> Result<f64> {
        let (n, d, k) = (self.n, self.d, p.k);
        if p.d != d {
            return Err(Error::InvalidArgument(format!(
                "model has D = {}, data {d}",
                p.d
            )));
        }
        let f = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let (mu, u) = (f(&p.means), f(&p.prec_chol));
        let konst: Vec<f32> = f(&p.log_constants());
        self.k = k;
        self.resp.resize(n * k, 0.0);
        let mut lse = vec![0.0f32; n];
        for (i, lse_i) in lse.iter_mut().enumerate() {
            let x = &self.x[i * d..(i + 1) * d];
            let r = &mut self.resp[i * k..(i + 1) * k];
            for (c, rv) in r.iter_mut().enumerate() {
                let m = &mu[c * d..(c + 1) * d];
                let uc = match p.layout {
                    PassLayout::Full => PrecisionFactor::Full(&u[c * d * d..(c + 1) * d * d]),
                    PassLayout::Diag => PrecisionFactor::Diag(&u[c * d..(c + 1) * d]),
                };
                *rv = -0.5 * mahalanobis_sq(x, m, uc) + konst[c];
            }
            *lse_i = lse_normalise(r);
        }
        Ok(self.order.sum_f32(&lse) as f64)
    }

    fn set_responsibilities(&mut self, r: &[f64]) -> Result<()> {
        self.k = components_of(r.len(), self.n)?;
        self.resp = r.iter().map(|&v| v as f32).collect();
        Ok(())
    }

    fn responsibilities(&self) -> Result<Vec<f64>> {
        Ok(self.resp.iter().map(|&v| v as f64).collect())
    }

    fn mstep(&mut self, cov: PassLayout) -> Result<MStats> {
        let (d, k) = (self.d, self.k);
        if self.resp.len() != self.n * k || k == 0 {
            return Err(Error::InvalidArgument(
                "mstep before any responsibilities".into(),
            ));
        }
        let mut buf = Vec::with_capacity(self.n);
        let (x, r) = (&self.x, &self.resp);
        let mut nk = vec![0.0f64; k];
        let mut means = vec![0.0f64; k * d];
        let per = if cov == PassLayout::Full { d * d } else { d };
        let mut scatter = vec![0.0f64; k * per];
        for c in 0..k {
            let n_c = self.sum(&mut buf, |i| r[i * k + c]);
            nk[c] = n_c as f64;
            let m: Vec<f32> = (0..d)
                .map(|j| {
                    if n_c > 0.0 {
                        self.sum(&mut buf, |i| r[i * k + c] * x[i * d + j]) / n_c
                    } else {
                        0.0
                    }
                })
                .collect();
            for a in 0..d {
                means[c * d + a] = m[a] as f64;
                let bs: Vec<usize> = match cov {
                    PassLayout::Full => (0..=a).collect(),
                    PassLayout::Diag => vec![a],
                };
                for b in bs {
                    let s = self.sum(&mut buf, |i| {
                        r[i * k + c] * (x[i * d + a] - m[a]) * (x[i * d + b] - m[b])
                    }) as f64;
                    match cov {
                        PassLayout::Full => {
                            scatter[c * per + a * d + b] = s;
                            scatter[c * per + b * d + a] = s;
                        }
                        PassLayout::Diag => scatter[c * per + a] = s,
                    }
                }
            }
        }
        Ok(MStats { nk, means, scatter })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu64::Cpu64;

    /// Every variant fits the same Gaussian as cpu64 to f32 accuracy.
    #[test]
    fn variants_agree_with_cpu64_on_a_gaussian_fit() {
        let n = 5000;
        let data: Vec<f64> = (0..n * 2)
            .map(|i| ((i as f64 * 0.618_034).fract() - 0.5) * 3.0 + (i % 2) as f64)
            .collect();
        let x = Matrix::new(n, 2, data).unwrap();
        let fit = |b: &dyn Backend| {
            let mut p = b.gmm_pass(&x).unwrap();
            p.set_responsibilities(&vec![1.0; n]).unwrap();
            p.mstep(PassLayout::Full).unwrap()
        };
        let want = fit(&Cpu64);
        for v in Cpu32Variant::ALL {
            let got = fit(&v);
            let rel = |a: &[f64], b: &[f64]| {
                let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
                (num / b.iter().map(|y| y * y).sum::<f64>()).sqrt()
            };
            assert!(rel(&got.means, &want.means) < 1e-5, "{v:?} means");
            assert!(rel(&got.scatter, &want.scatter) < 1e-5, "{v:?} scatter");
            assert!((got.nk[0] - n as f64).abs() < 1e-3);
        }
    }
}
