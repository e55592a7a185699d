//! Launchers for `shaders/gmm.wgsl`: the EM passes with the data and the responsibilities kept
//! on the device between passes, in chunks of points small enough for one binding each.
//!
//! Sums over points: in order within a tile of points (a workgroup column), then pairwise
//! across tiles on the device (`tree_reduce`), then pairwise across chunks on the host (f32).

use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::io::Matrix;
use crate::num::summation::PairwiseAcc;
use crate::ops::gmm::{
    CovarianceType, EStepParams, GmmPass, MStats, components_of, first_pass_stats,
};

/// `GmmParams` of `gmm.wgsl` (uniform, 32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    d: u32,
    k: u32,
    full: u32,
    tile: u32,
    cols: u32,
    t_in: u32,
    mode: u32,
}

/// Largest dimension of the GPU E-step (its per-invocation buffer).
pub const MAX_DIM: usize = 128;
const WG: u32 = 64;

/// Points per chunk for `d` dimensions and `k` components: `x` (`[n][d]`) and the
/// responsibilities (`[n][k]`) each fit one binding.
pub(crate) fn chunk_points(gpu: &GpuContext, d: usize, k: usize) -> usize {
    (gpu.max_binding_elements(4) as usize / d.max(k)).max(1)
}

/// `(points per tile, tiles)` of an M-step sum over `n` points into `cols` columns: at least 256
/// points per tile, at most 65535 tiles (one grid dimension), and the `[tiles][cols]` table of
/// partial sums within `max` values (one binding).
pub(crate) fn msum_tiling(n: usize, cols: usize, max: usize) -> (usize, usize) {
    let tile = 256
        .max(n.div_ceil(65_535))
        .max(n.div_ceil((max / cols).max(1)));
    (tile, n.div_ceil(tile))
}

struct Chunk {
    n: usize,
    x: wgpu::Buffer,
    resp: Option<wgpu::Buffer>,
}

/// The WGSL EM pass state.
pub struct WgslGmm<'a> {
    gpu: &'a GpuContext,
    x: Vec<f32>,
    d: usize,
    k: usize,
    chunks: Vec<Chunk>,
}

impl<'a> WgslGmm<'a> {
    /// Upload `x` (`[N][D]`, as f32).
    pub fn new(gpu: &'a GpuContext, x: &Matrix) -> Result<Self> {
        if x.cols > MAX_DIM {
            return Err(Error::InvalidArgument(format!(
                "the WGSL E-step supports D ≤ {MAX_DIM}, got {}",
                x.cols
            )));
        }
        let mut s = Self {
            gpu,
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
        let per = chunk_points(self.gpu, d, k);
        self.chunks.clear();
        for s in (0..n).step_by(per) {
            let cn = per.min(n - s);
            let x = self
                .gpu
                .input_buffer("gmm x", bytemuck::cast_slice(&self.x[s * d..(s + cn) * d]))?;
            self.chunks.push(Chunk {
                n: cn,
                x,
                resp: None,
            });
        }
        self.k = k;
        Ok(())
    }

    fn uniform(&self, p: Params) -> Result<wgpu::Buffer> {
        self.gpu
            .uniform_buffer("gmm params", bytemuck::bytes_of(&p))
    }

    /// Sum the `t` rows of the `[t][cols]` table in `buf` pairwise on the device.
    fn tree_sum(&self, mut buf: wgpu::Buffer, mut t: usize, cols: usize) -> Result<Vec<f32>> {
        let pipe = self.gpu.pipeline("gmm.wgsl", "tree_reduce")?;
        while t > 1 {
            let half = t.div_ceil(2);
            let dst = self
                .gpu
                .output_buffer("gmm tree", (half * cols * 4) as u64)?;
            let u = self.uniform(Params {
                cols: cols as u32,
                t_in: t as u32,
                ..Default::default()
            })?;
            let bg = self.gpu.bind_at(&pipe, &[(0, &u), (8, &buf), (9, &dst)])?;
            let gy = half.min(65_535) as u32;
            let gz = half.div_ceil(65_535) as u32;
            self.gpu.dispatch3(
                "gmm.wgsl:tree_reduce",
                &pipe,
                &bg,
                ((cols as u32).div_ceil(WG), gy, gz),
            )?;
            buf = dst;
            t = half;
        }
        self.gpu.read_buffer(&buf, cols)
    }

    /// One M-step summation (`mode` 0: N_k and Σ r x; 1: centred scatter) over every chunk.
    fn msum(&self, mode: u32, cols: usize, full: bool, means: &wgpu::Buffer) -> Result<Vec<f32>> {
        let pipe = self.gpu.pipeline("gmm.wgsl", "msum")?;
        let max = self.gpu.max_binding_elements(4) as usize;
        let mut acc = PairwiseAcc::default();
        for ch in &self.chunks {
            let resp = ch.resp.as_ref().ok_or_else(|| {
                Error::InvalidArgument("mstep before any responsibilities".into())
            })?;
            let (tile, tiles) = msum_tiling(ch.n, cols, max);
            let partial = self
                .gpu
                .output_buffer("gmm partial", (tiles * cols * 4) as u64)?;
            let u = self.uniform(Params {
                n: ch.n as u32,
                d: self.d as u32,
                k: self.k as u32,
                full: full as u32,
                tile: tile as u32,
                cols: cols as u32,
                mode,
                ..Default::default()
            })?;
            let bg = self.gpu.bind_at(
                &pipe,
                &[(0, &u), (1, &ch.x), (2, means), (5, resp), (7, &partial)],
            )?;
            self.gpu.dispatch(
                "gmm.wgsl:msum",
                &pipe,
                &bg,
                ((cols as u32).div_ceil(WG), tiles as u32),
            )?;
            acc.push(self.tree_sum(partial, tiles, cols)?);
        }
        Ok(acc.finish().unwrap_or_else(|| vec![0.0; cols]))
    }
}

impl GmmPass for WgslGmm<'_> {
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
        let means = self
            .gpu
            .input_buffer("gmm means", bytemuck::cast_slice(&f32s(&p.means)))?;
        let prec = self
            .gpu
            .input_buffer("gmm prec", bytemuck::cast_slice(&f32s(&p.prec_chol)))?;
        let cst = self
            .gpu
            .input_buffer("gmm cst", bytemuck::cast_slice(&f32s(&cst)))?;
        let pipe = self.gpu.pipeline("gmm.wgsl", "estep")?;
        let mut total = PairwiseAcc::default();
        let (d, k) = (self.d, self.k);
        for i in 0..self.chunks.len() {
            let n = self.chunks[i].n;
            let resp = self.gpu.output_buffer("gmm resp", (n * k * 4) as u64)?;
            let lse = self.gpu.output_buffer("gmm lse", (n * 4) as u64)?;
            let u = self.uniform(Params {
                n: n as u32,
                d: d as u32,
                k: k as u32,
                full: (p.covariance_type == CovarianceType::Full) as u32,
                ..Default::default()
            })?;
            let bg = self.gpu.bind_at(
                &pipe,
                &[
                    (0, &u),
                    (1, &self.chunks[i].x),
                    (2, &means),
                    (3, &prec),
                    (4, &cst),
                    (5, &resp),
                    (6, &lse),
                ],
            )?;
            self.gpu.dispatch(
                "gmm.wgsl:estep",
                &pipe,
                &bg,
                GpuContext::grid((n as u32).div_ceil(WG)),
            )?;
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
            self.chunks[i].resp = Some(
                self.gpu
                    .input_buffer("gmm resp", bytemuck::cast_slice(&v))?,
            );
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
            let v: Vec<f32> = self.gpu.read_buffer(buf, ch.n * self.k)?;
            out.extend(v.iter().map(|&x| x as f64));
        }
        Ok(out)
    }

    fn mstep(&mut self, cov: CovarianceType) -> Result<MStats> {
        let (d, k) = (self.d, self.k);
        let full = cov == CovarianceType::Full;
        let dummy = self.gpu.input_buffer("gmm no means", &[0u8; 4])?;
        let first = self.msum(0, k * (d + 1), full, &dummy)?;
        let (nk, means) = first_pass_stats(&first, k, d);
        let means_buf = self
            .gpu
            .input_buffer("gmm new means", bytemuck::cast_slice(&means))?;
        let per = if full { d * d } else { d };
        let scatter = self.msum(1, k * per, full, &means_buf)?;
        Ok(MStats {
            nk: nk.iter().map(|&v| v as f64).collect(),
            means: means.iter().map(|&v| v as f64).collect(),
            scatter: scatter.iter().map(|&v| v as f64).collect(),
        })
    }
}
