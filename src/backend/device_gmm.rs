//! The GPU EM passes, written once over [`GmmOps`]: the data and the responsibilities stay on
//! the device between passes, in chunks of points small enough for one binding each
//! ([`gmm_chunk_points`]); each GPU backend provides only the kernels (`wgsl::gmm` over
//! `shaders/gmm.wgsl`, `cube::gmm` over `#[cube]` kernels).
//!
//! Sums over points: in order within a unit, by a fixed tree within a workgroup, into one table
//! of partial sums for all chunks, then [`GmmOps::reduce`] over the table in one launch, read
//! back once. An EM iteration is six launches per chunk at most (E-step + reduce, first pass +
//! reduce, scatter + reduce) and three read-backs, whatever `N`; every order is fixed, so the
//! same inputs give the same bits.

use crate::backend::launch::{GMM_MAX_DIM, gmm_chunk_points, msum_tiling};
use crate::error::{Error, Result};
use crate::io::Matrix;
use crate::ops::gmm::{
    EStepParams, EStepShape, GmmOps, GmmPass, MStats, MSum, MSumShape, PassLayout, components_of,
    first_pass_stats,
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

    /// The kernels (tests count their launches and reads through it).
    pub fn ops(&self) -> &O {
        &self.ops
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

    /// Reduce the `rows` rows of the `[rows][cols]` table in `table` (one launch); read the sums.
    fn reduce_read(&self, table: &O::Buf, rows: usize, cols: usize) -> Result<Vec<f32>> {
        let out = self.ops.alloc("gmm sums", cols)?;
        self.ops.reduce(table, &out, cols, rows)?;
        self.ops.read(&out, cols)
    }

    /// One M-step summation (`sum`) into `cols` columns over every chunk: every chunk's tiles
    /// write their rows of one table of partial sums, reduced in one launch.
    fn msum(&self, sum: MSum, cols: usize, cov: PassLayout, means: &O::Buf) -> Result<Vec<f32>> {
        let budget = (self.ops.binding_elements() / self.chunks.len().max(1)).max(cols);
        let tilings: Vec<(usize, usize)> = self
            .chunks
            .iter()
            .map(|ch| msum_tiling(ch.n, cols, budget))
            .collect();
        let rows: usize = tilings.iter().map(|t| t.1).sum();
        let partial = self.ops.alloc("gmm partial", rows * cols)?;
        let mut row0 = 0;
        for (ch, &(tile, tiles)) in self.chunks.iter().zip(&tilings) {
            let resp = ch.resp.as_ref().ok_or_else(|| {
                Error::InvalidArgument("mstep before any responsibilities".into())
            })?;
            let shape = MSumShape {
                n: ch.n,
                d: self.d,
                k: self.k,
                cov,
                sum,
                tile,
                tiles,
                cols,
                row0,
            };
            self.ops.msum(&shape, &ch.x, means, resp, &partial)?;
            row0 += tiles;
        }
        self.reduce_read(&partial, rows, cols)
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
        let (d, k) = (self.d, self.k);
        let shapes: Vec<EStepShape> = {
            let mut row0 = 0;
            self.chunks
                .iter()
                .map(|ch| {
                    let s = EStepShape {
                        n: ch.n,
                        d,
                        k,
                        cov: p.layout,
                        row0,
                    };
                    row0 += s.workgroups();
                    s
                })
                .collect()
        };
        let rows: usize = shapes.iter().map(|s| s.workgroups()).sum();
        let lse_part = self.ops.alloc("gmm lse partial", rows)?;
        for (i, shape) in shapes.iter().enumerate() {
            let resp = self.ops.alloc("gmm resp", shape.n * k)?;
            self.ops.estep(
                shape,
                &self.chunks[i].x,
                &means,
                &prec,
                &cst,
                &resp,
                &lse_part,
            )?;
            self.chunks[i].resp = Some(resp);
        }
        Ok(self.reduce_read(&lse_part, rows, 1)?[0] as f64)
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

    fn mstep(&mut self, cov: PassLayout) -> Result<MStats> {
        let (d, k) = (self.d, self.k);
        let no_means = self.ops.upload("gmm no means", &[0.0])?;
        let first = self.msum(MSum::First, k * (d + 1), cov, &no_means)?;
        let (nk, means) = first_pass_stats(&first, k, d);
        let means_buf = self.ops.upload("gmm new means", &means)?;
        let per = match cov {
            PassLayout::Full => d * d,
            PassLayout::Diag => d,
        };
        let scatter = self.msum(MSum::Scatter, k * per, cov, &means_buf)?;
        Ok(MStats {
            nk: nk.iter().map(|&v| v as f64).collect(),
            means: means.iter().map(|&v| v as f64).collect(),
            scatter: scatter.iter().map(|&v| v as f64).collect(),
        })
    }
}
