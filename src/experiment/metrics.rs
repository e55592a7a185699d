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
//!   where the true density is below its 1% quantile; Monte Carlo over 20 000 draws split evenly
//!   over the model's components, `μ_k + L_k z` from one set of standard normals per run; 0.01
//!   for the truth itself).
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
use crate::num::density::logsumexp;
use crate::num::linalg::cholesky_lower;
use crate::num::summation::pairwise_sum;
use crate::ops::gmm::{EStepParams, GmmParams, PassLayout, TERMS_BLOCK, transpose_block};
use crate::rng::streams::RUN_WIDE_REPLICATE;
use crate::rng::streams::{purpose, stream_id};
use crate::rng::{StreamKey, host_normals_f64};
use crate::trainers::Engine;

/// Truth samples used to find the tail threshold, and model draws per tail estimate (split
/// evenly over the model's components).
const TAIL_TRUTH_SAMPLES: usize = 100_000;
const TAIL_MODEL_SAMPLES: usize = 20_000;

/// The truth's outer 1% region, as a log-density threshold, and the standard normals every
/// tail estimate of the run transforms (common random numbers: drawn once, so an estimate
/// costs a few multiply-adds per draw instead of a Box–Muller transform, and the curves over
/// generations are not jittered by fresh noise).
pub struct TailRegion {
    truth: EStepParams,
    threshold: f64,
    /// `ln K` of the truth: its log-density lies within `[m, m + ln K]` of its largest
    /// component term `m`, so most points are decided without a log-sum-exp.
    ln_k: f64,
    /// The standard normals by coordinate, `[D][TAIL_MODEL_SAMPLES]` (draw `j`'s coordinate
    /// `t` at `t·TAIL_MODEL_SAMPLES + j`), so a block of draws is a contiguous slice per
    /// coordinate and the transform `μ_k + L_k z` vectorises over draws.
    z: Vec<f64>,
}

/// Scratch of [`TailRegion::coverage`], allocated once per call: a block of draws by coordinate
/// (`[D][TERMS_BLOCK]`), the truth's terms (`[K][TERMS_BLOCK]`), their largest term per draw and
/// one draw's terms (`[K]`).
struct TailScratch {
    x: Vec<f64>,
    terms: Vec<f64>,
    largest: [f64; TERMS_BLOCK],
    l: Vec<f64>,
}

impl TailRegion {
    /// The 1% quantile of the truth's log-density over its own samples, and the run's normals
    /// (Philox stream `(seed, stream_id(TAIL, RUN_WIDE_REPLICATE, 0))`, `seed` the run's).
    pub fn new(seed: u64, truth: &GmmParams, cpu: &Engine) -> Result<Self> {
        let t = truth.estep_params()?;
        let x = sample_model(
            cpu,
            truth,
            TAIL_TRUTH_SAMPLES,
            StreamKey::new(0, stream_id(purpose::TAIL, 0, 0)),
        )?;
        // `log_density_rows` gives `log_density`'s bits, a block at a time.
        let mut l = vec![0.0; x.rows];
        t.log_density_rows(&x.data, &mut l);
        l.sort_by(f64::total_cmp);
        let d = truth.d;
        let mut z = vec![0.0; TAIL_MODEL_SAMPLES * d];
        host_normals_f64(
            StreamKey::new(seed, stream_id(purpose::TAIL, RUN_WIDE_REPLICATE, 0)),
            0,
            &mut z,
        );
        let mut by_coordinate = vec![0.0; z.len()];
        transpose_block(&z, d, &mut by_coordinate);
        Ok(Self {
            ln_k: (t.k as f64).ln(),
            truth: t,
            threshold: l[TAIL_TRUTH_SAMPLES / 100],
            z: by_coordinate,
        })
    }

    /// Whether the largest truth term `m` of a point decides that it lies in the region (its
    /// log-density, within `[m, m + ln K]`, below the threshold): `Some` when it does, `None`
    /// when only the log-sum-exp can tell.
    fn decided_by_largest(&self, m: f64) -> Option<bool> {
        if m >= self.threshold {
            Some(false)
        } else if m + self.ln_k < self.threshold {
            Some(true)
        } else {
            None
        }
    }

    /// Whether a point whose truth terms `ln w_c + ln N(x | μ_c, Σ_c)` are `l` (`[K]`) lies in
    /// the region (its log-density, the log-sum-exp of `l`, below the threshold): the largest
    /// term decides most points without the log-sum-exp. (The blocked path,
    /// [`Self::count_inside`], makes the same decision from the same terms.)
    #[cfg(test)]
    fn inside(&self, l: &[f64]) -> bool {
        let m = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        self.decided_by_largest(m)
            .unwrap_or_else(|| logsumexp(l) < self.threshold)
    }

    /// Whether `x` lies in the truth's outer region: its log-density is below the threshold.
    #[cfg(test)]
    fn contains(&self, x: &[f64]) -> bool {
        let t = &self.truth;
        let l: Vec<f64> = (0..t.k)
            .map(|c| t.log_gauss(x, c) + t.log_weights[c])
            .collect();
        self.inside(&l)
    }

    /// How many of the `b` points of the column block `s.x` (`[D][b]`, `b` at most
    /// [`TERMS_BLOCK`]) lie in the region: [`Self::inside`]'s decision, with the truth's terms
    /// and their largest one computed over the block (vectorised), and the log-sum-exp only for
    /// the points the largest term leaves open.
    fn count_inside(&self, b: usize, s: &mut TailScratch) -> usize {
        let t = &self.truth;
        t.terms_cols(&s.x[..t.d * b], b, &mut s.terms);
        let largest = &mut s.largest[..b];
        largest.fill(f64::NEG_INFINITY);
        for col in s.terms[..t.k * b].chunks_exact(b) {
            for (m, v) in largest.iter_mut().zip(col) {
                *m = m.max(*v);
            }
        }
        let mut inside = 0;
        for (r, m) in largest.iter().enumerate() {
            let yes = self.decided_by_largest(*m).unwrap_or_else(|| {
                for (c, v) in s.l.iter_mut().enumerate() {
                    *v = s.terms[c * b + r];
                }
                logsumexp(&s.l) < self.threshold
            });
            inside += usize::from(yes);
        }
        inside
    }

    /// The probability model `p` gives the region, `Σ_k w_k · (share of component k's draws
    /// inside)`: component k's draws are `μ_k + L_k z` (`L_k L_kᵀ = Σ_k`) over its own block of
    /// the run's normals, each coordinate `μ_r + Σ_{t≤r} L_rt z_t` summed in `t` order (from
    /// −0, as `Iterator::sum` does). NaN when a covariance has no Cholesky factor.
    pub fn coverage(&self, p: &GmmParams) -> f64 {
        let d = p.d;
        let rows = self.z.len() / d.max(1);
        let per = (rows / p.k.max(1)).max(1);
        let mut s = TailScratch {
            x: vec![0.0; TERMS_BLOCK * d],
            terms: vec![0.0; self.truth.k * TERMS_BLOCK],
            largest: [0.0; TERMS_BLOCK],
            l: vec![0.0; self.truth.k],
        };
        let mut total = 0.0;
        for k in 0..p.k {
            let factor = match p.component_covariance(k) {
                c if p.covariance_type.layout() == PassLayout::Full => cholesky_lower(&c, d),
                c => Some(
                    (0..d * d)
                        .map(|i| if i % (d + 1) == 0 { c[i].sqrt() } else { 0.0 })
                        .collect(),
                ),
            };
            let Some(l) = factor.filter(|l| l.iter().all(|v| v.is_finite())) else {
                return f64::NAN;
            };
            let mu = &p.means[k * d..(k + 1) * d];
            let mut inside = 0usize;
            for start in (0..per).step_by(TERMS_BLOCK) {
                let b = TERMS_BLOCK.min(per - start);
                let first = k * per + start;
                for (r, xr) in s.x.chunks_exact_mut(b).take(d).enumerate() {
                    xr.fill(-0.0);
                    for (t, a) in l[r * d..r * d + r + 1].iter().enumerate() {
                        let zt = &self.z[t * rows..(t + 1) * rows];
                        if first + b <= rows {
                            for (xv, zv) in xr.iter_mut().zip(&zt[first..first + b]) {
                                *xv += a * zv;
                            }
                        } else {
                            // More components than draws: the last draws repeat.
                            for (j, xv) in xr.iter_mut().enumerate() {
                                *xv += a * zt[(first + j).min(rows - 1)];
                            }
                        }
                    }
                    for xv in xr.iter_mut() {
                        *xv += mu[r]; // IEEE addition commutes: the same bits as mu[r] + xv
                    }
                }
                inside += self.count_inside(b, &mut s);
            }
            total += p.weights[k] * inside as f64 / per as f64;
        }
        total
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

/// `∫ p q` for two mixtures, in closed form.
fn cross(p: &GmmParams, q: &GmmParams) -> f64 {
    let d = p.d;
    let mut s = 0.0;
    for i in 0..p.k {
        for j in 0..q.k {
            let cov: Vec<f64> = p
                .component_covariance(i)
                .iter()
                .zip(q.component_covariance(j))
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
                // The cpu64 E-step's total (the same per-row log-sum-exp and pairwise sum, so
                // the same bits) without its responsibilities.
                Ok(e) => {
                    let ho = &ctx.real.held_out;
                    let mut l = vec![0.0; ho.rows];
                    e.log_density_rows(&ho.data, &mut l);
                    pairwise_sum(&l) / ho.rows as f64
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
            let tail = tails.map_or(f64::NAN, |tr| tr.coverage(p));
            v.extend([heldout, l2, entropy, tail].iter().map(|x| x.to_string()));
        }
    }
    Ok(v)
}

/// `summary.json`: the configuration (and its policy as typed, `policy_spec`), the real data's `reference` values when the model has any,
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
    // `policy_spec`: the policy as typed on the command line (`replace`, `mix:0.1`), one
    // spelling for every policy (`config.policy` keeps serde's form, which resume reads).
    let mut doc = serde_json::json!({
        "config": cfg,
        "policy_spec": cfg.policy.to_string(),
        "generations": gens,
    });
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendKind;
    use crate::experiment::config::builtin_truth;
    use crate::ops::gmm::CovarianceType;

    /// The plain Monte Carlo estimate the stratified one replaces: the share of `n` model
    /// samples (fresh Box–Muller draws) inside the region.
    fn plain(tr: &TailRegion, p: &GmmParams, cpu: &Engine, n: usize, seed: u64) -> f64 {
        let x = sample_model(cpu, p, n, StreamKey::new(seed, 99)).unwrap();
        (0..x.rows).filter(|&i| tr.contains(x.row(i))).count() as f64 / n as f64
    }

    #[test]
    fn tail_coverage_agrees_with_plain_monte_carlo() {
        let cpu = Engine::create(BackendKind::Cpu64, None).unwrap();
        let truth = builtin_truth("shumailov-gmm").unwrap();
        let tr = TailRegion::new(3, &truth, &cpu).unwrap();
        // The truth covers its own outer 1% region with probability 0.01.
        let own = tr.coverage(&truth);
        assert!((own - 0.01).abs() < 0.002, "truth's own coverage {own}");
        // Drifted models, full and diagonal: within 4 standard errors of 200 000 plain draws.
        let mut wide = truth.clone();
        wide.covariances.iter_mut().for_each(|v| *v *= 2.5);
        wide.means[0] += 0.7;
        let mut full = wide.clone();
        full.covariance_type = CovarianceType::Full;
        full.covariances = (0..2)
            .flat_map(|c| {
                let v = wide.covariances[c * 2];
                [v, 0.3 * v, 0.3 * v, v]
            })
            .collect();
        full.weights = vec![0.3, 0.7];
        for p in [&wide, &full] {
            let got = tr.coverage(p);
            let want = plain(&tr, p, &cpu, 200_000, 11);
            let se = (want * (1.0 - want) / 200_000.0).sqrt()
                + (want * (1.0 - want) / TAIL_MODEL_SAMPLES as f64).sqrt();
            assert!(want > 0.05, "the drifted model reaches the tails: {want}");
            assert!(
                (got - want).abs() < 4.0 * se,
                "{:?}: stratified {got} vs plain {want} (se {se})",
                p.covariance_type
            );
        }
        // A component without a Cholesky factor gives NaN, not a number.
        let mut bad = full.clone();
        bad.covariances[0] = -1.0;
        assert!(tr.coverage(&bad).is_nan());
    }

    /// A random mixture of `k` components in `d` dimensions (seeded): means N(0, 2²), weights
    /// from squared normals, covariances `A Aᵀ/d + 0.3 I` (full; one for tied) or `0.3 + v²`
    /// (diagonal; one per component for spherical).
    fn random_mixture(k: usize, d: usize, cov: CovarianceType, seed: u64) -> GmmParams {
        let mut v = vec![0.0; k * (1 + d + d * d)];
        host_normals_f64(StreamKey::new(seed, 5), 0, &mut v);
        let (w, rest) = v.split_at(k);
        let (means, a) = rest.split_at(k * d);
        let w: Vec<f64> = w.iter().map(|x| 0.1 + x * x).collect();
        let total: f64 = w.iter().sum();
        let blocks = if cov == CovarianceType::Tied { 1 } else { k };
        let covariances = match cov {
            CovarianceType::Full | CovarianceType::Tied => (0..blocks)
                .flat_map(|c| {
                    let a = &a[c * d * d..(c + 1) * d * d];
                    (0..d * d).map(move |ij| {
                        let (i, j) = (ij / d, ij % d);
                        let s: f64 = (0..d).map(|t| a[i * d + t] * a[j * d + t]).sum();
                        s / d as f64 + if i == j { 0.3 } else { 0.0 }
                    })
                })
                .collect(),
            CovarianceType::Diag => a[..k * d].iter().map(|x| 0.3 + x * x).collect(),
            CovarianceType::Spherical => a[..k].iter().map(|x| 0.3 + x * x).collect(),
        };
        GmmParams {
            k,
            d,
            covariance_type: cov,
            weights: w.iter().map(|x| x / total).collect(),
            means: means.iter().map(|x| 2.0 * x).collect(),
            covariances,
        }
    }

    /// The coverage point by point, as the estimator is defined: draw `j` of component k is
    /// `μ_k + L_k z_j` (each coordinate an iterator sum), tested by [`TailRegion::contains`].
    fn coverage_point_by_point(tr: &TailRegion, p: &GmmParams) -> f64 {
        let d = p.d;
        let rows = tr.z.len() / d;
        let per = (rows / p.k).max(1);
        let mut total = 0.0;
        for k in 0..p.k {
            let c = p.component_covariance(k);
            let l = match p.covariance_type.layout() {
                PassLayout::Full => cholesky_lower(&c, d).unwrap(),
                PassLayout::Diag => (0..d * d)
                    .map(|i| if i % (d + 1) == 0 { c[i].sqrt() } else { 0.0 })
                    .collect(),
            };
            let inside = (0..per)
                .filter(|&j| {
                    let row = (k * per + j).min(rows - 1);
                    let x: Vec<f64> = (0..d)
                        .map(|r| {
                            p.means[k * d + r]
                                + (0..=r)
                                    .map(|t| l[r * d + t] * tr.z[t * rows + row])
                                    .sum::<f64>()
                        })
                        .collect();
                    tr.contains(&x)
                })
                .count();
            total += p.weights[k] * inside as f64 / per as f64;
        }
        total
    }

    /// The blocked metrics (tail coverage over column blocks, the held-out log-likelihood over
    /// `log_density_rows`) give exactly the bits of the plain per-point computations, on fresh
    /// random truths and models of several shapes, every covariance type, with a partial last
    /// block and more than 16 components (the log-density's heap path).
    #[test]
    fn blocked_metrics_match_the_per_point_computation_bit_for_bit() {
        let cpu = Engine::create(BackendKind::Cpu64, None).unwrap();
        let mut interior = 0;
        let mut cases = 0;
        for (i, &(k, d)) in [(1, 1), (2, 2), (3, 2), (2, 3), (5, 4), (17, 2)]
            .iter()
            .enumerate()
        {
            for cov in CovarianceType::ALL {
                let seed = 100 + 2 * i as u64;
                let truth = random_mixture(k, d, cov, seed);
                let tr = TailRegion::new(seed, &truth, &cpu).unwrap();
                // Models: a perturbed, widened truth and an unrelated mixture of other K.
                let mut near = truth.clone();
                near.means.iter_mut().for_each(|m| *m += 0.4);
                near.covariances.iter_mut().for_each(|v| *v *= 1.7);
                let far = random_mixture(k % 3 + 1, d, cov, seed + 1);
                for p in [&truth, &near, &far] {
                    let got = tr.coverage(p);
                    let want = coverage_point_by_point(&tr, p);
                    assert_eq!(
                        got.to_bits(),
                        want.to_bits(),
                        "K={k} D={d} {cov:?}: {got} vs {want}"
                    );
                    interior += usize::from(got > 0.0 && got < 1.0);
                    cases += 1;
                }
                // Held-out log-likelihood: 1000 points (a partial last block) from the model.
                let x = sample_model(&cpu, &near, 1000, StreamKey::new(seed, 7)).unwrap();
                let e = near.estep_params().unwrap();
                let mut blocked = vec![0.0; x.rows];
                e.log_density_rows(&x.data, &mut blocked);
                for (r, got) in blocked.iter().enumerate() {
                    let want = e.log_density(x.row(r));
                    assert_eq!(got.to_bits(), want.to_bits(), "K={k} D={d} {cov:?} row {r}");
                }
            }
        }
        // The estimates are informative (not all 0 or 1), so the comparison can fail.
        assert!(
            interior * 2 > cases,
            "{interior} of {cases} coverages strictly inside (0, 1)"
        );
    }
}
