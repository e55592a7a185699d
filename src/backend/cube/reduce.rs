//! Two-level (or multi-level) deterministic reductions as `#[cube]` kernels, shared by the
//! VAE's and the language model's cubecl backends: column sums (`col_sum`, `pos_grad`), totals
//! (the LM's weighted loss mean, the VAE's batch loss), the LM's per-block gradient sums of
//! squares over its flat layout, and the gradient-clip factor. No atomics and no timing-dependent order: every partial sums a fixed
//! set of elements in index order, so the bits are the same every run.
//!
//! Launch layout: one unit per partial sum, cubes of [`crate::backend::launch::WORKGROUP`]
//! units on `(x, y)` grids. Column sums: pass 1 has unit `u = k·cols + j` sum rows
//! `[k·chunk, min((k+1)·chunk, n))` of column `j` (adjacent units, adjacent columns: coalesced;
//! [`col_chunks`] gives `chunk`), pass 2 one unit per output summing the `chunks` partials of its
//! column. Totals: each level has `units` units, unit `u` summing `x[u + units·q]` over
//! `q < ⌈n/units⌉` (coalesced), `units = max(target, ⌈n/32⌉)`, until `target` values remain.

use cubecl::prelude::*;

use super::memory::{CubeKernels, arg, arg_whole, dim, grid};
use crate::backend::launch::col_chunks;
use crate::error::Result;

type Handle = cubecl::server::Handle;

/// Elements one unit of a total's level sums (at most).
const LEVEL_FANIN: usize = 32;

/// What a total's first level sums: the values, or the values whose weight is nonzero.
#[derive(Clone, Copy)]
pub(super) enum Terms {
    /// `x[i]`.
    Plain = 0,
    /// `x[i]` where `w[i] ≠ 0` (skipped, not multiplied: a non-finite value of weight 0 adds
    /// nothing).
    Weighted = 2,
}

/// Pass 1 of a column sum: `parts[k][j] = Σ_{k·chunk ≤ r < min((k+1)·chunk, n)} rows[r][j]`, one
/// unit per `(k, j)`, `k < chunks`, `j < cols`.
#[cube(launch)]
fn col_partial_kernel(rows: &[f32], parts: &mut [f32], n: u32, cols: u32, chunk: u32, chunks: u32) {
    let u = ABSOLUTE_POS as u32;
    if u < chunks * cols {
        let k = u / cols;
        let j = u % cols;
        let r0 = k * chunk;
        let mut s = f32::new(0.0);
        for q in 0..chunk {
            let r = r0 + q;
            if r < n {
                s += rows[(r * cols + j) as usize];
            }
        }
        parts[u as usize] = s;
    }
}

/// Pass 2: `out[i] = Σ_{k < chunks} parts[k][i]` in order for `i < cols`, 0 for
/// `cols ≤ i < out_len`, one unit per output.
#[cube(launch)]
fn col_final_kernel(parts: &[f32], out: &mut [f32], chunks: u32, cols: u32, out_len: u32) {
    let i = ABSOLUTE_POS as u32;
    if i < out_len {
        let mut s = f32::new(0.0);
        if i < cols {
            for k in 0..chunks {
                s += parts[(k * cols + i) as usize];
            }
        }
        out[i as usize] = s;
    }
}

/// One level of a total: `out[offset + u] = mult·Σ_{q < reps, u + units·q < n} t(x[u + units·q])`
/// for `u < units`, `t` by `terms` ([`Terms`]; `w` read only for `Weighted`).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn level_kernel(
    x: &[f32],
    w: &[f32],
    out: &mut [f32],
    n: u32,
    units: u32,
    reps: u32,
    offset: u32,
    terms: u32,
    mult: f32,
) {
    let u = ABSOLUTE_POS as u32;
    if u < units {
        let mut s = f32::new(0.0);
        for q in 0..reps {
            let i = u + units * q;
            if i < n {
                let v = x[i as usize];
                if terms == 2u32 {
                    if w[i as usize] != f32::new(0.0) {
                        s += v;
                    }
                } else {
                    s += v;
                }
            }
        }
        out[(offset + u) as usize] = s * mult;
    }
}

/// Units of a cube of the flat-layout kernels ([`crate::ops::memory::FlatLayout`]): one cube
/// per block of [`FLAT_BLOCK`](crate::ops::memory::FLAT_BLOCK) elements, 4096 / 256 = 16 per unit (`lm.wgsl`'s
/// `sumsq_partial` and `adamw`, `vae.wgsl`'s `adam`, likewise).
pub(super) const FLAT_UNITS: u32 = 256;

/// The `(x, y)` grid of one cube per block for `n_blocks` blocks of a flat layout.
pub(super) fn block_grid(n_blocks: usize) -> CubeCount {
    let (gx, gy) = crate::gpu::GpuContext::grid(n_blocks as u32);
    CubeCount::Static(gx, gy, 1)
}

/// `parts[w] = Σ_{j < count} g[start + j]²` for block `w = (start, count, …)` of `blocks`
/// (`[w][4]` u32), one cube of [`FLAT_UNITS`] per block: unit `l` sums `j = l + 256·q` in
/// order, then a fixed tree over the cube (`lm.wgsl`'s `tree_sum`): the same bits every run.
#[cube(launch)]
fn block_sumsq_kernel(g: &[f32], blocks: &[u32], parts: &mut [f32], n_blocks: u32) {
    let lane = UNIT_POS_X as usize;
    let w = CUBE_POS_X + CUBE_POS_Y * CUBE_COUNT_X;
    let mut red = Shared::<[f32]>::new_slice(256usize);
    let mut start = 0u32;
    let mut count = 0u32;
    if w < n_blocks {
        start = blocks[(w * 4) as usize];
        count = blocks[(w * 4 + 1) as usize];
    }
    let mut s = f32::new(0.0);
    for q in 0..16u32 {
        let j = q * 256 + lane as u32;
        if j < count {
            let v = g[(start + j) as usize];
            s += v * v;
        }
    }
    red[lane] = s;
    sync_cube();
    for t in 0..8u32 {
        let h = (128u32 >> t) as usize;
        if lane < h {
            red[lane] += red[lane + h];
        }
        sync_cube();
    }
    if lane == 0 && w < n_blocks {
        parts[w as usize] = red[0];
    }
}

/// The clip factor from the total `q[0]` of the squared gradients: `scale = [clip/√q if
/// clip > 0 and √q > clip else 1, q]`, by unit 0.
#[cube(launch)]
fn clip_kernel(q: &[f32], scale: &mut [f32], clip: f32) {
    if ABSOLUTE_POS == 0 {
        let tot = q[0];
        let norm = f32::sqrt(tot);
        let mut f = f32::new(1.0);
        if clip > 0.0f32 && norm > clip {
            f = clip / norm;
        }
        scale[0] = f;
        scale[1] = tot;
    }
}

impl CubeKernels<'_> {
    /// A fresh device buffer of `len` f32 for partial sums.
    fn partials(&self, len: usize) -> Handle {
        self.client.empty(len.max(1) * 4)
    }

    /// `out[i] = Σ_r rows[r][i]` over `n` rows of `cols` for `i < cols`, 0 for
    /// `cols ≤ i < out_len` (two passes; see the module doc).
    pub(super) fn col_sums(
        &self,
        rows: &Handle,
        out: &Handle,
        n: usize,
        cols: usize,
        out_len: usize,
    ) -> Result<()> {
        let (chunk, chunks) = col_chunks(n);
        let parts = self.partials(chunks * cols);
        col_partial_kernel::launch(
            self.client,
            grid(chunks * cols),
            dim(),
            arg(rows, n * cols),
            arg(&parts, chunks * cols),
            n as u32,
            cols as u32,
            chunk as u32,
            chunks as u32,
        );
        col_final_kernel::launch(
            self.client,
            grid(out_len),
            dim(),
            arg(&parts, chunks * cols),
            arg(out, out_len),
            chunks as u32,
            cols as u32,
            out_len as u32,
        );
        Ok(())
    }

    /// Reduce the `n` values of `x` (first level: `terms`, with weights `w`) to `target`
    /// partial sums at `dst[offset..offset + target]`, the last level multiplied by `mult`:
    /// levels of at most [`LEVEL_FANIN`] elements per unit (see the module doc), at least one.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn total(
        &self,
        x: &Handle,
        w: Option<&Handle>,
        n: usize,
        terms: Terms,
        (dst, offset, target): (&Handle, usize, usize),
        mult: f32,
    ) -> Result<()> {
        let target = target.max(1);
        let (mut src, mut len, mut terms) = (x.clone(), n, terms as u32);
        let w = w.unwrap_or(&self.dummy).clone();
        loop {
            let units = target.max(len.div_ceil(LEVEL_FANIN));
            let last = units == target;
            let (out, at, m) = if last {
                (dst.clone(), offset, mult)
            } else {
                (self.partials(units), 0, 1.0)
            };
            level_kernel::launch(
                self.client,
                grid(units),
                dim(),
                arg(&src, len),
                arg(
                    &w,
                    if terms == Terms::Weighted as u32 {
                        len
                    } else {
                        1
                    },
                ),
                arg(&out, at + units),
                len as u32,
                units as u32,
                len.div_ceil(units) as u32,
                at as u32,
                terms,
                m,
            );
            if last {
                return Ok(());
            }
            (src, len, terms) = (out, units, Terms::Plain as u32);
        }
    }

    /// `parts[w]` = the sum of squares of block `w` of the flat buffer `g` (`blocks`: the
    /// layout's table, `n_blocks` blocks), in one launch.
    pub(super) fn block_sumsq(
        &self,
        g: &Handle,
        blocks: &Handle,
        n_blocks: usize,
        parts: &Handle,
    ) -> Result<()> {
        block_sumsq_kernel::launch(
            self.client,
            block_grid(n_blocks),
            CubeDim::new_1d(FLAT_UNITS),
            arg_whole(g),
            arg(blocks, n_blocks * 4),
            arg(parts, n_blocks),
            n_blocks as u32,
        );
        Ok(())
    }

    /// `scale = [clip factor, q]` from the `n` partial sums of squares in `parts` (see
    /// [`crate::ops::lm::LmOps::clip_scale`]).
    pub(super) fn clip_factor(
        &self,
        parts: &Handle,
        n: usize,
        clip: f32,
        scale: &Handle,
    ) -> Result<()> {
        let q = self.partials(1);
        self.total(parts, None, n, Terms::Plain, (&q, 0, 1), 1.0)?;
        clip_kernel::launch(
            self.client,
            CubeCount::Static(1, 1, 1),
            CubeDim::new_1d(1),
            arg(&q, 1),
            arg(scale, 2),
            clip,
        );
        Ok(())
    }
}
