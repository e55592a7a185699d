//! VAE training steps (forward, loss, backward, Adam; D = 784, H = 400, Z = 20) per backend at
//! batch 128 and 1024; throughput in images per second. cpu64 (plain loops) at batch 128 only.
//! Backends without VAE kernels would be reported and skipped. The PyTorch CPU
//! peer runs from `scripts/bench-vae.sh`, back to back with `collapse bench vae`.
//!
//! Run: `cargo bench --bench vae`.

mod common;

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};

use collapse_kernels::models::vae::{VaeConfig, init_params};
use collapse_kernels::ops::Backend;
use collapse_kernels::rng::StreamKey;

fn bench_vae(c: &mut Criterion) {
    let cfg = VaeConfig::default();
    let mut group = c.benchmark_group("vae_train_step");
    group.measurement_time(Duration::from_secs(5));
    group.sample_size(10);
    for b in common::backends() {
        for batch in [128usize, 1024] {
            if b.name() == "cpu64" && batch > 128 {
                continue;
            }
            let mut x = vec![0.0; batch * cfg.d];
            b.uniform(StreamKey::new(1, 2), 0, &mut x).expect("pixels");
            let mut vae = match b.vae(&cfg, &init_params(&cfg, 0)) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("{}: skipped ({e})", b.name());
                    break;
                }
            };
            group.throughput(Throughput::Elements(batch as u64));
            let mut step = 0u64;
            group.bench_with_input(BenchmarkId::new(b.name(), batch), &batch, |bench, _| {
                bench.iter(|| {
                    vae.step(&x, StreamKey::new(3, step)).expect("step");
                    step += 1;
                    vae.last_loss().expect("loss")
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_vae);
fn main() {
    common::main_with_records("criterion vae", &[benches]);
}
