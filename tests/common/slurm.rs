//! A real one-node Slurm cluster for the tests: [`cluster`] starts it once per test process with
//! `scripts/slurm-local.sh start` (idempotent, and safe when several test binaries start it at
//! once: the script takes a lock), and the [`Cluster`] it returns runs `sbatch`, `squeue` and
//! `scancel` against it. The cluster is left running when the tests end, so the next test binary
//! finds it; `scripts/slurm-local.sh stop` stops it.
//!
//! There is no accounting (`sacct` does not work): a job's state comes from `squeue` (which keeps
//! finished tasks for 10 minutes under `-t all`, the script's `MinJobAge`) and from the files the
//! job writes.
//!
//! ```ignore
//! let Some(c) = common::slurm::cluster() else { return }; // skipped outside CI
//! let job = c.sbatch(["--array=0-5%2", "-o", &out_pattern, script]);
//! c.wait_done(&job, Duration::from_secs(30));
//! ```

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A running local cluster: the `slurm.conf` every Slurm command here is pointed at (through
/// `SLURM_CONF`, set per command, never in the test process's own environment).
#[derive(Clone, Debug)]
pub struct Cluster {
    conf: PathBuf,
}

/// The local cluster, started on the first call of this process (later calls return the same one).
/// `None`, after a printed reason, when it cannot start (Slurm not installed and not root, no free
/// port, the node never idle); under `CI=true` that panics instead, so tests that need Slurm fail
/// in CI rather than skip.
pub fn cluster() -> Option<Cluster> {
    static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
    match CLUSTER.get_or_init(start) {
        Ok(c) => Some(c.clone()),
        Err(e) => {
            if super::ci() {
                panic!("CI=true and the local Slurm cluster cannot start: {e}");
            }
            eprintln!("SKIPPED (no local Slurm cluster; CI would fail here): {e}");
            None
        }
    }
}

/// Runs `scripts/slurm-local.sh start` and reads the `export SLURM_CONF=PATH` line it prints.
fn start() -> Result<Cluster, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm-local.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("start")
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        // The script's own message is its last line; the daemons' log tails come before it.
        let lines: Vec<&str> = stderr.trim().lines().collect();
        let (last, logs) = lines.split_last().unwrap_or((&"(no message)", &[]));
        return Err(format!(
            "{} start failed ({}): {last}{}{}",
            script.display(),
            out.status,
            if logs.is_empty() { "" } else { "\n" },
            logs.join("\n")
        ));
    }
    let conf = stdout
        .lines()
        .find_map(|l| l.strip_prefix("export SLURM_CONF="))
        .ok_or_else(|| {
            format!(
                "{} start printed no SLURM_CONF line: {stdout}",
                script.display()
            )
        })?;
    Ok(Cluster {
        conf: PathBuf::from(conf.trim()),
    })
}

impl Cluster {
    /// The cluster's `slurm.conf`: the value to give `SLURM_CONF` (e.g. to `collapse sweep slurm
    /// --submit`, which honours the environment's cluster).
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// A `Command` for `program` (any Slurm client, or `collapse`) with `SLURM_CONF` pointing at
    /// this cluster.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", &self.conf);
        c
    }

    /// Runs a Slurm client to completion; panics (with its stderr) when it cannot be spawned.
    fn run<I, S>(&self, program: &str, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {program}: {e}"))
    }

    /// `sbatch --parsable ARGS`: submits a job (or array) and returns its job id (e.g. `"17"`).
    /// Give `-o` (and `-D`) explicitly: Slurm's default output file is `slurm-%j.out` in the
    /// current directory, which for a test is the crate root. Panics when sbatch fails.
    pub fn sbatch<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = self.command("sbatch").arg("--parsable").args(args).output();
        let out = out.unwrap_or_else(|e| panic!("running sbatch: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "sbatch failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        // --parsable prints `ID` or `ID;CLUSTER`.
        let id = stdout.trim().split(';').next().unwrap_or("").to_string();
        assert!(
            !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()),
            "sbatch printed no job id: {stdout:?}"
        );
        id
    }

    /// Every task of `job` (a job id, or `ID_TASK`) that Slurm still knows, finished ones
    /// included, as task id (`"17_3"`, or `"17"` for a plain job) → state (`PENDING`, `RUNNING`,
    /// `COMPLETED`, `CANCELLED`, `FAILED`, ...). Pending array tasks are listed one by one.
    /// Empty when Slurm no longer knows the job (10 minutes after it ended).
    pub fn states(&self, job: &str) -> BTreeMap<String, String> {
        let out = self.run(
            "squeue",
            ["-h", "-r", "-t", "all", "-j", job, "-o", "%i %T"],
        );
        parse_states(&out)
    }

    /// Whether `job` has no task left pending, running or completing (`squeue -j JOB` shows
    /// nothing; an id Slurm has already forgotten counts as empty).
    pub fn squeue_empty(&self, job: &str) -> bool {
        let out = self.run("squeue", ["-h", "-r", "-j", job, "-o", "%i %T"]);
        parse_states(&out).is_empty()
    }

    /// Waits until [`squeue_empty`](Self::squeue_empty) holds for `job`, polling every 200 ms;
    /// panics after `timeout` with the tasks still queued.
    pub fn wait_done(&self, job: &str, timeout: Duration) {
        self.wait_until(timeout, &format!("job {job} to leave the queue"), || {
            self.squeue_empty(job)
        });
    }

    /// Waits until the task `job_task` (`ID_TASK`, or a plain job id) is in `state` (e.g.
    /// `RUNNING`); panics after `timeout` with the states seen.
    pub fn wait_state(&self, job_task: &str, state: &str, timeout: Duration) {
        self.wait_until(timeout, &format!("{job_task} to be {state}"), || {
            self.states(job_task)
                .get(job_task)
                .is_some_and(|s| s == state)
        });
    }

    /// `scancel JOB_TASK`: cancels a job, an array (`ID`) or one task of it (`ID_TASK`). Panics
    /// when scancel fails.
    pub fn scancel(&self, job_task: &str) {
        let out = self.run("scancel", [job_task]);
        assert!(
            out.status.success(),
            "scancel {job_task} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }

    /// Polls `done` every 200 ms until it holds; panics after `timeout` naming `what` and showing
    /// the whole queue.
    fn wait_until(&self, timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            if start.elapsed() > timeout {
                let q = self.run("squeue", ["-h", "-r", "-t", "all", "-o", "%i %T %R"]);
                panic!(
                    "waited {timeout:?} for {what}; squeue -t all:\n{}",
                    String::from_utf8_lossy(&q.stdout)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// `squeue -o "%i %T"` output as task id → state. A job id Slurm no longer knows (squeue exits
/// non-zero with "Invalid job id specified") gives an empty map; any other failure panics.
fn parse_states(out: &Output) -> BTreeMap<String, String> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        assert!(
            stderr.contains("Invalid job id"),
            "squeue failed ({}): {}",
            out.status,
            stderr.trim()
        );
        return BTreeMap::new();
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (id, state) = l.trim().split_once(' ')?;
            Some((id.to_string(), state.trim().to_string()))
        })
        .collect()
}
