//! `collapse check`: numeric regression checks against golden fingerprints.
//!
//! Every kernel runs on fixed, seeded inputs. A fingerprint (in `results/golden/fingerprints.json`)
//! records, per kernel, a summary of the **cpu64 reference output** (count, mean, sd, min, max; or
//! a hash where the kernel promises bit-identical results) and the **tolerance the kernel
//! promises** for any backend against cpu64, with the measure it is stated in. A check
//! recomputes the reference and compares it with the golden summary (catches a change of
//! definition: a different Philox stream, a changed conversion), then runs each backend and
//! compares its output with the reference by the kernel's measure (catches a kernel
//! regression). No raw bit patterns of f32 outputs are stored, so another GPU that rounds
//! differently passes while a real regression fails.
//!
//! The file is not trusted: [`load`] refuses another format version, a kernel named twice
//! and a tolerance that is not finite and ≥ 0. The promise that counts is the code's (the
//! kernel table here): a backend passes when its error is within the **smaller** of the
//! code's tolerance and the file's, so a file can tighten a check but never loosen it, and a
//! file stating another measure than the code's fails that kernel until it is re-blessed.

use std::path::Path;

use crate::backend::BackendKind;
use crate::error::{Error, Result};
use crate::io::{Matrix, write_atomic};
use crate::ops::Backend;
use crate::ops::gmm::{CovarianceType, GmmParams, PassLayout};
use crate::ops::sampling::{Categorical, MixtureBatch};
use crate::rng::StreamKey;
use crate::rng::streams::golden;
use crate::trainers::Engine;

/// How a backend's output is compared with the cpu64 reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// Bit-identical: hashes must match.
    Exact,
    /// Norm-wise relative error ‖got − ref‖ / ‖ref‖.
    RelErr,
    /// Fraction of entries that differ (indices that may move at rounding boundaries).
    MismatchFraction,
}

impl std::fmt::Display for Measure {
    /// The name the golden file uses (`exact`, `rel_err`, `mismatch_fraction`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Measure::Exact => "exact",
            Measure::RelErr => "rel_err",
            Measure::MismatchFraction => "mismatch_fraction",
        })
    }
}

/// Summary of a reference output.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// Number of values.
    pub n: usize,
    /// Mean.
    pub mean: f64,
    /// Standard deviation.
    pub sd: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// FNV-1a 64 of the values as little-endian f64 (for exact kernels).
    pub hash: Option<String>,
}

impl std::fmt::Display for Summary {
    /// One line: `n 65536, mean 0.00477, sd 1.007, min -4.313, max 5.44` (full precision),
    /// then `, hash 438a…` for exact kernels.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "n {}, mean {}, sd {}, min {}, max {}",
            self.n, self.mean, self.sd, self.min, self.max
        )?;
        if let Some(h) = &self.hash {
            write!(f, ", hash {h}")?;
        }
        Ok(())
    }
}

/// One kernel's fingerprint.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Fingerprint {
    /// Kernel name.
    pub kernel: String,
    /// The cpu64 reference output's summary.
    pub reference: Summary,
    /// How backends are compared with the reference.
    pub measure: Measure,
    /// The promised bound in that measure (0 for exact).
    pub tolerance: f64,
}

/// The golden file.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Golden {
    /// File format version.
    pub version: u32,
    /// Fingerprints, one per kernel.
    pub kernels: Vec<Fingerprint>,
}

/// One line of the report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Outcome {
    /// Kernel.
    pub kernel: String,
    /// Backend (`cpu64` rows check the reference against the golden summary).
    pub backend: String,
    /// Where it ran.
    pub adapter: String,
    /// What was expected.
    pub expected: String,
    /// What was measured.
    pub got: String,
    /// The tolerance.
    pub tolerance: f64,
    /// Whether it passed.
    pub pass: bool,
}

fn fnv(values: &[f64]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in values {
        for b in v.to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// Summarise `v`, with a hash when `exact`.
pub fn summarise(v: &[f64], exact: bool) -> Summary {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt();
    Summary {
        n: v.len(),
        mean,
        sd,
        min: v.iter().cloned().fold(f64::INFINITY, f64::min),
        max: v.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
        hash: exact.then(|| fnv(v)),
    }
}

/// Relative tolerance of reference summaries across machines (libm may differ in the last bits).
pub const SUMMARY_RTOL: f64 = 1e-9;

/// Does the recomputed reference summary match the golden one?
pub fn summary_matches(golden: &Summary, now: &Summary) -> bool {
    let close = |a: f64, b: f64| (a - b).abs() <= SUMMARY_RTOL * a.abs().max(b.abs()).max(1e-300);
    golden.n == now.n
        && golden.hash == now.hash
        && close(golden.mean, now.mean)
        && close(golden.sd, now.sd)
        && close(golden.min, now.min)
        && close(golden.max, now.max)
}

/// The error of `got` against `reference` in `measure` (0 or 1 for exact).
pub fn measure(m: Measure, reference: &[f64], got: &[f64]) -> f64 {
    if reference.len() != got.len() || got.iter().any(|v| v.is_nan()) {
        return f64::INFINITY;
    }
    match m {
        Measure::Exact => (fnv(reference) != fnv(got)) as u8 as f64,
        Measure::RelErr => {
            let num: f64 = reference
                .iter()
                .zip(got)
                .map(|(a, b)| (a - b).powi(2))
                .sum();
            let den: f64 = reference.iter().map(|a| a * a).sum();
            (num / den.max(1e-300)).sqrt()
        }
        Measure::MismatchFraction => {
            reference.iter().zip(got).filter(|(a, b)| a != b).count() as f64
                / got.len().max(1) as f64
        }
    }
}

/// A kernel of the check: name, measure, promised tolerance, and how to run it.
struct Case {
    name: &'static str,
    measure: Measure,
    tolerance: f64,
    run: fn(&Engine) -> Result<Vec<f64>>,
}

fn mixture() -> Result<crate::ops::sampling::PreparedMixture> {
    let (r, k, d) = (2, 4, 3);
    let mut cov = Vec::new();
    for c in 0..r * k {
        for i in 0..d {
            for j in 0..d {
                cov.push(if i == j { 1.0 + 0.25 * c as f64 } else { 0.3 });
            }
        }
    }
    let weights = vec![0.1, 0.2, 0.3, 0.4, 0.25, 0.25, 0.25, 0.25];
    let means = (0..r * k * d)
        .map(|i| (i as f64 * 0.7).sin() * 4.0)
        .collect();
    MixtureBatch::from_covariances(r, k, d, weights, means, &cov)?.prepare()
}

fn em_data() -> Result<(Matrix, GmmParams)> {
    let (n, d, k) = (4096, 4, 3);
    let mut z = vec![0.0; n * d];
    crate::backend::create(BackendKind::Cpu64, None)?.normal(golden::EM_DATA, 0, &mut z)?;
    let x = Matrix::new(
        n,
        d,
        z.iter()
            .enumerate()
            .map(|(i, v)| 2.0 * v + (i % 3) as f64)
            .collect(),
    )?;
    let mut cov = vec![0.0; k * d * d];
    for c in 0..k {
        for i in 0..d {
            for j in 0..d {
                cov[c * d * d + i * d + j] = if i == j { 1.5 + c as f64 } else { 0.2 };
            }
        }
    }
    let p = GmmParams {
        k,
        d,
        covariance_type: CovarianceType::Full,
        weights: vec![0.2, 0.3, 0.5],
        means: (0..k * d).map(|i| (i % 5) as f64 - 2.0).collect(),
        covariances: cov,
    };
    Ok((x, p))
}

const CASES: &[Case] = &[
    Case {
        name: "philox_u32",
        measure: Measure::Exact,
        tolerance: 0.0,
        run: |b| {
            let mut v = vec![0u32; 65_536];
            b.uniform_u32(golden::PHILOX_U32, 3, &mut v)?;
            Ok(v.iter().map(|&x| x as f64).collect())
        },
    },
    Case {
        name: "normal",
        measure: Measure::RelErr,
        tolerance: 1e-4,
        run: |b| {
            let mut v = vec![0.0; 65_536];
            b.normal(golden::NORMAL, 0, &mut v)?;
            Ok(v)
        },
    },
    Case {
        name: "gmm_sample_components",
        measure: Measure::Exact,
        tolerance: 0.0,
        run: |b| {
            let p = mixture()?;
            let (mut x, mut c) = (vec![0.0; 2 * 4096 * 3], vec![0u32; 2 * 4096]);
            b.sample_mixture(&p, 4096, golden::MIXTURE, 0, &mut x, &mut c)?;
            Ok(c.iter().map(|&v| v as f64).collect())
        },
    },
    Case {
        name: "gmm_sample_values",
        measure: Measure::RelErr,
        tolerance: 1e-4,
        run: |b| {
            let p = mixture()?;
            let (mut x, mut c) = (vec![0.0; 2 * 4096 * 3], vec![0u32; 2 * 4096]);
            b.sample_mixture(&p, 4096, golden::MIXTURE, 0, &mut x, &mut c)?;
            Ok(x)
        },
    },
    Case {
        name: "categorical_top20",
        measure: Measure::MismatchFraction,
        tolerance: 0.01,
        run: |b| {
            let mut logits = vec![0.0; 16 * 100];
            crate::backend::create(BackendKind::Cpu64, None)?.normal(
                golden::CATEGORICAL_LOGITS,
                0,
                &mut logits,
            )?;
            let cat = Categorical {
                rows: 16,
                classes: 100,
                logits,
                temperature: 0.8,
                top_k: Some(20),
            };
            let mut out = vec![0u32; 16 * 64];
            b.sample_categorical(&cat, 64, golden::CATEGORICAL, 0, &mut out)?;
            Ok(out.iter().map(|&v| v as f64).collect())
        },
    },
    Case {
        name: "gmm_estep_loglik",
        measure: Measure::RelErr,
        tolerance: 1e-5,
        run: |b| {
            let (x, p) = em_data()?;
            Ok(vec![b.gmm_pass(&x)?.estep(&p.estep_params()?)?])
        },
    },
    Case {
        name: "gmm_estep_responsibilities",
        measure: Measure::RelErr,
        tolerance: 1e-4,
        run: |b| {
            let (x, p) = em_data()?;
            let mut pass = b.gmm_pass(&x)?;
            pass.estep(&p.estep_params()?)?;
            pass.responsibilities()
        },
    },
    Case {
        name: "gmm_mstep_scatter",
        measure: Measure::RelErr,
        tolerance: 1e-4,
        run: |b| {
            let (x, p) = em_data()?;
            let r = {
                let cpu = crate::backend::create(BackendKind::Cpu64, None)?;
                let mut pass = cpu.gmm_pass(&x)?;
                pass.estep(&p.estep_params()?)?;
                pass.responsibilities()?
            };
            let mut pass = b.gmm_pass(&x)?;
            pass.set_responsibilities(&r)?;
            let s = pass.mstep(PassLayout::Full)?;
            Ok(s.nk.into_iter().chain(s.means).chain(s.scatter).collect())
        },
    },
    Case {
        name: "matmul_batched_tn_bias_gelu",
        measure: Measure::RelErr,
        tolerance: 1e-5,
        run: |b| {
            let p = crate::ops::matmul::Matmul::new(97, 75, 130)
                .batched(3)
                .transposed(true, false)
                .scaled(1.3, 0.7)
                .with_epilogue(crate::ops::matmul::Epilogue::BiasGelu);
            matmul_case(b, &p)
        },
    },
    Case {
        name: "matmul_f16_storage_nt_sigmoid",
        measure: Measure::RelErr,
        tolerance: 1e-5,
        run: |b| {
            let p = crate::ops::matmul::Matmul::new(64, 48, 200)
                .transposed(false, true)
                .with_epilogue(crate::ops::matmul::Epilogue::BiasSigmoid)
                .with_storage(crate::ops::matmul::Storage::F16);
            matmul_case(b, &p)
        },
    },
    Case {
        name: "vae_loss_gradient",
        measure: Measure::RelErr,
        tolerance: 1e-4,
        run: |b| {
            let cfg = crate::models::vae::VaeConfig {
                d: 64,
                h: 32,
                z: 6,
                ..Default::default()
            };
            let mut x = vec![0.0; 16 * cfg.d];
            crate::backend::create(BackendKind::Cpu64, None)?.uniform(
                golden::VAE_IMAGES,
                0,
                &mut x,
            )?;
            let mut vae = b.vae(
                &cfg,
                &crate::models::vae::init_params(&cfg, golden::VAE_SEED),
            )?;
            let (loss, g) = vae.loss_and_gradient(&x, golden::VAE_NOISE)?;
            Ok(std::iter::once(loss.loss).chain(g).collect())
        },
    },
    Case {
        name: "lm_loss_gradient",
        measure: Measure::RelErr,
        tolerance: 1e-4,
        run: |b| {
            let cfg = crate::models::lm::LmConfig {
                width: 16,
                layers: 2,
                heads: 2,
                context: 12,
                ..Default::default()
            };
            let mut words = vec![0u32; 3 * (cfg.context + 1)];
            crate::backend::create(BackendKind::Cpu64, None)?.uniform_u32(
                golden::LM_TOKENS,
                0,
                &mut words,
            )?;
            let tokens: Vec<u8> = words.iter().map(|w| (w >> 24) as u8).collect();
            let mut lm = b.lm(&cfg, &crate::models::lm::init_params(&cfg, golden::LM_SEED))?;
            let (loss, g) = lm.loss_and_gradient(&tokens, cfg.context)?;
            Ok(std::iter::once(loss.loss).chain(g).collect())
        },
    },
];

/// Run matmul `p` on seeded inputs (Philox normals rounded to f32, so every backend sees the
/// same values; C starts from normals too, for β ≠ 0).
fn matmul_case(b: &Engine, p: &crate::ops::matmul::Matmul) -> Result<Vec<f64>> {
    let cpu = crate::backend::create(BackendKind::Cpu64, None)?;
    let draw = |n: usize, stream: u64| -> Result<Vec<f64>> {
        let mut v = vec![0.0; n];
        cpu.normal(StreamKey::new(golden::MATMUL_SEED, stream), 0, &mut v)?;
        Ok(v.into_iter().map(|x| x as f32 as f64).collect())
    };
    let (a, bm, bias) = (
        draw(p.len_a(), golden::MATMUL_A)?,
        draw(p.len_b(), golden::MATMUL_B)?,
        draw(p.n, golden::MATMUL_BIAS)?,
    );
    let mut c = draw(p.len_c(), golden::MATMUL_C)?;
    let bias = p.epilogue.has_bias().then_some(&bias[..]);
    b.matmul(p, &a, &bm, bias, &mut c)?;
    Ok(c)
}

/// Fingerprints of the current cpu64 reference.
pub fn bless(reference: &Engine) -> Result<Golden> {
    let kernels = CASES
        .iter()
        .map(|c| {
            Ok(Fingerprint {
                kernel: c.name.into(),
                reference: summarise(&(c.run)(reference)?, c.measure == Measure::Exact),
                measure: c.measure,
                tolerance: c.tolerance,
            })
        })
        .collect::<Result<_>>()?;
    Ok(Golden {
        version: VERSION,
        kernels,
    })
}

/// The golden file format this code reads and writes.
pub const VERSION: u32 = 1;

/// Check a parsed golden file: the format [`VERSION`], every kernel named once, every
/// tolerance finite and ≥ 0 (errors say which kernel; the caller adds the file's name).
pub fn validate(g: &Golden) -> Result<()> {
    let bad = |m: String| Err(Error::Data(m));
    if g.version != VERSION {
        return bad(format!(
            "golden format version {}; this collapse reads version {VERSION} (rewrite the file \
             with `collapse check --bless`)",
            g.version
        ));
    }
    for (i, f) in g.kernels.iter().enumerate() {
        if g.kernels[..i].iter().any(|o| o.kernel == f.kernel) {
            return bad(format!("kernel {} appears more than once", f.kernel));
        }
        if !(f.tolerance.is_finite() && f.tolerance >= 0.0) {
            return bad(format!(
                "kernel {}: tolerance {} must be finite and ≥ 0",
                f.kernel, f.tolerance
            ));
        }
    }
    Ok(())
}

/// Parse the text of a golden file and [`validate`] it (errors without the file's name). Any
/// text gives `Ok` or `Err`, never a panic.
pub fn parse(text: &str) -> Result<Golden> {
    let g: Golden = serde_json::from_str(text).map_err(|e| Error::Data(e.to_string()))?;
    validate(&g)?;
    Ok(g)
}

/// Read and [`validate`] a golden file; errors name it.
pub fn load(path: &Path) -> Result<Golden> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Io(format!("{}: {e} (create it with --bless)", path.display())))?;
    parse(&text).map_err(|e| match e {
        Error::Data(m) => Error::Data(format!("{}: {m}", path.display())),
        e => e,
    })
}

/// Write a golden file (atomically).
pub fn save(path: &Path, g: &Golden) -> Result<()> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).map_err(|e| Error::Io(format!("{}: {e}", p.display())))?;
    }
    let text = serde_json::to_string_pretty(g).map_err(|e| Error::Io(e.to_string()))?;
    write_atomic(path, text.as_bytes())
}

/// Run every case: the reference against `golden`, then each backend against the reference.
pub fn check(golden: &Golden, reference: &Engine, backends: &[&Engine]) -> Result<Vec<Outcome>> {
    let mut out = Vec::new();
    for f in &golden.kernels {
        if !CASES.iter().any(|c| c.name == f.kernel) {
            out.push(Outcome {
                kernel: f.kernel.clone(),
                backend: "cpu64".into(),
                adapter: reference.device(),
                expected: "a kernel of this collapse".into(),
                got: "unknown kernel in the golden file (re-bless it)".into(),
                tolerance: f.tolerance,
                pass: false,
            });
        }
    }
    for case in CASES {
        let Some(fp) = golden.kernels.iter().find(|f| f.kernel == case.name) else {
            out.push(Outcome {
                kernel: case.name.into(),
                backend: "cpu64".into(),
                adapter: reference.device(),
                expected: "a golden fingerprint".into(),
                got: "none (run with --bless)".into(),
                tolerance: 0.0,
                pass: false,
            });
            continue;
        };
        if fp.measure != case.measure {
            out.push(Outcome {
                kernel: case.name.into(),
                backend: "cpu64".into(),
                adapter: reference.device(),
                expected: format!("measure {}", case.measure),
                got: format!("the golden file states {} (re-bless it)", fp.measure),
                tolerance: case.tolerance,
                pass: false,
            });
            continue;
        }
        // The code's promise, or the file's when tighter: never a looser one from the file.
        let tolerance = case.tolerance.min(fp.tolerance);
        let ref_vals = (case.run)(reference)?;
        let now = summarise(&ref_vals, case.measure == Measure::Exact);
        out.push(Outcome {
            kernel: case.name.into(),
            backend: "cpu64".into(),
            adapter: reference.device(),
            expected: fp.reference.to_string(),
            got: now.to_string(),
            tolerance: SUMMARY_RTOL,
            pass: summary_matches(&fp.reference, &now),
        });
        for b in backends {
            let (got, pass) = match (case.run)(b) {
                Ok(v) => {
                    let e = measure(case.measure, &ref_vals, &v);
                    (format!("{e:.3e}"), e <= tolerance)
                }
                // A feature the adapter lacks (f16 storage) is not a drift.
                Err(Error::Unsupported(why)) => (format!("skipped: {why}"), true),
                Err(e) => (format!("error: {e}"), false),
            };
            out.push(Outcome {
                kernel: case.name.into(),
                backend: b.name().into(),
                adapter: b.device(),
                expected: format!("{} ≤ {tolerance:e}", case.measure),
                got,
                tolerance,
                pass,
            });
        }
    }
    Ok(out)
}
