//! The GPU context: poisoning, timing, and errors that come back as `Result`s, not panics.

mod common;

use collapse_kernels::Error;
use collapse_kernels::gpu::{GpuContext, GpuOptions, POISON_WORD, TimingSource};

#[test]
fn output_buffers_are_poisoned() {
    let Some(gpu) = common::gpu() else { return };
    assert!(gpu.poisoning());
    let buf = gpu.output_buffer("poison check", 4096).unwrap();
    let words: Vec<u32> = gpu.read_buffer(&buf, 1024).unwrap();
    assert!(words.iter().all(|&w| w == POISON_WORD));
    assert!(f32::from_bits(POISON_WORD).is_nan());
}

#[test]
fn a_kernel_that_skips_elements_is_caught_by_the_poison() {
    let Some(gpu) = common::gpu() else { return };
    // Writes only even elements: the odd ones must come back as the poison, i.e. NaN.
    let src = "@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) {
    if (g.x < arrayLength(&out) && g.x % 2u == 0u) { out[g.x] = 1.0; }
}";
    let p = gpu.pipeline_from_source("skipper", src, "main").unwrap();
    let out = gpu.output_buffer("skipper out", 256 * 4).unwrap();
    let bg = gpu.bind(&p, &[&out]).unwrap();
    let t = gpu.dispatch("skipper", &p, &bg, (4, 1)).unwrap();
    assert!(t.seconds.is_finite() && t.seconds >= 0.0, "{t:?}");
    let expected = if gpu.has_timestamps() {
        TimingSource::GpuTimestamp
    } else {
        TimingSource::WallClock
    };
    assert_eq!(t.source, expected);
    let v: Vec<f32> = gpu.read_buffer(&out, 256).unwrap();
    for (i, x) in v.iter().enumerate() {
        assert_eq!(x.is_nan(), i % 2 == 1, "element {i} = {x}");
    }
}

#[test]
fn invalid_wgsl_is_an_error_not_a_panic() {
    let Some(gpu) = common::gpu() else { return };
    let e = gpu
        .pipeline_from_source("broken", "fn main( {", "main")
        .unwrap_err();
    assert!(matches!(e, Error::Validation { .. }), "{e}");
    // The context still works afterwards.
    gpu.check_health().unwrap();
    gpu.pipeline("rng.wgsl", "fill_u32").unwrap();
}

#[test]
fn a_buffer_over_the_limit_is_an_error() {
    let Some(gpu) = common::gpu() else { return };
    let too_big = gpu.limits().max_buffer_size + 4;
    let e = gpu.output_buffer("huge", too_big).unwrap_err();
    assert!(e.to_string().contains("max buffer size"), "{e}");
}

#[test]
fn a_lost_device_is_an_error() {
    if common::gpu().is_none() {
        return;
    }
    // A private context, so destroying it does not disturb the other tests.
    let gpu = GpuContext::new(&GpuOptions::default()).unwrap();
    gpu.device.destroy();
    let r = gpu
        .output_buffer("after loss", 64)
        .and_then(|b| gpu.read_buffer::<u32>(&b, 16));
    let e = r.unwrap_err();
    assert!(
        matches!(
            e,
            Error::DeviceLost(_) | Error::Validation { .. } | Error::Readback(_)
        ),
        "{e}"
    );
}

#[test]
fn grid_covers_every_workgroup_within_the_per_dimension_limit() {
    for n in [1u32, 64, 65_535, 65_536, 1 << 20, u32::MAX / 64] {
        let (x, y) = GpuContext::grid(n);
        assert!(x <= 65_535 && y <= 65_535);
        assert!(x as u64 * y as u64 >= n as u64);
    }
}

/// A queued context records kernels into one command buffer (submitted every
/// `MAX_PENDING_PASSES` passes and at every read-back): more kernels than one batch all run
/// before the read-back that follows them; and an encoding error surfaces as an error naming
/// the kernel, not a panic.
#[test]
fn queued_kernels_all_run_and_their_errors_surface() {
    if common::gpu().is_none() {
        return;
    }
    let gpu = GpuContext::new(&GpuOptions {
        adapter: std::env::var("COLLAPSE_ADAPTER").ok(),
        poison: true,
        binding_limit: None,
        queued: true,
        ..Default::default()
    })
    .unwrap();
    let src = "@group(0) @binding(0) var<storage, read_write> v: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) {
    if (g.x < arrayLength(&v)) { v[g.x] = v[g.x] + 1.0; }
}";
    let p = gpu.pipeline_from_source("count", src, "main").unwrap();
    let start: Vec<f32> = (0..128).map(|i| (i % 7) as f32 - 3.0).collect();
    let buf = gpu
        .input_buffer("counts", bytemuck::cast_slice(&start))
        .unwrap();
    let bg = gpu.bind(&p, &[&buf]).unwrap();
    let mut done = 0;
    for n in [5, collapse_kernels::gpu::MAX_PENDING_PASSES + 37] {
        for _ in 0..n {
            let t = gpu.dispatch("count", &p, &bg, (2, 1)).unwrap();
            assert_eq!(t.source, TimingSource::Queued);
        }
        done += n;
        let got: Vec<f32> = gpu.read_buffer(&buf, 128).unwrap();
        for (i, (g, s)) in got.iter().zip(&start).enumerate() {
            assert_eq!(*g, s + done as f32, "element {i} after {done} kernels");
        }
    }
    // More workgroups than a grid dimension allows: invalid, caught when the batch is submitted.
    gpu.dispatch("too wide", &p, &bg, (70_000, 1)).unwrap();
    let e = gpu.flush().unwrap_err();
    assert!(matches!(e, Error::Validation { .. }), "{e}");
    assert!(e.to_string().contains("too wide"), "{e}");
}
