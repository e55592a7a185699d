//! Kernel-level drift: each kernel family's error against the f64 reference as a function of
//! problem size `n` and input scale.
//!
//! Inputs are Philox normals (seeded, so a rerun gives the same table) shifted by the input
//! scale `s`: values `s + z`, `z ~ N(0, 1)`. A large `s` relative to the spread is the regime
//! a collapsing chain enters (σ shrinks while μ does not). Every family and its error:
//!
//! - `sum` (methods `naive`, `pairwise`, `kahan`; f32 on the host): `Σ x` of `n` f32 values;
//!   error `|ŝ − s| / Σ|x|` (the norm-wise error the textbook bounds `n·u`, `u·log₂ n` and
//!   `2u` are about), `s` the f64 compensated sum of the same f32 values;
//! - `fit_mean`, `fit_var` (methods = backends): the Gaussian maximum-likelihood fit (the M-step
//!   with all responsibilities 1; the kernel of the Gaussian chain) of `n` 1-D points, given
//!   rounded to f32 so every backend sees the same input; errors `|μ̂ − μ| / σ` and
//!   `|σ̂² − σ²| / σ²` against cpu64;
//! - `loglik` (methods = backends): the E-step's total log-likelihood of `n` points of a fixed
//!   4-component, 4-D diagonal mixture centred at `s`; error `|ℓ̂ − ℓ| / |ℓ|` against cpu64;
//! - `matmul` (methods = backends, plus `wgsl-f16` and `cube-f16` for f16 storage where the
//!   adapter has it): `[64][n]·[n][64]`, `n` the inner dimension; norm-wise relative error of
//!   C against cpu64 on the unrounded inputs;
//! - `sample` (methods = backends): `n` draws of N(s, 1) from one Philox stream; norm-wise
//!   relative error of the samples against cpu64's draws of the same stream.

use crate::backend::cpu64::Cpu64;
use crate::error::Result;
use crate::io::Matrix;
use crate::num::summation::Summation;
use crate::ops::Backend;
use crate::ops::gmm::{CovarianceType, GmmParams, PassLayout};
use crate::ops::matmul::{Matmul, Storage};
use crate::rng::StreamKey;
use crate::rng::streams::drift_sweep;

/// One measured error.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KernelRow {
    /// Kernel family (`sum`, `fit_mean`, `fit_var`, `loglik`, `matmul`, `sample`).
    pub family: String,
    /// Summation order or backend.
    pub method: String,
    /// Problem size (points, terms, or the inner dimension of the product).
    pub n: usize,
    /// Input scale `s` (inputs `s + z`).
    pub scale: f64,
    /// The family's error measure (see the module documentation).
    pub error: f64,
    /// Condition of the problem where it has a simple one (`sum`: `Σ|x| / |Σx|`), else empty.
    pub cond: Option<f64>,
}

/// What to sweep.
pub struct KernelSweep {
    /// Sizes `n` for `sum`, `fit_*`, `loglik` and `sample`.
    pub sizes: Vec<usize>,
    /// Inner dimensions for `matmul`.
    pub matmul_k: Vec<usize>,
    /// Input scales.
    pub scales: Vec<f64>,
    /// Philox seed of the inputs.
    pub seed: u64,
}

fn normals(n: usize, seed: u64, stream: u64) -> Result<Vec<f64>> {
    let mut z = vec![0.0; n];
    Cpu64.normal(StreamKey::new(seed, stream), 0, &mut z)?;
    Ok(z)
}

/// The `sum` family on the host.
pub fn sums(sweep: &KernelSweep, out: &mut Vec<KernelRow>) -> Result<()> {
    for &n in &sweep.sizes {
        let z = normals(n, sweep.seed, drift_sweep::SUM)?;
        for &s in &sweep.scales {
            let x: Vec<f32> = z.iter().map(|v| (s + v) as f32).collect();
            let wide: Vec<f64> = x.iter().map(|&v| v as f64).collect();
            let exact = Summation::Kahan.sum_f64(&wide);
            let abs: f64 = wide.iter().map(|v| v.abs()).sum();
            for order in Summation::ALL {
                out.push(KernelRow {
                    family: "sum".into(),
                    method: order.name().into(),
                    n,
                    scale: s,
                    error: (order.sum_f32(&x) as f64 - exact).abs() / abs,
                    cond: Some(abs / exact.abs()),
                });
            }
        }
    }
    Ok(())
}

fn gauss_fit(b: &dyn Backend, x: &Matrix) -> Result<(f64, f64)> {
    let mut p = b.gmm_pass(x)?;
    p.set_responsibilities(&vec![1.0; x.rows])?;
    let s = p.mstep(PassLayout::Diag)?;
    Ok((s.means[0], s.scatter[0] / s.nk[0]))
}

/// The `fit_mean`, `fit_var`, `loglik` and `sample` families on `backends` (name, backend).
pub fn backend_families(
    sweep: &KernelSweep,
    backends: &[(String, &dyn Backend)],
    out: &mut Vec<KernelRow>,
    progress: &mut dyn FnMut(&str),
) -> Result<()> {
    let mixture = |s: f64| GmmParams {
        k: 4,
        d: 4,
        covariance_type: CovarianceType::Diag,
        weights: vec![0.1, 0.2, 0.3, 0.4],
        means: (0..16).map(|i| s + (i % 5) as f64 - 2.0).collect(),
        covariances: (0..16).map(|i| 0.5 + 0.1 * (i % 3) as f64).collect(),
    };
    for &n in &sweep.sizes {
        let z = normals(n, sweep.seed, drift_sweep::FIT)?;
        for &s in &sweep.scales {
            progress(&format!("fit, loglik, sample: n = {n}, scale = {s}"));
            let x = Matrix::new(n, 1, z.iter().map(|v| (s + v) as f32 as f64).collect())?;
            let (m64, v64) = gauss_fit(&Cpu64, &x)?;
            let mix = mixture(s);
            let pts = crate::models::gmm::sample(
                &Cpu64,
                &mix,
                n,
                StreamKey::new(sweep.seed, drift_sweep::MIXTURE_POINTS),
            )?;
            let pts = Matrix::new(n, 4, pts.data.iter().map(|&v| v as f32 as f64).collect())?;
            let e = mix.estep_params()?;
            let ll64 = Cpu64.gmm_pass(&pts)?.estep(&e)?;
            let gauss = GmmParams {
                k: 1,
                d: 1,
                covariance_type: CovarianceType::Diag,
                weights: vec![1.0],
                means: vec![s],
                covariances: vec![1.0],
            };
            let key = StreamKey::new(sweep.seed, drift_sweep::SAMPLE);
            let draws64 = crate::models::gmm::sample(&Cpu64, &gauss, n, key)?;
            for (name, b) in backends {
                let (m, v) = gauss_fit(*b, &x)?;
                let ll = b.gmm_pass(&pts)?.estep(&e)?;
                let draws = crate::models::gmm::sample(*b, &gauss, n, key)?;
                let row = |family: &str, error: f64| KernelRow {
                    family: family.into(),
                    method: name.clone(),
                    n,
                    scale: s,
                    error,
                    cond: None,
                };
                out.push(row("fit_mean", (m - m64).abs() / v64.sqrt()));
                out.push(row("fit_var", (v - v64).abs() / v64));
                out.push(row("loglik", (ll - ll64).abs() / ll64.abs()));
                out.push(row(
                    "sample",
                    crate::ops::matmul::rel_error(&draws.data, &draws64.data),
                ));
            }
        }
    }
    Ok(())
}

/// The `matmul` family: `[64][k]·[k][64]` on `backends`; `f16` lists the backends that also run
/// with f16 storage (reported as `NAME-f16`).
pub fn matmuls(
    sweep: &KernelSweep,
    backends: &[(String, &dyn Backend)],
    f16: &[String],
    out: &mut Vec<KernelRow>,
    progress: &mut dyn FnMut(&str),
) -> Result<()> {
    let (m, n) = (64, 64);
    for &k in &sweep.matmul_k {
        let za = normals(m * k, sweep.seed, drift_sweep::MATMUL_A)?;
        let zb = normals(k * n, sweep.seed, drift_sweep::MATMUL_B)?;
        for &s in &sweep.scales {
            progress(&format!("matmul: k = {k}, scale = {s}"));
            let a: Vec<f64> = za.iter().map(|v| s + v).collect();
            let b: Vec<f64> = zb.iter().map(|v| s + v).collect();
            let p = Matmul::new(m, n, k);
            let mut c64 = vec![f64::NAN; m * n];
            Cpu64.matmul(&p, &a, &b, None, &mut c64)?;
            let mut run = |name: String, be: &dyn Backend, p: &Matmul| -> Result<()> {
                let mut c = vec![f64::NAN; m * n];
                be.matmul(p, &a, &b, None, &mut c)?;
                out.push(KernelRow {
                    family: "matmul".into(),
                    method: name,
                    n: k,
                    scale: s,
                    error: crate::ops::matmul::rel_error(&c, &c64),
                    cond: None,
                });
                Ok(())
            };
            for (name, be) in backends {
                run(name.clone(), *be, &p)?;
                if f16.contains(name) {
                    let mut ph = p.clone();
                    ph.storage = Storage::F16;
                    run(format!("{name}-f16"), *be, &ph)?;
                }
            }
        }
    }
    Ok(())
}

/// Unit roundoffs, for the table's reference lines.
pub const U32: f64 = 5.960_464_477_539_063e-8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_errors_follow_their_bounds() {
        let sweep = KernelSweep {
            sizes: vec![1000, 100_000],
            matmul_k: vec![],
            scales: vec![0.0, 100.0],
            seed: 1,
        };
        let mut rows = Vec::new();
        sums(&sweep, &mut rows).unwrap();
        assert_eq!(rows.len(), 2 * 2 * 3);
        for r in &rows {
            let bound = match r.method.as_str() {
                "naive" => r.n as f64 * U32,
                "pairwise" => (r.n as f64).log2().ceil() * U32,
                _ => 2.0 * U32,
            };
            assert!(
                r.error.is_finite() && r.error <= bound,
                "{r:?} bound {bound}"
            );
        }
        // At scale 100 and n = 10⁵ naive summation is an order of magnitude off; Kahan is at the
        // rounding of the f32 result itself.
        let get = |m: &str| {
            rows.iter()
                .find(|r| r.method == m && r.n == 100_000 && r.scale == 100.0)
                .unwrap()
                .error
        };
        assert!(get("naive") > 5.0 * get("kahan"), "{rows:?}");
    }

    #[test]
    fn backend_families_measure_cpu32() {
        let sweep = KernelSweep {
            sizes: vec![2000],
            matmul_k: vec![256],
            scales: vec![0.0, 1e3],
            seed: 2,
        };
        let cpu32 = crate::backend::cpu32::Cpu32;
        let bs: Vec<(String, &dyn Backend)> = vec![("cpu32".into(), &cpu32)];
        let mut rows = Vec::new();
        backend_families(&sweep, &bs, &mut rows, &mut |_| {}).unwrap();
        matmuls(&sweep, &bs, &[], &mut rows, &mut |_| {}).unwrap();
        assert_eq!(rows.len(), 2 * 4 + 2);
        for r in &rows {
            // f32 arithmetic: above 0 (it is not f64) and within a few thousand u.
            assert!(r.error > 0.0 && r.error < 1e-3, "{r:?}");
        }
    }
}
