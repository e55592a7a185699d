//! A planned sweep on disk: `DIR/sweep.json` (the manifest: spec, axes, every job's index,
//! axis values and `collapse run` arguments, a hash of the job list), `DIR/spec.toml` (the
//! spec as given), `DIR/jobs.csv` (index, directory and axis values: pandas-readable), and one
//! run directory per job, `DIR/jobs/NNNNN/`.
//!
//! **Replanning** into a directory that holds a sweep keeps every job it has, with its index
//! and directory, and adds the jobs the new spec has beyond them (a longer seed list, a new
//! policy) at the next indices. A new spec that drops a job, or changes one (another value in
//! `[base]`, an axis added or removed changes every job's flags), is refused, naming the first
//! job that would be orphaned: its results would no longer match the manifest. Plan such a spec
//! into a new directory. Replanning the same spec changes nothing.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::spec::{Job, Spec};
use crate::error::{Error, Result};
use crate::experiment::lock::RunLock;
use crate::io::write_atomic;

/// The manifest's file name.
pub const MANIFEST_FILE: &str = "sweep.json";
/// The lock a sweep directory's writers (plan, and run's bookkeeping) hold.
pub const SWEEP_LOCK: &str = "sweep.lock";
/// The most jobs one sweep holds.
pub const MAX_JOBS: usize = 1_000_000;
/// The manifest format's version.
const VERSION: u32 = 1;

/// One job of the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEntry {
    /// The job's index (its Slurm array task id, its row in `jobs.csv`).
    pub index: usize,
    /// Its run directory, relative to the sweep directory.
    pub dir: String,
    /// `[axis flag, value]` pairs, in [`Manifest::axes`] order.
    pub axes: Vec<(String, String)>,
    /// Its `collapse run` arguments, without `--out`.
    pub args: Vec<String>,
}

/// `DIR/sweep.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version.
    pub version: u32,
    /// The spec's text (the latest planned).
    pub spec: String,
    /// The axis flags, in order.
    pub axes: Vec<String>,
    /// `[base]` as `[flag, value]` pairs.
    pub base: Vec<(String, String)>,
    /// CRC-32 (hex) of the job list (indices and arguments): equal hashes, equal jobs.
    pub hash: String,
    /// Every job, by index.
    pub jobs: Vec<JobEntry>,
}

/// What [`plan`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanReport {
    /// Jobs the directory already had (kept as they were).
    pub kept: usize,
    /// Jobs added.
    pub added: usize,
    /// The manifest as written.
    pub manifest: Manifest,
}

impl Manifest {
    /// Read `DIR/sweep.json`, naming the file in errors; a directory without one is "not a
    /// sweep".
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        if !path.exists() {
            return Err(Error::InvalidArgument(format!(
                "{}: not a sweep directory ({MANIFEST_FILE} missing; `collapse sweep plan SPEC \
                 --out DIR` writes it)",
                dir.display()
            )));
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
        let m: Manifest = serde_json::from_str(&text)
            .map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
        if m.version != VERSION {
            return Err(Error::Data(format!(
                "{}: version {} (this collapse reads version {VERSION})",
                path.display(),
                m.version
            )));
        }
        for (i, j) in m.jobs.iter().enumerate() {
            let p = Path::new(&j.dir);
            if j.index != i || p.is_absolute() || p.components().any(|c| c.as_os_str() == "..") {
                return Err(Error::Data(format!(
                    "{}: job {i} is malformed (index {}, dir {:?})",
                    path.display(),
                    j.index,
                    j.dir
                )));
            }
        }
        Ok(m)
    }

    /// The run directory of job `index` under the sweep directory `root`.
    pub fn job_dir(&self, root: &Path, index: usize) -> PathBuf {
        root.join(&self.jobs[index].dir)
    }

    /// Job `index`, or an error naming the range.
    pub fn job(&self, index: usize) -> Result<&JobEntry> {
        self.jobs.get(index).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "job index {index} is out of range: the sweep has jobs 0..{}",
                self.jobs.len()
            ))
        })
    }
}

/// The relative directory of job `index`.
fn dir_name(index: usize) -> String {
    format!("jobs/{index:05}")
}

/// CRC-32 of the job list.
fn hash(jobs: &[JobEntry]) -> String {
    let mut h = crc32fast::Hasher::new();
    for j in jobs {
        h.update(j.index.to_string().as_bytes());
        for a in &j.args {
            h.update(b"\0");
            h.update(a.as_bytes());
        }
        h.update(b"\n");
    }
    format!("{:08x}", h.finalize())
}

/// Plan the sweep of spec `text` (from the file `spec_path`) into `dir`: write the manifest,
/// the spec, `jobs.csv` and the job directories; keep the jobs `dir` already has and add the
/// new ones (see the module documentation). `check` validates each new job's arguments
/// (`collapse run`'s parser) before anything is written.
pub fn plan(
    text: &str,
    spec_path: &str,
    dir: &Path,
    check: &dyn Fn(&Job) -> Result<()>,
) -> Result<PlanReport> {
    let spec = Spec::parse(text, spec_path)?;
    let jobs = spec.jobs(MAX_JOBS)?;
    if dir.exists() && !dir.join(MANIFEST_FILE).exists() {
        let non_empty = std::fs::read_dir(dir)
            .map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?
            .next()
            .is_some();
        if non_empty {
            return Err(Error::InvalidArgument(format!(
                "--out {}: the directory holds other files and no sweep; plan into a new or \
                 empty directory",
                dir.display()
            )));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
    let _lock = RunLock::acquire_file(dir, SWEEP_LOCK)?;
    let old = if dir.join(MANIFEST_FILE).exists() {
        Some(Manifest::read(dir)?)
    } else {
        None
    };
    let mut entries: Vec<JobEntry> = old.as_ref().map(|m| m.jobs.clone()).unwrap_or_default();
    let kept = entries.len();
    for e in &entries {
        if !jobs.iter().any(|j| j.args == e.args) {
            return Err(Error::InvalidArgument(format!(
                "{}: the new spec drops or changes job {} ({}): its results would no longer \
                 match the sweep; plan the new spec into a new directory",
                dir.display(),
                e.index,
                e.axes
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    for j in &jobs {
        if entries.iter().any(|e| e.args == j.args) {
            continue;
        }
        check(j)?;
        let index = entries.len();
        entries.push(JobEntry {
            index,
            dir: dir_name(index),
            axes: j.axes.clone(),
            args: j.args.clone(),
        });
    }
    let added = entries.len() - kept;
    let axes = spec.axis_names();
    if let Some(m) = &old
        && m.axes != axes
        && added > 0
    {
        // New axes almost always change every job's flags (refused above); an axis of `false`
        // switches, which add no flag, can leave old jobs' flags as they were.
        return Err(Error::InvalidArgument(format!(
            "{}: the new spec's axes ({}) differ from the sweep's ({})",
            dir.display(),
            axes.join(", "),
            m.axes.join(", ")
        )));
    }
    let manifest = Manifest {
        version: VERSION,
        spec: text.to_string(),
        axes: old.as_ref().map_or(axes, |m| m.axes.clone()),
        base: spec.base.clone(),
        hash: hash(&entries),
        jobs: entries,
    };
    for j in &manifest.jobs[kept..] {
        let d = dir.join(&j.dir);
        std::fs::create_dir_all(&d).map_err(|e| Error::Io(format!("{}: {e}", d.display())))?;
    }
    write_atomic(&dir.join("spec.toml"), text.as_bytes())?;
    write_atomic(&dir.join("jobs.csv"), jobs_csv(&manifest)?.as_bytes())?;
    write_atomic(
        &dir.join(MANIFEST_FILE),
        serde_json::to_string_pretty(&manifest)
            .map_err(|e| Error::Io(e.to_string()))?
            .as_bytes(),
    )?;
    Ok(PlanReport {
        kept,
        added,
        manifest,
    })
}

/// `jobs.csv`: `job, dir, <axis>…` one row per job.
fn jobs_csv(m: &Manifest) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["job".to_string(), "dir".to_string()];
    header.extend(m.axes.iter().cloned());
    w.write_record(&header)
        .map_err(|e| Error::Io(e.to_string()))?;
    for j in &m.jobs {
        let mut row = vec![j.index.to_string(), j.dir.clone()];
        row.extend(j.axes.iter().map(|(_, v)| v.clone()));
        w.write_record(&row).map_err(|e| Error::Io(e.to_string()))?;
    }
    String::from_utf8(w.into_inner().map_err(|e| Error::Io(e.to_string()))?)
        .map_err(|e| Error::Io(e.to_string()))
}
