//! One writer per run directory: an advisory lock on `DIR/run.lock`, held for the run's life.
//!
//! The lock is the operating system's (`flock(2)` through [`std::fs::File::try_lock`]), so it is
//! released when the process ends however it ends (SIGKILL included) and never needs cleaning up;
//! on NFS, Linux maps it to a POSIX record lock on the server. The file also holds a line naming
//! the holder (pid, host, start time, command line) so a second writer's error can say who has
//! the directory.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The lock file's name inside a run directory.
pub const LOCK_FILE: &str = "run.lock";

/// A held lock on a run directory; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    path: PathBuf,
}

impl RunLock {
    /// Take the lock of run directory `dir` (which must exist), or fail at once, naming the
    /// holder, when another process holds it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        Self::acquire_file(dir, LOCK_FILE)
    }

    /// [`Self::acquire`] on the lock file `name` of `dir` (a sweep's directory holds
    /// `sweep.lock`, not a run's `run.lock`).
    pub fn acquire_file(dir: &Path, name: &str) -> Result<Self> {
        let path = dir.join(name);
        let io = |e: std::io::Error| Error::Io(format!("{}: {e}", path.display()));
        // Never truncate on open: the holder's line must survive a refused second writer.
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::InvalidArgument(format!(
                    "{} is being written by another process ({}): wait for it to end, or use \
                     another directory",
                    dir.display(),
                    read_holder(&mut file)
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let line = format!(
            "pid {} on {} since {} (unix time): {}\n",
            std::process::id(),
            hostname(),
            unix_now(),
            std::env::args().collect::<Vec<_>>().join(" ")
        );
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        file.write_all(line.as_bytes()).map_err(io)?;
        Ok(Self { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Who holds the lock of run directory `dir` right now (the holder's line, with its age), or
/// `None` when nobody does (no lock file, or a lock file no process holds). Probes without
/// writing: the holder's line is left as it is.
pub fn holder(dir: &Path) -> Option<String> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new().read(true).write(true).open(&path).ok()?;
    match file.try_lock() {
        Ok(()) => None,
        Err(std::fs::TryLockError::WouldBlock) => Some(read_holder(&mut file)),
        Err(std::fs::TryLockError::Error(_)) => None,
    }
}

/// The holder's line of a lock file another process holds, described ([`describe`]).
fn read_holder(file: &mut File) -> String {
    let mut line = String::new();
    let _ = file.read_to_string(&mut line);
    describe(line.trim())
}

/// The holder's line, with its age, for an error message.
fn describe(holder: &str) -> String {
    if holder.is_empty() {
        return "it has not said who it is yet".into();
    }
    let age = holder
        .split(" since ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|t| t.parse::<u64>().ok())
        .map(|t| format!(", started {} s ago", unix_now().saturating_sub(t)))
        .unwrap_or_default();
    format!("{holder}{age}")
}

/// Seconds since the Unix epoch (0 if the clock is before it).
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// This machine's host name (Linux), or `?`.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_and_freed_on_drop() {
        let dir = std::env::temp_dir().join(format!("collapse-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let held = RunLock::acquire(&dir).unwrap();
        let e = RunLock::acquire(&dir).unwrap_err().to_string();
        assert!(e.contains("another process"), "{e}");
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        assert!(e.contains("s ago"), "{e}");
        assert!(holder(&dir).is_some_and(|h| h.contains("pid")));
        drop(held);
        assert_eq!(holder(&dir), None);
        RunLock::acquire(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
