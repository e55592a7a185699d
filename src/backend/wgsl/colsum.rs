//! The two-level column sum of `shaders/colsum.wgsl`, the one launcher both models' WGSL
//! kernels use (`LmOps::col_sum` and `pos_grad`, `VaeOps::col_sum`).

use super::memory::WgslKernels;
use crate::backend::launch::{COL_BLOCK, WIDE_WORKGROUP, col_chunks};
use crate::error::Result;
use crate::gpu::{BufferRange, GpuContext};

/// `ColParams` of `colsum.wgsl` (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct ColParams {
    rows: u32,
    cols: u32,
    chunk: u32,
    out: u32,
}

impl WgslKernels {
    /// `out[i] = Σ_r rows[r][i]` over `n` rows of `cols` for `i < cols`, 0 for
    /// `cols ≤ i < out_len`: `col_partial` over [`col_chunks`]`(n)` chunks of rows, then
    /// `col_final` summing the chunks in order (the same bits every run).
    pub(super) fn col_sums(
        &self,
        rows: &BufferRange,
        out: &BufferRange,
        n: usize,
        cols: usize,
        out_len: usize,
    ) -> Result<()> {
        let (chunk, chunks) = col_chunks(n);
        let parts = self.scratch(chunks * cols)?;
        let p = ColParams {
            rows: n as u32,
            cols: cols as u32,
            chunk: chunk as u32,
            out: out_len as u32,
        };
        let gpu = &self.gpu;
        let pipe = gpu.pipeline("colsum.wgsl", "col_partial")?;
        let u = gpu.uniform_buffer("colsum params", bytemuck::bytes_of(&p))?;
        let bind = gpu.bind_at(&pipe, &[(0, &u), (1, rows), (2, &parts)])?;
        let grid = (cols.div_ceil(COL_BLOCK) as u32, chunks as u32);
        gpu.dispatch("colsum.wgsl:col_partial", &pipe, &bind, grid)?;
        let p = ColParams {
            rows: chunks as u32,
            ..p
        };
        let pipe = gpu.pipeline("colsum.wgsl", "col_final")?;
        let u = gpu.uniform_buffer("colsum params", bytemuck::bytes_of(&p))?;
        let bind = gpu.bind_at(&pipe, &[(0, &u), (2, &parts), (3, out)])?;
        let groups = (out_len as u32).div_ceil(WIDE_WORKGROUP).max(1);
        gpu.dispatch(
            "colsum.wgsl:col_final",
            &pipe,
            &bind,
            GpuContext::grid(groups),
        )?;
        Ok(())
    }
}
