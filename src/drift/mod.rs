//! `collapse drift`: how much of a collapse trajectory is floating-point arithmetic.
//!
//! [`chain`] runs one generational experiment (same configuration, seed and Philox streams) on
//! several backends and precisions and compares the trajectories generation by generation:
//! every backend draws the same random numbers, so any difference between two runs is
//! arithmetic; with a directory ([`chain::run_all_into`]) each backend's run is a `collapse run`
//! directory, and [`headline`] states per metric how much of the collapse is arithmetic.
//! [`kernels`] measures each kernel family's error against the f64 reference as a
//! function of problem size and input scale.
//!
//! # Backends
//!
//! `cpu64` (the reference), `cpu32`, `wgsl`, `cube`, and the `cpu32` variants of
//! [`crate::backend::variants`]: `cpu32-naive`, `cpu32-pairwise`, `cpu32-kahan` (EM reductions
//! in one summation order) and `cpu32-f16` (samples stored as binary16).

pub mod chain;
pub mod headline;
pub mod kernels;
pub mod output;
pub mod plot;

use std::sync::Arc;

use crate::backend::BackendKind;
use crate::backend::variants::Cpu32Variant;
use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::ops::{Backend, Precision};
use crate::trainers::Engine;

/// Every backend name `collapse drift` accepts.
pub const BACKEND_NAMES: [&str; 8] = [
    "cpu64",
    "cpu32",
    "wgsl",
    "cube",
    "cpu32-naive",
    "cpu32-pairwise",
    "cpu32-kahan",
    "cpu32-f16",
];

/// A backend under study and the unit roundoff of the values its fits see.
pub struct Subject {
    /// The backend.
    pub backend: Engine,
    /// Unit roundoff `u` of its data and arithmetic (2⁻⁵³, 2⁻²⁴, or 2⁻¹¹ for f16 storage).
    pub unit_roundoff: f64,
}

/// Open backend `name` (one of [`BACKEND_NAMES`]); GPU backends share `gpu`, which is opened
/// on first need with `options`.
pub fn open_subject(
    name: &str,
    gpu: &mut Option<Arc<GpuContext>>,
    options: &crate::gpu::GpuOptions,
) -> Result<Subject> {
    if let Some(v) = Cpu32Variant::from_name(name) {
        return Ok(Subject {
            backend: Engine::from(v),
            unit_roundoff: v.unit_roundoff(),
        });
    }
    let kind: BackendKind = name.parse().map_err(|_| {
        Error::InvalidArgument(format!(
            "unknown backend {name:?}; drift knows {}",
            BACKEND_NAMES.join(", ")
        ))
    })?;
    if kind.needs_gpu() && gpu.is_none() {
        *gpu = Some(GpuContext::new(options)?);
    }
    let backend = Engine::create(kind, gpu.as_ref())?;
    let unit_roundoff = match backend.precision() {
        Precision::F64 => 2f64.powi(-53),
        Precision::F32 => 2f64.powi(-24),
    };
    Ok(Subject {
        backend,
        unit_roundoff,
    })
}

/// Split a comma-separated backend list, rejecting duplicates and unknown names.
pub fn parse_backends(list: &str) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !BACKEND_NAMES.contains(&name) {
            return Err(Error::InvalidArgument(format!(
                "unknown backend {name:?}; drift knows {}",
                BACKEND_NAMES.join(", ")
            )));
        }
        if out.iter().any(|o| o == name) {
            return Err(Error::InvalidArgument(format!(
                "backend {name} listed twice"
            )));
        }
        out.push(name.to_string());
    }
    if out.len() < 2 {
        return Err(Error::InvalidArgument(
            "drift compares at least two backends (e.g. --backends cpu64,cpu32)".into(),
        ));
    }
    Ok(out)
}

/// Quantile `q` of `v` (sorted ascending; `f64::INFINITY` marks a censored value: the event was
/// not reached): the order statistic `v[⌈q·n⌉ − 1]`, or `None` when that is censored or `v` is
/// empty.
pub fn quantile(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i].is_finite().then_some(v[i])
}

/// Standard error of the median of `v` (censored values as `f64::INFINITY`) by the bootstrap:
/// `resamples` resamples with replacement drawn from Philox stream `(seed, rng::streams::DRIFT_BOOTSTRAP)`; the
/// standard deviation of their medians. `None` when more than 2.5% of the resampled medians are
/// censored (the median is then not well defined).
pub fn median_se(v: &[f64], resamples: usize, seed: u64) -> Option<f64> {
    if v.len() < 2 {
        return None;
    }
    let key = crate::rng::StreamKey::new(seed, crate::rng::streams::DRIFT_BOOTSTRAP);
    let n = v.len();
    let mut meds = Vec::with_capacity(resamples);
    let mut censored = 0usize;
    let mut s = vec![0.0; n];
    for b in 0..resamples {
        for (j, x) in s.iter_mut().enumerate() {
            let u = crate::rng::unit_f64(key.u32_at((b * n + j) as u64));
            *x = v[((u * n as f64) as usize).min(n - 1)];
        }
        s.sort_by(f64::total_cmp);
        match quantile(&s, 0.5) {
            Some(m) => meds.push(m),
            None => censored += 1,
        }
    }
    if censored as f64 > 0.025 * resamples as f64 {
        return None;
    }
    let mean = meds.iter().sum::<f64>() / meds.len() as f64;
    let var = meds.iter().map(|m| (m - mean).powi(2)).sum::<f64>() / (meds.len() - 1) as f64;
    Some(var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_respect_censoring() {
        let inf = f64::INFINITY;
        let v = [1.0, 2.0, 3.0, inf, inf];
        assert_eq!(quantile(&v, 0.1), Some(1.0));
        assert_eq!(quantile(&v, 0.5), Some(3.0));
        assert_eq!(quantile(&v, 0.9), None);
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn bootstrap_se_of_a_median_matches_theory() {
        // Median of n standard-normal draws: SE ≈ √(π/2)/√n = 1.2533/√n.
        let n = 2000;
        let key = crate::rng::StreamKey::new(9, 1);
        let mut v: Vec<f64> = (0..n)
            .map(|i| {
                let u1 = crate::rng::unit_f64(key.u32_at(2 * i)).max(1e-12);
                let u2 = crate::rng::unit_f64(key.u32_at(2 * i + 1));
                (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
            })
            .collect();
        v.sort_by(f64::total_cmp);
        let se = median_se(&v, 2000, 3).unwrap();
        let want = 1.2533 / (n as f64).sqrt();
        assert!((se / want - 1.0).abs() < 0.25, "se {se}, theory {want}");
        let mut c = v.clone();
        c[n as usize / 3..]
            .iter_mut()
            .for_each(|x| *x = f64::INFINITY);
        c.sort_by(f64::total_cmp);
        assert_eq!(median_se(&c, 200, 3), None);
    }

    #[test]
    fn backend_lists_are_checked() {
        assert!(parse_backends("cpu64,cpu32").is_ok());
        assert!(parse_backends("cpu64").is_err());
        assert!(parse_backends("cpu64,cpu64").is_err());
        assert!(parse_backends("cpu64,tpu").is_err());
    }
}
