//! `collapse drift`: the absorbing-state measurement on the 1-D Gaussian chain (M = 10, MLE)
//! against theory, the pair distances, the GPU backends in the study, and the CLI.

mod common;

use collapse_kernels::drift::chain::{self, Trajectory};
use collapse_kernels::experiment::{ModelKind, Policy, RunConfig, Truth, simulate};
use collapse_kernels::ops::Backend;
use collapse_kernels::ops::gmm::CovarianceType;
use collapse_kernels::trainers::Engine;

use common::cli::{collapse, fails, ok};
use common::files::{check_legend, svg_wide_lines};
use common::table::Table;
use common::tmpdir;

fn config(generations: usize, samples: usize, replicates: usize) -> RunConfig {
    RunConfig {
        model: ModelKind::Gaussian,
        truth: Truth::Builtin("normal".into()),
        generations,
        samples,
        replicates,
        policy: Policy::Replace,
        seed: 11,
        k: 1,
        covariance_type: CovarianceType::Diag,
        tol: 1e-3,
        max_iter: 100,
        reg_covar: 1e-6,
        init: Default::default(),
        backend: "test".into(),
        real_rows: None,
        replicate_offset: 0,
        task: None,
        vae: Default::default(),
        lm: Default::default(),
    }
}

fn run(cfg: &RunConfig, names: &[&str]) -> Vec<Trajectory> {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    chain::run_all(cfg, &names, &gpu_options(), 0, &mut |_, _, _| {}).expect("drift runs")
}

fn gpu_options() -> collapse_kernels::gpu::GpuOptions {
    collapse_kernels::gpu::GpuOptions {
        adapter: std::env::var("COLLAPSE_ADAPTER").ok(),
        poison: true,
        binding_limit: None,
        queued: false,
        ..Default::default()
    }
}

/// The 1-D Gaussian chain with M = 10 samples per generation, MLE. Without rounding, ln σₙ²
/// drifts down by `c = ψ((M−1)/2) + ln(2/M) ≈ −0.2206` per generation (generation 0 is the
/// first step: it fits M real points of σ = 1), so a replicate whose mean settles at μ reaches
/// the floor `σ = F·u·|μ|` after about `n* = 2·ln(F·u·|μ|)/c − 1` generations (Wald's identity;
/// the overshoot moves it by under a generation). The measured `floor` generations must agree
/// with that, per precision; lower precision must reach both the floor and σ = 0 sooner; and
/// every median comes with a bootstrap standard error small enough to tell them apart.
#[test]
fn gaussian_chain_absorbs_sooner_in_lower_precision() {
    let m = 10;
    let reps = 120;
    let cfg = config(560, m, reps);
    let runs = run(&cfg, &["cpu64", "cpu32", "cpu32-f16"]);
    let report = chain::analyse(&cfg, &runs).unwrap();
    let c = chain::digamma((m as f64 - 1.0) / 2.0) + (2.0 / m as f64).ln();
    assert!((c + 0.2206).abs() < 1e-3, "c = {c}");
    let get = |name: &str, state: &str| {
        let row = report
            .absorption
            .iter()
            .find(|r| r.backend == name && r.state == state)
            .unwrap()
            .clone();
        let med = row
            .median
            .unwrap_or_else(|| panic!("{name} {state}: median not reached"));
        let se = row
            .median_se
            .unwrap_or_else(|| panic!("{name} {state}: no SE"));
        assert!(se > 0.0 && se < 25.0, "{name} {state}: SE {se}");
        (med, se, row.reached)
    };
    let mut floors = Vec::new();
    let mut zeros = Vec::new();
    for t in &runs {
        let (med, se, reached) = get(&t.name, "floor");
        // The report's prediction, recomputed here from its definition.
        let mut theory: Vec<f64> = t
            .sim
            .history
            .iter()
            .map(|h| {
                let mu = h.last().unwrap().means[0].abs();
                2.0 * (chain::FLOOR_UNITS * t.unit_roundoff * mu).ln() / c - 1.0
            })
            .collect();
        theory.sort_by(f64::total_cmp);
        let want = theory[reps / 2 - 1];
        let row = report
            .absorption
            .iter()
            .find(|r| r.backend == t.name && r.state == "floor")
            .unwrap();
        assert_eq!(row.theory_median, Some(want));
        eprintln!(
            "{}: floor median {med} ± {se:.1} (theory {want:.1}), reached {reached}/{reps}; zero {:?}",
            t.name,
            get(&t.name, "zero")
        );
        assert!(
            (med - want).abs() < (4.0 * se).max(0.04 * want),
            "{}: floor median {med} ± {se:.1} vs theory {want:.1}",
            t.name
        );
        floors.push((med, se));
        zeros.push(get(&t.name, "zero"));
    }
    for w in floors.windows(2) {
        assert!(
            w[0].0 - w[1].0 > 4.0 * (w[0].1 + w[1].1),
            "floors {floors:?}"
        );
    }
    for w in zeros.windows(2) {
        assert!(w[0].0 - w[1].0 > 3.0 * (w[0].1 + w[1].1), "zeros {zeros:?}");
    }
}

/// Two runs that share every random number differ only by arithmetic: cpu64 vs itself is 0,
/// cpu32 vs cpu64 starts at f32 rounding level at generation 0 and stays far below 1 while
/// neither chain has collapsed.
#[test]
fn pair_distances_measure_arithmetic_only() {
    let cfg = config(40, 50, 6);
    let runs = run(&cfg, &["cpu64", "cpu32", "cpu32-kahan"]);
    let report = chain::analyse(&cfg, &runs).unwrap();
    let g0 = report
        .pairs
        .iter()
        .find(|p| p.a == "cpu64" && p.b == "cpu32" && p.generation == 0)
        .unwrap();
    assert!(
        g0.param_rel_max > 0.0 && g0.param_rel_max < 1e-6,
        "generation 0: {g0:?}"
    );
    for p in &report.pairs {
        assert!(
            p.param_rel_max.is_finite() && p.param_rel_max < 1e-3,
            "{p:?}"
        );
    }
    // The same backend twice gives identical trajectories (nothing but arithmetic differs).
    let again = run(&cfg, &["cpu32-kahan", "cpu32-kahan"]);
    let r2 = chain::analyse(&cfg, &again).unwrap();
    assert!(r2.pairs.iter().all(|p| p.param_rel_max == 0.0));
    // And a simulation with one replicate at a time reproduces the driver's fits (replicates at
    // once) exactly.
    let sim = simulate(
        &Engine::Cpu64(collapse_kernels::backend::cpu64::Cpu64),
        &Engine::Cpu64(collapse_kernels::backend::cpu64::Cpu64),
        &cfg,
        1,
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(sim.history, runs[0].sim.history);
}

/// The GPU backends take part in the study like any other (lavapipe here; fails under CI=true
/// without an adapter).
#[test]
fn gpu_backends_join_the_study() {
    if common::gpu().is_none() {
        return;
    }
    let cfg = config(6, 64, 2);
    let runs = run(&cfg, &["cpu64", "wgsl", "cube"]);
    let report = chain::analyse(&cfg, &runs).unwrap();
    for p in report.pairs.iter().filter(|p| p.a == "cpu64") {
        assert!(
            p.param_rel_max > 0.0 && p.param_rel_max < 1e-5,
            "{} vs cpu64 at generation {}: {}",
            p.b,
            p.generation,
            p.param_rel_max
        );
    }
}

/// The GMM chain (full covariances, EM each generation) on the GPU backends: their M-steps sum
/// the two triangles of a scatter separately, and the fit must still be an exactly symmetric
/// covariance that the next generation can sample from.
#[test]
fn gpu_backends_run_the_gmm_chain() {
    if common::gpu().is_none() {
        return;
    }
    let mut cfg = config(4, 400, 2);
    cfg.model = ModelKind::Gmm;
    cfg.truth = Truth::Builtin("shumailov-gmm".into());
    cfg.k = 2;
    cfg.covariance_type = CovarianceType::Full;
    let runs = run(&cfg, &["cpu64", "wgsl", "cube"]);
    let report = chain::analyse(&cfg, &runs).unwrap();
    for t in &runs {
        for p in t.sim.history.iter().flatten() {
            for c in 0..p.k {
                let cv = &p.covariances[c * 4..(c + 1) * 4];
                assert_eq!(cv[1], cv[2], "{}: {cv:?}", t.name);
            }
        }
    }
    let g0 = report
        .pairs
        .iter()
        .filter(|p| p.a == "cpu64" && p.generation == 0);
    for p in g0 {
        assert!(p.param_rel_max < 1e-4, "{p:?}");
    }
    // Both replicates in flight on the device at once fit exactly what one after the other do.
    let cpu = Engine::Cpu64(collapse_kernels::backend::cpu64::Cpu64);
    for b in common::gpu_engines() {
        let sim = |jobs| {
            simulate(&b, &cpu, &cfg, jobs, &mut |_, _| {})
                .unwrap()
                .history
        };
        assert_eq!(sim(1), sim(2), "{}", b.name());
    }
}

/// The GMM chain with tied and spherical covariances: the driver fits them by EM every
/// generation and samples from them, the drift analysis reads their variances; every fit is
/// stored in scikit-learn's layout (`[D][D]` tied, `[K]` spherical) with positive variances,
/// and every backend's generation-0 fit is within 1e-4 of cpu64's.
#[test]
fn gmm_chain_runs_tied_and_spherical_covariances() {
    let mut names = vec!["cpu64", "cpu32"];
    if common::gpu().is_some() {
        names.extend(["wgsl", "cube"]);
    }
    for cov in [CovarianceType::Tied, CovarianceType::Spherical] {
        let mut cfg = config(3, 400, 2);
        cfg.model = ModelKind::Gmm;
        cfg.truth = Truth::Builtin("shumailov-gmm".into());
        cfg.k = 2;
        cfg.covariance_type = cov;
        let runs = run(&cfg, &names);
        let report = chain::analyse(&cfg, &runs).unwrap();
        for t in &runs {
            for p in t.sim.history.iter().flatten() {
                assert_eq!(p.covariance_type, cov, "{}", t.name);
                assert_eq!(p.covariances.len(), cov.stored_values(2, 2).unwrap());
                assert!(
                    p.variances().iter().all(|v| v.is_finite() && *v > 0.0),
                    "{} {cov:?}: {:?}",
                    t.name,
                    p.covariances
                );
            }
        }
        let g0: Vec<_> = report
            .pairs
            .iter()
            .filter(|p| p.a == "cpu64" && p.generation == 0)
            .collect();
        assert!(!g0.is_empty(), "{cov:?}: no generation-0 pairs");
        for p in g0 {
            assert!(p.param_rel_max < 1e-4, "{cov:?}: {p:?}");
        }
    }
}

#[test]
fn cli_writes_the_report_and_rejects_bad_lists() {
    let dir = tmpdir("cli");
    let backends = ["cpu64", "cpu32", "cpu32-f16"];
    let stdout = ok(&collapse([
        "drift",
        "run",
        "--generations",
        "30",
        "--samples",
        "10",
        "--replicates",
        "5",
        "--backends",
        &backends.join(","),
        "--params",
        "--out",
        dir.to_str().unwrap(),
    ]));
    assert!(stdout.contains("absorbing state"), "{stdout}");
    // Every table with its header and one row per (pair or backend, generation, replicate,
    // measure, threshold or state) it promises: 3 backends, so 3 pairs; 31 generations; 5
    // replicates; 3 measures × 3 thresholds; 2 absorbing states.
    let pairs = [
        ("cpu64", "cpu32"),
        ("cpu64", "cpu32-f16"),
        ("cpu32", "cpu32-f16"),
    ];
    for (file, header, rows) in [
        (
            "pairs.csv",
            "a,b,generation,param_rel_median,param_rel_max,scale_rel_median,scale_rel_max,\
             metric_diff_median,metric_diff_max",
            3 * 31,
        ),
        (
            "crossings.csv",
            "a,b,measure,threshold,crossed,replicates,median,p10,p90",
            3 * 3 * 3,
        ),
        (
            "absorption.csv",
            "backend,state,reached,replicates,median,median_se,p10,p90,theory_median",
            3 * 2,
        ),
        (
            "absorption_per_replicate.csv",
            "backend,replicate,zero,floor",
            3 * 5,
        ),
        (
            "spread.csv",
            "backend,generation,sigma_median,sigma_p10,sigma_p90,absorbed_zero,absorbed_floor",
            3 * 31,
        ),
        (
            "params.csv",
            "backend,generation,replicate,weight_0,mean_0_0,var_0_0",
            3 * 31 * 5,
        ),
    ] {
        let t = Table::read(dir.join(file));
        assert_eq!(t.header().join(","), header, "{file}");
        assert_eq!(t.len(), rows, "{file}");
    }
    let t = Table::read(dir.join("pairs.csv"));
    for (i, r) in t.rows().enumerate() {
        let (a, b) = pairs[i / 31];
        assert_eq!(
            (r.str("a"), r.str("b"), r.usize("generation")),
            (a, b, i % 31)
        );
        // The largest distance over replicates is at least their median.
        for m in ["param_rel", "scale_rel", "metric_diff"] {
            let (med, max) = (r.f64(&format!("{m}_median")), r.f64(&format!("{m}_max")));
            assert!(
                med >= 0.0 && max >= med,
                "{a} vs {b} at {i}: {m} {med} {max}"
            );
        }
    }
    let t = Table::read(dir.join("absorption_per_replicate.csv"));
    assert_eq!(t.strs("backend"), backends.map(|b| [b; 5]).concat());
    // summary.json: the backends in order, the thresholds, and the same crossings and
    // absorption rows as the tables.
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    let names: Vec<&str> = summary["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, backends);
    assert_eq!(summary["thresholds"], serde_json::json!([1e-6, 1e-4, 1e-2]));
    assert_eq!(summary["crossings"].as_array().unwrap().len(), 27);
    assert_eq!(summary["absorption"].as_array().unwrap().len(), 6);
    assert_eq!(summary["config"]["generations"].as_u64(), Some(30));
    // The plots: one line per pair with the first backend, per backend, or per backend and
    // state, each named in the legend (every line is drawn once in the plot and once in the
    // legend).
    let vs: Vec<String> = backends[1..]
        .iter()
        .map(|b| format!("{b} vs cpu64"))
        .collect();
    let vs: Vec<&str> = vs.iter().map(String::as_str).collect();
    for f in ["param_rel", "scale_rel"] {
        let p = dir.join(format!("plots/{f}.svg"));
        check_legend(&p, &vs);
        assert_eq!(svg_wide_lines(&p), 2 * vs.len(), "{f}");
    }
    let p = dir.join("plots/sigma.svg");
    check_legend(&p, &backends);
    assert_eq!(svg_wide_lines(&p), 2 * backends.len(), "sigma");
    let states: Vec<String> = backends
        .iter()
        .flat_map(|b| [format!("{b} zero"), format!("{b} floor")])
        .collect();
    check_legend(
        &dir.join("plots/absorbed.svg"),
        &states.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    for bad in ["cpu64", "cpu64,tpu", "cpu32,cpu32"] {
        fails(
            &collapse([
                "drift",
                "run",
                "--backends",
                bad,
                "--out",
                dir.to_str().unwrap(),
            ]),
            "error:",
            bad,
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn kernel_drift_cli_writes_table_and_plots() {
    let dir = tmpdir("kernels");
    let csv = dir.join("k.csv");
    ok(&collapse([
        "drift",
        "kernels",
        "--backends",
        "cpu32,cpu32-kahan",
        "--sizes",
        "1000,20000",
        "--matmul-k",
        "64,512",
        "--scales",
        "0,1000",
        "--out",
        csv.to_str().unwrap(),
    ]));
    let t = Table::read(&csv);
    assert_eq!(
        t.header(),
        ["family", "method", "n", "scale", "error", "cond"]
    );
    // sum: 2 sizes × 2 scales × 3 orders; per backend 4 families × 2 × 2; matmul 2 × 2 per backend.
    assert_eq!(t.len(), 12 + 2 * 16 + 2 * 4);
    for r in t.rows() {
        let e = r.f64("error");
        assert!(
            e.is_finite() && e < 1e-2,
            "{} {}: {e}",
            r.str("family"),
            r.str("method")
        );
        assert!(e >= 0.0, "{} {}: {e}", r.str("family"), r.str("method"));
    }
    for fam in ["sum", "fit_mean", "fit_var", "loglik", "matmul", "sample"] {
        // One line per method and scale, named "METHOD, s = SCALE" (methods in name order).
        let mut methods: Vec<&str> = t
            .rows()
            .filter(|r| r.str("family") == fam)
            .map(|r| r.str("method"))
            .collect();
        methods.sort();
        methods.dedup();
        assert!(!methods.is_empty(), "{fam}: no rows");
        let labels: Vec<String> = methods
            .iter()
            .flat_map(|m| ["0", "1000"].map(|s| format!("{m}, s = {s}")))
            .collect();
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        check_legend(&dir.join(format!("k-{fam}.svg")), &labels);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `collapse drift run` writes each backend's run as a `collapse run` directory (issue 19):
/// `OUT/<backend>/metrics.csv` in `collapse run`'s format (byte-identical to `collapse run
/// --backend cpu32` of the same flags), `summary.json` that `collapse plot` overlays, and the
/// headline (headline.csv and summary.json), recomputed here from those files.
#[test]
fn drift_run_writes_per_backend_runs_and_the_headline() {
    let dir = tmpdir("per-backend");
    let out = dir.join("drift");
    let (g, r) = (12usize, 4usize);
    let flags = [
        "--generations",
        "12",
        "--samples",
        "10",
        "--replicates",
        "4",
        "--policy",
        "mix:0.1",
        "--seed",
        "5",
    ];
    let backends = ["cpu64", "cpu32", "cpu32-f16"];
    let stdout = ok(&collapse(
        [
            &["drift", "run"][..],
            &flags,
            &[
                "--backends",
                &backends.join(","),
                "--out",
                out.to_str().unwrap(),
            ],
        ]
        .concat(),
    ));
    assert!(
        stdout.contains("how much of the collapse is arithmetic"),
        "{stdout}"
    );
    let tables: Vec<Table> = backends
        .iter()
        .map(|b| Table::metrics(&out.join(b)))
        .collect();
    for (b, t) in backends.iter().zip(&tables) {
        assert_eq!(
            t.len(),
            (g + 1) * r,
            "{b}: one row per generation and replicate"
        );
        assert_eq!(t.header(), tables[0].header(), "{b}");
        assert_eq!(
            t.header(),
            [
                "generation",
                "replicate",
                "pool_size",
                "pool_real_fraction",
                "pool_composition",
                "mu",
                "sigma",
                "w2_to_truth"
            ]
        );
        let s: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(b).join("summary.json")).unwrap())
                .unwrap();
        assert_eq!(s["config"]["backend"], *b);
        assert_eq!(s["policy_spec"], "mix:0.1");
        assert_eq!(s["generations"].as_array().unwrap().len(), g + 1);
    }
    // The same metrics as `collapse run` on that backend, to the byte.
    let single = dir.join("single");
    ok(&collapse(
        [
            &["run"][..],
            &flags,
            &["--backend", "cpu32", "--out", single.to_str().unwrap()],
        ]
        .concat(),
    ));
    assert!(
        std::fs::read(single.join("metrics.csv")).unwrap()
            == std::fs::read(out.join("cpu32/metrics.csv")).unwrap(),
        "drift's cpu32 metrics.csv differs from collapse run --backend cpu32's"
    );
    // The headline: per metric and backend after the first, recomputed from the files.
    let h = Table::read(out.join("headline.csv"));
    let metrics = ["mu", "sigma", "w2_to_truth"];
    assert_eq!(h.len(), metrics.len() * (backends.len() - 1));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["headline"].as_array().unwrap().len(), h.len());
    assert_eq!(summary["policy_spec"], "mix:0.1");
    let at = |t: &Table, m: &str, gi: usize| t.at(m, gi);
    for (i, row) in h.rows().enumerate() {
        let (m, b) = (metrics[i / 2], backends[1 + i % 2]);
        assert_eq!((row.str("metric"), row.str("backend")), (m, b));
        assert_eq!(row.str("reference"), "cpu64");
        let (a, t) = (&tables[0], &tables[1 + i % 2]);
        let collapse: f64 = at(a, m, g)
            .iter()
            .zip(at(a, m, 0))
            .map(|(x, y)| (x - y).abs())
            .sum::<f64>()
            / r as f64;
        let per_gen: Vec<Vec<f64>> = (0..=g)
            .map(|gi| {
                at(a, m, gi)
                    .iter()
                    .zip(at(t, m, gi))
                    .map(|(x, y)| (x - y).abs())
                    .collect()
            })
            .collect();
        let mean_max = per_gen
            .iter()
            .map(|d| d.iter().sum::<f64>() / r as f64)
            .fold(f64::NEG_INFINITY, f64::max);
        let max = per_gen.iter().flatten().copied().fold(0.0, f64::max);
        let close = |x: f64, y: f64| (x - y).abs() <= 1e-12 * y.abs().max(1e-300);
        assert!(close(row.f64("collapse"), collapse), "{m} {b} collapse");
        assert!(close(row.f64("diff_mean_max"), mean_max), "{m} {b} mean");
        assert!(close(row.f64("diff_max"), max), "{m} {b} max");
        assert!(
            close(row.f64("ratio"), mean_max / collapse),
            "{m} {b}: ratio {} vs {}",
            row.f64("ratio"),
            mean_max / collapse
        );
        assert!(collapse > 0.0 && max >= mean_max, "{m} {b}");
    }
    // `collapse plot` overlays the backends' runs, one legend entry each.
    let plots = dir.join("plots");
    ok(&collapse([
        "plot",
        out.join("cpu64").to_str().unwrap(),
        out.join("cpu32").to_str().unwrap(),
        "--out",
        plots.to_str().unwrap(),
    ]));
    check_legend(
        &plots.join("sigma.svg"),
        &["backend=cpu64", "backend=cpu32"],
    );
    // The drift directory itself stands for its backends' runs.
    let whole = dir.join("plots-whole");
    ok(&collapse([
        "plot",
        out.to_str().unwrap(),
        "--out",
        whole.to_str().unwrap(),
    ]));
    check_legend(
        &whole.join("sigma.svg"),
        &["backend=cpu32", "backend=cpu32-f16", "backend=cpu64"],
    );
    // A second drift run into the same --out replaces the backends' runs.
    ok(&collapse(
        [
            &["drift", "run"][..],
            &flags,
            &["--backends", "cpu64,cpu32", "--out", out.to_str().unwrap()],
        ]
        .concat(),
    ));
    assert_eq!(Table::metrics(&out.join("cpu32")).len(), (g + 1) * r);
    let _ = std::fs::remove_dir_all(&dir);
}
