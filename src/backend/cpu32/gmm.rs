//! EM passes in f32 on every core: blocks of [`CPU_BLOCK`] points, the per-block matrix work
//! through `matrixmultiply::sgemm`, tasks of [`TASK_BLOCKS`] blocks in parallel (rayon).
//! Every reduction over points has a fixed shape — in-order within a block, pairwise across
//! blocks and across tasks ([`PairwiseAcc`]) — so results do not depend on thread scheduling.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::gmm::{
    CPU_BLOCK, CovarianceType, EStepParams, GmmPass, HALF_LN_2PI, MStats, PairwiseAcc,
    pairwise_sum_f32,
};
use crate::io::Matrix;

/// Blocks per parallel task.
pub const TASK_BLOCKS: usize = 16;

/// The cpu32 EM pass state: the data and the responsibilities, in f32.
pub struct Cpu32Gmm {
    n: usize,
    d: usize,
    k: usize,
    x: Vec<f32>,
    resp: Vec<f32>,
}

impl Cpu32Gmm {
    /// A pass over `x` (`[N][D]`), converted to f32 once.
    pub fn new(x: &Matrix) -> Self {
        Self {
            n: x.rows,
            d: x.cols,
            k: 0,
            x: x.data.iter().map(|&v| v as f32).collect(),
            resp: Vec::new(),
        }
    }

    /// Run `f(first_point, points, resp_rows)` on each task in parallel and combine the
    /// per-task partial vectors pairwise in task order.
    fn reduce_tasks(
        &mut self,
        len: usize,
        f: impl Fn(usize, &[f32], &mut [f32], &mut PairwiseAcc<f32>) + Sync,
    ) -> Vec<f32> {
        let (d, k) = (self.d, self.k);
        let task = TASK_BLOCKS * CPU_BLOCK;
        let parts: Vec<Vec<f32>> = self
            .x
            .par_chunks(task * d)
            .zip(self.resp.par_chunks_mut(task * k))
            .enumerate()
            .map(|(t, (x, r))| {
                let mut acc = PairwiseAcc::default();
                f(t * task, x, r, &mut acc);
                acc.finish().unwrap_or_else(|| vec![0.0; len])
            })
            .collect();
        let mut acc = PairwiseAcc::default();
        parts.into_iter().for_each(|p| acc.push(p));
        acc.finish().unwrap_or_else(|| vec![0.0; len])
    }
}

/// `C (m×n) = A (m×k) · B (k×n)` for row-major slices with explicit strides.
#[allow(clippy::too_many_arguments)]
fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    rsa: isize,
    csa: isize,
    b: &[f32],
    rsb: isize,
    csb: isize,
    c: &mut [f32],
) {
    assert!(c.len() >= m * n);
    // SAFETY: the strides address inside `a` (m×k), `b` (k×n) and `c` (m×n, row-major), which
    // the callers size accordingly; `c` does not alias `a` or `b`.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

impl GmmPass for Cpu32Gmm {
    fn estep(&mut self, p: &EStepParams) -> Result<f64> {
        let (d, k) = (self.d, p.k);
        if p.d != d {
            return Err(Error::InvalidArgument(format!(
                "model has D = {}, data {d}",
                p.d
            )));
        }
        self.k = k;
        self.resp.resize(self.n * k, 0.0);
        let mu: Vec<f32> = p.means.iter().map(|&v| v as f32).collect();
        let u: Vec<f32> = p.prec_chol.iter().map(|&v| v as f32).collect();
        let cst: Vec<f32> = (0..k)
            .map(|c| (p.log_det[c] + p.log_weights[c] - d as f64 * HALF_LN_2PI) as f32)
            .collect();
        let cov = p.covariance_type;
        let tot = self.reduce_tasks(1, |_, x, r, acc| {
            let mut xc = vec![0f32; CPU_BLOCK * d];
            let mut y = vec![0f32; CPU_BLOCK * d];
            for (xb, rb) in x.chunks(CPU_BLOCK * d).zip(r.chunks_mut(CPU_BLOCK * k)) {
                let bn = xb.len() / d;
                for c in 0..k {
                    let m = &mu[c * d..(c + 1) * d];
                    match cov {
                        CovarianceType::Full => {
                            for (dst, src) in xc.chunks_mut(d).zip(xb.chunks(d)) {
                                for j in 0..d {
                                    dst[j] = src[j] - m[j];
                                }
                            }
                            let uc = &u[c * d * d..(c + 1) * d * d];
                            gemm(bn, d, d, &xc, d as isize, 1, uc, d as isize, 1, &mut y);
                            for (i, yr) in y.chunks(d).take(bn).enumerate() {
                                let q: f32 = yr.iter().map(|v| v * v).sum();
                                rb[i * k + c] = -0.5 * q + cst[c];
                            }
                        }
                        CovarianceType::Diag => {
                            let s = &u[c * d..(c + 1) * d];
                            for (i, src) in xb.chunks(d).enumerate() {
                                let mut q = 0f32;
                                for j in 0..d {
                                    let v = (src[j] - m[j]) * s[j];
                                    q += v * v;
                                }
                                rb[i * k + c] = -0.5 * q + cst[c];
                            }
                        }
                    }
                }
                let mut lse = vec![0f32; bn];
                for (i, row) in rb.chunks_mut(k).enumerate() {
                    let mx = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                    let s: f32 = row.iter().map(|v| (v - mx).exp()).sum();
                    let l = mx + s.ln();
                    row.iter_mut().for_each(|v| *v = (*v - l).exp());
                    lse[i] = l;
                }
                acc.push(vec![pairwise_sum_f32(&lse)]);
            }
        });
        Ok(tot[0] as f64)
    }

    fn set_responsibilities(&mut self, r: &[f64]) -> Result<()> {
        if self.n == 0 || !r.len().is_multiple_of(self.n) {
            return Err(Error::InvalidArgument(format!(
                "{} responsibilities for {} points",
                r.len(),
                self.n
            )));
        }
        self.k = r.len() / self.n;
        self.resp = r.iter().map(|&v| v as f32).collect();
        Ok(())
    }

    fn responsibilities(&self) -> Result<Vec<f64>> {
        Ok(self.resp.iter().map(|&v| v as f64).collect())
    }

    fn mstep(&mut self, cov: CovarianceType) -> Result<MStats> {
        let (d, k) = (self.d, self.k);
        if self.resp.len() != self.n * k || k == 0 {
            return Err(Error::InvalidArgument(
                "mstep before any responsibilities".into(),
            ));
        }
        // Pass 1: nk and Σ r x = Rᵀ X per block.
        let tot = self.reduce_tasks(k + k * d, |_, x, r, acc| {
            for (xb, rb) in x.chunks(CPU_BLOCK * d).zip(r.chunks(CPU_BLOCK * k)) {
                let bn = xb.len() / d;
                let mut part = vec![0f32; k + k * d];
                for row in rb.chunks(k) {
                    for c in 0..k {
                        part[c] += row[c];
                    }
                }
                gemm(
                    k,
                    bn,
                    d,
                    rb,
                    1,
                    k as isize,
                    xb,
                    d as isize,
                    1,
                    &mut part[k..],
                );
                acc.push(part);
            }
        });
        let nk: Vec<f64> = tot[..k].iter().map(|&v| v as f64).collect();
        let means32: Vec<f32> = (0..k * d)
            .map(|i| {
                if tot[i / d] > 0.0 {
                    tot[k + i] / tot[i / d]
                } else {
                    0.0
                }
            })
            .collect();
        // Pass 2: centred scatter.
        let per = if cov == CovarianceType::Full {
            d * d
        } else {
            d
        };
        let m = &means32;
        let scatter = self.reduce_tasks(k * per, |_, x, r, acc| {
            let mut w = vec![0f32; CPU_BLOCK * d];
            for (xb, rb) in x.chunks(CPU_BLOCK * d).zip(r.chunks(CPU_BLOCK * k)) {
                let bn = xb.len() / d;
                let mut part = vec![0f32; k * per];
                for c in 0..k {
                    let mc = &m[c * d..(c + 1) * d];
                    match cov {
                        CovarianceType::Full => {
                            for (i, (dst, src)) in w.chunks_mut(d).zip(xb.chunks(d)).enumerate() {
                                let sr = rb[i * k + c].sqrt();
                                for j in 0..d {
                                    dst[j] = sr * (src[j] - mc[j]);
                                }
                            }
                            let s = &mut part[c * d * d..(c + 1) * d * d];
                            gemm(d, bn, d, &w, 1, d as isize, &w, d as isize, 1, s);
                        }
                        CovarianceType::Diag => {
                            let s = &mut part[c * d..(c + 1) * d];
                            for (i, src) in xb.chunks(d).enumerate() {
                                let r = rb[i * k + c];
                                for j in 0..d {
                                    let v = src[j] - mc[j];
                                    s[j] += r * v * v;
                                }
                            }
                        }
                    }
                }
                acc.push(part);
            }
        });
        Ok(MStats {
            nk,
            means: means32.iter().map(|&v| v as f64).collect(),
            scatter: scatter.iter().map(|&v| v as f64).collect(),
        })
    }
}
