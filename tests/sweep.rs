//! `collapse sweep` on this machine: plan (and replanning), run with bounded concurrency past
//! failures, idempotent tasks under the run lock, status, tidy collection with confidence
//! intervals, grouped plots; and replicate offsets that mean the same replicate everywhere.

mod common;

use std::path::{Path, PathBuf};

use common::cli::{collapse, fails, ok};
use common::table::Table;
use common::tmpdir;

/// The issue's 12-job sweep, small: 2 policies × 2 sample sizes × 3 seeds of the Gaussian chain.
const SPEC: &str = r#"
[base]
model = "gaussian"
generations = 6
replicates = 3
backend = "cpu64"
[axes]
policy = ["replace", "accumulate"]
samples = [10, 40]
seed = { count = 3 }
"#;

fn write_spec(dir: &Path, name: &str, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_sweep_plans_runs_collects_and_plots() {
    let t = tmpdir("sweep-local");
    let spec = write_spec(&t, "spec.toml", SPEC);
    let dir = t.join("sweep");
    let out = ok(&collapse(["sweep", "plan", s(&spec), "--out", s(&dir)]));
    assert!(out.contains("12 jobs (0 kept, 12 new)"), "{out}");
    let jobs = Table::read(dir.join("jobs.csv"));
    assert_eq!(jobs.header(), ["job", "dir", "policy", "samples", "seed"]);
    assert_eq!(jobs.len(), 12);
    assert_eq!(jobs.row(5).str("policy"), "replace");
    assert_eq!(jobs.row(5).str("samples"), "40");
    assert_eq!(jobs.row(5).str("seed"), "2");
    assert!(dir.join("jobs/00011").is_dir());

    let st = ok(&collapse(["sweep", "status", s(&dir)]));
    assert!(st.contains("0 done") && st.contains("12 pending"), "{st}");
    let run = ok(&collapse(["sweep", "run", s(&dir), "--jobs", "2"]));
    assert!(run.contains("12 done, 0 failed"), "{run}");
    let st = ok(&collapse(["sweep", "status", s(&dir)]));
    assert!(st.contains("12 done"), "{st}");
    // A second run has nothing left to do.
    let again = ok(&collapse(["sweep", "run", s(&dir)]));
    assert!(again.contains("ran 0 jobs"), "{again}");

    // Job 7 is exactly `collapse run` with its flags.
    let by_hand = t.join("by-hand");
    ok(&collapse([
        "run",
        "--model",
        "gaussian",
        "--generations",
        "6",
        "--replicates",
        "3",
        "--backend",
        "cpu64",
        "--policy",
        "accumulate",
        "--samples",
        "10",
        "--seed",
        "1",
        "--out",
        s(&by_hand),
    ]));
    assert_eq!(
        std::fs::read(dir.join("jobs/00007/metrics.csv")).unwrap(),
        std::fs::read(by_hand.join("metrics.csv")).unwrap()
    );

    let c = ok(&collapse(["sweep", "collect", s(&dir)]));
    assert!(c.contains("collected 12 of 12 jobs"), "{c}");
    let long = Table::read(dir.join("collected.csv"));
    assert_eq!(
        &long.header()[..6],
        [
            "job",
            "policy",
            "samples",
            "seed",
            "generation",
            "replicate"
        ]
    );
    assert!(long.header().contains(&"sigma"));
    assert_eq!(long.len(), 12 * 7 * 3);
    let summary = Table::read(dir.join("collected_summary.csv"));
    assert_eq!(
        summary.header(),
        [
            "policy",
            "samples",
            "generation",
            "metric",
            "n",
            "mean",
            "sd",
            "ci95_low",
            "ci95_high"
        ]
    );
    // Recompute one cell: accumulate, 40 samples, generation 6, sigma over 3 seeds × 3 replicates.
    let xs: Vec<f64> = long
        .rows()
        .filter(|r| {
            r.str("policy") == "accumulate"
                && r.str("samples") == "40"
                && r.usize("generation") == 6
        })
        .map(|r| r.f64("sigma"))
        .collect();
    assert_eq!(xs.len(), 9);
    let mean = xs.iter().sum::<f64>() / 9.0;
    let sd = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 8.0).sqrt();
    let half = 2.306_004_135_204_166 * sd / 3.0; // t(0.975, 8) · sd / √9
    let row = summary
        .rows()
        .find(|r| {
            r.str("policy") == "accumulate"
                && r.str("samples") == "40"
                && r.usize("generation") == 6
                && r.str("metric") == "sigma"
        })
        .expect("summary row");
    assert_eq!(row.usize("n"), 9);
    assert!((row.f64("mean") - mean).abs() < 1e-12 * mean.abs());
    assert!((row.f64("sd") - sd).abs() < 1e-9 * sd);
    assert!((row.f64("ci95_high") - (mean + half)).abs() < 1e-9);
    assert!((row.f64("ci95_low") - (mean - half)).abs() < 1e-9);
    assert!(
        dir.join("metrics_dictionary.csv").exists(),
        "collect writes the dictionary beside the tables"
    );

    // Plots: one line per (policy, samples), labelled by them.
    let plots = t.join("plots");
    ok(&collapse(["plot", s(&dir), "--out", s(&plots)]));
    let svg = std::fs::read_to_string(plots.join("sigma.svg")).unwrap();
    assert!(
        svg.contains("policy=accumulate, samples=40"),
        "legend from the axes"
    );
    assert!(svg.contains("95% CI"), "the band is named");
    let logp = t.join("plots-log");
    ok(&collapse([
        "plot",
        s(&dir),
        "--out",
        s(&logp),
        "--group-by",
        "policy",
        "--band",
        "sd",
        "--log-y",
    ]));
    let svg = std::fs::read_to_string(logp.join("sigma.svg")).unwrap();
    assert!(
        svg.contains("policy=replace") && !svg.contains("samples=10"),
        "grouped by policy"
    );
    fails(
        &collapse([
            "plot",
            s(&dir),
            "--out",
            s(&t.join("p3")),
            "--group-by",
            "nope",
        ]),
        "--group-by nope: not an axis",
        "unknown axis",
    );
}

#[test]
fn replanning_adds_new_jobs_and_refuses_changed_ones() {
    let t = tmpdir("sweep-replan");
    let spec = write_spec(&t, "a.toml", SPEC);
    let dir = t.join("sweep");
    ok(&collapse(["sweep", "plan", s(&spec), "--out", s(&dir)]));
    let before = std::fs::read_to_string(dir.join("sweep.json")).unwrap();
    let same = ok(&collapse(["sweep", "plan", s(&spec), "--out", s(&dir)]));
    assert!(same.contains("12 jobs (12 kept, 0 new)"), "{same}");
    assert_eq!(
        before,
        std::fs::read_to_string(dir.join("sweep.json")).unwrap()
    );
    // Two more seeds: 4 new jobs at indices 12..16; the old ones keep their indices.
    let more = write_spec(&t, "b.toml", &SPEC.replace("count = 3", "count = 4"));
    let out = ok(&collapse(["sweep", "plan", s(&more), "--out", s(&dir)]));
    assert!(out.contains("16 jobs (12 kept, 4 new)"), "{out}");
    let jobs = Table::read(dir.join("jobs.csv"));
    assert_eq!(jobs.row(2).str("seed"), "2");
    assert_eq!(jobs.row(12).str("seed"), "3");
    assert_eq!(jobs.row(12).str("policy"), "replace");
    // A changed base (every job's flags change) is refused, naming a job; nothing is written.
    let changed = write_spec(
        &t,
        "c.toml",
        &SPEC.replace("generations = 6", "generations = 7"),
    );
    let before = std::fs::read_to_string(dir.join("sweep.json")).unwrap();
    fails(
        &collapse(["sweep", "plan", s(&changed), "--out", s(&dir)]),
        "drops or changes job 0 (policy=replace, samples=10, seed=0)",
        "changed spec",
    );
    assert_eq!(
        before,
        std::fs::read_to_string(dir.join("sweep.json")).unwrap()
    );
    // A job whose flags `collapse run` refuses is refused at plan time, naming it.
    let bad = write_spec(&t, "d.toml", &SPEC.replace("\"accumulate\"", "\"hoard\""));
    fails(
        &collapse(["sweep", "plan", s(&bad), "--out", s(&t.join("other"))]),
        "job (policy=hoard, samples=10, seed=0)",
        "bad policy",
    );
    let typo = write_spec(
        &t,
        "e.toml",
        &SPEC.replace("replicates = 3", "replicats = 3"),
    );
    fails(
        &collapse(["sweep", "plan", s(&typo), "--out", s(&t.join("other2"))]),
        "--replicats",
        "unknown flag",
    );
    // A directory holding other files is refused.
    let busy = t.join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("notes.txt"), "mine").unwrap();
    fails(
        &collapse(["sweep", "plan", s(&spec), "--out", s(&busy)]),
        "holds other files",
        "foreign dir",
    );
}

#[test]
fn a_sweep_goes_on_past_a_failed_job_and_tasks_are_idempotent() {
    let t = tmpdir("sweep-fail");
    let good = t.join("good.csv");
    let bad = t.join("bad.csv");
    let rows: String = (0..40)
        .map(|i| format!("{}\n", (i as f64 * 0.37).sin()))
        .collect();
    std::fs::write(&good, format!("x\n{rows}")).unwrap();
    std::fs::write(&bad, format!("x\n{rows}")).unwrap();
    let spec = write_spec(
        &t,
        "spec.toml",
        &format!(
            "[base]\nmodel = 'gaussian'\ngenerations = 3\nreplicates = 2\nsamples = 10\n\
             backend = 'cpu64'\n[axes]\ndata = ['{}', '{}']\nseed = [0, 1]\n",
            good.display(),
            bad.display()
        ),
    );
    let dir = t.join("sweep");
    ok(&collapse(["sweep", "plan", s(&spec), "--out", s(&dir)]));
    std::fs::remove_file(&bad).unwrap();
    let out = collapse(["sweep", "run", s(&dir), "--jobs", "2"]);
    let err = fails(&out, "2 of 4 jobs failed", "failing jobs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("2 done, 2 failed"), "{stdout}\n{err}");
    assert!(
        stdout.contains("job 2 (") && stdout.contains("bad.csv"),
        "{stdout}"
    );
    let st = ok(&collapse(["sweep", "status", s(&dir)]));
    assert!(st.contains("2 done") && st.contains("2 failed"), "{st}");
    assert!(
        st.contains("job 3 (data=") && st.contains("bad.csv"),
        "{st}"
    );
    // The failure is repaired: a new run does only the failed jobs.
    std::fs::write(&bad, format!("x\n{rows}")).unwrap();
    let done0 = std::fs::read(dir.join("jobs/00000/metrics.csv")).unwrap();
    let out = ok(&collapse(["sweep", "run", s(&dir)]));
    assert!(
        out.contains("ran 2 jobs") && out.contains("2 done, 0 failed"),
        "{out}"
    );
    assert_eq!(
        done0,
        std::fs::read(dir.join("jobs/00000/metrics.csv")).unwrap()
    );
    // A finished job's task does nothing; a task without an index outside Slurm is refused.
    let again = ok(&collapse(["sweep", "task", s(&dir), "--index", "1"]));
    assert!(again.contains("is done: nothing to do"), "{again}");
    fails(
        &common::cli::collapse_env(["sweep", "task", s(&dir)], &[("SLURM_ARRAY_TASK_ID", "")]),
        "is not an index",
        "empty task id",
    );
    fails(
        &collapse(["sweep", "task", s(&dir), "--index", "9"]),
        "job index 9 is out of range",
        "index range",
    );
    // A job whose run lock another process holds is refused and not marked failed.
    std::fs::remove_file(dir.join("status/0.done")).unwrap();
    let _held = collapse_kernels::experiment::lock::RunLock::acquire(&dir.join("jobs/00000"))
        .expect("lock");
    fails(
        &collapse(["sweep", "task", s(&dir), "--index", "0"]),
        "being run by another process",
        "held lock",
    );
    let st = ok(&collapse(["sweep", "status", s(&dir)]));
    assert!(st.contains("1 running") && st.contains("0 failed"), "{st}");
}

/// Replicate `i` of an experiment is the same numbers whether it runs among all replicates or
/// alone with `--replicate-offset i`.
#[test]
fn a_replicate_offset_reproduces_that_replicate_of_the_whole_run() {
    let t = tmpdir("sweep-offset");
    for (model, extra) in [
        ("gaussian", vec!["--policy", "mix:0.2"]),
        ("gmm", vec!["--policy", "accumulate", "--samples", "60"]),
    ] {
        let all = t.join(format!("{model}-all"));
        let one = t.join(format!("{model}-one"));
        let base = |out: &Path, reps: &str, offset: &str| {
            let mut a = vec![
                "run",
                "--model",
                model,
                "--generations",
                "4",
                "--backend",
                "cpu32",
                "--seed",
                "7",
                "--replicates",
            ];
            a.push(reps);
            a.extend(["--replicate-offset", offset, "--out", s(out)]);
            a.extend(extra.iter().copied());
            a.iter().map(|x| x.to_string()).collect::<Vec<_>>()
        };
        ok(&collapse(base(&all, "5", "0")));
        ok(&collapse(base(&one, "1", "3")));
        let a = Table::metrics(&all);
        let o = Table::metrics(&one);
        assert_eq!(a.header(), o.header());
        let line = |r: common::table::Row<'_>| {
            a.header()
                .iter()
                .map(|h| r.str(h))
                .collect::<Vec<_>>()
                .join(",")
        };
        let want: Vec<String> = a
            .rows()
            .filter(|r| r.usize("replicate") == 3)
            .map(line)
            .collect();
        let got: Vec<String> = o.rows().map(line).collect();
        assert_eq!(got.len(), 5);
        assert_eq!(
            got, want,
            "{model}: replicate 3 alone differs from replicate 3 of 5"
        );
    }
    fails(
        &collapse([
            "run",
            "--model",
            "lm",
            "--replicates",
            "2",
            "--replicate-offset",
            "255",
            "--out",
            s(&t.join("lm")),
        ]),
        "--replicate-offset 255 + --replicates 2 exceeds",
        "chunked streams",
    );
}
