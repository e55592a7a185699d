//! Shared by the criterion benches: every backend that can run here.

use collapse_kernels::backend::{self, Backend, BackendKind};
use collapse_kernels::gpu::{GpuContext, GpuOptions};

/// cpu64, cpu32, and wgsl + cube when wgpu finds an adapter (`COLLAPSE_ADAPTER` picks one).
pub fn backends() -> Vec<Box<dyn Backend>> {
    let gpu = match GpuContext::new(&GpuOptions {
        adapter: std::env::var("COLLAPSE_ADAPTER").ok(),
        ..Default::default()
    }) {
        Ok(g) => Some(g),
        Err(e) => {
            eprintln!("no GPU adapter, benching CPU backends only: {e}");
            None
        }
    };
    BackendKind::ALL
        .into_iter()
        .filter(|k| !k.needs_gpu() || gpu.is_some())
        .map(|k| backend::create(k, gpu.as_ref()).expect("backend"))
        .collect()
}
