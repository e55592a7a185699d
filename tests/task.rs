//! `collapse run --model task`: bad task and verifier settings are one-line errors; the oracle
//! keeps no wrong answer and `noisy:0` keeps exactly what the oracle keeps (audit files and
//! metrics); a run resumed after SIGKILL is byte-identical; the GPU backends track cpu64.

mod common;

use std::path::Path;

use common::cli::{collapse, fails, ok};
use common::table::Table;
use common::tmpdir;

/// A small add:1 run (100 distinct problems) that learns enough in a few seconds to answer
/// some problems right and some wrong.
fn args(out: &Path, verifier: &str, generations: &str) -> Vec<String> {
    [
        "run",
        "--model",
        "task",
        "--task",
        "add:1",
        "--verifier",
        verifier,
        "--best-of",
        "2",
        "--generations",
        generations,
        "--samples",
        "96",
        "--replicates",
        "2",
        "--task-eval",
        "40",
        "--lm-width",
        "32",
        "--lm-layers",
        "1",
        "--lm-heads",
        "2",
        "--lm-context",
        "8",
        "--lm-steps",
        "60",
        "--lm-batch",
        "16",
        "--lm-lr",
        "0.01",
        "--backend",
        "cpu32",
        "--seed",
        "4",
        "--no-plots",
        "--out",
        out.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The rows of a TSV audit file (header first).
fn tsv(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| l.split('\t').map(String::from).collect())
        .collect()
}

#[test]
fn bad_task_and_verifier_settings_are_clear_errors() {
    let dir = tmpdir("bad");
    let out = dir.join("run");
    let base = args(&out, "none", "1");
    let with = |edits: &[(&str, &str)], extra: &[&str]| -> Vec<String> {
        let mut a = base.clone();
        for (flag, value) in edits {
            let i = a.iter().position(|x| x == flag).unwrap();
            a[i + 1] = value.to_string();
        }
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    for (edits, extra, needle) in [
        (&[("--task", "mul:3")][..], &[][..], "unknown task \"mul\""),
        (&[("--task", "add:x")], &[], "\"x\" is not a whole number"),
        (&[("--task", "add:40")], &[], "1..=18"),
        (&[("--task", "eigen:1")], &[], "2..=9"),
        (&[("--verifier", "oracle:1")], &[], "takes no argument"),
        (&[("--verifier", "noisy:2")], &[], "not in [0, 1]"),
        (&[("--verifier", "noisy")], &[], "expected noisy:P"),
        (
            &[("--verifier", "judge")],
            &[],
            "unknown --verifier \"judge\"",
        ),
        (
            &[("--verifier", "gen0:0.5")],
            &[],
            "--model task takes --verifier",
        ),
        (&[], &["--retries", "2"], "--retries resamples"),
        (&[("--best-of", "0")], &[], "--best-of must be in 1..=64"),
        (
            &[("--lm-context", "4")],
            &[],
            "needs --lm-context of at least 6",
        ),
        (
            &[],
            &["--policy", "verify:gen0:0.5"],
            "verifies with --verifier",
        ),
        (
            &[("--task-eval", "0")],
            &[],
            "--task-eval must be at least 1",
        ),
        (&[], &["--truth", "normal"], "draws its own problems"),
    ] {
        let e = fails(&collapse(with(edits, extra)), needle, needle);
        // The error is one line (stderr may also hold the run's banner).
        let line = e.lines().find(|l| l.contains(needle)).unwrap();
        assert!(line.len() < 300, "{needle}: {e}");
        assert!(
            !out.exists(),
            "{needle}: the failed run left {}",
            out.display()
        );
    }
    // Task flags on another model, and task verifiers on another model.
    fails(
        &collapse([
            "run",
            "--model",
            "gmm",
            "--task",
            "add:3",
            "--generations",
            "1",
            "--out",
            out.to_str().unwrap(),
        ]),
        "apply to --model task",
        "--task on gmm",
    );
    fails(
        &collapse([
            "run",
            "--model",
            "gmm",
            "--verifier",
            "oracle",
            "--generations",
            "1",
            "--out",
            out.to_str().unwrap(),
        ]),
        "judges task answers",
        "--verifier oracle on gmm",
    );
    fails(
        &collapse([
            "run",
            "--model",
            "gmm",
            "--verifier",
            "gen0:0.5",
            "--policy",
            "accumulate",
            "--generations",
            "1",
            "--out",
            out.to_str().unwrap(),
        ]),
        "with --policy replace",
        "a likelihood verifier with accumulate",
    );
    fails(
        &collapse([
            "run",
            "--model",
            "task",
            "--generations",
            "1",
            "--out",
            out.to_str().unwrap(),
        ]),
        "needs --task",
        "--model task without --task",
    );
}

/// The oracle keeps no wrong answer (every synthetic pool row is correct, pool_label_error 0,
/// precision 1), while `none` keeps wrong ones; `noisy:0` writes the oracle's bytes; every
/// audit file has its header and one row per pool row / held-out problem.
#[test]
fn the_oracle_keeps_no_wrong_answer_and_noisy_zero_is_the_oracle() {
    let dir = tmpdir("oracle");
    let runs: Vec<(String, std::path::PathBuf)> = ["oracle", "noisy:0", "none"]
        .iter()
        .map(|v| (v.to_string(), dir.join(v.replace(':', "-"))))
        .collect();
    for (v, out) in &runs {
        ok(&collapse(args(out, v, "2")));
    }
    let (oracle, noisy0, none) = (&runs[0].1, &runs[1].1, &runs[2].1);
    let m = Table::metrics(oracle);
    assert_eq!(m.len(), 3 * 2);
    let mut kept_any = false;
    for row in m.rows() {
        let g = row.usize("generation");
        let acc = row.f64("heldout_accuracy");
        assert!((0.0..=1.0).contains(&acc), "{acc}");
        assert!(row.f64("answer_loss").is_finite());
        let r = row.usize("replicate");
        let pool = tsv(&oracle.join(format!("pools/g{g:04}-r{r}.tsv")));
        assert_eq!(
            pool[0],
            ["problem", "answer", "correct", "source", "rounds"]
        );
        assert_eq!(pool.len() - 1, row.usize("pool_size"));
        assert!(
            pool[1..].iter().all(|p| p[2] == "1"),
            "g{g} r{r}: a wrong answer kept"
        );
        let eval = tsv(&oracle.join(format!("eval/g{g:04}-r{r}.tsv")));
        assert_eq!(eval[0], ["problem", "prediction", "truth", "correct"]);
        assert_eq!(eval.len() - 1, 40);
        let right = eval[1..].iter().filter(|e| e[3] == "1").count();
        assert_eq!(right as f64 / 40.0, acc);
        assert!(
            eval[1..].iter().all(|e| e[3] != "1" || e[1] == e[2]),
            "g{g}"
        );
        if g == 0 {
            assert!(row.f64("kept_fraction").is_nan());
            assert!(pool[1..].iter().all(|p| p[3] == "real"));
        } else {
            let kept = row.f64("kept_fraction");
            assert_eq!(pool.len() - 1, (kept * 96.0).round() as usize);
            if pool.len() > 1 {
                kept_any = true;
                assert_eq!(row.f64("pool_label_error"), 0.0);
                assert_eq!(row.f64("verifier_precision"), 1.0);
                assert_eq!(row.f64("verifier_recall"), 1.0);
            }
            assert!(pool[1..].iter().all(|p| p[3] == format!("g{}", g - 1)));
        }
    }
    assert!(kept_any, "the oracle kept nothing: the test proves nothing");
    // noisy:0 is the oracle, byte for byte.
    assert_eq!(
        std::fs::read(oracle.join("metrics.csv")).unwrap(),
        std::fs::read(noisy0.join("metrics.csv")).unwrap()
    );
    for g in 0..=2 {
        for sub in ["pools", "eval"] {
            let f = format!("{sub}/g{g:04}-r1.tsv");
            assert_eq!(
                std::fs::read(oracle.join(&f)).unwrap(),
                std::fs::read(noisy0.join(&f)).unwrap(),
                "{f}"
            );
        }
    }
    // Without a verifier wrong answers get in: the test can tell.
    let n = Table::metrics(none);
    assert!(
        n.rows()
            .filter(|r| r.usize("generation") > 0)
            .any(|r| r.f64("pool_label_error") > 0.0),
        "no wrong answer under --verifier none"
    );
    for r in n.rows().filter(|r| r.usize("generation") > 0) {
        assert_eq!(r.f64("kept_fraction"), 1.0);
        assert_eq!(r.f64("verifier_recall"), 1.0);
        assert!((r.f64("verifier_precision") - (1.0 - r.f64("pool_label_error"))).abs() < 1e-12);
    }
}

/// A real SIGKILL after the first checkpoint, then resume: metrics.csv and every audit file
/// as the uninterrupted run wrote them.
#[test]
fn resume_after_sigkill_is_byte_identical() {
    let (a, b) = (tmpdir("full"), tmpdir("killed"));
    let (fa, fb) = (a.join("run"), b.join("run"));
    ok(&collapse(args(&fa, "oracle", "4")));
    let mut killed = args(&fb, "oracle", "4");
    killed.extend(["--checkpoint-secs".to_string(), "0".to_string()]);
    common::cli::kill_after_checkpoint(killed, &fb.join("state.json"), std::time::Duration::ZERO);
    ok(&collapse(["run", "--resume", fb.to_str().unwrap()]));
    assert_eq!(
        std::fs::read(fa.join("metrics.csv")).unwrap(),
        std::fs::read(fb.join("metrics.csv")).unwrap()
    );
    for g in 0..=4 {
        for r in 0..2 {
            for sub in ["pools", "eval"] {
                let f = format!("{sub}/g{g:04}-r{r}.tsv");
                assert_eq!(
                    std::fs::read(fa.join(&f)).unwrap(),
                    std::fs::read(fb.join(&f)).unwrap(),
                    "{f}"
                );
            }
        }
    }
}

/// A small task run on wgsl and cube: generation 0 (same problems, same initial weights, same
/// batches, the loss on the answers only) ends within 1e-4 relative of cpu64's answer loss.
#[test]
fn gpu_task_runs_track_cpu64() {
    if common::gpu().is_none() {
        return;
    }
    let dir = tmpdir("gpu");
    let loss0 = |backend: &str| {
        let out = dir.join(backend);
        let mut a = args(&out, "oracle", "0");
        let i = a.iter().position(|x| x == "cpu32").unwrap();
        a[i] = backend.into();
        let steps = a.iter().position(|x| x == "--lm-steps").unwrap();
        a[steps + 1] = "20".into();
        ok(&collapse(a));
        let m = Table::metrics(&out);
        (m.row(0).f64("answer_loss"), m.row(1).f64("answer_loss"))
    };
    let (r0, r1) = loss0("cpu64");
    for b in ["wgsl", "cube"] {
        let (v0, v1) = loss0(b);
        for (v, r) in [(v0, r0), (v1, r1)] {
            assert!(
                (v - r).abs() <= 1e-4 * r,
                "{b}: answer loss {v} vs cpu64 {r}"
            );
        }
    }
}
