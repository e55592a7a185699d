//! Shared test helpers, defined once for every test file: the GPU context (poisoned outputs) and
//! the CI rule for missing adapters and data sets, the backends and engines that can run here,
//! scratch directories, the norm-wise relative error, synthetic images; [`cli`] runs the
//! `collapse` binary, [`table`] reads CSV outputs by column name, [`files`] decodes the PNG and
//! SVG outputs.
#![allow(dead_code)]

pub mod cli;
pub mod files;
pub mod slurm;
pub mod table;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use collapse_kernels::backend::{self, BackendKind};
use collapse_kernels::gpu::{GpuContext, GpuOptions};
use collapse_kernels::ops::Backend;
use collapse_kernels::trainers::Engine;

/// The shared GPU context for tests, with output poisoning on. `None` (with a printed reason)
/// when no adapter exists — except under `CI=true`, where a missing adapter fails the test.
pub fn gpu() -> Option<Arc<GpuContext>> {
    static CTX: OnceLock<Result<Arc<GpuContext>, String>> = OnceLock::new();
    let r = CTX.get_or_init(|| {
        GpuContext::new(&GpuOptions {
            adapter: std::env::var("COLLAPSE_ADAPTER").ok(),
            poison: true,
            binding_limit: None,
            queued: false,
            ..Default::default()
        })
        .map_err(|e| e.to_string())
    });
    match r {
        Ok(g) => Some(g.clone()),
        Err(e) => {
            if ci() {
                panic!("CI=true and no GPU adapter: {e}");
            }
            eprintln!("SKIPPED (no GPU adapter; CI would fail here): {e}");
            None
        }
    }
}

/// Whether the tests run under CI (`CI=true` or `CI=1`), where a missing adapter or data set
/// fails a test instead of skipping it.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether the data at `path` is installed. When it is not: `false` after a printed skip, or,
/// under CI, a panic that says how to install it (`install`, e.g. `apt-get install fortunes`).
pub fn data_installed(path: &Path, install: &str) -> bool {
    if path.exists() {
        return true;
    }
    if ci() {
        panic!("CI=true and {} is missing ({install})", path.display());
    }
    eprintln!("SKIPPED: {} missing ({install})", path.display());
    false
}

/// A fresh, empty scratch directory for one test: `collapse-TESTFILE-PID-name` under the system
/// temporary directory (removed first if a previous run left it). Names are unique within a test
/// file, the file and the process id apart between files and runs, so tests running at once on
/// any number of threads never share a directory.
pub fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "collapse-{}-{}-{name}",
        env!("CARGO_CRATE_NAME"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
    d
}

/// Every backend that can run here: cpu64, cpu32, and wgsl + cube when an adapter exists.
pub fn backends() -> Vec<Box<dyn Backend>> {
    let g = gpu();
    BackendKind::ALL
        .into_iter()
        .filter(|k| !k.needs_gpu() || g.is_some())
        .map(|k| backend::create(k, g.as_ref()).expect("backend creation"))
        .collect()
}

/// The GPU backends (empty, after a printed skip, when there is no adapter outside CI).
pub fn gpu_backends() -> Vec<Box<dyn Backend>> {
    backends()
        .into_iter()
        .filter(|b| b.name() == "wgsl" || b.name() == "cube")
        .collect()
}

/// Every engine (backend plus the trainers built on it) that can run here, as [`backends`].
pub fn engines() -> Vec<Engine> {
    let g = gpu();
    BackendKind::ALL
        .into_iter()
        .filter(|k| !k.needs_gpu() || g.is_some())
        .map(|k| Engine::create(k, g.as_ref()).expect("engine creation"))
        .collect()
}

/// The GPU engines, as [`gpu_backends`].
pub fn gpu_engines() -> Vec<Engine> {
    engines()
        .into_iter()
        .filter(|b| b.name() == "wgsl" || b.name() == "cube")
        .collect()
}

/// A second GPU context whose bindings are capped at `bytes`, so chunked launches run at small
/// sizes. `None` when there is no adapter (after the same CI rule as [`gpu`]).
pub fn small_binding_gpu(bytes: u64) -> Option<Arc<GpuContext>> {
    gpu()?;
    Some(
        GpuContext::new(&GpuOptions {
            adapter: std::env::var("COLLAPSE_ADAPTER").ok(),
            poison: true,
            binding_limit: Some(bytes),
            queued: false,
            ..Default::default()
        })
        .expect("second GPU context"),
    )
}

/// A test file's input seed: the environment variable `var` when set (to replay a failure),
/// else the clock's nanoseconds (fresh inputs every run); printed as `var=seed` so a failure
/// can be replayed. Callers keep it in a `OnceLock`, so one run uses one seed.
pub fn seed_from_env(var: &str) -> u64 {
    let s = std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("{var}={s}");
    s
}

/// Norm-wise relative error ‖got − want‖₂ / ‖want‖₂ (`want` is the reference; the absolute
/// ‖got − want‖₂ when `want` is all zeros). Infinite when `got` holds a non-finite value, so a
/// NaN (an unwritten, poisoned GPU output) fails every bound; panics when the lengths differ.
/// The tests' own yardstick, written here rather than borrowed from the crate under test.
pub fn rel_err(got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "rel_err: lengths differ");
    if got.iter().any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    let num: f64 = got.iter().zip(want).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f64 = want.iter().map(|y| y * y).sum();
    if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    }
}

/// Arithmetic mean of `v` (which must not be empty).
pub fn mean(v: &[f64]) -> f64 {
    assert!(!v.is_empty(), "mean of no values");
    v.iter().sum::<f64>() / v.len() as f64
}

/// `n` synthetic w×w images: a bright bar whose position and width vary, plus Philox noise.
pub fn bars(n: usize, w: usize, seed: u64) -> collapse_kernels::io::idx::IdxImages {
    let key = collapse_kernels::rng::StreamKey::new(seed, 1);
    let mut pixels = Vec::with_capacity(n * w * w);
    for i in 0..n {
        let (pos, width) = (i % w, 1 + (i / w) % 3);
        for r in 0..w {
            for c in 0..w {
                let on = c >= pos && c < pos + width;
                let noise =
                    collapse_kernels::rng::unit_f64(key.u32_at((i * w * w + r * w + c) as u64))
                        * 40.0;
                pixels.push(if on { 255 - noise as u8 } else { noise as u8 });
            }
        }
    }
    collapse_kernels::io::idx::IdxImages {
        count: n,
        rows: w,
        cols: w,
        pixels,
    }
}

/// A version-1.0 NPY file with `descr`, `fortran` order, `shape` and raw little-endian data.
pub fn npy_bytes(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut header = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
        if fortran { "True" } else { "False" }
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(data);
    out
}
