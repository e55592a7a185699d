//! Per-(generation, replicate) metrics of a generational run, and the summary over replicates.
//!
//! Columns (`metrics.csv`, one row per generation and replicate, pandas-readable):
//! `generation, replicate, pool_size, pool_real_fraction, pool_composition` (provenance:
//! `origin:count|…` with origins `real`, `fresh` (new real data) and `gJ` (sampled from generation
//! J's model); consecutive generations are one entry `gA..gB:total`, so the field stays
//! constant-size under `accumulate`), then
//! - gaussian: `mu, sigma` (1-D) or `mu_0.., sigma_0..`, and `w2_to_truth`, the 2-Wasserstein
//!   distance to the truth (exact for diagonal Gaussians: `√(‖μ − μ*‖² + ‖σ − σ*‖²)`);
//! - gmm: `heldout_ll` (mean log-likelihood of held-out real data, nats), `l2_to_truth` (the
//!   closed-form L2 distance between the fitted and the true densities), `weight_entropy`
//!   (nats), `tail_coverage` (the probability the model gives to the truth's outer 1% region:
//!   where the true density is below its 1% quantile; Monte Carlo, 20 000 model samples; 0.01 for
//!   the truth itself).
//!
//! Metrics are measurements, computed on the host in f64 whatever the run's backend, so two
//! runs on different backends are measured identically. Undefined values are written as `NaN`.

use std::path::Path;

use super::config::{ModelKind, RunConfig};
use super::model::MetricContext;
use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::models::gmm::sample as sample_model;
use crate::num::density::gauss_density;
use crate::ops::Backend;
use crate::ops::gmm::{CovarianceType, EStepParams, GmmParams};
use crate::rng::StreamKey;
use crate::rng::streams::{purpose, stream_id};
use crate::trainers::Engine;

/// Truth samples used to find the tail threshold, and model samples per tail estimate.
const TAIL_TRUTH_SAMPLES: usize = 100_000;
const TAIL_MODEL_SAMPLES: usize = 20_000;

/// The truth's outer 1% region, as a log-density threshold.
pub struct TailRegion {
    truth: EStepParams,
    threshold: f64,
}

impl TailRegion {
    /// The 1% quantile of the truth's log-density over its own samples.
    pub fn new(_cfg: &RunConfig, truth: &GmmParams, cpu: &Engine) -> Result<Self> {
        let t = truth.estep_params()?;
        let x = sample_model(
            cpu,
            truth,
            TAIL_TRUTH_SAMPLES,
            StreamKey::new(0, stream_id(purpose::TAIL, 0, 0)),
        )?;
        let mut l: Vec<f64> = (0..x.rows).map(|i| t.log_density(x.row(i))).collect();
        l.sort_by(f64::total_cmp);
        Ok(Self {
            truth: t,
            threshold: l[TAIL_TRUTH_SAMPLES / 100],
        })
    }
}

/// The mixtures' metric columns (after the pool's) for `d`-dimensional data.
pub fn columns(cfg: &RunConfig, d: usize) -> Vec<String> {
    let mut h = Vec::new();
    match cfg.model {
        ModelKind::Gaussian if d == 1 => h.extend(["mu".into(), "sigma".into()]),
        ModelKind::Gaussian => {
            h.extend((0..d).map(|i| format!("mu_{i}")));
            h.extend((0..d).map(|i| format!("sigma_{i}")));
        }
        _ => h.extend([
            "heldout_ll".into(),
            "l2_to_truth".into(),
            "weight_entropy".into(),
            "tail_coverage".into(),
        ]),
    }
    if cfg.model == ModelKind::Gaussian {
        h.push("w2_to_truth".into());
    }
    h
}

/// Full covariance `[D][D]` of component `c`.
fn full_cov(p: &GmmParams, c: usize) -> Vec<f64> {
    let d = p.d;
    match p.covariance_type {
        CovarianceType::Full => p.covariances[c * d * d..(c + 1) * d * d].to_vec(),
        CovarianceType::Diag => {
            let mut m = vec![0.0; d * d];
            for j in 0..d {
                m[j * d + j] = p.covariances[c * d + j];
            }
            m
        }
    }
}

/// `∫ p q` for two mixtures, in closed form.
fn cross(p: &GmmParams, q: &GmmParams) -> f64 {
    let d = p.d;
    let mut s = 0.0;
    for i in 0..p.k {
        for j in 0..q.k {
            let cov: Vec<f64> = full_cov(p, i)
                .iter()
                .zip(full_cov(q, j))
                .map(|(a, b)| a + b)
                .collect();
            s += p.weights[i]
                * q.weights[j]
                * gauss_density(
                    &p.means[i * d..(i + 1) * d],
                    &q.means[j * d..(j + 1) * d],
                    &cov,
                );
        }
    }
    s
}

/// The L2 distance `‖p − q‖₂` between two mixture densities (closed form).
pub fn l2_distance(p: &GmmParams, q: &GmmParams) -> f64 {
    (cross(p, p) - 2.0 * cross(p, q) + cross(q, q))
        .max(0.0)
        .sqrt()
}

/// The metric values of mixture `p` (in [`columns`] order) as CSV fields; `tails` is the
/// reference density's tail region (`None` when there is no reference yet).
pub fn values(
    ctx: &MetricContext<'_>,
    tails: Option<&TailRegion>,
    p: &GmmParams,
) -> Result<Vec<String>> {
    let (generation, replicate) = (ctx.generation, ctx.replicate);
    let mut v: Vec<String> = Vec::new();
    let truth = ctx.real.truth.as_ref();
    match ctx.cfg.model {
        ModelKind::Gaussian => {
            let sigma: Vec<f64> = p.covariances.iter().map(|x| x.sqrt()).collect();
            v.extend(p.means.iter().map(|x| x.to_string()));
            v.extend(sigma.iter().map(|x| x.to_string()));
            let w2 = truth.map_or(f64::NAN, |t| {
                let ts: Vec<f64> = t.covariances.iter().map(|x| x.sqrt()).collect();
                let dm: f64 = p
                    .means
                    .iter()
                    .zip(&t.means)
                    .map(|(a, b)| (a - b).powi(2))
                    .sum();
                let ds: f64 = sigma.iter().zip(&ts).map(|(a, b)| (a - b).powi(2)).sum();
                (dm + ds).sqrt()
            });
            v.push(w2.to_string());
        }
        _ => {
            let heldout = match p.estep_params() {
                Ok(e) => {
                    let ho = &ctx.real.held_out;
                    let mut pass = ctx.cpu.gmm_pass(ho)?;
                    pass.estep(&e)? / ho.rows as f64
                }
                Err(_) => f64::NAN,
            };
            let l2 = truth.map_or(f64::NAN, |t| l2_distance(p, t));
            let entropy: f64 = -p
                .weights
                .iter()
                .filter(|w| **w > 0.0)
                .map(|w| w * w.ln())
                .sum::<f64>();
            let tail = match tails {
                Some(tr) => {
                    let key = StreamKey::new(
                        ctx.cfg.seed,
                        stream_id(purpose::TAIL, replicate, generation + 1),
                    );
                    let xs = sample_model(ctx.cpu, p, TAIL_MODEL_SAMPLES, key)?;
                    let inside = (0..xs.rows)
                        .filter(|&i| tr.truth.log_density(xs.row(i)) < tr.threshold)
                        .count();
                    inside as f64 / xs.rows as f64
                }
                None => f64::NAN,
            };
            v.extend([heldout, l2, entropy, tail].iter().map(|x| x.to_string()));
        }
    }
    Ok(v)
}

/// `summary.json`: the configuration, the real data's `reference` values when the model has any,
/// and, per generation, the mean and standard deviation over replicates of every metric column.
pub fn write_summary(
    dir: &Path,
    cfg: &RunConfig,
    reference: Option<serde_json::Value>,
) -> Result<()> {
    let path = dir.join("metrics.csv");
    let mut rdr =
        csv::Reader::from_path(&path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    let headers: Vec<String> = rdr
        .headers()
        .map_err(|e| Error::Io(e.to_string()))?
        .iter()
        .map(String::from)
        .collect();
    let mut by_gen: std::collections::BTreeMap<usize, Vec<Vec<f64>>> = Default::default();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| Error::Io(e.to_string()))?;
        let vals: Vec<f64> = rec.iter().map(|f| f.parse().unwrap_or(f64::NAN)).collect();
        by_gen.entry(vals[0] as usize).or_default().push(vals);
    }
    let gens: Vec<serde_json::Value> = by_gen
        .iter()
        .map(|(g, rows)| {
            let mut m = serde_json::Map::new();
            for (c, name) in headers
                .iter()
                .enumerate()
                .skip(2)
                .filter(|(_, n)| *n != "pool_composition")
            {
                let xs: Vec<f64> = rows.iter().map(|r| r[c]).collect();
                let n = xs.len() as f64;
                let mean = xs.iter().sum::<f64>() / n;
                let sd = if xs.len() > 1 {
                    (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
                } else {
                    0.0
                };
                m.insert(name.clone(), serde_json::json!({"mean": mean, "std": sd}));
            }
            serde_json::json!({"generation": g, "replicates": rows.len(), "metrics": m})
        })
        .collect();
    let mut doc = serde_json::json!({"config": cfg, "generations": gens});
    if let Some(r) = reference {
        doc["reference"] = r;
    }
    write_atomic(
        &dir.join("summary.json"),
        serde_json::to_string_pretty(&doc)
            .map_err(|e| Error::Io(e.to_string()))?
            .as_bytes(),
    )
}
