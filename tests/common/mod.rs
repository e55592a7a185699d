//! Shared test helpers: the GPU context (poisoned outputs) and the CI rule for missing adapters.
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use collapse_kernels::backend::{self, BackendKind};
use collapse_kernels::gpu::{GpuContext, GpuOptions};
use collapse_kernels::ops::Backend;
use collapse_kernels::trainers::Engine;

/// The shared GPU context for tests, with output poisoning on. `None` (with a printed reason)
/// when no adapter exists — except under `CI=true`, where a missing adapter fails the test.
pub fn gpu() -> Option<Arc<GpuContext>> {
    static CTX: OnceLock<Result<Arc<GpuContext>, String>> = OnceLock::new();
    let r = CTX.get_or_init(|| {
        GpuContext::new(&GpuOptions {
            adapter: std::env::var("COLLAPSE_ADAPTER").ok(),
            poison: true,
            binding_limit: None,
            queued: false,
        })
        .map_err(|e| e.to_string())
    });
    match r {
        Ok(g) => Some(g.clone()),
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                panic!("CI=true and no GPU adapter: {e}");
            }
            eprintln!("SKIPPED (no GPU adapter; CI would fail here): {e}");
            None
        }
    }
}

/// Every backend that can run here: cpu64, cpu32, and wgsl + cube when an adapter exists.
pub fn backends() -> Vec<Box<dyn Backend>> {
    let g = gpu();
    BackendKind::ALL
        .into_iter()
        .filter(|k| !k.needs_gpu() || g.is_some())
        .map(|k| backend::create(k, g.as_ref()).expect("backend creation"))
        .collect()
}

/// The GPU backends (empty, after a printed skip, when there is no adapter outside CI).
pub fn gpu_backends() -> Vec<Box<dyn Backend>> {
    backends()
        .into_iter()
        .filter(|b| b.name() == "wgsl" || b.name() == "cube")
        .collect()
}

/// Every engine (backend plus the trainers built on it) that can run here, as [`backends`].
pub fn engines() -> Vec<Engine> {
    let g = gpu();
    BackendKind::ALL
        .into_iter()
        .filter(|k| !k.needs_gpu() || g.is_some())
        .map(|k| Engine::create(k, g.as_ref()).expect("engine creation"))
        .collect()
}

/// The GPU engines, as [`gpu_backends`].
pub fn gpu_engines() -> Vec<Engine> {
    engines()
        .into_iter()
        .filter(|b| b.name() == "wgsl" || b.name() == "cube")
        .collect()
}

/// A second GPU context whose bindings are capped at `bytes`, so chunked launches run at small
/// sizes. `None` when there is no adapter (after the same CI rule as [`gpu`]).
pub fn small_binding_gpu(bytes: u64) -> Option<Arc<GpuContext>> {
    gpu()?;
    Some(
        GpuContext::new(&GpuOptions {
            adapter: std::env::var("COLLAPSE_ADAPTER").ok(),
            poison: true,
            binding_limit: Some(bytes),
            queued: false,
        })
        .expect("second GPU context"),
    )
}

/// Norm-wise relative error ‖a − b‖ / ‖b‖ (b is the reference).
pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den).sqrt()
}

/// `n` synthetic w×w images: a bright bar whose position and width vary, plus Philox noise.
pub fn bars(n: usize, w: usize, seed: u64) -> collapse_kernels::io::idx::IdxImages {
    let key = collapse_kernels::rng::StreamKey::new(seed, 1);
    let mut pixels = Vec::with_capacity(n * w * w);
    for i in 0..n {
        let (pos, width) = (i % w, 1 + (i / w) % 3);
        for r in 0..w {
            for c in 0..w {
                let on = c >= pos && c < pos + width;
                let noise =
                    collapse_kernels::rng::unit_f64(key.u32_at((i * w * w + r * w + c) as u64))
                        * 40.0;
                pixels.push(if on { 255 - noise as u8 } else { noise as u8 });
            }
        }
    }
    collapse_kernels::io::idx::IdxImages {
        count: n,
        rows: w,
        cols: w,
        pixels,
    }
}
