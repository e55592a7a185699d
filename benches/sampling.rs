//! Batched sampling per backend: GMM (K = 16, D = 8, full covariances) and categorical
//! (B = 256 rows, V = 4096 classes, 16 samples per row), with `rand_distr` on one CPU thread as
//! the peer in the same group. Prints bytes written per second beside samples per second.
//!
//! Run: `cargo bench --bench sampling`. GPU times are host wall clock including readback.
//! On lavapipe the GPU figures measure a software rasteriser, not a GPU: do not quote them.

use std::time::{Duration, Instant};

mod common;

use common::backends;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use rand::{Rng, SeedableRng, rngs::StdRng};
use rand_distr::{Distribution, StandardNormal, weighted::WeightedIndex};

use collapse_kernels::backend::{self, BackendKind};
use collapse_kernels::ops::Backend;
use collapse_kernels::ops::sampling::{Categorical, Factor, MixtureBatch, PreparedMixture};
use collapse_kernels::rng::StreamKey;

/// A fixed GMM: K components, D dims, full covariances with Cholesky factor 0.5·I + 0.1 below
/// the diagonal.
fn gmm(k: usize, d: usize) -> PreparedMixture {
    let mut l = vec![0.0; k * d * d];
    for c in 0..k {
        for i in 0..d {
            for j in 0..=i {
                l[c * d * d + i * d + j] = if i == j { 0.5 } else { 0.1 };
            }
        }
    }
    MixtureBatch {
        replicates: 1,
        k,
        d,
        weights: vec![1.0 / k as f64; k],
        means: (0..k * d).map(|i| (i % 7) as f64 - 3.0).collect(),
        factor: Factor::Cholesky(l),
    }
    .prepare()
    .expect("valid GMM")
}

/// Print samples/s and bytes written/s of `f` (one call producing `n` samples of `bytes` each).
fn rate_line(label: &str, n: usize, bytes_per_sample: usize, mut f: impl FnMut()) {
    f();
    let reps = 5;
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    let secs = t.elapsed().as_secs_f64() / reps as f64;
    eprintln!(
        "{label:<40} {:>10.2} M samples/s {:>9.3} GB/s written",
        n as f64 / secs / 1e6,
        (n * bytes_per_sample) as f64 / secs / 1e9
    );
}

fn bench_gmm(c: &mut Criterion) {
    let (k, d) = (16, 8);
    let p = gmm(k, d);
    let backends = backends();
    let mut group = c.benchmark_group("sampling/gmm_k16_d8_full");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    // Bytes written per sample: D f32 values + one u32 component (what a GPU kernel stores).
    let bytes = d * 4 + 4;
    for n in [1usize << 16, 1 << 20] {
        group.throughput(Throughput::Elements(n as u64));
        let mut out = vec![0f64; n * d];
        let mut comps = vec![0u32; n];
        for b in &backends {
            let key = StreamKey::new(1, 0);
            rate_line(&format!("gmm {} n={n}", b.name()), n, bytes, || {
                b.sample_mixture(&p, n, key, 0, &mut out, &mut comps)
                    .unwrap()
            });
            group.bench_with_input(BenchmarkId::new(b.name(), n), &n, |bench, _| {
                bench.iter(|| {
                    b.sample_mixture(&p, n, key, 0, &mut out, &mut comps)
                        .unwrap()
                })
            });
        }
        // Peer: rand_distr, one thread: WeightedIndex for the component, D StandardNormal
        // draws, x = μ + L z in f64.
        let w = WeightedIndex::new(&p.batch.weights).unwrap();
        let Factor::Cholesky(l) = &p.batch.factor else {
            unreachable!()
        };
        let peer = |out: &mut [f64], comps: &mut [u32], r: &mut StdRng| {
            let mut z = [0f64; 8];
            for (x, cc) in out.chunks_mut(d).zip(comps.iter_mut()) {
                let comp = w.sample(r);
                *cc = comp as u32;
                z.iter_mut().for_each(|v| *v = r.sample(StandardNormal));
                let lc = &l[comp * d * d..];
                for i in 0..d {
                    let mut acc = p.batch.means[comp * d + i];
                    for j in 0..=i {
                        acc += lc[i * d + j] * z[j];
                    }
                    x[i] = acc;
                }
            }
        };
        let mut r = StdRng::seed_from_u64(1);
        rate_line(&format!("gmm rand_distr n={n}"), n, bytes, || {
            peer(&mut out, &mut comps, &mut r)
        });
        group.bench_with_input(BenchmarkId::new("rand_distr", n), &n, |bench, _| {
            bench.iter(|| peer(&mut out, &mut comps, &mut r))
        });
    }
    group.finish();
}

fn bench_categorical(c: &mut Criterion) {
    let (rows, v, s) = (256, 4096, 16);
    let mut logits = vec![0f64; rows * v];
    backend::create(BackendKind::Cpu64, None)
        .unwrap()
        .normal(StreamKey::new(3, 3), 0, &mut logits)
        .unwrap();
    let cat = Categorical {
        rows,
        classes: v,
        logits,
        temperature: 0.8,
        top_k: None,
    };
    let backends = backends();
    let mut group = c.benchmark_group("sampling/categorical_b256_v4096");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    let n = rows * s;
    group.throughput(Throughput::Elements(n as u64));
    let mut out = vec![0u32; n];
    let key = StreamKey::new(2, 0);
    for b in &backends {
        rate_line(&format!("categorical {}", b.name()), n, 4, || {
            b.sample_categorical(&cat, s, key, 0, &mut out).unwrap()
        });
        group.bench_function(BenchmarkId::new(b.name(), n), |bench| {
            bench.iter(|| b.sample_categorical(&cat, s, key, 0, &mut out).unwrap())
        });
    }
    // Peer: per row, softmax(logits/T) in f64 and a WeightedIndex, then s draws.
    let peer = |out: &mut [u32], r: &mut StdRng| {
        for (row, o) in cat.logits.chunks(v).zip(out.chunks_mut(s)) {
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let p: Vec<f64> = row.iter().map(|x| ((x - m) / 0.8).exp()).collect();
            let w = WeightedIndex::new(&p).unwrap();
            o.iter_mut().for_each(|c| *c = w.sample(r) as u32);
        }
    };
    let mut r = StdRng::seed_from_u64(2);
    rate_line("categorical rand_distr", n, 4, || peer(&mut out, &mut r));
    group.bench_function(BenchmarkId::new("rand_distr", n), |bench| {
        bench.iter(|| peer(&mut out, &mut r))
    });
    group.finish();
}

criterion_group!(benches, bench_gmm, bench_categorical);
fn main() {
    common::main_with_records("criterion sampling", &[benches]);
}
