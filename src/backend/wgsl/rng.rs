//! Launchers for `shaders/rng.wgsl`: chunk the requested range so no binding exceeds the
//! adapter's limit, dispatch, read back.

use crate::backend::launch::{groups, philox_blocks};
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::rng::StreamKey;

/// Which entry point of `rng.wgsl`.
#[derive(Clone, Copy, Debug)]
pub enum Fill {
    /// Raw u32 draws.
    U32,
    /// f32 uniforms in `[0, 1)`.
    UniformF32,
    /// f32 Box–Muller normals.
    NormalF32,
}

impl Fill {
    /// The entry point; `aligned`: the vec4-store variant (range starts on a block and covers
    /// whole blocks).
    fn entry(self, aligned: bool) -> &'static str {
        match (self, aligned) {
            (Fill::U32, false) => "fill_u32",
            (Fill::UniformF32, false) => "fill_uniform_f32",
            (Fill::NormalF32, false) => "fill_normal_f32",
            (Fill::U32, true) => "fill_u32_x4",
            (Fill::UniformF32, true) => "fill_uniform_f32_x4",
            (Fill::NormalF32, true) => "fill_normal_f32_x4",
        }
    }
}

/// `RngParams` of `rng.wgsl` (uniform buffer, 32 bytes).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RngParams {
    key: [u32; 2],
    stream: [u32; 2],
    first_block: [u32; 2],
    count: u32,
    lane0: u32,
}

/// Dispatch `which` to write values `start .. start + count` of `key` into `out` (32-bit words,
/// device-resident; `count` within one binding), without reading anything back. A range that
/// starts on a Philox block and covers whole blocks (`start`, `count` multiples of 4) runs the
/// vec4-store entry points.
pub fn fill_into(
    gpu: &GpuContext,
    which: Fill,
    key: StreamKey,
    start: u64,
    count: usize,
    out: &dyn crate::gpu::Bindable,
) -> Result<()> {
    let aligned = start.is_multiple_of(4) && count.is_multiple_of(4);
    let entry = which.entry(aligned);
    let pipeline = gpu.pipeline("rng.wgsl", entry)?;
    let label = format!("rng.wgsl:{entry}");
    let params = RngParams {
        key: key.key_words(),
        stream: [key.stream as u32, (key.stream >> 32) as u32],
        first_block: [(start / 4) as u32, ((start / 4) >> 32) as u32],
        count: count as u32,
        lane0: (start % 4) as u32,
    };
    let uniform = gpu.uniform_buffer("rng params", bytemuck::bytes_of(&params))?;
    let bind = gpu.bind_at(
        &pipeline,
        &[(0, &uniform), (if aligned { 2 } else { 1 }, out)],
    )?;
    let blocks = philox_blocks(count, params.lane0);
    gpu.dispatch(&label, &pipeline, &bind, groups(blocks as usize))?;
    Ok(())
}

/// Fill `out` (32-bit words: u32 draws or f32 bit patterns) with values `start ..` of `key`.
pub fn fill<T: bytemuck::Pod>(
    gpu: &GpuContext,
    which: Fill,
    key: StreamKey,
    start: u64,
    out: &mut [T],
) -> Result<()> {
    debug_assert_eq!(std::mem::size_of::<T>(), 4);
    let max = gpu.max_binding_elements(4) as usize;
    let mut done = 0usize;
    while done < out.len() {
        let n = (out.len() - done).min(max);
        let output = gpu.output_buffer("rng out", (n * 4) as u64)?;
        fill_into(gpu, which, key, start + done as u64, n, &output)?;
        let host: Vec<T> = gpu.read_buffer(&output, n)?;
        out[done..done + n].copy_from_slice(&host);
        done += n;
    }
    Ok(())
}

/// Like [`fill`] for an f32 entry point, widening the results into `out`.
pub fn fill_f32_widened(
    gpu: &GpuContext,
    which: Fill,
    key: StreamKey,
    start: u64,
    out: &mut [f64],
) -> Result<()> {
    let mut tmp = vec![0f32; out.len()];
    fill(gpu, which, key, start, &mut tmp)?;
    for (o, v) in out.iter_mut().zip(tmp) {
        *o = v as f64;
    }
    Ok(())
}
