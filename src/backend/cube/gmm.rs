//! [`GmmOps`] as `#[cube]` kernels: the algorithms, layouts and summation shapes of
//! `shaders/gmm.wgsl`, launched by cubecl on the shared device; the EM passes that drive them
//! are [`crate::backend::device_gmm::DeviceGmm`]'s, shared with the WGSL backend. `D`,
//! full/diagonal and the M-step mode are compile-time parameters; one unit per point (E-step)
//! or per (column, tile) / (column, row pair) (sums), linearised by `ABSOLUTE_POS` over `(x, y)`
//! grids of [`WORKGROUP`]-unit cubes.

use cubecl::prelude::*;

use crate::backend::launch::{WORKGROUP, groups};
use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::ops::gmm::{EStepShape, GmmOps, MSumShape};

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

/// A cubecl handle with the number of f32 it was created for (what the kernels are told).
#[derive(Clone)]
pub struct GmmBuf {
    handle: cubecl::server::Handle,
    len: usize,
}

impl GmmBuf {
    /// `self` as a kernel argument.
    fn arg(&self) -> BufferArg {
        // SAFETY: `handle` was created with at least `len` f32 (see `upload` and `alloc`).
        unsafe { BufferArg::from_raw_parts(self.handle.clone(), self.len) }
    }
}

/// The `#[cube]` EM kernels on the shared device.
pub struct CubeGmmOps<'a> {
    client: &'a Client,
    gpu: &'a GpuContext,
}

impl<'a> CubeGmmOps<'a> {
    /// The kernels launched through `client` on `gpu`'s device.
    pub fn new(client: &'a Client, gpu: &'a GpuContext) -> Self {
        Self { client, gpu }
    }
}

/// Enough cubes of [`WORKGROUP`] units for `units`, on an `(x, y)` grid.
fn grid(units: usize) -> CubeCount {
    let (gx, gy) = groups(units);
    CubeCount::Static(gx, gy, 1)
}

impl GmmOps for CubeGmmOps<'_> {
    type Buf = GmmBuf;

    fn label(&self) -> &'static str {
        "cubecl"
    }

    fn binding_elements(&self) -> usize {
        self.gpu.max_binding_elements(4) as usize
    }

    fn upload(&self, _label: &str, data: &[f32]) -> Result<GmmBuf> {
        Ok(GmmBuf {
            handle: self.client.create_from_slice(bytemuck::cast_slice(data)),
            len: data.len(),
        })
    }

    fn alloc(&self, _label: &str, len: usize) -> Result<GmmBuf> {
        let fill = if self.gpu.poisoning() {
            f32::from_bits(crate::gpu::POISON_WORD)
        } else {
            0.0
        };
        Ok(GmmBuf {
            handle: self
                .client
                .create_from_slice(bytemuck::cast_slice(&vec![fill; len.max(1)])),
            len,
        })
    }

    fn read(&self, buf: &GmmBuf, len: usize) -> Result<Vec<f32>> {
        let bytes = self
            .client
            .read_one(buf.handle.clone())
            .map_err(|e| Error::Cubecl(format!("{e:?}")))?;
        Ok(bytemuck::cast_slice::<u8, f32>(&bytes[..len * 4]).to_vec())
    }

    fn estep(
        &self,
        s: &EStepShape,
        x: &GmmBuf,
        means: &GmmBuf,
        prec: &GmmBuf,
        cst: &GmmBuf,
        resp: &GmmBuf,
        lse: &GmmBuf,
    ) -> Result<()> {
        estep_kernel::launch(
            self.client,
            grid(s.n),
            CubeDim::new_1d(WORKGROUP),
            x.arg(),
            means.arg(),
            prec.arg(),
            cst.arg(),
            resp.arg(),
            lse.arg(),
            s.n as u32,
            s.k as u32,
            s.d,
            s.full,
        );
        Ok(())
    }

    fn msum(
        &self,
        s: &MSumShape,
        x: &GmmBuf,
        means: &GmmBuf,
        resp: &GmmBuf,
        partial: &GmmBuf,
    ) -> Result<()> {
        msum_kernel::launch(
            self.client,
            grid(s.tiles * s.cols),
            CubeDim::new_1d(WORKGROUP),
            x.arg(),
            means.arg(),
            resp.arg(),
            partial.arg(),
            s.n as u32,
            s.k as u32,
            s.tile as u32,
            s.cols as u32,
            s.tiles as u32,
            s.d,
            s.sum.mode(),
            s.full,
        );
        Ok(())
    }

    fn tree_reduce(&self, src: &GmmBuf, dst: &GmmBuf, cols: usize, t_in: usize) -> Result<()> {
        let half = t_in.div_ceil(2);
        tree_kernel::launch(
            self.client,
            grid(half * cols),
            CubeDim::new_1d(WORKGROUP),
            src.arg(),
            dst.arg(),
            cols as u32,
            t_in as u32,
            half as u32,
        );
        Ok(())
    }
}
