//! The GPU EM passes, written once over [`GmmOps`]: the data and the responsibilities stay on
//! the device between passes, in chunks of points small enough for one binding each
//! ([`gmm_chunk_points`]); each GPU backend provides only the kernels (`wgsl::gmm` over
//! `shaders/gmm.wgsl`, `cube::gmm` over `#[cube]` kernels).
//!
//! Sums over points: in order within a tile of points, then pairwise across tiles on the device
//! ([`GmmOps::tree_reduce`], one launch per level), then pairwise across chunks on the host
//! ([`PairwiseAcc`], f32); the E-step's `Σ log p(x_n)` is the same tree over its `[n][1]` table.

use crate::backend::launch::{GMM_MAX_DIM, gmm_chunk_points, msum_tiling};
use crate::error::{Error, Result};
use crate::io::Matrix;
use crate::num::summation::PairwiseAcc;
use crate::ops::gmm::{
    CovarianceType, EStepParams, EStepShape, GmmOps, GmmPass, MStats, MSum, MSumShape,
    components_of, first_pass_stats,
};

/// One chunk of points on the device: its `[n][D]` coordinates and, once an E-step or
/// [`GmmPass::set_responsibilities`] ran, its `[n][K]` responsibilities.
struct Chunk<B> {
    n: usize,
    x: B,
    resp: Option<B>,
}

/// The EM pass state on a GPU backend's kernels `O`: the data (f32) and its chunks.
pub struct DeviceGmm<O: GmmOps> {
    ops: O,
    x: Vec<f32>,
    d: usize,
    k: usize,
    chunks: Vec<Chunk<O::Buf>>,
}

impl<O: GmmOps> DeviceGmm<O> {
    /// Upload `x` (`[N][D]`, as f32) through `ops`; an error when `D` exceeds [`GMM_MAX_DIM`].
    pub fn new(ops: O, x: &Matrix) -> Result<Self> {
        if x.cols > GMM_MAX_DIM {
            return Err(Error::InvalidArgument(format!(
                "the {} E-step supports D ≤ {GMM_MAX_DIM}, got {}",
                ops.label(),
                x.cols
            )));
        }
        let mut s = Self {
            ops,
            x: x.data.iter().map(|&v| v as f32).collect(),
            d: x.cols,
            k: 0,
            chunks: Vec::new(),
        };
        s.layout(1)?;
        Ok(s)
    }

    /// (Re)build the chunks for `k` components: points per chunk such that `x` and `resp`
    /// each fit one binding.
    fn layout(&mut self, k: usize) -> Result<()> {
        if k == self.k && !self.chunks.is_empty() {
            return Ok(());
        }
        let d = self.d;
        let n = self.x.len() / d;
        let per = gmm_chunk_points(self.ops.binding_elements(), d, k);
        self.chunks.clear();
        for s in (0..n).step_by(per) {
            let cn = per.min(n - s);
            let x = self.ops.upload("gmm x", &self.x[s * d..(s + cn) * d])?;
            self.chunks.push(Chunk {
                n: cn,
                x,
                resp: None,
            });
        }
        self.k = k;
        Ok(())
    }

    /// Sum the `t` rows of the `[t][cols]` table in `buf` pairwise on the device; read the sum.
    fn tree_sum(&self, mut buf: O::Buf, mut t: usize, cols: usize) -> Result<Vec<f32>> {
        while t > 1 {
            let half = t.div_ceil(2);
            let dst = self.ops.alloc("gmm tree", half * cols)?;
            self.ops.tree_reduce(&buf, &dst, cols, t)?;
            buf = dst;
            t = half;
        }
        self.ops.read(&buf, cols)
    }

    /// One M-step summation (`sum`) into `cols` columns over every chunk, combined pairwise.
    fn msum(&self, sum: MSum, cols: usize, full: bool, means: &O::Buf) -> Result<Vec<f32>> {
        let max = self.ops.binding_elements();
        let mut acc = PairwiseAcc::default();
        for ch in &self.chunks {
            let resp = ch.resp.as_ref().ok_or_else(|| {
                Error::InvalidArgument("mstep before any responsibilities".into())
            })?;
            let (tile, tiles) = msum_tiling(ch.n, cols, max);
            let partial = self.ops.alloc("gmm partial", tiles * cols)?;
            let shape = MSumShape {
                n: ch.n,
                d: self.d,
                k: self.k,
                full,
                sum,
                tile,
                tiles,
                cols,
            };
            self.ops.msum(&shape, &ch.x, means, resp, &partial)?;
            acc.push(self.tree_sum(partial, tiles, cols)?);
        }
        Ok(acc.finish().unwrap_or_else(|| vec![0.0; cols]))
    }
}

impl<O: GmmOps> GmmPass for DeviceGmm<O> {
    fn estep(&mut self, p: &EStepParams) -> Result<f64> {
        if p.d != self.d {
            return Err(Error::InvalidArgument(format!(
                "model has D = {}, data {}",
                p.d, self.d
            )));
        }
        self.layout(p.k)?;
        let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let cst = p.log_constants();
        let means = self.ops.upload("gmm means", &f32s(&p.means))?;
        let prec = self.ops.upload("gmm prec", &f32s(&p.prec_chol))?;
        let cst = self.ops.upload("gmm cst", &f32s(&cst))?;
        let mut total = PairwiseAcc::default();
        let (d, k) = (self.d, self.k);
        let full = p.covariance_type == CovarianceType::Full;
        for i in 0..self.chunks.len() {
            let n = self.chunks[i].n;
            let resp = self.ops.alloc("gmm resp", n * k)?;
            let lse = self.ops.alloc("gmm lse", n)?;
            let shape = EStepShape { n, d, k, full };
            self.ops
                .estep(&shape, &self.chunks[i].x, &means, &prec, &cst, &resp, &lse)?;
            total.push(self.tree_sum(lse, n, 1)?);
            self.chunks[i].resp = Some(resp);
        }
        Ok(total.finish().map(|v| v[0] as f64).unwrap_or(0.0))
    }

    fn set_responsibilities(&mut self, r: &[f64]) -> Result<()> {
        let n = self.x.len() / self.d;
        let k = components_of(r.len(), n)?;
        self.layout(k)?;
        let mut s = 0;
        for i in 0..self.chunks.len() {
            let cn = self.chunks[i].n;
            let v: Vec<f32> = r[s * k..(s + cn) * k].iter().map(|&x| x as f32).collect();
            self.chunks[i].resp = Some(self.ops.upload("gmm resp", &v)?);
            s += cn;
        }
        Ok(())
    }

    fn responsibilities(&self) -> Result<Vec<f64>> {
        let mut out = Vec::new();
        for ch in &self.chunks {
            let buf = ch
                .resp
                .as_ref()
                .ok_or_else(|| Error::InvalidArgument("no responsibilities yet".into()))?;
            let v = self.ops.read(buf, ch.n * self.k)?;
            out.extend(v.iter().map(|&x| x as f64));
        }
        Ok(out)
    }

    fn mstep(&mut self, cov: CovarianceType) -> Result<MStats> {
        let (d, k) = (self.d, self.k);
        let full = cov == CovarianceType::Full;
        let no_means = self.ops.upload("gmm no means", &[0.0])?;
        let first = self.msum(MSum::First, k * (d + 1), full, &no_means)?;
        let (nk, means) = first_pass_stats(&first, k, d);
        let means_buf = self.ops.upload("gmm new means", &means)?;
        let per = if full { d * d } else { d };
        let scatter = self.msum(MSum::Scatter, k * per, full, &means_buf)?;
        Ok(MStats {
            nk: nk.iter().map(|&v| v as f64).collect(),
            means: means.iter().map(|&v| v as f64).collect(),
            scatter: scatter.iter().map(|&v| v as f64).collect(),
        })
    }
}
