//! `collapse run --model vae` on small synthetic IDX images: exact resume after a crash, every
//! policy's pool, collapse under replace, the GPU backends against cpu64, and bad input.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use collapse_kernels::io::idx::encode_idx_images;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("collapse-dvae-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A gzip IDX file of 500 8×8 bar images in `dir`.
fn data_file(dir: &Path) -> PathBuf {
    let p = dir.join("bars-images-idx3-ubyte.gz");
    std::fs::write(&p, encode_idx_images(&common::bars(500, 8, 1), true)).unwrap();
    p
}

fn collapse(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_collapse"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The common flags of a small VAE run on `data` into `out`.
fn run_args(data: &Path, out: &Path, policy: &str, backend: &str, gens: &str) -> Vec<String> {
    [
        "run",
        "--model",
        "vae",
        "--data",
        data.to_str().unwrap(),
        "--real-rows",
        "200",
        "--samples",
        "200",
        "--generations",
        gens,
        "--replicates",
        "2",
        "--policy",
        policy,
        "--vae-hidden",
        "32",
        "--vae-latent",
        "4",
        "--vae-epochs",
        "3",
        "--vae-batch",
        "32",
        "--vae-lr",
        "3e-3",
        "--backend",
        backend,
        "--seed",
        "5",
        "--out",
        out.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn s(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// metrics.csv as (header, rows of strings).
fn metrics(dir: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(dir.join("metrics.csv")).unwrap();
    let h = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|x| x.unwrap().iter().map(String::from).collect())
        .collect();
    (h, rows)
}

/// Mean over replicates of `column` at `generation`.
fn mean_at(dir: &Path, column: &str, generation: usize) -> f64 {
    let (h, rows) = metrics(dir);
    let c = h.iter().position(|x| x == column).unwrap();
    let v: Vec<f64> = rows
        .iter()
        .filter(|r| r[0] == generation.to_string())
        .map(|r| r[c].parse().unwrap())
        .collect();
    assert!(!v.is_empty() && v.iter().all(|x| x.is_finite()), "{v:?}");
    v.iter().sum::<f64>() / v.len() as f64
}

/// Killed between a generation's rows and its checkpoint, then resumed: metrics.csv and every
/// weight file are byte-identical to an uninterrupted run's (accumulate needs every earlier
/// generation's weights to rebuild its pool).
#[test]
fn vae_resume_after_a_crash_is_byte_identical() {
    let dir = tmpdir("resume");
    let data = data_file(&dir);
    for policy in ["mix:0.2", "accumulate"] {
        let (a, b) = (
            dir.join(format!("full-{policy}")),
            dir.join(format!("crash-{policy}")),
        );
        // One replicate at a time uninterrupted, both at once in the crashing run: the bytes
        // must not depend on it.
        let args = |o: &Path, jobs: &str| {
            let mut v = run_args(&data, o, policy, "cpu32", "4");
            v.extend(["--replicate-jobs".to_string(), jobs.to_string()]);
            v
        };
        ok(&collapse(&s(&args(&a, "1")), &[]));
        let out = collapse(
            &s(&args(&b, "2")),
            &[("COLLAPSE_TEST_ABORT_BEFORE_CHECKPOINT", "2")],
        );
        assert!(!out.status.success(), "the test hook did not abort the run");
        ok(&collapse(&["run", "--resume", b.to_str().unwrap()], &[]));
        let read = |d: &Path, f: &str| std::fs::read(d.join(f)).unwrap();
        assert_eq!(read(&a, "metrics.csv"), read(&b, "metrics.csv"), "{policy}");
        for r in 0..2 {
            for g in 0..=4 {
                let f = format!("weights/r{r}-g{g}.f64");
                assert_eq!(read(&a, &f), read(&b, &f), "{policy} {f}");
            }
        }
        assert!(b.join("samples/g0004.png").exists());
        let summary: serde_json::Value = serde_json::from_slice(&read(&b, "summary.json")).unwrap();
        assert!(summary["reference"]["sample_diversity"].as_f64().unwrap() > 0.0);
    }
}

/// Every policy forms the pool it names, and the metrics are finite; under replace the samples
/// lose diversity generation after generation (the collapse this crate studies), while mixing
/// real data back in keeps more of it.
#[test]
fn vae_policies_and_collapse() {
    let dir = tmpdir("policies");
    let data = data_file(&dir);
    for (policy, want) in [
        ("replace", "g3:200"),
        ("accumulate", "real:200|g0:200|g1:200|g2:200|g3:200"),
        ("mix:0.5", "real:100|g3:100"),
        ("fresh:0.25", "fresh:50|g3:150"),
        ("verify:gen0:0.5", "g3:200"),
        ("verify:heldout:0.5", "g3:200"),
    ] {
        let out = dir.join(policy.replace(':', "-"));
        ok(&collapse(
            &s(&run_args(&data, &out, policy, "cpu32", "4")),
            &[],
        ));
        let (h, rows) = metrics(&out);
        assert_eq!(
            h[5..],
            ["heldout_neg_elbo", "sample_diversity", "pixel_std"],
            "{policy}"
        );
        assert_eq!(rows.len(), 10);
        assert_eq!(rows.last().unwrap()[4], want, "{policy}");
        assert_eq!(rows[0][4], "real:200");
        for c in &h[5..8] {
            mean_at(&out, c, 4);
        }
    }
    let div = |p: &str, g| mean_at(&dir.join(p.replace(':', "-")), "sample_diversity", g);
    assert!(
        div("replace", 4) < 0.9 * div("replace", 0),
        "replace: diversity {} at generation 0, {} at 4",
        div("replace", 0),
        div("replace", 4)
    );
    assert!(
        div("mix:0.5", 4) > div("replace", 4),
        "mix:0.5 {} vs replace {}",
        div("mix:0.5", 4),
        div("replace", 4)
    );
}

/// The same run on a GPU backend: generations 0 and 1 (same real images, same initial weights,
/// same noise) land within 1e-4 relative of cpu64's held-out negative ELBO and sample diversity
/// (measured on lavapipe: about 1e-6): the differences are f32 rounding carried through 3 epochs
/// of Adam, not a different model.
#[test]
fn vae_run_on_gpu_backends_tracks_cpu64() {
    if common::gpu().is_none() {
        return;
    }
    let dir = tmpdir("gpu");
    let data = data_file(&dir);
    let run = |backend: &str| {
        let out = dir.join(backend);
        ok(&collapse(
            &s(&run_args(&data, &out, "replace", backend, "1")),
            &[],
        ));
        [0, 1].map(|g| {
            [
                mean_at(&out, "heldout_neg_elbo", g),
                mean_at(&out, "sample_diversity", g),
            ]
        })
    };
    let reference = run("cpu64");
    for b in ["wgsl", "cube"] {
        let got = run(b);
        for (g, (x, y)) in got.iter().zip(&reference).enumerate() {
            for (a, r) in x.iter().zip(y) {
                assert!(
                    (a - r).abs() <= 1e-4 * r.abs(),
                    "{b} generation {g}: {x:?} vs cpu64 {y:?}"
                );
            }
        }
    }
}

#[test]
fn vae_bad_input_is_an_error() {
    let dir = tmpdir("bad");
    let csv = dir.join("big.csv");
    std::fs::write(&csv, "0.1,0.2\n0.3,0.4\n0.5,7\n0.1,0.1\n0.2,0.2\n0.3,0.3\n").unwrap();
    let out = dir.join("never");
    for (args, needle) in [
        (
            vec!["run", "--model", "vae", "--truth", "normal"],
            "needs image data",
        ),
        (
            vec!["run", "--model", "vae", "--data", csv.to_str().unwrap()],
            "row 3, column 2 is 7",
        ),
        (
            vec![
                "run",
                "--model",
                "vae",
                "--data",
                csv.to_str().unwrap(),
                "--vae-epochs",
                "0",
            ],
            "--vae-epochs",
        ),
        (
            vec![
                "run",
                "--model",
                "vae",
                "--data",
                "/nonexistent/x-images-idx3-ubyte",
            ],
            "/nonexistent/x-images-idx3-ubyte",
        ),
    ] {
        let o = collapse(
            &[&args[..], &["--out", out.to_str().unwrap()]].concat(),
            &[],
        );
        assert!(!o.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
