//! Launcher for `shaders/categorical.wgsl`: upload the logits once, build every row's CDF in one
//! pass (`categorical_rows`, one workgroup per row), then sample in chunks with one binary search
//! per sample (`categorical_search`).

use crate::backend::launch::{check_categorical_limits, groups};
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::ops::sampling::Categorical;
use crate::rng::StreamKey;

/// `CatParams` of `categorical.wgsl` (uniform buffer, 64 bytes).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct CatParams {
    key: [u32; 2],
    stream: [u32; 2],
    first: [u32; 2],
    n: u32,
    chunk_start: u32,
    s: u32,
    v: u32,
    k: u32,
    inv_t: f32,
    rows: u32,
    pad: [u32; 3],
}

/// Sample as [`crate::ops::Backend::sample_categorical`] documents.
pub fn sample_categorical(
    gpu: &GpuContext,
    c: &Categorical,
    s: usize,
    key: StreamKey,
    first: u64,
    out: &mut [u32],
) -> Result<()> {
    check_categorical_limits(gpu, c, s)?;
    let rows_pipe = gpu.pipeline("categorical.wgsl", "categorical_rows")?;
    let search = gpu.pipeline("categorical.wgsl", "categorical_search")?;
    let logits: Vec<f32> = c.logits.iter().map(|&x| x as f32).collect();
    let logits = gpu.input_buffer("logits", bytemuck::cast_slice(&logits))?;
    let cdf = gpu.output_buffer("categorical cdf", (c.logits.len() * 4) as u64)?;
    let row_last = gpu.output_buffer("categorical last class", (c.rows * 4) as u64)?;
    let params = |n: usize, chunk_start: usize| CatParams {
        key: key.key_words(),
        stream: [key.stream as u32, (key.stream >> 32) as u32],
        first: [first as u32, (first >> 32) as u32],
        n: n as u32,
        chunk_start: chunk_start as u32,
        s: s as u32,
        v: c.classes as u32,
        k: c.k() as u32,
        inv_t: (1.0 / c.temperature) as f32,
        rows: c.rows as u32,
        pad: [0; 3],
    };
    let uniform = gpu.uniform_buffer("categorical params", bytemuck::bytes_of(&params(0, 0)))?;
    let bind = gpu.bind_at(
        &rows_pipe,
        &[(0, &uniform), (1, &logits), (3, &cdf), (4, &row_last)],
    )?;
    let (gx, gy) = GpuContext::grid(c.rows as u32);
    gpu.dispatch(
        "categorical.wgsl:categorical_rows",
        &rows_pipe,
        &bind,
        (gx, gy),
    )?;
    let chunk = gpu.max_binding_elements(4) as usize;
    let mut done = 0usize;
    while done < out.len() {
        let n = (out.len() - done).min(chunk);
        let uniform =
            gpu.uniform_buffer("categorical params", bytemuck::bytes_of(&params(n, done)))?;
        let classes = gpu.output_buffer("classes", (n * 4) as u64)?;
        let bind = gpu.bind_at(
            &search,
            &[(0, &uniform), (2, &classes), (3, &cdf), (4, &row_last)],
        )?;
        gpu.dispatch(
            "categorical.wgsl:categorical_search",
            &search,
            &bind,
            groups(n),
        )?;
        let got: Vec<u32> = gpu.read_buffer(&classes, n)?;
        out[done..done + n].copy_from_slice(&got);
        done += n;
    }
    Ok(())
}
