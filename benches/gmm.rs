//! One EM iteration (E-step + two-pass M-step) per backend for the shapes of
//! `collapse bench gmm`: [N=100k, D=16, K=32] full and diag, [N=1M, D=8, K=16] full.
//! Throughput is points·components per second. The scikit-learn peer runs from
//! `scripts/bench-gmm.sh` (Python), on the same data, back to back.
//!
//! Run: `cargo bench --bench gmm`.

mod common;

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};

use collapse_kernels::backend::{self, BackendKind};
use collapse_kernels::gpu::{GpuContext, GpuOptions};
use collapse_kernels::measure::bench::{GMM_SHAPES, gmm_data};

fn bench_gmm(c: &mut Criterion) {
    let gpu = GpuContext::new(&GpuOptions {
        adapter: std::env::var("COLLAPSE_ADAPTER").ok(),
        ..Default::default()
    })
    .ok();
    let cpu = backend::create(BackendKind::Cpu64, None).expect("cpu64");
    for shape in GMM_SHAPES {
        let (x, start) = gmm_data(shape, cpu.as_ref()).expect("bench data");
        let p = start.estep_params().expect("valid start");
        let mut group = c.benchmark_group(format!(
            "gmm/em_iter_n{}_d{}_k{}_{:?}",
            shape.n, shape.d, shape.k, shape.covariance_type
        ));
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(8))
            .throughput(Throughput::Elements((shape.n * shape.k) as u64));
        for kind in BackendKind::ALL {
            if kind.needs_gpu() && gpu.is_none() {
                continue;
            }
            let b = backend::create(kind, gpu.as_ref()).expect("backend");
            let mut pass = match b.gmm_pass(&x) {
                Ok(pass) => pass,
                Err(e) => {
                    eprintln!("{}: {e}", b.name());
                    continue;
                }
            };
            group.bench_function(BenchmarkId::new(b.name(), shape.n), |bench| {
                bench.iter(|| {
                    pass.estep(&p).expect("estep");
                    pass.mstep(shape.covariance_type.layout()).expect("mstep")
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench_gmm);
fn main() {
    common::main_with_records("criterion gmm", &[benches]);
}
