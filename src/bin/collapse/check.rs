//! `collapse check`: every kernel on fixed seeded inputs against the golden fingerprints;
//! `--bless` rewrites them.

use std::path::{Path, PathBuf};

use collapse_kernels::backend::BackendKind;
use collapse_kernels::gpu::{self, GpuOptions};
use collapse_kernels::measure::goldens;
use collapse_kernels::trainers::Engine;
use collapse_kernels::{Error, Result};

use crate::common::{adapter_summaries, gpu_for};

/// `collapse check`'s flags.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Rewrite the golden file from the current cpu64 reference and say what changed. An
    /// existing golden file that cannot be read (truncated, invalid) is not overwritten unless
    /// --force is given too.
    #[arg(long)]
    pub bless: bool,
    /// With --bless: overwrite a golden file even when it cannot be read.
    #[arg(long, requires = "bless")]
    pub force: bool,
    /// The golden file.
    #[arg(long, default_value = "results/golden/fingerprints.json")]
    pub golden: PathBuf,
    /// Backends to check against cpu64 (default: cpu32, and wgsl + cube when an adapter
    /// exists).
    #[arg(long, value_delimiter = ',')]
    pub backends: Vec<BackendKind>,
}

/// Check (or with `--bless` rewrite) the golden file; print one row per kernel and backend,
/// and fail with the first drift.
pub fn check(options: &GpuOptions, a: &CheckArgs) -> Result<()> {
    let reference = Engine::create(BackendKind::Cpu64, None)?;
    if a.bless {
        return bless(&reference, &a.golden, a.force);
    }
    let path = a.golden.as_path();
    let golden = goldens::load(path)?;
    let kinds: Vec<BackendKind> = if a.backends.is_empty() {
        let mut k = vec![BackendKind::Cpu32];
        if gpu::choose_adapter(&adapter_summaries(), options.adapter.as_deref()).is_ok() {
            k.extend([BackendKind::Wgsl, BackendKind::Cube]);
        } else {
            eprintln!("no GPU adapter: checking cpu32 only");
        }
        k
    } else {
        a.backends.clone()
    };
    let gpu = gpu_for(options, &kinds)?;
    let backends: Vec<Engine> = kinds
        .iter()
        .map(|&k| Engine::create(k, gpu.as_ref()))
        .collect::<Result<_>>()?;
    let refs: Vec<&Engine> = backends.iter().collect();
    let outcomes = goldens::check(&golden, &reference, &refs)?;
    println!(
        "{:<28} {:<6} {:<6} {:<22} {:<12}",
        "kernel", "backend", "result", "expected", "got"
    );
    for o in &outcomes {
        let expected = if o.backend == "cpu64" {
            "golden summary".to_string()
        } else {
            o.expected.clone()
        };
        let got = if o.backend == "cpu64" && o.pass {
            "matches".to_string()
        } else {
            o.got.clone()
        };
        println!(
            "{:<28} {:<6} {:<6} {:<22} {}",
            o.kernel,
            o.backend,
            if o.pass { "ok" } else { "DRIFT" },
            expected,
            got
        );
    }
    let failed: Vec<&goldens::Outcome> = outcomes.iter().filter(|o| !o.pass).collect();
    if let Some(o) = failed.first() {
        return Err(Error::Numerical(format!(
            "{} of {} checks drifted (first: {} on {} / {}: expected {}, got {}, tolerance {:e})",
            failed.len(),
            outcomes.len(),
            o.kernel,
            o.backend,
            o.adapter,
            o.expected,
            o.got,
            o.tolerance
        )));
    }
    println!(
        "all {} checks passed against {}",
        outcomes.len(),
        path.display()
    );
    Ok(())
}

/// Rewrite the golden file `path` from `reference` (cpu64), printing per kernel whether its
/// fingerprint is unchanged, changed (old → new) or new. A file that exists but cannot be
/// read or validated is kept (an error saying why) unless `force`.
fn bless(reference: &Engine, path: &Path, force: bool) -> Result<()> {
    let new = goldens::bless(reference)?;
    if !path.exists() {
        println!("no previous golden file; writing {}", path.display());
    } else {
        match goldens::load(path) {
            Ok(old) => {
                for f in &new.kernels {
                    match old.kernels.iter().find(|o| o.kernel == f.kernel) {
                        Some(o) if o == f => println!("unchanged  {}", f.kernel),
                        Some(o) => println!(
                            "CHANGED    {}: {} ≤ {:e}, {}  →  {} ≤ {:e}, {}",
                            f.kernel,
                            o.measure,
                            o.tolerance,
                            o.reference,
                            f.measure,
                            f.tolerance,
                            f.reference
                        ),
                        None => println!("new        {}", f.kernel),
                    }
                }
                for o in &old.kernels {
                    if !new.kernels.iter().any(|f| f.kernel == o.kernel) {
                        println!("removed    {}", o.kernel);
                    }
                }
            }
            Err(e) if force => println!("replacing an unreadable golden file ({e})"),
            Err(e) => {
                let why = match e {
                    Error::Data(m) | Error::Io(m) => m,
                    e => e.to_string(),
                };
                return Err(Error::Data(format!(
                    "{why}; the existing golden file is unreadable or truncated, so it was not \
                     overwritten: pass --bless --force to replace it"
                )));
            }
        }
    }
    goldens::save(path, &new)?;
    println!("wrote {}", path.display());
    Ok(())
}
