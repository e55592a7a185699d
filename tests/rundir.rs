//! Run directories you can trust (issue 18): one writer, resume verified against the checkpoint
//! before any work, nothing outside a run overwritten without --force, and parsers of the run's
//! own files (state.json, params.jsonl) that answer any bytes with an error, never a panic.
//! Each test names the defect of the issue it pins down.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use collapse_kernels::backend::BackendKind;
use collapse_kernels::experiment::{RunOptions, RunState, run};
use collapse_kernels::trainers::Engine;
use proptest::prelude::*;

use common::cli::{collapse, collapse_env, fails, ok};
use common::table::Table;
use common::tmpdir;

/// A small gmm run's flags (about a second on cpu64).
fn small(out: &Path, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "run",
        "--model",
        "gmm",
        "--generations",
        "4",
        "--samples",
        "200",
        "--replicates",
        "2",
        "--backend",
        "cpu64",
        "--seed",
        "5",
        "--out",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(out.to_str().unwrap().into());
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// A finished small run in `tmpdir(name)`, with its metrics.csv bytes.
fn finished(name: &str) -> (PathBuf, Vec<u8>) {
    let d = tmpdir(name).join("run");
    ok(&collapse(small(&d, &[])));
    let bytes = std::fs::read(d.join("metrics.csv")).unwrap();
    (d, bytes)
}

/// A small run killed (the test hook aborts it) after writing generation 2's rows but before
/// its checkpoint: with a checkpoint after every generation, state.json names generations
/// 0..=1 and metrics.csv holds generation 2's rows past that, so resume has work to do.
fn crashed(name: &str) -> PathBuf {
    let d = tmpdir(name).join("run");
    let out = collapse_env(
        small(&d, &["--checkpoint-secs", "0"]),
        &[("COLLAPSE_TEST_ABORT_BEFORE_CHECKPOINT", "2")],
    );
    assert!(!out.status.success(), "the hook did not abort the run");
    d
}

fn resume(d: &Path) -> std::process::Output {
    collapse(["run", "--resume", d.to_str().unwrap()])
}

fn state(d: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(d.join("state.json")).unwrap()).unwrap()
}

/// Defect 1: a missing metrics.csv is refused at once, naming the file; nothing is written (the
/// old code wrote 2,768 NUL bytes and a headerless file and exited 0).
#[test]
fn resume_refuses_a_missing_metrics_file() {
    let d = crashed("missing");
    std::fs::remove_file(d.join("metrics.csv")).unwrap();
    let e = fails(&resume(&d), "metrics.csv: missing", "missing metrics.csv");
    assert!(e.contains("checkpoint"), "{e}");
    assert!(!d.join("metrics.csv").exists(), "resume recreated the file");
}

/// Defect 1: a shortened metrics.csv is refused before any generation is recomputed, and never
/// padded; an edited one (same length) is refused by its CRC.
#[test]
fn resume_refuses_a_shortened_or_edited_metrics_file() {
    let d = crashed("short");
    let bytes = std::fs::read(d.join("metrics.csv")).unwrap();
    let st = state(&d);
    let committed = st["metrics_bytes"].as_u64().unwrap() as usize;
    std::fs::write(d.join("metrics.csv"), &bytes[..committed - 10]).unwrap();
    let t = Instant::now();
    let e = fails(&resume(&d), "metrics.csv", "short metrics.csv");
    assert!(e.contains("truncated"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(20));
    assert_eq!(
        std::fs::read(d.join("metrics.csv")).unwrap(),
        &bytes[..committed - 10],
        "the file was changed"
    );
    // Same length, one digit changed inside a committed row.
    let mut edited = bytes.clone();
    let at = committed - 5;
    edited[at] = if edited[at] == b'1' { b'2' } else { b'1' };
    std::fs::write(d.join("metrics.csv"), &edited).unwrap();
    let e = fails(&resume(&d), "metrics.csv", "edited metrics.csv");
    assert!(e.contains("CRC"), "{e}");
}

/// Defect 1: `metrics_bytes` edited upward no longer grows the file with NULs.
#[test]
fn resume_never_pads() {
    let d = crashed("pad");
    let mut st = state(&d);
    st["metrics_bytes"] = serde_json::json!(100_000_000u64);
    std::fs::write(d.join("state.json"), serde_json::to_vec(&st).unwrap()).unwrap();
    let before = std::fs::read(d.join("metrics.csv")).unwrap();
    fails(&resume(&d), "metrics.csv", "metrics_bytes edited upward");
    let after = std::fs::read(d.join("metrics.csv")).unwrap();
    assert_eq!(before, after);
    assert!(!after.contains(&0u8), "NUL bytes in metrics.csv");
}

/// Defect 1 (what must still work): a torn tail past the checkpoint is cut, and the resumed run
/// is byte-identical to an uninterrupted one; params.jsonl too.
#[test]
fn resume_cuts_only_a_torn_tail() {
    let (full, want) = finished("tail-full");
    let d = crashed("tail");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(d.join("metrics.csv"))
        .unwrap();
    std::io::Write::write_all(&mut f, b"2,1,200,0,g1:2").unwrap();
    drop(f);
    ok(&resume(&d));
    assert_eq!(std::fs::read(d.join("metrics.csv")).unwrap(), want);
    assert_eq!(
        std::fs::read(d.join("params.jsonl")).unwrap(),
        std::fs::read(full.join("params.jsonl")).unwrap()
    );
}

/// Defect 1: a params.jsonl shortened below the checkpoint is refused naming it.
#[test]
fn resume_refuses_a_shortened_params_file() {
    let d = crashed("params");
    std::fs::write(d.join("params.jsonl"), b"[]\n").unwrap();
    fails(&resume(&d), "params.jsonl", "short params.jsonl");
}

/// Defect 2: a new run into a directory with the user's files (no state.json) is refused and
/// the files are untouched; --force writes the run anyway.
#[test]
fn a_directory_that_is_not_a_run_is_not_clobbered() {
    let d = tmpdir("clobber");
    std::fs::write(d.join("metrics.csv"), b"mine\n").unwrap();
    std::fs::write(d.join("summary.json"), b"{}").unwrap();
    let e = fails(&collapse(small(&d, &[])), "--force", "non-empty --out");
    assert!(e.contains("not empty") && e.contains("metrics.csv"), "{e}");
    assert_eq!(std::fs::read(d.join("metrics.csv")).unwrap(), b"mine\n");
    assert_eq!(std::fs::read(d.join("summary.json")).unwrap(), b"{}");
    ok(&collapse(small(&d, &["--force"])));
    assert_eq!(Table::metrics(&d).len(), 5 * 2);
    // A run directory is still refused as the --out of a new run, even with --force.
    fails(
        &collapse(small(&d, &["--force"])),
        "--resume",
        "a run as --out",
    );
}

/// Defect 3: while one process writes a run directory a second writer (new run or resume) is
/// refused, naming the holder; the first run's files come out as if it had run alone.
#[test]
fn a_run_directory_has_one_writer() {
    // A longer run than the others, so the second writer usually meets it running.
    let longer = |out: &Path| -> Vec<String> {
        small(out, &[])
            .into_iter()
            .map(|a| if a == "4" { "40".to_string() } else { a })
            .collect()
    };
    let full = tmpdir("lock-full").join("run");
    ok(&collapse(longer(&full)));
    let want = std::fs::read(full.join("metrics.csv")).unwrap();
    let d = tmpdir("lock").join("run");
    let mut first = common::cli::command()
        .args(longer(&d))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lock = d.join("run.lock");
    let t = Instant::now();
    // Wait until the holder has written its line (it holds the lock from then on).
    while !std::fs::read_to_string(&lock).is_ok_and(|s| s.contains("pid ")) {
        assert!(t.elapsed() < Duration::from_secs(60), "no lock taken");
        std::thread::sleep(Duration::from_millis(1));
    }
    let second = collapse(small(&d, &["--policy", "accumulate"]));
    let still_running = first.try_wait().unwrap().is_none();
    let status = first.wait().unwrap();
    assert!(status.success());
    if still_running {
        let e = fails(&second, "another process", "a second writer");
        assert!(e.contains(&format!("pid {}", first.id())), "{e}");
    } else {
        // The first run ended before the second started: the second meets a finished run.
        fails(
            &second,
            "already holds a run",
            "a second run after the first",
        );
    }
    assert_eq!(std::fs::read(d.join("metrics.csv")).unwrap(), want);
}

/// Defect 3, library side: a lock held by this process refuses a run into the directory.
#[test]
fn a_held_lock_refuses_a_run() {
    let d = tmpdir("held");
    let _held = collapse_kernels::experiment::lock::RunLock::acquire(&d).unwrap();
    let cpu = Engine::create(BackendKind::Cpu64, None).unwrap();
    let out = collapse(small(&d, &[]));
    fails(&out, "another process", "a held lock");
    let e = run(&cpu, &cpu, None, &d, &RunOptions::default(), &mut |_, _| {}).unwrap_err();
    assert!(e.to_string().contains("state.json"), "{e}");
}

/// Defect 4: `train lm` and `train vae` refuse to overwrite a model in --out without --force.
#[test]
fn training_does_not_overwrite_a_model() {
    for (cmd, files) in [
        ("lm", vec!["model.json", "weights.npy"]),
        ("vae", vec!["weights.npy"]),
    ] {
        let d = tmpdir(&format!("train-{cmd}"));
        for f in &files {
            std::fs::write(d.join(f), b"a model").unwrap();
        }
        let out = collapse(["train", cmd, "--out", d.to_str().unwrap()]);
        let e = fails(&out, "--force", &format!("train {cmd} over a model"));
        assert!(e.contains(files[0]), "{e}");
        for f in &files {
            assert_eq!(std::fs::read(d.join(f)).unwrap(), b"a model");
        }
    }
}

/// Nothing outside a run is overwritten without --force: `plot --out` with SVGs already there,
/// `bench --out` onto an existing file.
#[test]
fn plot_and_bench_do_not_overwrite() {
    let (run_dir, _) = finished("plot-src");
    let d = tmpdir("plot-out");
    std::fs::write(d.join("heldout_ll.svg"), b"<svg/>").unwrap();
    let out = collapse([
        "plot",
        run_dir.to_str().unwrap(),
        "--out",
        d.to_str().unwrap(),
    ]);
    fails(&out, "--force", "plot over SVGs");
    assert_eq!(std::fs::read(d.join("heldout_ll.svg")).unwrap(), b"<svg/>");
    ok(&collapse([
        "plot",
        run_dir.to_str().unwrap(),
        "--out",
        d.to_str().unwrap(),
        "--force",
    ]));
    assert_ne!(std::fs::read(d.join("heldout_ll.svg")).unwrap(), b"<svg/>");
    let csv = d.join("timings.csv");
    std::fs::write(&csv, b"mine").unwrap();
    let out = collapse([
        "bench",
        "matmul",
        "--sizes",
        "8",
        "--backends",
        "cpu32",
        "--no-records",
        "--out",
        csv.to_str().unwrap(),
    ]);
    fails(&out, "--force", "bench over a file");
    assert_eq!(std::fs::read(&csv).unwrap(), b"mine");
}

/// Defect 13: --resume refuses experiment flags it would ignore, and --generations extends the
/// run to exactly the bytes of a run made that long from the start.
#[test]
fn resume_extends_with_generations_and_refuses_other_flags() {
    let long = tmpdir("extend-full").join("run");
    ok(&collapse(
        small(&long, &[])
            .into_iter()
            .map(|a| if a == "4" { "6".to_string() } else { a }),
    ));
    let (d, _) = finished("extend");
    let dir = d.to_str().unwrap();
    let e = fails(
        &collapse(["run", "--resume", dir, "--samples", "50"]),
        "--samples",
        "resume with --samples",
    );
    assert!(e.contains("cannot be changed"), "{e}");
    fails(
        &collapse(["run", "--resume", dir, "--generations", "2"]),
        "not shorten",
        "resume shortening the run",
    );
    ok(&collapse(["run", "--resume", dir, "--generations", "6"]));
    assert_eq!(
        std::fs::read(d.join("metrics.csv")).unwrap(),
        std::fs::read(long.join("metrics.csv")).unwrap()
    );
    assert_eq!(state(&d)["config"]["generations"].as_u64(), Some(6));
}

/// Defect 14: temporary files a kill left are removed on resume; a run that fails before its
/// first checkpoint leaves no directory; state.json naming a file outside the run is refused.
#[test]
fn stale_temporaries_failed_starts_and_escaping_paths() {
    let d = crashed("tmp");
    let stale = d.join(".state.json.tmp-99999-0");
    std::fs::write(&stale, b"{").unwrap();
    ok(&resume(&d));
    assert!(!stale.exists(), "stale temporary kept");

    let root = tmpdir("failed");
    let bad = root.join("bad.csv");
    std::fs::write(&bad, b"x,y\n1,2\n3,oops\n").unwrap();
    let out_dir = root.join("run");
    let mut args = small(&out_dir, &[]);
    args.extend(["--data".into(), bad.to_str().unwrap().into()]);
    fails(&collapse(args), "bad.csv", "bad --data");
    assert!(
        !out_dir.exists(),
        "a failed start left {}",
        out_dir.display()
    );

    let d = crashed("escape");
    let mut st = state(&d);
    st["model_files"] = serde_json::json!([["../../etc/passwd"], ["/etc/passwd"]]);
    std::fs::write(d.join("state.json"), serde_json::to_vec(&st).unwrap()).unwrap();
    fails(
        &resume(&d),
        "not a path inside the run directory",
        "escaping path",
    );
}

/// Defect 11: a truncated state.json is blamed on state.json, not the directory.
#[test]
fn a_truncated_state_names_the_file() {
    let d = crashed("trunc-state");
    let bytes = std::fs::read(d.join("state.json")).unwrap();
    std::fs::write(d.join("state.json"), &bytes[..bytes.len() / 2]).unwrap();
    fails(&resume(&d), "state.json", "truncated state.json");
}

/// Issue 18, provenance: under accumulate the composition field stays one short entry however
/// many generations the pool holds, and its total is the pool's size.
#[test]
fn accumulate_provenance_is_constant_size() {
    let d = tmpdir("prov").join("run");
    ok(&collapse([
        "run",
        "--model",
        "gaussian",
        "--generations",
        "60",
        "--samples",
        "10",
        "--replicates",
        "1",
        "--policy",
        "accumulate",
        "--backend",
        "cpu64",
        "--out",
        d.to_str().unwrap(),
    ]));
    let t = Table::metrics(&d);
    let last = t.last();
    assert_eq!(last.str("pool_composition"), "real:10|g0..g59:600");
    assert_eq!(last.f64("pool_size"), 610.0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Parsers of a run's own files: any bytes in state.json, and any bytes in params.jsonl
    /// under a valid state, give a resume error (never a panic, never an exit by signal).
    #[test]
    fn resume_answers_damaged_files_with_an_error(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
        cut in 0usize..2000,
        which in 0usize..3,
    ) {
        let d = tmpdir(&format!("prop-{which}-{cut}-{}", bytes.len()));
        let base = crashed_template();
        for f in ["state.json", "metrics.csv", "params.jsonl"] {
            std::fs::copy(base.join(f), d.join(f)).unwrap();
        }
        let target = d.join(["state.json", "params.jsonl", "metrics.csv"][which]);
        let mut original = std::fs::read(&target).unwrap();
        original.truncate(cut.min(original.len()));
        original.extend(&bytes);
        std::fs::write(&target, &original).unwrap();
        let parsed = RunState::read(&d);
        let out = resume(&d);
        // Ends by exit code (no signal, no panic); when the bytes are refused, one line names
        // a file of the run.
        prop_assert!(out.status.code().is_some());
        let err = String::from_utf8_lossy(&out.stderr);
        prop_assert!(!err.contains("panicked"), "{}", err);
        if !out.status.success() {
            prop_assert!(err.contains("state.json") || err.contains("params.jsonl")
                || err.contains("metrics.csv"), "{}", err);
        }
        if which == 0 && parsed.is_err() {
            prop_assert!(!out.status.success());
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}

/// One crashed run shared by the property test's cases (made once per test process).
fn crashed_template() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| crashed("prop-template")).clone()
}
