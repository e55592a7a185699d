//! Writing a drift run's report: its CSV tables, `summary.json` and plots (and the plots of
//! `collapse drift kernels`: [`kernel_plots`]). Apart from
//! [`super::chain`] (which computes the report) and [`super::plot`] (which draws it), so the
//! dependencies run one way: output → plot → chain.

use std::path::{Path, PathBuf};

use super::chain::{Report, THRESHOLDS, Trajectory};
use crate::error::{Error, Result};
use crate::experiment::RunConfig;

/// Write the report into `dir`: `pairs.csv`, `crossings.csv`, `absorption.csv`,
/// `absorption_per_replicate.csv`, `spread.csv`, `headline.csv` (the rows of `headline`, see
/// [`super::headline`]; also under `headline` in `summary.json`), `summary.json` and
/// `plots/*.svg`
/// (`pairs.csv`, `spread.csv` and the plots hold every generation of runs up to 1000
/// generations, else every ⌈(G+1)/1000⌉-th and the last; crossings and absorption always use
/// every generation); with
/// `params` also `params.csv` (every fitted parameter: backend, generation, replicate, then
/// `weight_c`, `mean_c_j`, `var_c_j`). Returns the files written.
pub fn write(
    dir: &Path,
    cfg: &RunConfig,
    runs: &[Trajectory],
    report: &Report,
    headline: &[super::headline::HeadlineRow],
    params: bool,
) -> Result<Vec<PathBuf>> {
    use crate::io::write_csv;
    let mut files = Vec::new();
    let mut put = |name: &str, f: &dyn Fn(&Path) -> Result<()>| -> Result<()> {
        let p = dir.join(name);
        f(&p)?;
        files.push(p);
        Ok(())
    };
    // Long runs: every ⌈(G+1)/1000⌉-th generation (and the last) in the per-generation tables.
    let gens = cfg.generations + 1;
    let stride = gens.div_ceil(1000).max(1);
    let keep = |g: usize| g.is_multiple_of(stride) || g + 1 == gens;
    let thin = Report {
        pairs: report
            .pairs
            .iter()
            .filter(|r| keep(r.generation))
            .cloned()
            .collect(),
        spread: report
            .spread
            .iter()
            .filter(|r| keep(r.generation))
            .cloned()
            .collect(),
        crossings: Vec::new(),
        absorption: Vec::new(),
        per_replicate: Vec::new(),
    };
    put("pairs.csv", &|p| write_csv(p, &thin.pairs))?;
    put("crossings.csv", &|p| write_csv(p, &report.crossings))?;
    put("absorption.csv", &|p| write_csv(p, &report.absorption))?;
    put("absorption_per_replicate.csv", &|p| {
        write_csv(p, &report.per_replicate)
    })?;
    put("spread.csv", &|p| write_csv(p, &thin.spread))?;
    put("headline.csv", &|p| write_csv(p, headline))?;
    if params {
        put("params.csv", &|p| write_params(p, runs))?;
    }
    let summary = serde_json::json!({
        "config": cfg,
        "policy_spec": cfg.policy.to_string(),
        "backends": runs.iter().map(|t| serde_json::json!({
            "name": t.name,
            "device": t.device,
            "unit_roundoff": t.unit_roundoff,
            "seconds": t.seconds,
        })).collect::<Vec<_>>(),
        "thresholds": THRESHOLDS,
        "crossings": report.crossings,
        "absorption": report.absorption,
        "headline": headline,
    });
    put("summary.json", &|p| {
        let bytes = serde_json::to_vec_pretty(&summary).map_err(|e| Error::Io(e.to_string()))?;
        crate::io::write_atomic(p, &bytes)
    })?;
    files.extend(super::plot::chain_plots(&dir.join("plots"), runs, &thin)?);
    Ok(files)
}

fn write_params(path: &Path, runs: &[Trajectory]) -> Result<()> {
    use std::fmt::Write;
    let p0 = &runs[0].sim.history[0][0];
    let (k, d) = (p0.k, p0.d);
    let mut s = String::from("backend,generation,replicate");
    for c in 0..k {
        write!(s, ",weight_{c}").ok();
    }
    for c in 0..k {
        for j in 0..d {
            write!(s, ",mean_{c}_{j}").ok();
        }
    }
    for c in 0..k {
        for j in 0..d {
            write!(s, ",var_{c}_{j}").ok();
        }
    }
    s.push('\n');
    for t in runs {
        for (r, h) in t.sim.history.iter().enumerate() {
            for (g, p) in h.iter().enumerate() {
                write!(s, "{},{g},{r}", t.name).ok();
                for v in p.weights.iter().chain(&p.means).chain(&p.variances()) {
                    write!(s, ",{v:e}").ok();
                }
                s.push('\n');
            }
        }
    }
    crate::io::write_atomic(path, s.as_bytes())
}

/// The kernel families of `collapse drift kernels`, in plotting order.
pub const KERNEL_FAMILIES: [&str; 6] = ["sum", "fit_mean", "fit_var", "loglik", "matmul", "sample"];

/// Draw one SVG per kernel family present in `rows` (error against the f64 reference vs `n`,
/// or vs the inner dimension for `matmul`; both axes logarithmic, errors of 0 drawn at 1e-17)
/// beside the table `csv`, named `STEM-FAMILY.svg` (`kernels.csv` → `kernels-sum.svg`, …).
/// One line per method and input scale of `scales` (scales after the first dashed); a line
/// needs two points, except in the `sample` family. Returns the files written, in
/// [`KERNEL_FAMILIES`] order.
pub fn kernel_plots(
    csv: &Path,
    rows: &[super::kernels::KernelRow],
    scales: &[f64],
) -> Result<Vec<PathBuf>> {
    use super::plot;
    let dir = csv.parent().unwrap_or(Path::new("."));
    let stem = csv
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "kernels".into());
    let mut files = Vec::new();
    for fam in KERNEL_FAMILIES {
        let fr: Vec<&super::kernels::KernelRow> = rows.iter().filter(|r| r.family == fam).collect();
        if fr.is_empty() {
            continue;
        }
        let mut series = Vec::new();
        let mut methods: Vec<&str> = fr.iter().map(|r| r.method.as_str()).collect();
        methods.dedup();
        methods.sort();
        methods.dedup();
        for m in methods {
            for &s in scales {
                let points: Vec<(f64, f64)> = fr
                    .iter()
                    .filter(|r| r.method == m && r.scale == s)
                    .map(|r| (r.n as f64, r.error.max(1e-17)))
                    .collect();
                if points.len() > 1 || fam == "sample" {
                    series.push(plot::Series {
                        label: format!("{m}, s = {s}"),
                        points,
                        band: Vec::new(),
                        dashed: s != scales[0],
                        color: None,
                    });
                }
            }
        }
        let path = dir.join(format!("{stem}-{fam}.svg"));
        plot::lines(
            &path,
            &format!("{fam}: error vs f64 reference (errors of 0 drawn at 1e-17)"),
            (
                if fam == "matmul" {
                    "inner dimension k"
                } else {
                    "n"
                },
                plot::Scale::Log,
            ),
            ("error", plot::Scale::Log),
            &series,
        )?;
        files.push(path);
    }
    Ok(files)
}
