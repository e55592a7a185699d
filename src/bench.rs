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
