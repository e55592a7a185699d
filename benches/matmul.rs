//! GFLOP/s of C = A·B (f32, row-major, β = 0) per backend, square sizes 128–4096 and the models'
//! shapes (the transformer's `[4096, 256]·[256, 1024]`, the VAE's `[128, 784]·[784, 400]`).
//! In each group: cpu32 (the `gemm` crate, all threads), wgsl and cube; cpu64 (plain
//! loops) up to 256³ only.
//!
//! Each iteration is one product on operands already resident (device buffers for GPU
//! backends), timed by the backend runner (`collapse_kernels::measure::bench::matmul_runner`): wgsl by
//! GPU timestamps (kernel only), cube by wall clock around launch + sync, CPU by wall clock.
//! On a software adapter (lavapipe) the GPU backends run only up to 512³, and their figures
//! measure a CPU rasteriser, not a GPU. `collapse bench matmul` prints the same figures as a
//! table with the error against a reference and the ratio to cpu32.
//!
//! Run: `cargo bench --bench matmul`.

mod common;

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};

use collapse_kernels::backend::BackendKind;
use collapse_kernels::gpu::{GpuContext, GpuOptions};
use collapse_kernels::measure::bench::{MATMUL_MODEL_SHAPES, MATMUL_SQUARES, matmul_runner};
use collapse_kernels::ops::matmul::Matmul;

fn bench_matmul(c: &mut Criterion) {
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
    let software = gpu
        .as_ref()
        .is_some_and(|g| g.info.device_type == wgpu::DeviceType::Cpu);
    let mut shapes: Vec<(String, Matmul)> = MATMUL_SQUARES
        .iter()
        .map(|&n| (format!("square_{n}"), Matmul::new(n, n, n)))
        .collect();
    // The two headline model shapes (lm_mlp_up, vae_enc1); every model product is in
    // `collapse bench matmul --models` and scripts/bench-cpu-peers.sh (~5 s each here).
    for (label, m, n, k, ta, tb) in MATMUL_MODEL_SHAPES.into_iter().take(2) {
        let mut p = Matmul::new(m, n, k);
        (p.trans_a, p.trans_b) = (ta, tb);
        shapes.push((label.to_string(), p));
    }
    for (label, p) in &shapes {
        let mut group = c.benchmark_group(format!("matmul/{label}"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(4))
            .throughput(Throughput::Elements(p.flops() as u64));
        for kind in BackendKind::ALL {
            if kind == BackendKind::Cpu64 && p.flops() > 2.0 * 256f64.powi(3) {
                continue;
            }
            if kind.needs_gpu() && (gpu.is_none() || (software && p.flops() > 2.0 * 512f64.powi(3)))
            {
                continue;
            }
            let mut r = match matmul_runner(kind, gpu.as_ref(), p) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("{kind} {label}: {e}");
                    continue;
                }
            };
            group.bench_function(BenchmarkId::new(kind.name(), p.label()), |b| {
                b.iter_custom(|iters| {
                    let mut total = 0.0;
                    for _ in 0..iters {
                        total += r.run().expect("matmul").0;
                    }
                    Duration::from_secs_f64(total)
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench_matmul);
fn main() {
    common::main_with_records("criterion matmul", &[benches]);
}
