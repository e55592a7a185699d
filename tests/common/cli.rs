//! Running the `collapse` binary (`CARGO_BIN_EXE_collapse`, which `cargo test` builds) and
//! checking how it ended.

use std::ffi::OsStr;
use std::process::{Command, Output};

/// A `Command` for the `collapse` binary, for the callers that spawn it or set more than
/// arguments and environment.
pub fn command() -> Command {
    Command::new(env!("CARGO_BIN_EXE_collapse"))
}

/// Run `collapse ARGS` to completion and return its output (whatever its exit status).
pub fn collapse<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    collapse_env(args, &[])
}

/// [`collapse`] with the environment variables `env` (name, value) set as well.
pub fn collapse_env<I, S>(args: I, env: &[(&str, &str)]) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut c = command();
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output()
        .unwrap_or_else(|e| panic!("running {}: {e}", env!("CARGO_BIN_EXE_collapse")))
}

/// Assert that the run succeeded (showing its stdout and stderr when it did not); returns its
/// stdout.
pub fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "collapse failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Assert that the run failed cleanly — a non-zero exit, not a panic — with an error message
/// holding `needle` (`what` names the case in the failure message); returns its stderr.
pub fn fails(out: &Output, needle: &str, what: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "{what}: succeeded where it should fail\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        !err.contains("panicked"),
        "{what}: panicked instead of an error: {err}"
    );
    assert!(err.contains(needle), "{what}: {needle:?} not in: {err}");
    err
}

/// Start `collapse ARGS`, wait until `state` (a run's `state.json`) exists, wait `delay` more,
/// and SIGKILL the process: a kill at an arbitrary moment after the first checkpoint. The wait
/// has no timeout (a loaded machine cannot make a test fail); if the run ends first it must have
/// succeeded, and a resume then has nothing left to do.
pub fn kill_after_checkpoint<I, S>(args: I, state: &std::path::Path, delay: std::time::Duration)
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut child = command()
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", env!("CARGO_BIN_EXE_collapse")));
    while !state.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(
                status.success(),
                "the run ended before a checkpoint: {status}"
            );
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    std::thread::sleep(delay);
    let _ = child.kill(); // SIGKILL on Unix
    let _ = child.wait();
}
