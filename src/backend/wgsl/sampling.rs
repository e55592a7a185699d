//! Launcher for `shaders/sampling.wgsl`: upload the mixture parameters once, then sample in
//! chunks small enough that no output binding exceeds the adapter's limit.

use crate::backend::launch::{check_mixture_limits, mixture_chunk};
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::ops::sampling::{PreparedMixture, blocks_per_sample};
use crate::rng::StreamKey;

/// `MixParams` of `sampling.wgsl` (uniform buffer, 64 bytes).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct MixParams {
    key: [u32; 2],
    stream: [u32; 2],
    first_block: [u32; 2],
    sb: u32,
    n: u32,
    chunk_start: u32,
    m: u32,
    k: u32,
    d: u32,
    full: u32,
    pad: [u32; 3],
}

/// The sampler's workgroup width and normals rows (`WG`, `ZD` of `sampling.wgsl`) for
/// dimension `d`: `ZD` is `d` rounded up to 4, and `WG` is 64 when the workgroup array of
/// `ZD × (WG + 1)` f32 fits the adapter's workgroup storage, else 32 (lavapipe's 32 KiB at
/// D = 128).
pub fn sampler_shape(gpu: &GpuContext, d: usize) -> (u32, u32) {
    let zd = (d.max(1) as u32).div_ceil(4) * 4;
    let limit = gpu.limits().max_compute_workgroup_storage_size;
    let wg = if 4 * zd * 65 <= limit { 64 } else { 32 };
    (wg, zd)
}

/// Sample as [`crate::ops::Backend::sample_mixture`] documents.
pub fn sample_mixture(
    gpu: &GpuContext,
    mix: &PreparedMixture,
    m: usize,
    key: StreamKey,
    first: u64,
    out: &mut [f64],
    comps: &mut [u32],
) -> Result<()> {
    check_mixture_limits(gpu, mix, m)?;
    let d = mix.batch.d;
    let n_total = comps.len();
    let (wg, zd) = sampler_shape(gpu, d);
    let pipeline = gpu.pipeline_with(
        "sampling.wgsl",
        "sample_mixture",
        &[("WG", wg as f64), ("ZD", zd as f64)],
    )?;
    let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    let thresholds = gpu.input_buffer("thresholds", bytemuck::cast_slice(&mix.thresholds))?;
    let means = gpu.input_buffer("means", bytemuck::cast_slice(&f32s(&mix.batch.means)))?;
    let factor = gpu.input_buffer("factor", bytemuck::cast_slice(&f32s(mix.factor())))?;
    let sb = blocks_per_sample(d);
    let chunk = mixture_chunk(gpu, d);
    let mut done = 0usize;
    while done < n_total {
        let n = (n_total - done).min(chunk);
        let fb = (first + done as u64) * sb;
        let params = MixParams {
            key: key.key_words(),
            stream: [key.stream as u32, (key.stream >> 32) as u32],
            first_block: [fb as u32, (fb >> 32) as u32],
            sb: sb as u32,
            n: n as u32,
            chunk_start: done as u32,
            m: m as u32,
            k: mix.batch.k as u32,
            d: d as u32,
            full: mix.is_full() as u32,
            pad: [0; 3],
        };
        let uniform = gpu.uniform_buffer("mix params", bytemuck::bytes_of(&params))?;
        let samples = gpu.output_buffer("samples", (n * d * 4) as u64)?;
        let comp_buf = gpu.output_buffer("components", (n * 4) as u64)?;
        let bind = gpu.bind(
            &pipeline,
            &[&uniform, &thresholds, &means, &factor, &samples, &comp_buf],
        )?;
        let grid = GpuContext::grid(n.div_ceil(wg as usize) as u32);
        gpu.dispatch("sampling.wgsl:sample_mixture", &pipeline, &bind, grid)?;
        let xs: Vec<f32> = gpu.read_buffer(&samples, n * d)?;
        let cs: Vec<u32> = gpu.read_buffer(&comp_buf, n)?;
        for (o, v) in out[done * d..(done + n) * d].iter_mut().zip(xs) {
            *o = v as f64;
        }
        comps[done..done + n].copy_from_slice(&cs);
        done += n;
    }
    Ok(())
}
