//! `collapse drift run` (one experiment on several backends and precisions, compared) and
//! `collapse drift kernels` (each kernel family's error vs size and input scale).

use std::path::PathBuf;
use std::time::Instant;

use clap::Subcommand;

use collapse_kernels::drift::{self, chain, kernels};
use collapse_kernels::gpu::GpuOptions;
use collapse_kernels::ops::Backend;
use collapse_kernels::{Error, Result};

use crate::common::progress_bar;
use crate::run::ExperimentArgs;

/// `collapse drift`'s subcommands.
#[derive(Subcommand, Debug)]
pub enum DriftCommand {
    /// Run one generational experiment (same seed, same Philox streams) on every --backends
    /// entry and compare: per generation the distance between each pair's trajectories and the
    /// first generation each pair passes 1e-6, 1e-4, 1e-2; per backend when replicates reach
    /// the absorbing state (σ exactly 0; σ on the rounding floor, ≤ 16·u·|μ|). Writes pairs.csv,
    /// crossings.csv, absorption.csv, absorption_per_replicate.csv, spread.csv, headline.csv,
    /// summary.json and plots/ into --out, and each backend's run as a `collapse run` directory
    /// OUT/BACKEND/ (metrics.csv, summary.json, state.json, params.jsonl: the same columns and
    /// metric code as `collapse run --backend BACKEND`, so `collapse plot OUT/cpu64 OUT/cpu32`
    /// overlays the backends); prints the crossing and absorption tables and the headline.
    ///
    /// The headline (headline.csv, and "headline" in summary.json): how much of the collapse
    /// is arithmetic. One row per metric (the model's metrics.csv columns after the pool's)
    /// and backend B after the first of --backends (the reference, REF): metric, reference,
    /// backend; diff_mean_max, the largest over generations of the mean over replicates of
    /// |metric on B − metric on REF| (diff_mean_generation: the first generation attaining
    /// it); diff_max, the largest such difference over generations and replicates
    /// (diff_max_generation); collapse, the size of the collapse itself on REF, the mean over
    /// replicates of |metric at the last generation − at generation 0|; ratio =
    /// diff_mean_max / collapse (0: none of the collapse is arithmetic; 1 or more: the
    /// backends differ by as much as the metric moves). Pairs where a value is NaN are left
    /// out; a quantity with no finite pair is NaN.
    Run(Box<DriftRunArgs>),
    /// Error of each kernel family vs the f64 reference as a function of problem size and input
    /// scale: sums (naive, pairwise, Kahan), the Gaussian fit, the E-step log-likelihood,
    /// matmul and sampling. Writes --out (CSV) and an SVG per family beside it.
    Kernels(DriftKernelArgs),
}

/// `collapse drift run`'s flags.
#[derive(clap::Args, Debug)]
pub struct DriftRunArgs {
    #[command(flatten)]
    pub exp: ExperimentArgs,
    /// Backends and precisions to compare, comma-separated; the first is the reference of the
    /// plots. Known: cpu64, cpu32, wgsl, cube, cpu32-naive, cpu32-pairwise, cpu32-kahan (EM
    /// reductions in that summation order, single-threaded), cpu32-f16 (samples stored as
    /// binary16).
    #[arg(long, default_value = "cpu64,cpu32,cpu32-naive,cpu32-kahan,cpu32-f16")]
    pub backends: String,
    /// Also write params.csv: every fitted parameter of every backend, generation and replicate
    /// (large for long runs).
    #[arg(long)]
    pub params: bool,
    /// Replicates each generation runs at once, as for `collapse run` (0 = one per CPU core; the
    /// numbers do not depend on it; the backends still run one after another).
    #[arg(long, default_value_t = 0)]
    pub replicate_jobs: usize,
    /// Output directory (created; existing report files are replaced).
    #[arg(long)]
    pub out: PathBuf,
}

/// `collapse drift kernels`'s flags.
#[derive(clap::Args, Debug)]
pub struct DriftKernelArgs {
    /// Backends for the fit, log-likelihood, matmul and sample families (comma-separated;
    /// cpu64 is the reference and always runs). wgsl and cube also run matmul with f16 storage
    /// where the adapter has f16.
    #[arg(long, default_value = "cpu32,cpu32-naive,cpu32-kahan")]
    pub backends: String,
    /// Problem sizes n (points or terms), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000usize, 10_000, 100_000, 1_000_000])]
    pub sizes: Vec<usize>,
    /// Inner dimensions of the matmul family, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [64usize, 256, 1024, 4096, 16384])]
    pub matmul_k: Vec<usize>,
    /// Input scales s (inputs are s + N(0, 1)), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [0.0f64, 1.0, 100.0, 10000.0])]
    pub scales: Vec<f64>,
    /// Philox seed of the inputs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where to write the table (CSV); the plots go beside it, one per family, named
    /// STEM-FAMILY.svg (kernels.csv: kernels-sum.svg, kernels-matmul.svg, …).
    #[arg(long, default_value = "results/drift/kernels.csv")]
    pub out: PathBuf,
}

/// Run a `collapse drift` subcommand.
pub fn drift(options: &GpuOptions, c: &DriftCommand) -> Result<()> {
    match c {
        DriftCommand::Run(a) => drift_run(options, a),
        DriftCommand::Kernels(a) => drift_kernels(options, a),
    }
}

/// Run the experiment on every backend with a progress bar, write the report and print the
/// crossing and absorption tables.
fn drift_run(options: &GpuOptions, a: &DriftRunArgs) -> Result<()> {
    let names = drift::parse_backends(&a.backends)?;
    let cfg = a.exp.config(names.join(","))?;
    eprintln!(
        "{:?} model, {} generations × {} replicates, {} samples each, policy {}, seed {}, on {}",
        cfg.model,
        cfg.generations,
        cfg.replicates,
        cfg.samples,
        cfg.policy,
        cfg.seed,
        names.join(", ")
    );
    let bar = progress_bar(
        ((cfg.generations + 1) * names.len()) as u64,
        "{bar:30} {pos}/{len} backend·generations, {elapsed} (eta {eta}) {msg}",
    );
    let t = Instant::now();
    let mut base = 0u64;
    let mut current = String::new();
    let runs = chain::run_all_into(
        &cfg,
        &names,
        options,
        a.replicate_jobs,
        &a.out,
        &mut |name, done, total| {
            if name != current {
                if !current.is_empty() {
                    base += total as u64;
                }
                current = name.to_string();
                bar.set_message(name.to_string());
            }
            bar.set_position(base + done as u64);
        },
    );
    bar.finish_and_clear();
    let runs = runs?;
    let report = chain::analyse(&cfg, &runs)?;
    let headline = drift::headline::headline(&a.out, &names)?;
    let files = drift::output::write(&a.out, &cfg, &runs, &report, &headline, a.params)?;
    for t in &runs {
        println!("{:<15} {:>8.1} s  {}", t.name, t.seconds, t.device);
    }
    let show = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.0}"));
    println!(
        "\nfirst generation a pair's distance exceeds a threshold (median [10%, 90%] over replicates; - = fewer than that fraction crossed)"
    );
    println!(
        "{:<15} {:<15} {:<11} {:>9} {:>8} {:>17}",
        "a", "b", "measure", "threshold", "crossed", "generation"
    );
    for c in report
        .crossings
        .iter()
        .filter(|c| c.a == names[0] && c.measure != "metric_diff")
    {
        println!(
            "{:<15} {:<15} {:<11} {:>9.0e} {:>4}/{:<3} {:>5} [{}, {}]",
            c.a,
            c.b,
            c.measure,
            c.threshold,
            c.crossed,
            c.replicates,
            show(c.median),
            show(c.p10),
            show(c.p90)
        );
    }
    println!(
        "\nfirst generation in the absorbing state (median ± bootstrap SE [10%, 90%]; theory: \
         the rounding-free prediction of the floor, gaussian + replace only)"
    );
    println!(
        "{:<15} {:<11} {:>8} {:>15} {:>12} {:>8}",
        "backend", "state", "reached", "generation", "[10%, 90%]", "theory"
    );
    for r in &report.absorption {
        let se = r.median_se.map_or("?".to_string(), |x| format!("{x:.1}"));
        println!(
            "{:<15} {:<11} {:>4}/{:<3} {:>6} ± {:<6} {:>12} {:>8}",
            r.backend,
            r.state,
            r.reached,
            r.replicates,
            show(r.median),
            se,
            format!("[{}, {}]", show(r.p10), show(r.p90)),
            r.theory_median.map_or(String::new(), |x| format!("{x:.1}"))
        );
    }
    println!(
        "\nhow much of the collapse is arithmetic (largest difference from {} at any generation: \
         mean [max] over replicates; collapse: mean |last − generation 0| on {}; ratio = mean \
         difference / collapse)",
        names[0], names[0]
    );
    println!(
        "{:<18} {:<15} {:>11} {:>5} {:>11} {:>11} {:>10}",
        "metric", "backend", "difference", "gen", "[max]", "collapse", "ratio"
    );
    let show_gen = |g: Option<usize>| g.map_or("-".to_string(), |g| g.to_string());
    for h in &headline {
        println!(
            "{:<18} {:<15} {:>11.3e} {:>5} {:>11.3e} {:>11.3e} {:>10.3e}",
            h.metric,
            h.backend,
            h.diff_mean_max,
            show_gen(h.diff_mean_generation),
            h.diff_max,
            h.collapse,
            h.ratio
        );
    }
    println!(
        "\ndone in {:.1} s: {} files in {}",
        t.elapsed().as_secs_f64(),
        files.len(),
        a.out.display()
    );
    Ok(())
}

/// Sweep every kernel family over the sizes and scales on cpu64 and the backends, write the
/// table and the plots, and print the table.
fn drift_kernels(options: &GpuOptions, a: &DriftKernelArgs) -> Result<()> {
    if a.sizes.contains(&0) || a.matmul_k.contains(&0) {
        return Err(Error::InvalidArgument(
            "--sizes and --matmul-k must be ≥ 1".into(),
        ));
    }
    if let Some(s) = a.scales.iter().find(|s| !s.is_finite()) {
        return Err(Error::InvalidArgument(format!(
            "--scales: {s} is not finite"
        )));
    }
    let names: Vec<String> = a
        .backends
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty() && *s != "cpu64")
        .map(String::from)
        .collect();
    let mut gpu = None;
    let subjects = names
        .iter()
        .map(|n| drift::open_subject(n, &mut gpu, options))
        .collect::<Result<Vec<_>>>()?;
    let backends: Vec<(String, &dyn Backend)> = names
        .iter()
        .cloned()
        .zip(subjects.iter().map(|s| &s.backend as &dyn Backend))
        .collect();
    let f16: Vec<String> = match &gpu {
        Some(g) if g.features().contains(wgpu::Features::SHADER_F16) => names
            .iter()
            .filter(|n| *n == "wgsl" || *n == "cube")
            .cloned()
            .collect(),
        _ => Vec::new(),
    };
    for (n, s) in &backends {
        eprintln!("{n}: {}", s.device());
    }
    let sweep = kernels::KernelSweep {
        sizes: a.sizes.clone(),
        matmul_k: a.matmul_k.clone(),
        scales: a.scales.clone(),
        seed: a.seed,
    };
    let t = Instant::now();
    let mut rows = Vec::new();
    let mut say = |m: &str| eprintln!("  {m} ({:.0} s)", t.elapsed().as_secs_f64());
    kernels::sums(&sweep, &mut rows)?;
    kernels::backend_families(&sweep, &backends, &mut rows, &mut say)?;
    kernels::matmuls(&sweep, &backends, &f16, &mut rows, &mut say)?;
    collapse_kernels::io::write_csv(&a.out, &rows)?;
    for path in drift::output::kernel_plots(&a.out, &rows, &a.scales)? {
        println!("wrote {}", path.display());
    }
    println!(
        "{:<9} {:<15} {:>9} {:>9} {:>11}",
        "family", "method", "n", "scale", "error"
    );
    for r in &rows {
        println!(
            "{:<9} {:<15} {:>9} {:>9} {:>11.3e}",
            r.family, r.method, r.n, r.scale, r.error
        );
    }
    println!(
        "wrote {} ({} rows) in {:.1} s",
        a.out.display(),
        rows.len(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
