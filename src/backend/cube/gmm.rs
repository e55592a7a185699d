//! EM passes as `#[cube]` kernels: the algorithms, layouts and summation shapes of
//! `shaders/gmm.wgsl` (see [`crate::backend::wgsl::gmm`]), launched by cubecl on the shared
//! device. `D`, full/diagonal and the M-step mode are compile-time parameters; one unit per
//! point (E-step) or per (column, tile) / (column, row pair) (sums), linearised by
//! `ABSOLUTE_POS` over `(x, y)` grids of 64-unit cubes.

use cubecl::prelude::*;

use crate::backend::wgsl::gmm::{MAX_DIM, chunk_points, msum_tiling};
use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::io::Matrix;
use crate::num::summation::PairwiseAcc;
use crate::ops::gmm::{
    CovarianceType, EStepParams, GmmPass, MStats, components_of, first_pass_stats,
};

const CUBE_DIM: u32 = 64;

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn estep_kernel(
    x: &[f32],
    means: &[f32],
    prec: &[f32],
    cst: &[f32],
    resp: &mut [f32],
    lse: &mut [f32],
    n: u32,
    k: u32,
    #[comptime] d: usize,
    #[comptime] full: bool,
) {
    let p = ABSOLUTE_POS;
    if p < n as usize {
        let ku = k as usize;
        let mut m = f32::new(-3.4e38);
        let mut xc = Array::<f32>::new(d);
        for c in 0..ku {
            for i in 0..d {
                xc[i] = x[p * d + i] - means[c * d + i];
            }
            let mut q = f32::new(0.0);
            if comptime![full] {
                let base = c * d * d;
                for j in 0..d {
                    let mut y = f32::new(0.0);
                    for i in 0..j + 1 {
                        y += xc[i] * prec[base + i * d + j];
                    }
                    q += y * y;
                }
            } else {
                for i in 0..d {
                    let y = xc[i] * prec[c * d + i];
                    q += y * y;
                }
            }
            let l = -0.5f32 * q + cst[c];
            resp[p * ku + c] = l;
            if l > m {
                m = l;
            }
        }
        let mut s = f32::new(0.0);
        for c in 0..ku {
            s += f32::exp(resp[p * ku + c] - m);
        }
        let total = m + f32::ln(s);
        for c in 0..ku {
            resp[p * ku + c] = f32::exp(resp[p * ku + c] - total);
        }
        lse[p] = total;
    }
}

/// `mode` 0: column `c = kk·(d+1) + j` sums `r·x_j` (`j < d`) or `r` (`j = d`); 1: centred scatter.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn msum_kernel(
    x: &[f32],
    means: &[f32],
    resp: &[f32],
    partial: &mut [f32],
    n: u32,
    k: u32,
    tile: u32,
    cols: u32,
    tiles: u32,
    #[comptime] d: usize,
    #[comptime] mode: u32,
    #[comptime] full: bool,
) {
    let pos = ABSOLUTE_POS as u32;
    if pos < cols * tiles {
        let c = (pos % cols) as usize;
        let t = pos / cols;
        let p0 = (t * tile) as usize;
        let mut p1 = p0 + tile as usize;
        if p1 > n as usize {
            p1 = n as usize;
        }
        let ku = k as usize;
        let mut acc = f32::new(0.0);
        if comptime![mode == 0] {
            let kk = c / (d + 1);
            let j = c % (d + 1);
            for p in p0..p1 {
                let r = resp[p * ku + kk];
                if j < d {
                    acc += r * x[p * d + j];
                } else {
                    acc += r;
                }
            }
        } else if comptime![full] {
            let kk = c / (d * d);
            let a = (c / d) % d;
            let b = c % d;
            for p in p0..p1 {
                let r = resp[p * ku + kk];
                acc += r * (x[p * d + a] - means[kk * d + a]) * (x[p * d + b] - means[kk * d + b]);
            }
        } else {
            let kk = c / d;
            let a = c % d;
            for p in p0..p1 {
                let v = x[p * d + a] - means[kk * d + a];
                acc += resp[p * ku + kk] * v * v;
            }
        }
        partial[(t * cols) as usize + c] = acc;
    }
}

#[cube(launch)]
fn tree_kernel(src: &[f32], dst: &mut [f32], cols: u32, t_in: u32, half: u32) {
    let pos = ABSOLUTE_POS as u32;
    if pos < cols * half {
        let c = pos % cols;
        let t = pos / cols;
        let mut v = src[(2 * t * cols + c) as usize];
        if 2 * t + 1 < t_in {
            v += src[((2 * t + 1) * cols + c) as usize];
        }
        dst[(t * cols + c) as usize] = v;
    }
}

struct Chunk {
    n: usize,
    x: cubecl::server::Handle,
    resp: Option<cubecl::server::Handle>,
}

/// The cubecl EM pass state.
pub struct CubeGmm<'a> {
    client: &'a Client,
    gpu: &'a GpuContext,
    x: Vec<f32>,
    d: usize,
    k: usize,
    chunks: Vec<Chunk>,
}

fn read(client: &Client, h: cubecl::server::Handle, len: usize) -> Result<Vec<f32>> {
    let bytes = client
        .read_one(h)
        .map_err(|e| Error::Cubecl(format!("{e:?}")))?;
    Ok(bytemuck::cast_slice::<u8, f32>(&bytes[..len * 4]).to_vec())
}

fn grid(units: usize) -> CubeCount {
    let (gx, gy) = GpuContext::grid((units as u32).div_ceil(CUBE_DIM));
    CubeCount::Static(gx, gy, 1)
}

impl<'a> CubeGmm<'a> {
    /// Upload `x` (`[N][D]`, as f32).
    pub fn new(client: &'a Client, gpu: &'a GpuContext, x: &Matrix) -> Result<Self> {
        if x.cols > MAX_DIM {
            return Err(Error::InvalidArgument(format!(
                "the cubecl E-step supports D ≤ {MAX_DIM}, got {}",
                x.cols
            )));
        }
        let mut s = Self {
            client,
            gpu,
            x: x.data.iter().map(|&v| v as f32).collect(),
            d: x.cols,
            k: 0,
            chunks: Vec::new(),
        };
        s.layout(1);
        Ok(s)
    }

    fn layout(&mut self, k: usize) {
        if k == self.k && !self.chunks.is_empty() {
            return;
        }
        let d = self.d;
        let n = self.x.len() / d;
        let per = chunk_points(self.gpu, d, k);
        self.chunks = (0..n)
            .step_by(per)
            .map(|s| {
                let cn = per.min(n - s);
                Chunk {
                    n: cn,
                    x: self
                        .client
                        .create_from_slice(bytemuck::cast_slice(&self.x[s * d..(s + cn) * d])),
                    resp: None,
                }
            })
            .collect();
        self.k = k;
    }

    fn output(&self, len: usize) -> cubecl::server::Handle {
        let fill = if self.gpu.poisoning() {
            f32::from_bits(crate::gpu::POISON_WORD)
        } else {
            0.0
        };
        self.client
            .create_from_slice(bytemuck::cast_slice(&vec![fill; len.max(1)]))
    }

    fn tree_sum(
        &self,
        mut h: cubecl::server::Handle,
        mut t: usize,
        cols: usize,
    ) -> Result<Vec<f32>> {
        while t > 1 {
            let half = t.div_ceil(2);
            let dst = self.output(half * cols);
            tree_kernel::launch(
                self.client,
                grid(half * cols),
                CubeDim::new_1d(CUBE_DIM),
                unsafe { BufferArg::from_raw_parts(h.clone(), t * cols) },
                unsafe { BufferArg::from_raw_parts(dst.clone(), half * cols) },
                cols as u32,
                t as u32,
                half as u32,
            );
            h = dst;
            t = half;
        }
        read(self.client, h, cols)
    }

    fn msum(
        &self,
        mode: u32,
        cols: usize,
        full: bool,
        means: &cubecl::server::Handle,
        means_len: usize,
    ) -> Result<Vec<f32>> {
        let max = self.gpu.max_binding_elements(4) as usize;
        let mut acc = PairwiseAcc::default();
        for ch in &self.chunks {
            let resp = ch.resp.as_ref().ok_or_else(|| {
                Error::InvalidArgument("mstep before any responsibilities".into())
            })?;
            let (tile, tiles) = msum_tiling(ch.n, cols, max);
            let partial = self.output(tiles * cols);
            msum_kernel::launch(
                self.client,
                grid(tiles * cols),
                CubeDim::new_1d(CUBE_DIM),
                unsafe { BufferArg::from_raw_parts(ch.x.clone(), ch.n * self.d) },
                unsafe { BufferArg::from_raw_parts(means.clone(), means_len) },
                unsafe { BufferArg::from_raw_parts(resp.clone(), ch.n * self.k) },
                unsafe { BufferArg::from_raw_parts(partial.clone(), tiles * cols) },
                ch.n as u32,
                self.k as u32,
                tile as u32,
                cols as u32,
                tiles as u32,
                self.d,
                mode,
                full,
            );
            acc.push(self.tree_sum(partial, tiles, cols)?);
        }
        Ok(acc.finish().unwrap_or_else(|| vec![0.0; cols]))
    }
}

impl GmmPass for CubeGmm<'_> {
    fn estep(&mut self, p: &EStepParams) -> Result<f64> {
        if p.d != self.d {
            return Err(Error::InvalidArgument(format!(
                "model has D = {}, data {}",
                p.d, self.d
            )));
        }
        self.layout(p.k);
        let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let cst = p.log_constants();
        let (means_v, prec_v, cst_v) = (f32s(&p.means), f32s(&p.prec_chol), f32s(&cst));
        let means = self
            .client
            .create_from_slice(bytemuck::cast_slice(&means_v));
        let prec = self.client.create_from_slice(bytemuck::cast_slice(&prec_v));
        let cst = self.client.create_from_slice(bytemuck::cast_slice(&cst_v));
        let (d, k) = (self.d, self.k);
        let mut total = PairwiseAcc::default();
        for i in 0..self.chunks.len() {
            let n = self.chunks[i].n;
            let resp = self.output(n * k);
            let lse = self.output(n);
            estep_kernel::launch(
                self.client,
                grid(n),
                CubeDim::new_1d(CUBE_DIM),
                unsafe { BufferArg::from_raw_parts(self.chunks[i].x.clone(), n * d) },
                unsafe { BufferArg::from_raw_parts(means.clone(), means_v.len()) },
                unsafe { BufferArg::from_raw_parts(prec.clone(), prec_v.len()) },
                unsafe { BufferArg::from_raw_parts(cst.clone(), cst_v.len()) },
                unsafe { BufferArg::from_raw_parts(resp.clone(), n * k) },
                unsafe { BufferArg::from_raw_parts(lse.clone(), n) },
                n as u32,
                k as u32,
                d,
                p.covariance_type == CovarianceType::Full,
            );
            total.push(self.tree_sum(lse, n, 1)?);
            self.chunks[i].resp = Some(resp);
        }
        Ok(total.finish().map(|v| v[0] as f64).unwrap_or(0.0))
    }

    fn set_responsibilities(&mut self, r: &[f64]) -> Result<()> {
        let n = self.x.len() / self.d;
        let k = components_of(r.len(), n)?;
        self.layout(k);
        let mut s = 0;
        for ch in &mut self.chunks {
            let v: Vec<f32> = r[s * k..(s + ch.n) * k].iter().map(|&x| x as f32).collect();
            ch.resp = Some(self.client.create_from_slice(bytemuck::cast_slice(&v)));
            s += ch.n;
        }
        Ok(())
    }

    fn responsibilities(&self) -> Result<Vec<f64>> {
        let mut out = Vec::new();
        for ch in &self.chunks {
            let h = ch
                .resp
                .clone()
                .ok_or_else(|| Error::InvalidArgument("no responsibilities yet".into()))?;
            out.extend(
                read(self.client, h, ch.n * self.k)?
                    .iter()
                    .map(|&x| x as f64),
            );
        }
        Ok(out)
    }

    fn mstep(&mut self, cov: CovarianceType) -> Result<MStats> {
        let (d, k) = (self.d, self.k);
        let full = cov == CovarianceType::Full;
        let dummy = self.client.create_from_slice(bytemuck::cast_slice(&[0f32]));
        let first = self.msum(0, k * (d + 1), full, &dummy, 1)?;
        let (nk, means) = first_pass_stats(&first, k, d);
        let means_h = self.client.create_from_slice(bytemuck::cast_slice(&means));
        let per = if full { d * d } else { d };
        let scatter = self.msum(1, k * per, full, &means_h, means.len())?;
        Ok(MStats {
            nk: nk.iter().map(|&v| v as f64).collect(),
            means: means.iter().map(|&v| v as f64).collect(),
            scatter: scatter.iter().map(|&v| v as f64).collect(),
        })
    }
}
