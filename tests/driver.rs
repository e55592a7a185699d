//! The generational driver: exact resume after a crash, the closed-form behaviour of the 1-D
//! Gaussian chain, replace vs accumulate, and bad configurations.

mod common;

use collapse_kernels::backend::BackendKind;
use collapse_kernels::experiment::{ModelKind, Policy, RunConfig, RunOptions, Truth, run};
use collapse_kernels::ops::gmm::CovarianceType;
use collapse_kernels::trainers::Engine;

use common::cli::{collapse, collapse_env, fails, ok};
use common::table::Table;
use common::{mean, tmpdir};

fn config(
    model: ModelKind,
    truth: &str,
    generations: usize,
    samples: usize,
    replicates: usize,
    policy: Policy,
) -> RunConfig {
    RunConfig {
        model,
        truth: Truth::Builtin(truth.into()),
        generations,
        samples,
        replicates,
        policy,
        seed: 7,
        k: 2,
        covariance_type: CovarianceType::Full,
        tol: 1e-3,
        max_iter: 100,
        reg_covar: 1e-6,
        init: Default::default(),
        backend: "cpu64".into(),
        real_rows: None,
        replicate_offset: 0,
        task: None,
        vae: Default::default(),
        lm: Default::default(),
    }
}

/// A run killed between writing a generation's rows and its checkpoint (the process aborts, as
/// under SIGKILL) and then resumed ends with a metrics.csv byte-identical to an uninterrupted run.
#[test]
fn resume_after_a_crash_is_byte_identical() {
    for model in ["gaussian", "gmm"] {
        let (a, b) = (
            tmpdir(&format!("full-{model}")),
            tmpdir(&format!("crash-{model}")),
        );
        let common = [
            "run",
            "--model",
            model,
            "--generations",
            "6",
            "--samples",
            "200",
            "--replicates",
            "3",
            "--policy",
            "mix:0.2",
            "--backend",
            "cpu32",
            "--seed",
            "3",
        ];
        // The replicates run one at a time here, three at once in the crashing run and two at
        // once after the resume: the bytes must not depend on it.
        let table = ok(&collapse(
            [
                &common[..],
                &["--out", a.to_str().unwrap(), "--replicate-jobs", "1"],
            ]
            .concat(),
        ));
        // The run ends with each metric at the first and the last generation.
        assert!(
            table.contains("generation 0") && table.contains("generation 6"),
            "{table}"
        );
        assert!(table.contains("pool_real_fraction"), "{table}");
        let out = collapse_env(
            [
                &common[..],
                &["--out", b.to_str().unwrap(), "--replicate-jobs", "3"],
            ]
            .concat(),
            &[("COLLAPSE_TEST_ABORT_BEFORE_CHECKPOINT", "3")],
        );
        assert!(!out.status.success(), "the test hook did not abort the run");
        // The crash left the rows of generations 0..=3, exactly as the uninterrupted run wrote
        // them.
        let partial = std::fs::read(b.join("metrics.csv")).unwrap();
        let full = std::fs::read(a.join("metrics.csv")).unwrap();
        assert!(partial.len() < full.len());
        assert!(full.starts_with(&partial), "{model}: partial rows differ");
        let written = Table::metrics(&b);
        assert_eq!(written.len(), 4 * 3, "{model}: rows before the crash");
        assert_eq!(written.last().usize("generation"), 3);
        ok(&collapse([
            "run",
            "--resume",
            b.to_str().unwrap(),
            "--replicate-jobs",
            "2",
        ]));
        assert_eq!(
            std::fs::read(a.join("metrics.csv")).unwrap(),
            std::fs::read(b.join("metrics.csv")).unwrap(),
            "{model}"
        );
        check_summary(&b, 6, 3);
    }
}

/// The run's `summary.json` holds generations 0..=`last`, each with `replicates` replicates and,
/// for every metrics.csv column after `generation, replicate` but the provenance, the mean over
/// replicates of that column.
fn check_summary(dir: &std::path::Path, last: usize, replicates: usize) {
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    let metrics = Table::metrics(dir);
    let gens = summary["generations"].as_array().expect("generations");
    assert_eq!(gens.len(), last + 1, "{summary}");
    for (g, entry) in gens.iter().enumerate() {
        assert_eq!(entry["generation"].as_u64(), Some(g as u64));
        assert_eq!(entry["replicates"].as_u64(), Some(replicates as u64));
        let names = metrics.header();
        let names = names
            .iter()
            .filter(|n| !matches!(**n, "generation" | "replicate" | "pool_composition"));
        let mut checked = 0;
        for name in names {
            let want = mean(&metrics.at(name, g));
            let got = entry["metrics"][*name]["mean"]
                .as_f64()
                .unwrap_or_else(|| panic!("summary: no mean of {name} at {g}"));
            assert!(
                (got - want).abs() <= 1e-12 * want.abs().max(1.0),
                "summary: {name} at generation {g}: {got} vs metrics.csv {want}"
            );
            checked += 1;
        }
        assert_eq!(entry["metrics"].as_object().unwrap().len(), checked);
    }
}

/// A run directory written before `params.jsonl` existed (every generation's fitted parameters
/// inside `state.json`) resumes to the same bytes as an uninterrupted run and is migrated.
#[test]
fn resume_migrates_a_state_that_holds_its_history() {
    let (a, b) = (tmpdir("migrate-full"), tmpdir("migrate"));
    let common = [
        "run",
        "--model",
        "gmm",
        "--generations",
        "5",
        "--samples",
        "200",
        "--replicates",
        "2",
        "--policy",
        "accumulate",
        "--backend",
        "cpu64",
        "--seed",
        "9",
        // A checkpoint after every generation, so the crash leaves three in state.json.
        "--checkpoint-secs",
        "0",
    ];
    ok(&collapse(
        [&common[..], &["--out", a.to_str().unwrap()]].concat(),
    ));
    let out = collapse_env(
        [&common[..], &["--out", b.to_str().unwrap()]].concat(),
        &[("COLLAPSE_TEST_ABORT_BEFORE_CHECKPOINT", "3")],
    );
    assert!(!out.status.success(), "the test hook did not abort the run");
    // Rewrite b in the old layout: history [R][G] in state.json, no params.jsonl.
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("state.json")).unwrap()).unwrap();
    let len = state["params_bytes"].as_u64().unwrap() as usize;
    let text = std::fs::read_to_string(b.join("params.jsonl")).unwrap();
    let generations: Vec<Vec<serde_json::Value>> = text[..len]
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(generations.len(), 3);
    let history: Vec<Vec<serde_json::Value>> = (0..2)
        .map(|r| generations.iter().map(|g| g[r].clone()).collect())
        .collect();
    state["history"] = serde_json::json!(history);
    state.as_object_mut().unwrap().remove("params_bytes");
    std::fs::write(b.join("state.json"), serde_json::to_vec(&state).unwrap()).unwrap();
    std::fs::remove_file(b.join("params.jsonl")).unwrap();
    ok(&collapse(["run", "--resume", b.to_str().unwrap()]));
    assert_eq!(
        std::fs::read(a.join("metrics.csv")).unwrap(),
        std::fs::read(b.join("metrics.csv")).unwrap()
    );
    assert_eq!(
        std::fs::read(a.join("params.jsonl")).unwrap(),
        std::fs::read(b.join("params.jsonl")).unwrap()
    );
    let state = std::fs::read_to_string(b.join("state.json")).unwrap();
    assert!(!state.contains("\"history\""), "{state}");
}

/// A real SIGKILL at an arbitrary moment after the first checkpoint, then resume: same bytes as
/// the uninterrupted run. The kill waits for the checkpoint however long it takes (no timeout,
/// so a loaded machine cannot make the test fail); if the run ends first, the resume has
/// nothing left to do and the bytes must match all the same.
#[test]
fn resume_after_sigkill_is_byte_identical() {
    let (a, b) = (tmpdir("sigkill-full"), tmpdir("sigkill"));
    let common = [
        "run",
        "--model",
        "gmm",
        "--generations",
        "40",
        "--samples",
        "2000",
        "--replicates",
        "2",
        "--backend",
        "cpu32",
    ];
    ok(&collapse(
        [&common[..], &["--out", a.to_str().unwrap()]].concat(),
    ));
    common::cli::kill_after_checkpoint(
        [&common[..], &["--out", b.to_str().unwrap()]].concat(),
        &b.join("state.json"),
        std::time::Duration::from_millis(30),
    );
    ok(&collapse(["run", "--resume", b.to_str().unwrap()]));
    assert_eq!(
        std::fs::read(a.join("metrics.csv")).unwrap(),
        std::fs::read(b.join("metrics.csv")).unwrap()
    );
}

/// The 1-D Gaussian chain with MLE fits and M samples per generation, σ₀ = 1. Generation g has
/// been fitted n = g + 1 times from samples, so: E[σ²] = ((M−1)/M)ⁿ, Var(μ) = 1 − ((M−1)/M)ⁿ,
/// E[ln σ²] = n·(ψ((M−1)/2) + ln(2/M)). Each is checked on R = 4000 replicates within 5 standard
/// errors of the ensemble statistic (estimated from the ensemble itself).
#[test]
fn gaussian_chain_matches_closed_forms() {
    let (m, r, g_max) = (10usize, 4000usize, 12usize);
    let dir = tmpdir("theory");
    let cpu = Engine::create(BackendKind::Cpu64, None).unwrap();
    run(
        &cpu,
        &cpu,
        Some(config(
            ModelKind::Gaussian,
            "normal",
            g_max,
            m,
            r,
            Policy::Replace,
        )),
        &dir,
        &RunOptions::default(),
        &mut |_, _| {},
    )
    .unwrap();
    let metrics = Table::metrics(&dir);
    let q = (m as f64 - 1.0) / m as f64;
    for g in [0, 3, 7, 12] {
        let n = (g + 1) as f64;
        let (mu, sigma) = (metrics.at("mu", g), metrics.at("sigma", g));
        assert_eq!(mu.len(), r, "replicates at generation {g}");
        let rf = r as f64;
        let stat = |v: Vec<f64>| {
            let mean = v.iter().sum::<f64>() / rf;
            let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (rf - 1.0);
            (mean, var, v)
        };
        let (s2_mean, s2_var, _) = stat(sigma.iter().map(|s| s * s).collect());
        let want = q.powf(n);
        assert!(
            (s2_mean - want).abs() <= 5.0 * (s2_var / rf).sqrt(),
            "g={g}: E[σ²] {s2_mean} vs {want}"
        );
        let (mu_mean, mu_var, mus) = stat(mu.clone());
        let m4 = mus.iter().map(|x| (x - mu_mean).powi(4)).sum::<f64>() / rf;
        let want = 1.0 - q.powf(n);
        assert!(
            (mu_var - want).abs() <= 5.0 * ((m4 - mu_var * mu_var) / rf).sqrt(),
            "g={g}: Var(μ) {mu_var} vs {want}"
        );
        let (l_mean, l_var, _) = stat(sigma.iter().map(|s| (s * s).ln()).collect());
        let want = n
            * (collapse_kernels::drift::chain::digamma((m as f64 - 1.0) / 2.0)
                + (2.0 / m as f64).ln());
        assert!(
            (l_mean - want).abs() <= 5.0 * (l_var / rf).sqrt(),
            "g={g}: E[ln σ²] {l_mean} vs {want}"
        );
    }
}

/// Replace vs accumulate (Gerstgrasser et al. 2024). Under replace, E[σ²] = ((M−1)/M)^(g+1)
/// decays geometrically; under accumulate each fit uses all data so far, the real data stays
/// in the pool, and the error stays bounded. Check at M = 20, g = 40, R = 300: replace's mean σ²
/// is below 0.3 (theory 0.122), accumulate's is above 0.7, and accumulate's mean W2 to the truth
/// is smaller than replace's.
#[test]
fn accumulate_stays_bounded_where_replace_collapses() {
    let cpu = Engine::create(BackendKind::Cpu32, None).unwrap();
    let final_stats = |policy| {
        let dir = tmpdir(&format!("{policy:?}"));
        run(
            &cpu,
            &cpu,
            Some(config(ModelKind::Gaussian, "normal", 40, 20, 300, policy)),
            &dir,
            &RunOptions::default(),
            &mut |_, _| {},
        )
        .unwrap();
        let metrics = Table::metrics(&dir);
        let sigma = metrics.at("sigma", 40);
        assert_eq!(sigma.len(), 300, "replicates at generation 40");
        (
            mean(&sigma.iter().map(|s| s * s).collect::<Vec<_>>()),
            mean(&metrics.at("w2_to_truth", 40)),
        )
    };
    let (s_rep, w_rep) = final_stats(Policy::Replace);
    let (s_acc, w_acc) = final_stats(Policy::Accumulate);
    assert!(s_rep < 0.3, "replace σ² {s_rep}");
    assert!(s_acc > 0.7, "accumulate σ² {s_acc}");
    assert!(w_acc < w_rep, "W2: accumulate {w_acc} vs replace {w_rep}");
}

/// Provenance and the verify policy: every pool reports where its points came from, and a
/// verified pool keeps exactly M of ⌈M/F⌉ candidates, the ones the verifier likes best (so
/// their mean log-likelihood under the generation-0 model beats unfiltered samples').
#[test]
fn pool_composition_and_verification() {
    let cpu = Engine::create(BackendKind::Cpu64, None).unwrap();
    for (policy, want) in [
        (Policy::Replace, "g2:50"),
        // Consecutive generations are one constant-size entry: first..last and their total.
        (Policy::Accumulate, "real:50|g0..g2:150"),
        (Policy::Mix(0.2), "real:10|g2:40"),
        (Policy::Fresh(0.2), "fresh:10|g2:40"),
        ("verify:gen0:0.5".parse().unwrap(), "g2:50"),
        ("verify:heldout:0.25".parse().unwrap(), "g2:50"),
    ] {
        let dir = tmpdir(&format!("prov-{policy}").replace(':', "-"));
        run(
            &cpu,
            &cpu,
            Some(config(ModelKind::Gaussian, "normal", 3, 50, 2, policy)),
            &dir,
            &RunOptions::default(),
            &mut |_, _| {},
        )
        .unwrap();
        let metrics = Table::metrics(&dir);
        assert_eq!(
            metrics.len(),
            4 * 2,
            "{policy}: generations 0..=3 of 2 replicates"
        );
        // Every replicate of the last generation draws its pool the same way; generation 0
        // fits the real data alone.
        for r in metrics.rows() {
            let (g, pool) = (r.usize("generation"), r.str("pool_composition"));
            match g {
                0 => assert_eq!(pool, "real:50", "{policy}: generation 0"),
                3 => assert_eq!(pool, want, "{policy}"),
                _ => {}
            }
            // The pool's size and real fraction (`real` and `fresh` points) are the
            // composition's.
            let parts: Vec<(&str, f64)> = pool
                .split('|')
                .map(|p| {
                    let (src, n) = p.split_once(':').unwrap();
                    (src, n.parse().unwrap())
                })
                .collect();
            let size: f64 = parts.iter().map(|p| p.1).sum();
            let real: f64 = parts
                .iter()
                .filter(|p| p.0 == "real" || p.0 == "fresh")
                .map(|p| p.1)
                .sum();
            assert_eq!(r.f64("pool_size"), size, "{policy}: {pool}");
            assert!(
                (r.f64("pool_real_fraction") - real / size).abs() < 1e-12,
                "{policy}: {pool}"
            );
        }
    }
    // Verification keeps the likeliest candidates: σ shrinks faster than under replace.
    let sigma_at = |policy| {
        let dir = tmpdir(&format!("verify-{policy}").replace(':', "-"));
        run(
            &cpu,
            &cpu,
            Some(config(ModelKind::Gaussian, "normal", 5, 200, 20, policy)),
            &dir,
            &RunOptions::default(),
            &mut |_, _| {},
        )
        .unwrap();
        let sigma = Table::metrics(&dir).at("sigma", 5);
        assert_eq!(sigma.len(), 20, "replicates at generation 5");
        mean(&sigma)
    };
    let (plain, verified) = (
        sigma_at(Policy::Replace),
        sigma_at("verify:gen0:0.5".parse().unwrap()),
    );
    assert!(
        verified < 0.8 * plain,
        "verify σ {verified} vs replace σ {plain}"
    );
}

#[test]
fn bad_configurations_are_errors() {
    let never = tmpdir("never");
    let never = never.join("run");
    let never = never.to_str().unwrap();
    for (args, needle) in [
        (
            vec!["run", "--policy", "mix:2", "--out", never],
            "not in [0, 1]",
        ),
        (
            vec!["run", "--policy", "forget", "--out", never],
            "unknown policy",
        ),
        (
            vec!["run", "--truth", "cauchy", "--out", never],
            "unknown ground truth",
        ),
        (
            vec![
                "run",
                "--model",
                "gmm",
                "--k",
                "50",
                "--samples",
                "10",
                "--out",
                never,
            ],
            "exceeds --samples",
        ),
        (
            vec!["run", "--resume", "/nonexistent/run"],
            "nothing to resume",
        ),
    ] {
        fails(&collapse(&args), needle, &format!("{args:?}"));
    }
    // A refused configuration writes nothing.
    assert!(!std::path::Path::new(never).join("state.json").exists());
    let dir = tmpdir("exists");
    ok(&collapse([
        "run",
        "--generations",
        "1",
        "--out",
        dir.to_str().unwrap(),
    ]));
    let before = std::fs::read(dir.join("metrics.csv")).unwrap();
    fails(
        &collapse(["run", "--generations", "1", "--out", dir.to_str().unwrap()]),
        "--resume",
        "a second run into the same directory",
    );
    // The refused second run left the first one's rows alone.
    assert_eq!(std::fs::read(dir.join("metrics.csv")).unwrap(), before);
}

/// `collapse plot` overlays runs in one SVG per metric; runs with the same folder name, policy
/// and backend (two experiments' `replace`) are labelled with their parent folder.
#[test]
fn plot_overlays_and_labels_runs() {
    let root = tmpdir("plot");
    let cpu = Engine::create(BackendKind::Cpu64, None).unwrap();
    for exp in ["a", "b"] {
        run(
            &cpu,
            &cpu,
            Some(config(
                ModelKind::Gaussian,
                "normal",
                3,
                20,
                2,
                Policy::Replace,
            )),
            &root.join(exp).join("replace"),
            &RunOptions::default(),
            &mut |_, _| {},
        )
        .unwrap();
    }
    let out = root.join("plots");
    ok(&collapse([
        "plot",
        root.join("a/replace").to_str().unwrap(),
        root.join("b/replace").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    let svg = std::fs::read_to_string(out.join("sigma.svg")).unwrap();
    assert!(svg.contains("a/replace (replace, cpu64)"), "labels");
    assert!(svg.contains("b/replace (replace, cpu64)"), "labels");
    // One SVG per metric but the pool size, each with both runs in its legend and their two
    // lines (each drawn once in the plot and once in the legend).
    let mut written: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    assert_eq!(
        written,
        [
            "mu.svg",
            "pool_real_fraction.svg",
            "sigma.svg",
            "w2_to_truth.svg"
        ]
    );
    for f in &written {
        let path = out.join(f);
        common::files::check_legend(
            &path,
            &["a/replace (replace, cpu64)", "b/replace (replace, cpu64)"],
        );
        assert_eq!(common::files::svg_wide_lines(&path), 2 * 2, "{f}");
    }
}
