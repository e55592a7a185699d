//! `collapse check`: the committed goldens pass on every backend here, and the check can fail —
//! a perturbed golden or a perturbed kernel output is caught.

mod common;

use collapse_kernels::measure::goldens::{
    Measure, load, measure, save, summarise, summary_matches,
};

fn golden_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results/golden/fingerprints.json")
}

fn run_check(golden: &std::path::Path) -> (bool, String) {
    let out = common::cli::collapse(["check", "--golden", golden.to_str().unwrap()]);
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
    // Every golden kernel is checked, on the CPU backends at least, and none drifted.
    assert!(
        text.contains(" cpu64 ") && text.contains(" cpu32 "),
        "CPU backends not checked:\n{text}"
    );
    for k in &load(&golden_path()).unwrap().kernels {
        assert!(
            text.contains(&k.kernel),
            "{} not checked:\n{text}",
            k.kernel
        );
    }
    assert!(!text.contains("DRIFT"), "{text}");
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
    let dir = common::tmpdir("perturbed");
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
    assert_eq!(measure(Measure::Exact, &reference, &got), 0.0);
    assert_eq!(measure(Measure::MismatchFraction, &reference, &got), 0.0);
    got[500] += 0.05; // one wrong element
    // ‖Δ‖ / ‖ref‖ with Δ = 0.05 in one place (to the rounding of ref[500] + 0.05).
    let norm = reference.iter().map(|v| v * v).sum::<f64>().sqrt();
    let e = measure(Measure::RelErr, &reference, &got);
    assert!(e > 1e-4);
    assert!((e - 0.05 / norm).abs() < 1e-9 * e, "{e} vs {}", 0.05 / norm);
    assert_eq!(measure(Measure::Exact, &reference, &got), 1.0);
    assert!(measure(Measure::MismatchFraction, &reference, &got) > 0.0);
    assert_eq!(
        measure(Measure::MismatchFraction, &reference, &got),
        1.0 / 1000.0
    );
    got[500] = f64::NAN; // a NaN never passes
    assert!(measure(Measure::RelErr, &reference, &got).is_infinite());
    assert!(measure(Measure::RelErr, &reference, &got[1..]).is_infinite()); // wrong length
    let s = summarise(&reference, true);
    assert_eq!(s.n, 1000);
    assert!((s.mean - common::mean(&reference)).abs() < 1e-15);
    let max = reference.iter().cloned().fold(f64::MIN, f64::max);
    let min = reference.iter().cloned().fold(f64::MAX, f64::min);
    assert_eq!((s.min, s.max), (min, max));
    let mut t = s.clone();
    t.max += 1e-6;
    assert!(summary_matches(&s, &s) && !summary_matches(&s, &t));
    // Exact summaries carry a hash, and a changed hash is a mismatch whatever the moments.
    let mut h = s.clone();
    h.hash = h.hash.map(|x| format!("{x}0"));
    assert!(s.hash.is_some() && !summary_matches(&s, &h));
}
