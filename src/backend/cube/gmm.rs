//! [`GmmOps`] as `#[cube]` kernels: the algorithms, layouts and summation shapes of
//! `shaders/gmm.wgsl`, launched by cubecl on the shared device; the EM passes that drive them
//! are [`crate::backend::device_gmm::DeviceGmm`]'s, shared with the WGSL backend. `D`, the
//! covariance type and the M-step mode are compile-time parameters (register blocks and
//! staging loops over comptime trip counts are `#[unroll]`ed); cubes of [`WORKGROUP`] units:
//! 64 points (E-step), an 8 × 8 grid of 4 × 4 register blocks (M-step sums), 64 / lanes columns
//! (reduction). Outputs are allocated on the device without host data (`client.empty`),
//! poisoned by a device fill when the context poisons.

use std::sync::atomic::{AtomicU64, Ordering};

use cubecl::prelude::*;

use crate::backend::launch::{WORKGROUP, groups};
use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::ops::gmm::{EStepShape, GmmOps, MSumShape, reduce_lanes};

/// Units per cube (points per E-step cube).
const WGU: usize = 64;
/// Coordinates per staged chunk of the E-step, and the padded row stride of its tile.
const DC: usize = 32;
const XS_STRIDE: usize = 33;
/// Columns of `U` per register block of the full E-step.
const JB: usize = 8;
/// Points per staged chunk of the M-step sums, and the output block's side.
const PC: usize = 16;
const OB: usize = 32;

/// `red[0] = Σ red[0..64]` by a fixed tree (every unit of the cube calls it).
#[cube]
fn tree64(red: &mut Shared<[f32]>, lane: usize) {
    for s in 0..6u32 {
        let h = (32u32 >> s) as usize;
        if lane < h {
            red[lane] += red[lane + h];
        }
        sync_cube();
    }
}

/// The E-step over one chunk (`gmm.wgsl`'s `estep`): a cube of 64 points stages their
/// coordinates 32 at a time in shared memory (once for `d ≤ 32`), the matching block of `U`
/// (full: `[32][8]`, eight columns of `y = (x − μ)ᵀU` kept in registers) or of `1/σ` (diag) and
/// of `μ`; `lse_part[row0 + cube]` is the cube's `Σ ln p(x)` by a fixed tree.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
#[allow(clippy::manual_div_ceil, clippy::collapsible_if)] // runtime `div_ceil` does not expand in #[cube]; nested ifs keep comptime and runtime conditions apart
fn estep_kernel(
    x: &[f32],
    means: &[f32],
    prec: &[f32],
    cst: &[f32],
    resp: &mut [f32],
    lse_part: &mut [f32],
    n: u32,
    k: u32,
    row0: u32,
    #[comptime] d: usize,
    #[comptime] cov: u32,
) {
    let lane = UNIT_POS_X as usize;
    let w = (CUBE_POS_X + CUBE_POS_Y * CUBE_COUNT_X) as usize;
    let p0 = w * WGU;
    let p = p0 + lane;
    let nn = n as usize;
    let ku = k as usize;
    let live = p < nn;
    let mut xs = Shared::<[f32]>::new_slice(WGU * XS_STRIDE);
    let mut us = Shared::<[f32]>::new_slice(DC * JB);
    let mut ms = Shared::<[f32]>::new_slice(DC);
    let mut red = Shared::<[f32]>::new_slice(WGU);
    let nchunks = comptime![d.div_ceil(DC)];
    if comptime![nchunks == 1] {
        // Every coordinate fits one chunk: staged once for all components.
        for r in 0..d {
            let e = lane + r * WGU;
            let pt = e / d;
            let ii = e % d;
            let mut v = f32::new(0.0);
            if p0 + pt < nn {
                v = x[(p0 + pt) * d + ii];
            }
            xs[pt * XS_STRIDE + ii] = v;
        }
    }
    let mut m = f32::new(-3.4e38);
    for c in 0..ku {
        let mut q = f32::new(0.0);
        if comptime![cov == 1] {
            for jb in 0..comptime![d.div_ceil(JB)] {
                let j0 = jb * JB;
                let mut y = Array::<f32>::new(JB);
                #[unroll]
                for jj in 0..JB {
                    y[jj] = f32::new(0.0);
                }
                let mut iend = j0 + JB;
                if iend > d {
                    iend = d;
                }
                let nci = (iend + DC - 1) / DC;
                for ic in 0..nci {
                    let i0 = ic * DC;
                    let mut dc = d - i0;
                    if dc > DC {
                        dc = DC;
                    }
                    sync_cube();
                    if comptime![nchunks > 1] {
                        for r in 0..dc {
                            let e = lane + r * WGU;
                            let pt = e / dc;
                            let ii = e % dc;
                            let mut v = f32::new(0.0);
                            if p0 + pt < nn {
                                v = x[(p0 + pt) * d + i0 + ii];
                            }
                            xs[pt * XS_STRIDE + ii] = v;
                        }
                    }
                    #[unroll]
                    for r in 0..comptime![DC * JB / WGU] {
                        let e = lane + r * WGU;
                        let gi = i0 + e / JB;
                        let gj = j0 + e % JB;
                        let mut v = f32::new(0.0);
                        if gi < d && gj < d {
                            v = prec[(c * d + gi) * d + gj];
                        }
                        us[e] = v;
                    }
                    if lane < dc {
                        ms[lane] = means[c * d + i0 + lane];
                    }
                    sync_cube();
                    let mut ni = iend - i0;
                    if ni > dc {
                        ni = dc;
                    }
                    for ii in 0..ni {
                        let v = xs[lane * XS_STRIDE + ii] - ms[ii];
                        #[unroll]
                        for jj in 0..JB {
                            y[jj] += v * us[ii * JB + jj];
                        }
                    }
                }
                #[unroll]
                for jj in 0..JB {
                    q += y[jj] * y[jj];
                }
            }
        } else {
            for ic in 0..nchunks {
                let i0 = ic * DC;
                let mut dc = d - i0;
                if dc > DC {
                    dc = DC;
                }
                sync_cube();
                if comptime![nchunks > 1] {
                    for r in 0..dc {
                        let e = lane + r * WGU;
                        let pt = e / dc;
                        let ii = e % dc;
                        let mut v = f32::new(0.0);
                        if p0 + pt < nn {
                            v = x[(p0 + pt) * d + i0 + ii];
                        }
                        xs[pt * XS_STRIDE + ii] = v;
                    }
                }
                if lane < dc {
                    us[lane] = prec[c * d + i0 + lane];
                    ms[lane] = means[c * d + i0 + lane];
                }
                sync_cube();
                for ii in 0..dc {
                    let y = (xs[lane * XS_STRIDE + ii] - ms[ii]) * us[ii];
                    q += y * y;
                }
            }
        }
        let l = -0.5f32 * q + cst[c];
        if live {
            resp[p * ku + c] = l;
        }
        if l > m {
            m = l;
        }
    }
    let mut total = f32::new(0.0);
    if live {
        let mut s = f32::new(0.0);
        for c in 0..ku {
            s += f32::exp(resp[p * ku + c] - m);
        }
        total = m + f32::ln(s);
        for c in 0..ku {
            resp[p * ku + c] = f32::exp(resp[p * ku + c] - total);
        }
    }
    red[lane] = total;
    sync_cube();
    tree64(&mut red, lane);
    if lane == 0 && p0 < nn {
        lse_part[row0 as usize + w] = red[0];
    }
}

/// The M-step sums over one chunk (`gmm.wgsl`'s `msum`): a cube of 8 × 8 units, each a 4 × 4
/// register block of a 32 × 32 output block (cube x: block, y: tile of points), points staged 16
/// at a time in shared memory. `mode` 0: `Σ r_u x_v` (v = d: `Σ r_u`), 1: `Σ r_u (x_v −
/// μ_uv)²`, 2: `Σ (r_kk (x_u − μ_u))(x_v − μ_v)` for the cube's component `kk`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
#[allow(clippy::manual_div_ceil, clippy::collapsible_if)] // runtime `div_ceil` does not expand in #[cube]; nested ifs keep comptime and runtime conditions apart
fn msum_kernel(
    x: &[f32],
    means: &[f32],
    resp: &[f32],
    partial: &mut [f32],
    n: u32,
    k: u32,
    tile: u32,
    cols: u32,
    row0: u32,
    rows_u: u32,
    #[comptime] d: usize,
    #[comptime] mode: u32,
) {
    let lane = UNIT_POS_X as usize;
    let tu = lane % 8;
    let tv = lane / 8;
    let ku = k as usize;
    // Output rows (components, or coordinates for the full scatter) and columns.
    let nu = rows_u as usize;
    let nv = comptime![if mode == 0 { d + 1 } else { d }];
    let bu_n = (nu + OB - 1) / OB;
    let bv_n = (nv + OB - 1) / OB;
    let per = bu_n * bv_n;
    let bx = CUBE_POS_X as usize;
    let kk = bx / per;
    let u0 = ((bx % per) / bv_n) * OB;
    let v0 = (bx % bv_n) * OB;
    let t = CUBE_POS_Y as usize;
    let nn = n as usize;
    let p0 = t * tile as usize;
    let mut p1 = p0 + tile as usize;
    if p1 > nn {
        p1 = nn;
    }
    let mut mu = Array::<f32>::new(16usize);
    #[unroll]
    for i in 0..4usize {
        #[unroll]
        for j in 0..4usize {
            let u = u0 + 4 * tu + i;
            let v = v0 + 4 * tv + j;
            let mut mv = f32::new(0.0);
            if comptime![mode == 1] {
                if u < nu && v < nv {
                    mv = means[u * d + v];
                }
            }
            mu[i * 4 + j] = mv;
        }
    }
    let mut acc = Array::<f32>::new(16usize);
    #[unroll]
    for q in 0..16usize {
        acc[q] = f32::new(0.0);
    }
    let mut lv = Array::<f32>::new(4usize);
    let mut rv = Array::<f32>::new(4usize);
    let mut ls = Shared::<[f32]>::new_slice(PC * OB);
    let mut rs = Shared::<[f32]>::new_slice(PC * OB);
    let nchunk = (p1 - p0 + PC - 1) / PC;
    for ch in 0..nchunk {
        let pc = p0 + ch * PC;
        sync_cube();
        #[unroll]
        for r in 0..comptime![PC * OB / WGU] {
            let e = lane + r * WGU;
            let pt = pc + e / OB;
            let o = e % OB;
            let mut a = f32::new(0.0);
            let mut b = f32::new(0.0);
            if pt < p1 {
                let u = u0 + o;
                let v = v0 + o;
                if comptime![mode == 2] {
                    let rr = resp[pt * ku + kk];
                    if u < d {
                        a = rr * (x[pt * d + u] - means[kk * d + u]);
                    }
                    if v < d {
                        b = x[pt * d + v] - means[kk * d + v];
                    }
                } else {
                    if u < ku {
                        a = resp[pt * ku + u];
                    }
                    if v < d {
                        b = x[pt * d + v];
                    }
                    if comptime![mode == 0] {
                        if v == d {
                            b = f32::new(1.0);
                        }
                    }
                }
            }
            ls[e] = a;
            rs[e] = b;
        }
        sync_cube();
        let mut np = p1 - pc;
        if np > PC {
            np = PC;
        }
        for pp in 0..np {
            let base = pp * OB;
            #[unroll]
            for i in 0..4usize {
                lv[i] = ls[base + 4 * tu + i];
                rv[i] = rs[base + 4 * tv + i];
            }
            #[unroll]
            for i in 0..4usize {
                #[unroll]
                for j in 0..4usize {
                    if comptime![mode == 1] {
                        let cv = rv[j] - mu[i * 4 + j];
                        acc[i * 4 + j] += lv[i] * cv * cv;
                    } else {
                        acc[i * 4 + j] += lv[i] * rv[j];
                    }
                }
            }
        }
    }
    let row = (row0 as usize + t) * cols as usize;
    #[unroll]
    for i in 0..4usize {
        #[unroll]
        for j in 0..4usize {
            let u = u0 + 4 * tu + i;
            let v = v0 + 4 * tv + j;
            if u < nu && v < nv {
                partial[row + (kk * nu + u) * nv + v] = acc[i * 4 + j];
            }
        }
    }
}

/// `dst[c] = Σ_t src[t][c]` over `rows` rows (`gmm.wgsl`'s `reduce`): a cube of `64 / lanes`
/// columns × `lanes` lanes, lane `l` summing rows `l, l + lanes, …` in order, then a fixed tree.
#[cube(launch)]
#[allow(clippy::manual_div_ceil, clippy::collapsible_if)] // runtime `div_ceil` does not expand in #[cube]; nested ifs keep comptime and runtime conditions apart
fn reduce_kernel(src: &[f32], dst: &mut [f32], cols: u32, rows: u32, lanes: u32) {
    let lane = UNIT_POS_X as usize;
    let ln = lanes as usize;
    let cw = WGU / ln;
    let cl = lane % cw;
    let lt = lane / cw;
    let cu = cols as usize;
    let c = (CUBE_POS_X + CUBE_POS_Y * CUBE_COUNT_X) as usize * cw + cl;
    let mut red = Shared::<[f32]>::new_slice(WGU);
    let mut acc = f32::new(0.0);
    if c < cu {
        let reps = (rows as usize + ln - 1) / ln;
        for r in 0..reps {
            let t = lt + r * ln;
            if t < rows as usize {
                acc += src[t * cu + c];
            }
        }
    }
    red[lane] = acc;
    sync_cube();
    for s in 0..6u32 {
        let h = (lanes >> (s + 1)) as usize;
        if lt < h {
            red[lane] += red[lane + h * cw];
        }
        sync_cube();
    }
    if lt == 0 && c < cu {
        dst[c] = red[cl];
    }
}

/// `out[i] = value` for `i < n` (the poison fill of [`CubeGmmOps::alloc`]).
#[cube(launch)]
fn fill_kernel(out: &mut [f32], n: u32, value: f32) {
    let i = ABSOLUTE_POS as u32;
    if i < n {
        out[i as usize] = value;
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

/// The `#[cube]` EM kernels on the shared device, counting their launches and read-backs
/// (cubecl's launches and reads do not go through [`GpuContext`]'s counters).
pub struct CubeGmmOps<'a> {
    client: &'a Client,
    gpu: &'a GpuContext,
    launches: AtomicU64,
    reads: AtomicU64,
}

impl<'a> CubeGmmOps<'a> {
    /// The kernels launched through `client` on `gpu`'s device.
    pub fn new(client: &'a Client, gpu: &'a GpuContext) -> Self {
        Self {
            client,
            gpu,
            launches: AtomicU64::new(0),
            reads: AtomicU64::new(0),
        }
    }

    /// `(kernel launches, read-backs)` since creation: each read-back is one host wait.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.launches.load(Ordering::Relaxed),
            self.reads.load(Ordering::Relaxed),
        )
    }

    fn launched(&self) {
        self.launches.fetch_add(1, Ordering::Relaxed);
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
        // Device memory without host data; poisoned on the device when poisoning is on.
        let handle = self.client.empty(len.max(1) * 4);
        if self.gpu.poisoning() {
            fill_kernel::launch(
                self.client,
                grid(len.max(1)),
                CubeDim::new_1d(WORKGROUP),
                unsafe { BufferArg::from_raw_parts(handle.clone(), len.max(1)) },
                len.max(1) as u32,
                f32::from_bits(crate::gpu::POISON_WORD),
            );
        }
        Ok(GmmBuf { handle, len })
    }

    fn read(&self, buf: &GmmBuf, len: usize) -> Result<Vec<f32>> {
        self.reads.fetch_add(1, Ordering::Relaxed);
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
        lse_part: &GmmBuf,
    ) -> Result<()> {
        self.launched();
        estep_kernel::launch(
            self.client,
            grid(s.n),
            CubeDim::new_1d(WORKGROUP),
            x.arg(),
            means.arg(),
            prec.arg(),
            cst.arg(),
            resp.arg(),
            lse_part.arg(),
            s.n as u32,
            s.k as u32,
            s.row0 as u32,
            s.d,
            s.cov.code(),
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
        self.launched();
        msum_kernel::launch(
            self.client,
            CubeCount::Static(s.blocks() as u32, s.tiles as u32, 1),
            CubeDim::new_1d(WORKGROUP),
            x.arg(),
            means.arg(),
            resp.arg(),
            partial.arg(),
            s.n as u32,
            s.k as u32,
            s.tile as u32,
            s.cols as u32,
            s.row0 as u32,
            s.output().1 as u32,
            s.d,
            s.mode(),
        );
        Ok(())
    }

    fn reduce(&self, src: &GmmBuf, dst: &GmmBuf, cols: usize, rows: usize) -> Result<()> {
        self.launched();
        let lanes = reduce_lanes(rows);
        let (gx, gy) = GpuContext::grid(cols.div_ceil(WORKGROUP as usize / lanes) as u32);
        reduce_kernel::launch(
            self.client,
            CubeCount::Static(gx, gy, 1),
            CubeDim::new_1d(WORKGROUP),
            src.arg(),
            dst.arg(),
            cols as u32,
            rows as u32,
            lanes as u32,
        );
        Ok(())
    }
}
