//! Where each job of a sweep stands, from files only (so it works the same for local runs and
//! Slurm tasks on other nodes of a shared file system):
//! - **done**: `DIR/status/N.done` exists (written after the job's run returned) and its run
//!   directory holds `summary.json`;
//! - **running**: another process holds the job's run lock (`jobs/N/run.lock`);
//! - **failed**: `DIR/status/N.failed` holds the last error line of its last attempt;
//! - **partial**: a checkpoint (`state.json`) but none of the above (killed, cancelled,
//!   preempted): the next attempt resumes it;
//! - **pending**: nothing yet.
//!
//! Each attempt's output goes to `DIR/logs/N.log` (appended).

use std::path::{Path, PathBuf};

use super::manifest::Manifest;
use crate::error::{Error, Result};
use crate::experiment::lock;
use crate::io::write_atomic;

/// A job's state (see the module documentation).
#[derive(Debug, Clone, PartialEq)]
pub enum JobState {
    /// Finished.
    Done,
    /// Another process runs it (the lock holder's description).
    Running(String),
    /// Its last attempt failed with this error line.
    Failed(String),
    /// Checkpointed, not running: resumable.
    Partial,
    /// Not started.
    Pending,
}

impl JobState {
    /// One word for tables: done, running, failed, partial, pending.
    pub fn word(&self) -> &'static str {
        match self {
            JobState::Done => "done",
            JobState::Running(_) => "running",
            JobState::Failed(_) => "failed",
            JobState::Partial => "partial",
            JobState::Pending => "pending",
        }
    }
}

/// `DIR/status/N.done`.
pub fn done_marker(root: &Path, index: usize) -> PathBuf {
    root.join("status").join(format!("{index}.done"))
}

/// `DIR/status/N.failed`.
pub fn failed_marker(root: &Path, index: usize) -> PathBuf {
    root.join("status").join(format!("{index}.failed"))
}

/// `DIR/logs/N.log`.
pub fn log_file(root: &Path, index: usize) -> PathBuf {
    root.join("logs").join(format!("{index}.log"))
}

/// The state of job `index` of the sweep `m` in `root`.
pub fn job_state(root: &Path, m: &Manifest, index: usize) -> JobState {
    let dir = m.job_dir(root, index);
    if let Some(h) = lock::holder(&dir) {
        return JobState::Running(h);
    }
    if done_marker(root, index).exists() && dir.join("summary.json").exists() {
        return JobState::Done;
    }
    if let Ok(line) = std::fs::read_to_string(failed_marker(root, index)) {
        return JobState::Failed(line.trim().to_string());
    }
    if dir.join("state.json").exists() {
        JobState::Partial
    } else {
        JobState::Pending
    }
}

/// Every job's state, by index.
pub fn states(root: &Path, m: &Manifest) -> Vec<JobState> {
    (0..m.jobs.len()).map(|i| job_state(root, m, i)).collect()
}

/// Mark job `index` done (and clear an earlier failure).
pub fn mark_done(root: &Path, index: usize) -> Result<()> {
    let d = root.join("status");
    std::fs::create_dir_all(&d).map_err(|e| Error::Io(format!("{}: {e}", d.display())))?;
    let _ = std::fs::remove_file(failed_marker(root, index));
    write_atomic(&done_marker(root, index), b"done\n")
}

/// Mark job `index` failed with the one-line `error`.
pub fn mark_failed(root: &Path, index: usize, error: &str) -> Result<()> {
    let d = root.join("status");
    std::fs::create_dir_all(&d).map_err(|e| Error::Io(format!("{}: {e}", d.display())))?;
    let line = error.lines().last().unwrap_or("").trim().to_string();
    write_atomic(&failed_marker(root, index), format!("{line}\n").as_bytes())
}

/// The jobs a run or a submission should take: every one neither done nor running elsewhere
/// (failed jobs are retried, partial ones resumed), by index.
pub fn runnable(states: &[JobState]) -> Vec<usize> {
    states
        .iter()
        .enumerate()
        .filter(|(_, s)| !matches!(s, JobState::Done | JobState::Running(_)))
        .map(|(i, _)| i)
        .collect()
}

/// Counts of each state: `(done, running, failed, partial, pending)`.
pub fn counts(states: &[JobState]) -> (usize, usize, usize, usize, usize) {
    let c = |w: &str| states.iter().filter(|s| s.word() == w).count();
    (
        c("done"),
        c("running"),
        c("failed"),
        c("partial"),
        c("pending"),
    )
}
