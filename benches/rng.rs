//! Philox fills per backend: uniforms/s and normals/s at 2^20 and 2^24 draws, with `rand`'s
//! StdRng (ChaCha12, single thread) as the CPU peer in the same group.
//!
//! Run: `cargo bench --bench rng` (set `COLLAPSE_ADAPTER` to pick a GPU adapter). GPU times are
//! host wall clock and include the readback to host memory, as a model step would see them.
//! On lavapipe the GPU figures measure a software rasteriser, not a GPU: do not quote them.

use std::time::Duration;

mod common;

use common::backends;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use rand::{Rng, SeedableRng, rngs::StdRng};
use rand_distr::StandardNormal;

use collapse_kernels::ops::Backend;
use collapse_kernels::rng::StreamKey;

const SIZES: [usize; 2] = [1 << 20, 1 << 24];

fn bench_rng(c: &mut Criterion) {
    let backends = backends();
    let key = StreamKey::new(42, 0);
    for (group_name, normal) in [("rng/uniform", false), ("rng/normal", true)] {
        let mut group = c.benchmark_group(group_name);
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(5));
        for n in SIZES {
            group.throughput(Throughput::Elements(n as u64));
            let mut out = vec![0f64; n];
            for b in &backends {
                group.bench_with_input(BenchmarkId::new(b.name(), n), &n, |bench, _| {
                    bench.iter(|| {
                        if normal {
                            b.normal(key, 0, &mut out).expect("fill")
                        } else {
                            b.uniform(key, 0, &mut out).expect("fill")
                        }
                    })
                });
            }
            group.bench_with_input(BenchmarkId::new("rand_StdRng", n), &n, |bench, _| {
                let mut r = StdRng::seed_from_u64(42);
                bench.iter(|| {
                    if normal {
                        out.iter_mut().for_each(|o| *o = r.sample(StandardNormal));
                    } else {
                        out.iter_mut().for_each(|o| *o = r.random::<f64>());
                    }
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench_rng);
fn main() {
    common::main_with_records("criterion rng", &[benches]);
}
