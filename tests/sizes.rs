//! Issue 18, sizes: every size a user controls is checked before anything is allocated. Each
//! case ends in a non-zero exit with one line naming the flag (and, where it applies, the bytes
//! it would need), never a panic or a `memory allocation of N bytes failed` abort, and writes
//! no output directory, CSV or record. The checks refuse before allocating, so these tests use
//! no memory; most set `COLLAPSE_MEMORY_LIMIT` so the refusal does not depend on this machine.

mod common;

use std::path::Path;
use std::process::Output;

use common::cli::{collapse_env, fails};
use common::tmpdir;

/// A budget every case below exceeds by far (and a small one for the smaller cases).
const LIMIT: (&str, &str) = ("COLLAPSE_MEMORY_LIMIT", "8G");

/// Run `collapse ARGS` under [`LIMIT`].
fn limited(args: &[&str]) -> Output {
    collapse_env(args, &[LIMIT])
}

/// The error line of a failed run: exactly one line, starting `error:`, holding every needle.
fn one_line(out: &Output, needles: &[&str], what: &str) -> String {
    let err = fails(out, needles[0], what);
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "{what}: one error line: {err}");
    for n in needles {
        assert!(
            errors[0].contains(n),
            "{what}: {n:?} not in {:?}",
            errors[0]
        );
    }
    assert!(!err.contains("memory allocation"), "{what}: {err}");
    errors[0].to_string()
}

/// Nothing was written under `dir` (it does not exist, or is empty).
fn nothing_in(dir: &Path, what: &str) {
    let n = std::fs::read_dir(dir).map_or(0, |d| d.count());
    assert_eq!(n, 0, "{what}: {} holds files", dir.display());
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Defect 5: a square size whose cube wraps is refused as an overflow (it was timed as an empty
/// product at 1.87e25 GFLOP/s and recorded); one the host cannot hold is refused with its bytes.
#[test]
fn bench_matmul_sizes_overflow_or_too_big_are_refused() {
    let d = tmpdir("sizes-matmul");
    let (rec, csv) = (d.join("records"), d.join("m.csv"));
    let base = [
        "bench",
        "matmul",
        "--backends",
        "cpu32",
        "--records",
        s(&rec),
        "--out",
        s(&csv),
    ];
    let mut a = base.to_vec();
    a.extend(["--sizes", "4294967296"]);
    one_line(
        &limited(&a),
        &["--sizes 4294967296", "overflows 64 bits", "lower --sizes"],
        "matmul 2^32",
    );
    let mut a = base.to_vec();
    a.extend(["--sizes", "100000"]);
    one_line(
        &limited(&a),
        &[
            "--sizes 100000",
            "440.0 GB",
            "COLLAPSE_MEMORY_LIMIT allows 8.0 GB",
        ],
        "matmul 1e5",
    );
    let mut a = base.to_vec();
    a.extend(["--sizes", "8", "--shape", "3000000000x3000000000x2"]);
    one_line(
        &limited(&a),
        &["--shape 3000000000x3000000000x2"],
        "matmul shape",
    );
    assert!(!csv.exists(), "no CSV");
    nothing_in(&rec, "matmul records");
}

/// Defect 7: `verify:gen0:1e-9` draws 10¹¹ candidates per generation (it aborted allocating);
/// `1e-300` overflowed the count (a capacity-overflow panic). Both are refused before the run
/// directory exists, naming --policy; the banner prints the policy in its short form (defect
/// 14, it printed 300 digits).
#[test]
fn verify_oversampling_is_bounded() {
    let d = tmpdir("sizes-verify");
    let out = d.join("run");
    let e = one_line(
        &limited(&["run", "--policy", "verify:gen0:1e-9", "--out", s(&out)]),
        &[
            "--policy verify:gen0:1e-9",
            "TB",
            "raise the F of --policy verify",
        ],
        "verify 1e-9",
    );
    assert!(e.contains("would need"), "{e}");
    assert!(!out.exists(), "no run directory");
    let r = limited(&["run", "--policy", "verify:gen0:1e-300", "--out", s(&out)]);
    one_line(
        &r,
        &["--policy verify:gen0:1e-300", "raise F"],
        "verify 1e-300",
    );
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("policy verify:gen0:1e-300,"), "banner: {err}");
    assert!(!err.contains("0.000000000"), "no 300-digit decimal: {err}");
    assert!(!out.exists(), "no run directory");
}

/// Defect 8 (rng): 10¹⁰ draws (160 GB with the reference) are refused with the bytes.
#[test]
fn rng_count_is_checked() {
    one_line(
        &limited(&["rng", "--count", "10000000000", "--backend", "cpu32"]),
        &["--count 10000000000", "160.0 GB", "lower --count"],
        "rng count",
    );
}

/// Defect 14: a counter range past 2⁶⁴ − 1 is refused (it wrapped to draw 0 silently); the
/// last draw itself is fine.
#[test]
fn rng_counter_range_does_not_wrap() {
    one_line(
        &limited(&["rng", "--start", "18446744073709551615", "--count", "8"]),
        &["--start 18446744073709551615", "--count 8", "2^64"],
        "rng start",
    );
    let out = limited(&[
        "rng",
        "--start",
        "18446744073709551615",
        "--count",
        "1",
        "--backend",
        "cpu64",
    ]);
    let text = common::cli::ok(&out);
    assert!(
        text.contains("draws 18446744073709551615..18446744073709551616"),
        "{text}"
    );
}

/// Defect 8 (run): samples, the truth's dimension and the replicates are checked against the
/// whole run's memory (replicates × pools × models) before the run directory is made; the
/// machine's own figure is used without the override.
#[test]
fn run_sizes_are_checked_up_front() {
    let d = tmpdir("sizes-run");
    let out = d.join("run");
    let o = s(&out);
    one_line(
        &limited(&["run", "--samples", "10000000000", "--out", o]),
        &["10000000000 samples", "TB", "lower --replicates, --samples"],
        "run samples",
    );
    one_line(
        &collapse_env(["run", "--truth", "normal:100000000", "--out", o], &[]),
        &["D = 100000000", "TB (the machine has", "--truth normal:D"],
        "run truth",
    );
    one_line(
        &limited(&["run", "--replicates", "100000000", "--out", o]),
        &["100000000 replicates", "GB", "lower --replicates"],
        "run replicates",
    );
    // accumulate keeps every generation's samples: 10⁶ samples over 1000 generations.
    one_line(
        &limited(&[
            "run",
            "--policy",
            "accumulate",
            "--samples",
            "1000000",
            "--generations",
            "1000",
            "--out",
            o,
        ]),
        &["--policy accumulate", "lower --generations"],
        "run accumulate",
    );
    assert!(!out.exists(), "no run directory");
}

/// Defect 8 (bench gmm): a shape the host cannot hold, and one whose product wraps, are
/// refused before any data is drawn; defect 11: K > N says so (it got the syntax message).
#[test]
fn bench_gmm_shapes_are_checked() {
    let d = tmpdir("sizes-gmm");
    let rec = d.join("records");
    let run = |shape: &str| {
        limited(&[
            "bench",
            "gmm",
            "--shape",
            shape,
            "--records",
            s(&rec),
            "--backends",
            "cpu32",
        ])
    };
    one_line(
        &run("100000000000x64x64:full"),
        &[
            "--shape 100000000000x64x64:full",
            "TB",
            "lower N, D or K of --shape",
        ],
        "gmm big",
    );
    one_line(
        &run("4294967296x4294967296x1:diag"),
        &["--shape 4294967296x4294967296x1:diag", "overflows 64 bits"],
        "gmm wrap",
    );
    let e = one_line(&run("10x2x20:full"), &["K = 20", "N = 10"], "gmm K > N");
    assert!(!e.contains("use NxDxK"), "not the syntax message: {e}");
    nothing_in(&rec, "gmm records");
}

/// Defect 8 (bench lm, bench vae): a network or batch the machine cannot hold is refused with
/// its bytes and the flags, before any weights are initialised.
#[test]
fn bench_lm_and_vae_sizes_are_checked() {
    let d = tmpdir("sizes-lm");
    let rec = d.join("records");
    one_line(
        &limited(&[
            "bench",
            "lm",
            "--width",
            "1000000",
            "--layers",
            "100",
            "--records",
            s(&rec),
        ]),
        &["width 1000000", "PB", "lower --width, --layers"],
        "bench lm",
    );
    one_line(
        &limited(&[
            "bench",
            "vae",
            "--batches",
            "100000000000",
            "--records",
            s(&rec),
        ]),
        &["batch 100000000000", "lower --batches"],
        "bench vae",
    );
    nothing_in(&rec, "lm/vae records");
}

/// A CSV of `n` rows × `d` columns of small distinct values.
fn write_csv(path: &Path, n: usize, d: usize) {
    let mut text = String::new();
    for i in 0..n {
        let row: Vec<String> = (0..d)
            .map(|j| format!("{}", ((i * 31 + j * 17) % 101) as f64 / 101.0))
            .collect();
        text += &row.join(",");
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

/// Defect 10: a full-covariance fit with D = 5000 from N = 10 points (degenerate, minutes per
/// iteration, silently) is refused at once with the cost and the diag hint; nothing is written.
#[test]
fn fit_gmm_degenerate_full_covariance_is_refused_with_a_hint() {
    let d = tmpdir("sizes-fit");
    let (data, out) = (d.join("wide.csv"), d.join("fit.json"));
    write_csv(&data, 10, 5000);
    let t = std::time::Instant::now();
    one_line(
        &limited(&[
            "fit",
            "gmm",
            "--data",
            s(&data),
            "--k",
            "1",
            "--covariance",
            "full",
            "--out",
            s(&out),
        ]),
        &[
            "D = 5000",
            "N = 10",
            "degenerate",
            "flop per EM iteration",
            "--covariance diag",
        ],
        "fit wide",
    );
    assert!(t.elapsed().as_secs() < 60, "refused before fitting");
    assert!(!out.exists(), "no fit written");
}

/// Defect 11: `--tol inf` says the tolerance must be finite (it said `must be ≥ 0, got inf`).
#[test]
fn fit_gmm_infinite_tolerance_says_finite() {
    let d = tmpdir("sizes-tol");
    let (data, out) = (d.join("small.csv"), d.join("fit.json"));
    write_csv(&data, 20, 2);
    one_line(
        &limited(&[
            "fit",
            "gmm",
            "--data",
            s(&data),
            "--k",
            "2",
            "--tol",
            "inf",
            "--out",
            s(&out),
        ]),
        &["--tol", "finite", "got inf"],
        "tol inf",
    );
    assert!(!out.exists(), "no fit written");
}

/// Defect 5 on a GPU backend: an operand over the adapter's binding limit is refused before
/// the reference is computed (it took minutes, then failed without naming a flag).
#[test]
fn bench_matmul_gpu_binding_limit_names_the_flag() {
    if common::gpu().is_none() {
        return;
    }
    let t = std::time::Instant::now();
    one_line(
        &limited(&[
            "bench",
            "matmul",
            "--backends",
            "wgsl",
            "--sizes",
            "10000",
            "--no-records",
        ]),
        &[
            "10000x10000x10000's A",
            "storage binding limit",
            "lower --sizes or --shape",
        ],
        "matmul gpu",
    );
    assert!(t.elapsed().as_secs() < 60, "refused before the reference");
}

/// `train lm` and `train vae` check their shape flags before anything is allocated (issue 18:
/// the size flags of every command), and write nothing.
#[test]
fn train_sizes_are_checked() {
    let d = tmpdir("sizes-train");
    let out = d.join("lm");
    one_line(
        &limited(&[
            "train",
            "lm",
            "--width",
            "1000000",
            "--layers",
            "100",
            "--out",
            s(&out),
        ]),
        &["train lm", "width 1000000", "lower --width"],
        "train lm",
    );
    assert!(
        !out.join("model.json").exists() && !out.join("log.csv").exists(),
        "train lm wrote a model"
    );
    let images = d.join("tiny-images-idx3-ubyte");
    let bars = common::bars(32, 8, 1);
    std::fs::write(
        &images,
        collapse_kernels::io::idx::encode_idx_images(&bars, false),
    )
    .unwrap();
    let out = d.join("vae");
    one_line(
        &limited(&[
            "train",
            "vae",
            "--data",
            s(&images),
            "--hidden",
            "100000000000",
            "--out",
            s(&out),
        ]),
        &["train vae", "lower --hidden"],
        "train vae",
    );
    assert!(!out.join("weights.npy").exists(), "train vae wrote a model");
}
