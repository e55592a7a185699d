//! `collapse check`: the committed goldens pass on every backend here, and the check can fail —
//! a perturbed golden or a perturbed kernel output is caught.

mod common;

use std::process::Command;

use collapse_kernels::measure::goldens::{
    Measure, load, measure, save, summarise, summary_matches,
};

fn golden_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results/golden/fingerprints.json")
}

fn run_check(golden: &std::path::Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_collapse"))
        .args(["check", "--golden", golden.to_str().unwrap()])
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn committed_goldens_pass_on_every_backend() {
    let gpu = common::gpu().is_some(); // under CI=true this fails without an adapter
    let (ok, text) = run_check(&golden_path());
    assert!(ok, "{text}");
    if gpu {
        assert!(
            text.contains(" wgsl ") && text.contains(" cube "),
            "GPU backends not checked:\n{text}"
        );
    }
}

#[test]
fn a_perturbed_golden_is_caught() {
    let mut g = load(&golden_path()).unwrap();
    let dir = std::env::temp_dir().join(format!("collapse-check-{}", std::process::id()));
    // 1. The reference summary moved (as if Philox or a conversion had changed).
    g.kernels[1].reference.mean += 1e-6;
    save(&dir.join("a.json"), &g).unwrap();
    let (ok, text) = run_check(&dir.join("a.json"));
    assert!(
        !ok && text.contains("DRIFT") && text.contains(&g.kernels[1].kernel),
        "{text}"
    );
    // 2. A promise tighter than the kernels deliver: their outputs now count as drift.
    let mut g = load(&golden_path()).unwrap();
    let i = g
        .kernels
        .iter()
        .position(|k| k.kernel == "gmm_sample_values")
        .unwrap();
    g.kernels[i].tolerance = 1e-12;
    save(&dir.join("b.json"), &g).unwrap();
    let (ok, text) = run_check(&dir.join("b.json"));
    assert!(!ok && text.contains("gmm_sample_values"), "{text}");
    // 3. A missing golden file is a clear error.
    let (ok, text) = run_check(&dir.join("none.json"));
    assert!(!ok && text.contains("--bless"), "{text}");
}

#[test]
fn a_perturbed_kernel_output_is_caught() {
    let reference: Vec<f64> = (0..1000).map(|i| (i as f64 * 0.37).sin()).collect();
    let mut got = reference.clone();
    assert_eq!(measure(Measure::RelErr, &reference, &got), 0.0);
    got[500] += 0.05; // one wrong element
    assert!(measure(Measure::RelErr, &reference, &got) > 1e-4);
    assert_eq!(measure(Measure::Exact, &reference, &got), 1.0);
    assert!(measure(Measure::MismatchFraction, &reference, &got) > 0.0);
    got[500] = f64::NAN; // a NaN never passes
    assert!(measure(Measure::RelErr, &reference, &got).is_infinite());
    assert!(measure(Measure::RelErr, &reference, &got[1..]).is_infinite()); // wrong length
    let s = summarise(&reference, true);
    let mut t = s.clone();
    t.max += 1e-6;
    assert!(summary_matches(&s, &s) && !summary_matches(&s, &t));
}
