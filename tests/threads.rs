//! `--threads N` (issue 19): a global flag (and `COLLAPSE_THREADS`) that sizes every thread
//! pool; the numbers do not depend on it.

mod common;

use common::cli::{collapse, collapse_env, fails, ok};
use common::tmpdir;

/// `collapse [PRE..] run …` of a small cpu32 GMM run (EM's reductions and k-means++ run on
/// rayon's pool, the replicates at once) into `dir`; returns its metrics.csv.
fn cpu32_run(pre: &[&str], env: &[(&str, &str)], dir: &std::path::Path) -> Vec<u8> {
    let args = [
        pre,
        &[
            "run",
            "--model",
            "gmm",
            "--truth",
            "shumailov-gmm",
            "--k",
            "2",
            "--generations",
            "3",
            "--samples",
            "3000",
            "--replicates",
            "3",
            "--policy",
            "mix:0.2",
            "--backend",
            "cpu32",
            "--out",
            dir.to_str().unwrap(),
        ],
    ]
    .concat();
    ok(&collapse_env(args, env));
    std::fs::read(dir.join("metrics.csv")).unwrap()
}

#[test]
fn one_thread_gives_the_same_bytes_as_every_core() {
    let dir = tmpdir("threads");
    let all = cpu32_run(&[], &[], &dir.join("default"));
    let one = cpu32_run(&["--threads", "1"], &[], &dir.join("one"));
    assert!(one == all, "--threads 1 changed metrics.csv");
    let three = cpu32_run(&[], &[("COLLAPSE_THREADS", "3")], &dir.join("three"));
    assert!(three == all, "COLLAPSE_THREADS=3 changed metrics.csv");
}

#[test]
fn threads_is_global_and_checked() {
    // After the subcommand too (a global flag), and on rng.
    // The cpu32 backend names its pool's size: the flag sized it.
    let out = ok(&collapse([
        "rng",
        "--backend",
        "cpu32",
        "--count",
        "1000",
        "--threads",
        "1",
    ]));
    assert!(out.contains("host CPU, 1 threads"), "{out}");
    let out = ok(&collapse_env(
        ["rng", "--backend", "cpu32", "--count", "1000"],
        &[("COLLAPSE_THREADS", "3")],
    ));
    assert!(out.contains("host CPU, 3 threads"), "{out}");
    fails(
        &collapse(["--threads", "0", "rng", "--backend", "cpu64"]),
        "--threads",
        "--threads 0",
    );
    fails(
        &collapse_env(["rng", "--backend", "cpu64"], &[("COLLAPSE_THREADS", "0")]),
        "--threads",
        "COLLAPSE_THREADS=0",
    );
    fails(
        &collapse(["--threads", "many", "rng"]),
        "--threads",
        "--threads many",
    );
    let help = ok(&collapse(["run", "--help"]));
    assert!(
        help.contains("--threads") && help.contains("COLLAPSE_THREADS"),
        "{help}"
    );
}
