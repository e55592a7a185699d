//! EM passes in f64 with plain loops: the reference the other backends are checked against.
//! Reductions over points are blocked ([`CPU_BLOCK`] points, summed in order) and the block
//! partials combined pairwise ([`PairwiseAcc`]).

use crate::error::{Error, Result};
use crate::io::Matrix;
use crate::num::density::lse_normalise;
use crate::num::summation::{PairwiseAcc, pairwise_sum};
use crate::ops::gmm::{CPU_BLOCK, EStepParams, GmmPass, MStats, PassLayout, components_of};

/// The cpu64 EM pass state: the data (borrowed) and the responsibilities.
pub struct Cpu64Gmm<'a> {
    x: &'a Matrix,
    k: usize,
    resp: Vec<f64>,
}

impl<'a> Cpu64Gmm<'a> {
    /// A pass over `x` (`[N][D]`).
    pub fn new(x: &'a Matrix) -> Self {
        Self {
            x,
            k: 0,
            resp: Vec::new(),
        }
    }
}

impl GmmPass for Cpu64Gmm<'_> {
    fn estep(&mut self, p: &EStepParams) -> Result<f64> {
        let (n, d, k) = (self.x.rows, self.x.cols, p.k);
        if p.d != d {
            return Err(Error::InvalidArgument(format!(
                "model has D = {}, data {d}",
                p.d
            )));
        }
        self.k = k;
        self.resp.resize(n * k, 0.0);
        let mut lse = vec![0.0; n];
        for (i, r) in self.resp.chunks_mut(k).enumerate() {
            let x = self.x.row(i);
            for (c, v) in r.iter_mut().enumerate() {
                *v = p.log_gauss(x, c) + p.log_weights[c];
            }
            lse[i] = lse_normalise(r);
        }
        Ok(pairwise_sum(&lse))
    }

    fn set_responsibilities(&mut self, r: &[f64]) -> Result<()> {
        let n = self.x.rows;
        self.k = components_of(r.len(), n)?;
        self.resp = r.to_vec();
        Ok(())
    }

    fn responsibilities(&self) -> Result<Vec<f64>> {
        Ok(self.resp.clone())
    }

    fn mstep(&mut self, cov: PassLayout) -> Result<MStats> {
        let (n, d, k) = (self.x.rows, self.x.cols, self.k);
        if self.resp.len() != n * k || k == 0 {
            return Err(Error::InvalidArgument(
                "mstep before any responsibilities".into(),
            ));
        }
        // Pass 1: nk and Σ r x.
        let mut acc = PairwiseAcc::default();
        for b0 in (0..n).step_by(CPU_BLOCK) {
            let mut part = vec![0.0; k + k * d];
            for i in b0..(b0 + CPU_BLOCK).min(n) {
                let x = self.x.row(i);
                for c in 0..k {
                    let r = self.resp[i * k + c];
                    part[c] += r;
                    for j in 0..d {
                        part[k + c * d + j] += r * x[j];
                    }
                }
            }
            acc.push(part);
        }
        let tot = acc.finish().unwrap_or_default();
        let nk = tot[..k].to_vec();
        let means: Vec<f64> = (0..k * d)
            .map(|i| {
                let c = i / d;
                if nk[c] > 0.0 { tot[k + i] / nk[c] } else { 0.0 }
            })
            .collect();
        // Pass 2: centred scatter.
        let per = match cov {
            PassLayout::Full => d * d,
            PassLayout::Diag => d,
        };
        let mut acc = PairwiseAcc::default();
        let mut dx = vec![0.0; d];
        for b0 in (0..n).step_by(CPU_BLOCK) {
            let mut part = vec![0.0; k * per];
            for i in b0..(b0 + CPU_BLOCK).min(n) {
                let x = self.x.row(i);
                for c in 0..k {
                    let r = self.resp[i * k + c];
                    for j in 0..d {
                        dx[j] = x[j] - means[c * d + j];
                    }
                    let s = &mut part[c * per..(c + 1) * per];
                    match cov {
                        PassLayout::Full => {
                            for a in 0..d {
                                for b in 0..=a {
                                    s[a * d + b] += r * dx[a] * dx[b];
                                }
                            }
                        }
                        PassLayout::Diag => {
                            for a in 0..d {
                                s[a] += r * dx[a] * dx[a];
                            }
                        }
                    }
                }
            }
            acc.push(part);
        }
        let mut scatter = acc.finish().unwrap_or_default();
        if cov == PassLayout::Full {
            for c in 0..k {
                let s = &mut scatter[c * d * d..(c + 1) * d * d];
                for a in 0..d {
                    for b in 0..a {
                        s[b * d + a] = s[a * d + b];
                    }
                }
            }
        }
        Ok(MStats { nk, means, scatter })
    }
}
