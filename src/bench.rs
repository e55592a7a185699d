//! `collapse bench …`: timing tables measured by the CLI itself (criterion benches measure the
//! same operations under `benches/`).

use std::path::Path;
use std::time::Instant;

use crate::backend::Backend;
use crate::error::Result;
use crate::gmm::{CovarianceType, GmmParams};
use crate::io::Matrix;
use crate::rng::StreamKey;
use crate::sampling::{Factor, MixtureBatch};

/// One GMM benchmark shape.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct GmmShape {
    /// Points.
    pub n: usize,
    /// Dimensions.
    pub d: usize,
    /// Components.
    pub k: usize,
    /// Covariance type.
    pub covariance_type: CovarianceType,
}

impl std::str::FromStr for GmmShape {
    type Err = crate::Error;
    /// `NxDxK:full` or `NxDxK:diag`, e.g. `1000000x64x64:diag`.
    fn from_str(s: &str) -> Result<Self> {
        let bad =
            || crate::Error::InvalidArgument(format!("shape {s:?}: use NxDxK:full or NxDxK:diag"));
        let (dims, cov) = s.split_once(':').ok_or_else(bad)?;
        let v: Vec<usize> = dims
            .split('x')
            .map(|t| t.parse().map_err(|_| bad()))
            .collect::<Result<_>>()?;
        let covariance_type = match cov {
            "full" => CovarianceType::Full,
            "diag" => CovarianceType::Diag,
            _ => return Err(bad()),
        };
        match v[..] {
            [n, d, k] if n >= 1 && d >= 1 && k >= 1 && k <= n => Ok(Self {
                n,
                d,
                k,
                covariance_type,
            }),
            _ => Err(bad()),
        }
    }
}

/// The shapes of the GMM issue: [100k, 16] → 32 full and diag, [1M, 8] → 16 full.
pub const GMM_SHAPES: [GmmShape; 3] = [
    GmmShape {
        n: 100_000,
        d: 16,
        k: 32,
        covariance_type: CovarianceType::Full,
    },
    GmmShape {
        n: 100_000,
        d: 16,
        k: 32,
        covariance_type: CovarianceType::Diag,
    },
    GmmShape {
        n: 1_000_000,
        d: 8,
        k: 16,
        covariance_type: CovarianceType::Full,
    },
];

/// Deterministic benchmark data for `shape`: `N` points from a `K`-component mixture with
/// means spread over [−10, 10]ᴰ and covariances 0.5·I (Philox seed 2024), and a starting model
/// (the true weights, means shifted by 0.5, identity covariances).
pub fn gmm_data(shape: GmmShape, cpu: &dyn Backend) -> Result<(Matrix, GmmParams)> {
    let GmmShape {
        n,
        d,
        k,
        covariance_type,
    } = shape;
    let mut u = vec![0.0; k * d];
    cpu.uniform(StreamKey::new(2024, 1), 0, &mut u)?;
    let means: Vec<f64> = u.iter().map(|v| 20.0 * v - 10.0).collect();
    let batch = MixtureBatch {
        replicates: 1,
        k,
        d,
        weights: vec![1.0 / k as f64; k],
        means: means.clone(),
        factor: Factor::Diagonal(vec![0.5f64.sqrt(); k * d]),
    };
    let p = batch.prepare()?;
    let mut x = vec![0.0; n * d];
    let mut c = vec![0u32; n];
    cpu.sample_mixture(&p, n, StreamKey::new(2024, 2), 0, &mut x, &mut c)?;
    let per = if covariance_type == CovarianceType::Full {
        d * d
    } else {
        d
    };
    let mut cov = vec![0.0; k * per];
    for cc in 0..k {
        for j in 0..d {
            if covariance_type == CovarianceType::Full {
                cov[cc * per + j * d + j] = 1.0;
            } else {
                cov[cc * per + j] = 1.0;
            }
        }
    }
    let start = GmmParams {
        k,
        d,
        covariance_type,
        weights: vec![1.0 / k as f64; k],
        means: means.iter().map(|m| m + 0.5).collect(),
        covariances: cov,
    };
    Ok((Matrix::new(n, d, x)?, start))
}

/// One timing record.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GmmTiming {
    /// Backend.
    pub backend: String,
    /// Where it ran.
    pub device: String,
    /// The shape.
    pub n: usize,
    /// Dimensions.
    pub d: usize,
    /// Components.
    pub k: usize,
    /// `full` or `diag`.
    pub covariance_type: String,
    /// Median seconds per EM iteration (one E-step + one two-pass M-step).
    pub seconds_per_iter: f64,
    /// Fastest iteration.
    pub min_seconds: f64,
    /// Iterations timed.
    pub iterations: usize,
    /// `N·K / seconds_per_iter`.
    pub point_components_per_s: f64,
}

/// Time `iters` EM iterations of `backend` on `x` from `start` (after one untimed warm-up
/// iteration). Parameters are updated between iterations exactly as in a fit.
pub fn time_gmm(
    backend: &dyn Backend,
    x: &Matrix,
    start: &GmmParams,
    iters: usize,
) -> Result<GmmTiming> {
    let mut pass = backend.gmm_pass(x)?;
    let mut params = start.clone();
    let mut times = Vec::new();
    for it in 0..=iters {
        let t = Instant::now();
        pass.estep(&params.estep_params()?)?;
        let s = pass.mstep(params.covariance_type)?;
        if it > 0 {
            times.push(t.elapsed().as_secs_f64());
        }
        // Same update as a fit (weights, scatter/N_k + 1e-6·I).
        let cfg = crate::models::gmm::GmmConfig {
            covariance_type: params.covariance_type,
            ..crate::models::gmm::GmmConfig::new(params.k)
        };
        params = crate::models::gmm::params_from_stats(&s, x, &cfg, &mut 0, &mut None).0;
    }
    times.sort_by(f64::total_cmp);
    let med = times[times.len() / 2];
    Ok(GmmTiming {
        backend: backend.name().into(),
        device: backend.device(),
        n: x.rows,
        d: x.cols,
        k: start.k,
        covariance_type: format!("{:?}", start.covariance_type).to_lowercase(),
        seconds_per_iter: med,
        min_seconds: times[0],
        iterations: iters,
        point_components_per_s: (x.rows * start.k) as f64 / med,
    })
}

/// Write records as CSV (header from the first record's fields), atomically.
pub fn write_csv<T: serde::Serialize>(path: &Path, rows: &[T]) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r)
            .map_err(|e| crate::Error::Io(format!("{}: {e}", path.display())))?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| crate::Error::Io(format!("{}: {e}", path.display())))?;
    crate::io::write_atomic(path, &bytes)
}

/// A device-side throughput measurement.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Throughput {
    /// What was measured.
    pub what: String,
    /// Bytes counted (see each probe).
    pub bytes: u64,
    /// Fastest of the repetitions, seconds (device time with timestamps).
    pub seconds: f64,
    /// `bytes / seconds`, GB/s.
    pub gb_per_s: f64,
    /// `GpuTimestamp` or `WallClock`.
    pub timing: String,
}

/// The copy-bandwidth ceiling: `shaders/probe.wgsl:copy` over the largest buffer one binding
/// allows (at most 256 MiB), best of `reps`; bytes = read + written.
pub fn copy_bandwidth(gpu: &crate::gpu::GpuContext, reps: usize) -> Result<Throughput> {
    let elems = (gpu.max_binding_elements(16).min(1 << 24)) as usize; // vec4<f32> = 16 bytes
    let pipe = gpu.pipeline("probe.wgsl", "copy")?;
    let src = gpu.input_buffer("probe src", &vec![0u8; elems * 16])?;
    let dst = gpu.output_buffer("probe dst", (elems * 16) as u64)?;
    let bind = gpu.bind(&pipe, &[&src, &dst])?;
    let mut best: Option<crate::gpu::KernelTime> = None;
    for _ in 0..reps.max(1) {
        let t = gpu.dispatch(
            "probe.wgsl:copy",
            &pipe,
            &bind,
            crate::gpu::GpuContext::grid((elems as u32).div_ceil(256)),
        )?;
        if best.as_ref().is_none_or(|b| t.seconds < b.seconds) {
            best = Some(t);
        }
    }
    let t = best.expect("at least one repetition");
    let bytes = 2 * elems as u64 * 16;
    Ok(Throughput {
        what: "copy (read + write)".into(),
        bytes,
        seconds: t.seconds,
        gb_per_s: bytes as f64 / t.seconds / 1e9,
        timing: format!("{:?}", t.source),
    })
}

/// Bytes per second the WGSL GMM sampler writes (samples as f32 plus a u32 component each) for
/// `n` samples of a K = 16, D = 8 full mixture, from the kernel's own device time (the sum over
/// its chunks), best of `reps`.
pub fn sampler_write_rate(
    gpu: &std::sync::Arc<crate::gpu::GpuContext>,
    n: usize,
    reps: usize,
) -> Result<Throughput> {
    let (k, d) = (16, 8);
    let mut l = vec![0.0; k * d * d];
    for c in 0..k {
        for i in 0..d {
            for j in 0..=i {
                l[c * d * d + i * d + j] = if i == j { 0.5 } else { 0.1 };
            }
        }
    }
    let p = MixtureBatch {
        replicates: 1,
        k,
        d,
        weights: vec![1.0 / k as f64; k],
        means: (0..k * d).map(|i| (i % 7) as f64).collect(),
        factor: Factor::Cholesky(l),
    }
    .prepare()?;
    let b = crate::backend::create(crate::backend::BackendKind::Wgsl, Some(gpu))?;
    let (mut x, mut c) = (vec![0.0; n * d], vec![0u32; n]);
    b.sample_mixture(
        &p,
        1024,
        StreamKey::new(1, 1),
        0,
        &mut x[..1024 * d],
        &mut c[..1024],
    )?; // warm-up
    let mut best = f64::INFINITY;
    let mut timing = String::new();
    for _ in 0..reps.max(1) {
        gpu.take_timings();
        b.sample_mixture(&p, n, StreamKey::new(1, 1), 0, &mut x, &mut c)?;
        let ts: Vec<_> = gpu
            .take_timings()
            .into_iter()
            .filter(|t| t.kernel == "sampling.wgsl:sample_mixture")
            .collect();
        timing = ts
            .first()
            .map(|t| format!("{:?}", t.source))
            .unwrap_or_default();
        best = best.min(ts.iter().map(|t| t.seconds).sum());
    }
    let bytes = (n * (d * 4 + 4)) as u64;
    Ok(Throughput {
        what: format!("WGSL GMM sampler writes (K={k}, D={d}, full, N={n})"),
        bytes,
        seconds: best,
        gb_per_s: bytes as f64 / best / 1e9,
        timing,
    })
}
