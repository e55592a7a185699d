//! Launch geometry the two GPU backends (`wgsl`, `cube`) share: workgroup (cube) sizes, the
//! `(x, y)` grids that cover a count of units, the GMM passes' chunking and tiling, and the sizes
//! the GPU samplers accept. Both backends import it from here, so a kernel and its `#[cube]`
//! twin launch the same units in the same shape, and neither backend imports the other.
//!
//! Units are invocations (WGSL) or units (cubecl); a workgroup (cube) holds [`WORKGROUP`] of
//! them unless a kernel says otherwise (the WGSL element-wise and row kernels of `vae.wgsl` and
//! `lm.wgsl` use [`WIDE_WORKGROUP`]). A grid has at most [`MAX_WORKGROUPS_PER_DIM`] workgroups
//! along x and as many rows along y as it needs.

use crate::error::{Error, Result};
use crate::gpu::GpuContext;
pub use crate::gpu::MAX_WORKGROUPS_PER_DIM;
use crate::ops::sampling::{Categorical, MAX_DIM as SAMPLER_MAX_DIM, PreparedMixture};

/// Units per workgroup (cube) of the one-unit-per-item kernels: Philox fills (one unit per
/// block of four values), mixture and categorical sampling (one per sample), the GMM passes (one
/// per point, per (column, tile) or per (column, row pair)), and every `#[cube]` kernel of the
/// VAE and the language model. The `@workgroup_size(64)` of `rng.wgsl`, `sampling.wgsl`,
/// `categorical.wgsl` and `gmm.wgsl` is this number.
pub const WORKGROUP: u32 = 64;

/// Invocations per workgroup of the WGSL element-wise and row kernels of `vae.wgsl` and
/// `lm.wgsl` (`@workgroup_size(256)`; their workgroup-memory trees reduce over this many lanes).
pub const WIDE_WORKGROUP: u32 = 256;

/// The `(x, y)` grid of workgroups of [`WORKGROUP`] units that covers `units` units (one unit
/// per item; x ≤ [`MAX_WORKGROUPS_PER_DIM`], at least one workgroup).
pub fn groups(units: usize) -> (u32, u32) {
    GpuContext::grid((units as u32).div_ceil(WORKGROUP))
}

/// Philox blocks (four values each) that hold values `lane0 .. lane0 + count` of a block-aligned
/// range: the units of one fill launch, one per block.
pub fn philox_blocks(count: usize, lane0: u32) -> u32 {
    (count as u32 + lane0).div_ceil(4)
}

/// Least rows one chunk of a two-level column sum (`col_sum`, `pos_grad` of both models) sums
/// per column in its first pass.
pub const COL_CHUNK_ROWS: usize = 32;

/// Most chunks (rows of partial sums) of a two-level column sum: the second pass sums at most
/// this many partials per column.
pub const COL_MAX_CHUNKS: usize = 256;

/// `(rows per chunk, chunks)` of a two-level column sum over `rows` rows: at least
/// [`COL_CHUNK_ROWS`] rows per chunk and at most [`COL_MAX_CHUNKS`] chunks (2048 rows: 64 chunks
/// of 32; 128 rows: 4 of 32). A function of `rows` only, so the summation order (rows in order
/// within a chunk, then the chunks in order) is fixed: same bits every run.
pub fn col_chunks(rows: usize) -> (usize, usize) {
    let chunk = COL_CHUNK_ROWS.max(rows.div_ceil(COL_MAX_CHUNKS));
    (chunk, rows.div_ceil(chunk).max(1))
}

/// Columns per workgroup of the first pass of the WGSL two-level column sum (`col_partial` of
/// `colsum.wgsl`: `@workgroup_size(64)`, one lane per column).
pub const COL_BLOCK: usize = 64;

/// Rows per workgroup of the first pass of the two-level row-loss totals (`loss_partial` of
/// `lm.wgsl` and `vae.wgsl`: 256 lanes, 4 rows each).
pub const LOSS_BLOCK: usize = 1024;

/// Largest dimension `D` of the GPU GMM passes (the cubecl kernels are compiled per `D`; the
/// WGSL kernels stage coordinates 32 at a time and take any `D`, capped here alike).
pub const GMM_MAX_DIM: usize = 128;

/// Points per chunk of the GPU GMM passes for `d` dimensions and `k` components, where one
/// binding holds `binding_elements` f32: the chunk's points `[n][d]` and its responsibilities
/// `[n][k]` each fit one binding.
pub fn gmm_chunk_points(binding_elements: usize, d: usize, k: usize) -> usize {
    (binding_elements / d.max(k)).max(1)
}

/// Values a GMM M-step table of partial sums aims to stay under (64 MiB of f32): the tiles are
/// made longer when the columns are many, so writing and reducing the partials stays small
/// beside the sums themselves (`[1M, 64] → 64` full: 64 tiles of 15 625 points).
pub const MSUM_PARTIAL_TARGET: usize = 1 << 24;

/// `(points per tile, tiles)` of a GMM M-step sum over `n` points into `cols` columns: at least
/// 256 points per tile, at most 65535 tiles (one grid dimension), and the `[tiles][cols]` table
/// of partial sums within `max` values (one binding) and about [`MSUM_PARTIAL_TARGET`].
pub fn msum_tiling(n: usize, cols: usize, max: usize) -> (usize, usize) {
    let budget = max.min(MSUM_PARTIAL_TARGET);
    let tile = 256
        .max(n.div_ceil(MAX_WORKGROUPS_PER_DIM as usize))
        .max(n.div_ceil((budget / cols).max(1)));
    (tile, n.div_ceil(tile).max(1))
}

/// Sizes the GPU mixture samplers accept: D ≤ [`crate::ops::sampling::MAX_DIM`], R·M < 2³²,
/// and parameters that fit one binding of `gpu`.
pub fn check_mixture_limits(gpu: &GpuContext, mix: &PreparedMixture, m: usize) -> Result<()> {
    let d = mix.batch.d;
    if d > SAMPLER_MAX_DIM {
        return Err(Error::InvalidArgument(format!(
            "GPU samplers support D ≤ {SAMPLER_MAX_DIM}, got D = {d}; use a CPU backend"
        )));
    }
    if (mix.batch.replicates as u64) * (m as u64) >= u32::MAX as u64 {
        return Err(Error::InvalidArgument(
            "R·M must be below 2^32 samples per call; split the call".into(),
        ));
    }
    let max = gpu.max_binding_elements(4) as usize;
    if mix.factor().len() > max || mix.batch.means.len() > max {
        return Err(Error::InvalidArgument(format!(
            "mixture parameters ({} factor values) exceed one GPU binding ({max} values)",
            mix.factor().len()
        )));
    }
    Ok(())
}

/// Samples per launch of the GPU mixture samplers in `d` dimensions: the `[n][d]` output fits one
/// binding of `gpu`.
pub fn mixture_chunk(gpu: &GpuContext, d: usize) -> usize {
    (gpu.max_binding_elements(4) as usize / d).max(1)
}

/// Sizes the GPU categorical samplers accept: the logits fit one binding of `gpu`, B·S < 2³².
pub fn check_categorical_limits(gpu: &GpuContext, c: &Categorical, s: usize) -> Result<()> {
    let max = gpu.max_binding_elements(4) as usize;
    if c.logits.len() > max {
        return Err(Error::InvalidArgument(format!(
            "{} logits exceed one GPU binding ({max} values); split the rows",
            c.logits.len()
        )));
    }
    if (c.rows as u64) * (s as u64) >= u32::MAX as u64 {
        return Err(Error::InvalidArgument(
            "B·S must be below 2^32 samples per call; split the call".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msum_tiles_cover_the_points_within_the_limits() {
        for (n, cols, max) in [(1, 3, 1 << 20), (1000, 5, 1 << 20), (10_000_000, 7, 4096)] {
            let (tile, tiles) = msum_tiling(n, cols, max);
            assert!(tile * tiles >= n && tile * (tiles - 1) < n);
            assert!(tile >= 256 && tiles <= MAX_WORKGROUPS_PER_DIM as usize);
            assert!(tiles * cols <= max.max(cols));
        }
    }

    #[test]
    fn groups_cover_the_units() {
        for units in [0, 1, 64, 65, 64 * 65_535 + 1] {
            let (x, y) = groups(units);
            assert!(x as usize * y as usize * WORKGROUP as usize >= units);
            assert!((1..=MAX_WORKGROUPS_PER_DIM).contains(&x) && y >= 1);
        }
        assert_eq!(philox_blocks(5, 3), 2);
    }
}
