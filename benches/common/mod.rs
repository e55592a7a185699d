//! Shared by the criterion benches: every backend that can run here, and the records writer.
#![allow(dead_code)]

use collapse_kernels::backend::BackendKind;
use collapse_kernels::gpu::{GpuContext, GpuOptions};
use collapse_kernels::trainers::Engine;

/// cpu64, cpu32, and wgsl + cube when wgpu finds an adapter (`COLLAPSE_ADAPTER` picks one).
pub fn backends() -> Vec<Engine> {
    let gpu = match GpuContext::new(&GpuOptions {
        adapter: std::env::var("COLLAPSE_ADAPTER").ok(),
        ..Default::default()
    }) {
        Ok(g) => Some(g),
        Err(e) => {
            eprintln!("no GPU adapter, benching CPU backends only: {e}");
            None
        }
    };
    BackendKind::ALL
        .into_iter()
        .filter(|k| !k.needs_gpu() || gpu.is_some())
        .map(|k| Engine::create(k, gpu.as_ref()).expect("backend"))
        .collect()
}

/// Run the criterion groups, print criterion's summary, then write the records of what this
/// binary just measured (see `collapse_kernels::measure::records`) into `COLLAPSE_RECORDS_DIR` (default
/// `results/bench/records`); `COLLAPSE_RECORDS_DIR=none` writes nothing.
pub fn main_with_records(source: &str, groups: &[fn()]) {
    let since = std::time::SystemTime::now();
    for g in groups {
        g();
    }
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
    let dir =
        std::env::var("COLLAPSE_RECORDS_DIR").unwrap_or_else(|_| "results/bench/records".into());
    if dir == "none" {
        return;
    }
    let root = std::env::var_os("CRITERION_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(|t| std::path::PathBuf::from(t).join("criterion"))
        })
        .unwrap_or_else(|| "target/criterion".into());
    let (adapter, driver) = match GpuContext::new(&GpuOptions {
        adapter: std::env::var("COLLAPSE_ADAPTER").ok(),
        ..Default::default()
    }) {
        Ok(g) => (
            g.info.name.clone(),
            format!("{} {}", g.info.driver, g.info.driver_info)
                .trim()
                .to_string(),
        ),
        Err(_) => ("none".into(), String::new()),
    };
    let stamp = collapse_kernels::measure::records::Stamp::new(source);
    match collapse_kernels::measure::records::from_criterion(
        &root,
        since,
        (&adapter, &driver),
        &stamp,
    ) {
        Ok(r) if r.is_empty() => {}
        Ok(r) => {
            match collapse_kernels::measure::records::write(std::path::Path::new(&dir), &stamp, &r)
            {
                Ok(p) => println!("records: {}", p.display()),
                Err(e) => eprintln!("records not written: {e}"),
            }
        }
        Err(e) => eprintln!("records not read from {}: {e}", root.display()),
    }
}
