//! Launcher for `shaders/categorical.wgsl`: upload the logits once, sample in chunks.

use crate::backend::launch::{check_categorical_limits, groups};
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::ops::sampling::Categorical;
use crate::rng::StreamKey;

/// `CatParams` of `categorical.wgsl` (uniform buffer, 48 bytes).
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
    let pipeline = gpu.pipeline("categorical.wgsl", "sample_categorical")?;
    let logits: Vec<f32> = c.logits.iter().map(|&x| x as f32).collect();
    let logits = gpu.input_buffer("logits", bytemuck::cast_slice(&logits))?;
    let chunk = gpu.max_binding_elements(4) as usize;
    let mut done = 0usize;
    while done < out.len() {
        let n = (out.len() - done).min(chunk);
        let params = CatParams {
            key: key.key_words(),
            stream: [key.stream as u32, (key.stream >> 32) as u32],
            first: [first as u32, (first >> 32) as u32],
            n: n as u32,
            chunk_start: done as u32,
            s: s as u32,
            v: c.classes as u32,
            k: c.k() as u32,
            inv_t: (1.0 / c.temperature) as f32,
        };
        let uniform = gpu.uniform_buffer("categorical params", bytemuck::bytes_of(&params))?;
        let classes = gpu.output_buffer("classes", (n * 4) as u64)?;
        let bind = gpu.bind(&pipeline, &[&uniform, &logits, &classes])?;
        gpu.dispatch(
            "categorical.wgsl:sample_categorical",
            &pipeline,
            &bind,
            groups(n),
        )?;
        let got: Vec<u32> = gpu.read_buffer(&classes, n)?;
        out[done..done + n].copy_from_slice(&got);
        done += n;
    }
    Ok(())
}
