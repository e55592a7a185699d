//! Benchmark records: one flat JSON object per measurement, so runs on different machines,
//! revisions and dates can be compared (`collapse bench compare A B`).
//!
//! Every `collapse bench …` run and every criterion bench writes its records as one JSON array
//! into `results/bench/records/` (override with `--records DIR`, or `COLLAPSE_RECORDS_DIR` for
//! the criterion benches), file name `DATE-SOURCE-REV.json`. Fields: see [`Record`]. pandas
//! reads a file with `pd.read_json(path)`.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// One measurement.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    /// Kernel (`matmul`, `gmm_em_iteration`, `sample_gmm`, `copy`, `fma`, or the criterion
    /// group name).
    pub kernel: String,
    /// Backend (`cpu64`, `cpu32`, `wgsl`, `cube`, or a peer such as `rand_distr`).
    pub backend: String,
    /// Adapter name, or the host CPU for CPU backends.
    pub adapter: String,
    /// Driver description (empty for CPU backends).
    pub driver: String,
    /// Problem shape, e.g. `1024x1024x1024` or `N=1000000,D=8,K=16,full`.
    pub shape: String,
    /// Median seconds per run.
    pub median_s: f64,
    /// Spread in seconds: median − fastest (`collapse bench`), or criterion's median absolute
    /// deviation.
    pub spread_s: f64,
    /// Throughput in `unit`.
    pub throughput: f64,
    /// Unit of `throughput` (`GFLOP/s`, `GB/s`, `samples/s`, `points·components/s`,
    /// `elements/s`).
    pub unit: String,
    /// What produced it (`collapse bench matmul`, `criterion`, …).
    pub source: String,
    /// `git describe --always --dirty` of the checkout, or `unknown`.
    pub git_rev: String,
    /// UTC time of the run, RFC 3339.
    pub date: String,
    /// WGSL dispatches per run, where the bench counts them (`bench lm`, `bench vae` on
    /// `wgsl`); absent elsewhere and in older records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatches_per_step: Option<u64>,
}

/// `git describe --always --dirty` in the current directory, or `unknown`.
pub fn git_rev() -> String {
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// The current UTC time as RFC 3339 (`2026-11-29T04:05:06Z`).
pub fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

/// `secs` since the Unix epoch as RFC 3339 UTC (Howard Hinnant's civil-from-days).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The stamp every record of one run shares.
#[derive(Clone, Debug)]
pub struct Stamp {
    /// What produced the records.
    pub source: String,
    /// Git revision.
    pub git_rev: String,
    /// Date.
    pub date: String,
}

impl Stamp {
    /// A stamp for `source`, now, at this checkout's revision.
    pub fn new(source: &str) -> Self {
        Self {
            source: source.into(),
            git_rev: git_rev(),
            date: now_utc(),
        }
    }

    /// A record with this stamp.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        kernel: &str,
        backend: &str,
        (adapter, driver): (&str, &str),
        shape: &str,
        median_s: f64,
        spread_s: f64,
        (throughput, unit): (f64, &str),
    ) -> Record {
        Record {
            kernel: kernel.into(),
            backend: backend.into(),
            adapter: adapter.into(),
            driver: driver.into(),
            shape: shape.into(),
            median_s,
            spread_s,
            throughput,
            unit: unit.into(),
            source: self.source.clone(),
            git_rev: self.git_rev.clone(),
            date: self.date.clone(),
            dispatches_per_step: None,
        }
    }
}

/// Write `records` as a JSON array to `dir/DATE-SOURCE-REV.json` (atomically; the folder is
/// created; `DATE-SOURCE-REV-N.json` when that name is taken). Returns the path.
pub fn write(dir: &Path, stamp: &Stamp, records: &[Record]) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    let stem = format!(
        "{}-{}-{}",
        stamp.date.replace(':', ""),
        clean(&stamp.source),
        clean(&stamp.git_rev)
    );
    // Two benches stamped in the same second keep both files (`…-2.json`, `…-3.json`): an
    // earlier record is never overwritten.
    let path = (1..)
        .map(|n| match n {
            1 => dir.join(format!("{stem}.json")),
            n => dir.join(format!("{stem}-{n}.json")),
        })
        .find(|p| !p.exists())
        .expect("an unused name");
    let bytes = serde_json::to_vec_pretty(records).map_err(|e| Error::Io(e.to_string()))?;
    crate::io::write_atomic(&path, &bytes)?;
    Ok(path)
}

/// Records from a JSON file, or from every `*.json` file of a folder.
pub fn load(path: &Path) -> Result<Vec<Record>> {
    let read = |p: &Path| -> Result<Vec<Record>> {
        let text =
            std::fs::read_to_string(p).map_err(|e| Error::Io(format!("{}: {e}", p.display())))?;
        serde_json::from_str(&text)
            .map_err(|e| Error::Data(format!("{}: not a record file: {e}", p.display())))
    };
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        let mut all = Vec::new();
        for f in files {
            all.extend(read(&f)?);
        }
        Ok(all)
    } else {
        read(path)
    }
}

/// One row of a comparison.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Comparison {
    /// Kernel.
    pub kernel: String,
    /// Backend.
    pub backend: String,
    /// Shape.
    pub shape: String,
    /// Median seconds in A (the latest record of the key).
    pub a_s: f64,
    /// Median seconds in B.
    pub b_s: f64,
    /// `a_s / b_s`: above 1, B is faster.
    pub speedup: f64,
}

/// Pair the records of `a` and `b` by (kernel, backend, shape), the latest record of each key
/// (by date) on each side; keys on one side only are left out. Sorted by key.
pub fn compare(a: &[Record], b: &[Record]) -> Vec<Comparison> {
    use std::collections::BTreeMap;
    let latest = |v: &[Record]| {
        let mut m: BTreeMap<(String, String, String), Record> = BTreeMap::new();
        for r in v {
            let k = (r.kernel.clone(), r.backend.clone(), r.shape.clone());
            if m.get(&k).is_none_or(|old| old.date <= r.date) {
                m.insert(k, r.clone());
            }
        }
        m
    };
    let (a, b) = (latest(a), latest(b));
    a.iter()
        .filter_map(|(k, ra)| {
            let rb = b.get(k)?;
            Some(Comparison {
                kernel: k.0.clone(),
                backend: k.1.clone(),
                shape: k.2.clone(),
                a_s: ra.median_s,
                b_s: rb.median_s,
                speedup: ra.median_s / rb.median_s,
            })
        })
        .collect()
}

/// Records from criterion's output folder `root` (`target/criterion`): every
/// `GROUP/…/new/benchmark.json` + `estimates.json` modified at or after `since` (so one bench
/// binary reports only what it just measured). Throughput: criterion's `Bytes` become GB/s,
/// `Elements` elements/s (GFLOP/s for groups named `matmul…`, whose elements are FLOPs).
pub fn from_criterion(
    root: &Path,
    since: std::time::SystemTime,
    (adapter, driver): (&str, &str),
    stamp: &Stamp,
) -> Result<Vec<Record>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "new") {
                    out.push(p);
                } else {
                    walk(&p, out);
                }
            }
        }
    }
    let mut dirs = Vec::new();
    walk(root, &mut dirs);
    dirs.sort();
    let mut out = Vec::new();
    for d in dirs {
        let est = d.join("estimates.json");
        let fresh = std::fs::metadata(&est)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= since);
        if !fresh {
            continue;
        }
        let json = |p: &Path| -> Result<serde_json::Value> {
            let t = std::fs::read_to_string(p)
                .map_err(|e| Error::Io(format!("{}: {e}", p.display())))?;
            serde_json::from_str(&t).map_err(|e| Error::Data(format!("{}: {e}", p.display())))
        };
        let b = json(&d.join("benchmark.json"))?;
        let e = json(&est)?;
        let group = b["group_id"].as_str().unwrap_or("?").to_string();
        let function = b["function_id"].as_str().unwrap_or("").to_string();
        let value = b["value_str"].as_str().unwrap_or("").to_string();
        let median_s = e["median"]["point_estimate"].as_f64().unwrap_or(f64::NAN) * 1e-9;
        let spread_s = e["median_abs_dev"]["point_estimate"]
            .as_f64()
            .unwrap_or(f64::NAN)
            * 1e-9;
        let (throughput, unit) = match (
            b["throughput"]["Bytes"].as_f64(),
            b["throughput"]["Elements"].as_f64(),
        ) {
            (Some(bytes), _) => (bytes / median_s / 1e9, "GB/s"),
            (None, Some(el)) if group.starts_with("matmul") => (el / median_s / 1e9, "GFLOP/s"),
            (None, Some(el)) => (el / median_s, "elements/s"),
            _ => (f64::NAN, ""),
        };
        let on_gpu = function.contains("wgsl") || function.contains("cube");
        out.push(stamp.record(
            &group,
            &function,
            if on_gpu {
                (adapter, driver)
            } else {
                ("host CPU", "")
            },
            &value,
            median_s,
            spread_s,
            (throughput, unit),
        ));
    }
    Ok(out)
}

/// The adapter name and driver description of a GPU context, as records carry them
/// (`"DRIVER DRIVER_INFO"`, trimmed).
pub fn gpu_names(g: &crate::gpu::GpuContext) -> (String, String) {
    (
        g.info.name.clone(),
        format!("{} {}", g.info.driver, g.info.driver_info)
            .trim()
            .to_string(),
    )
}

/// Adapter and driver of backend `b` for its records: those of `gpu` ([`gpu_names`]) for the
/// GPU backends (wgsl, cube), the backend's host description and no driver otherwise.
pub fn adapter_of(
    b: &dyn crate::ops::Backend,
    gpu: Option<&std::sync::Arc<crate::gpu::GpuContext>>,
) -> (String, String) {
    match gpu {
        Some(g) if b.name() == "wgsl" || b.name() == "cube" => gpu_names(g),
        _ => (b.device(), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_798_513_506), "2026-12-29T03:05:06Z");
    }

    #[test]
    fn records_round_trip_and_compare() {
        let dir = std::env::temp_dir().join(format!("collapse-records-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let s = Stamp {
            source: "test".into(),
            git_rev: "abc".into(),
            date: "2026-01-01T00:00:00Z".into(),
        };
        let r = |backend: &str, secs: f64| {
            s.record(
                "matmul",
                backend,
                ("gpu", "drv"),
                "8x8x8",
                secs,
                0.0,
                (1.0, "GFLOP/s"),
            )
        };
        let a = vec![r("wgsl", 2.0), r("cpu32", 1.0)];
        let pa = write(&dir.join("a"), &s, &a).unwrap();
        assert_eq!(load(&pa).unwrap(), a);
        // The same stamp again (two benches in one second) keeps the first file.
        let again = write(&dir.join("x"), &s, &a).unwrap();
        let second = write(&dir.join("x"), &s, &a[..1]).unwrap();
        assert_ne!(again, second);
        assert!(
            second.to_string_lossy().ends_with("-2.json"),
            "{}",
            second.display()
        );
        assert_eq!(load(&again).unwrap(), a);
        let b = vec![r("wgsl", 0.5), r("cube", 1.0)];
        write(&dir.join("b"), &s, &b).unwrap();
        let c = compare(
            &load(&dir.join("a")).unwrap(),
            &load(&dir.join("b")).unwrap(),
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].backend, "wgsl");
        assert_eq!(c[0].speedup, 4.0);
        std::fs::write(dir.join("a/bad.json"), "{").unwrap();
        assert!(load(&dir.join("a")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
