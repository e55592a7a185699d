//! Plots of collapse curves: one SVG per metric, metric against generation, one line per run
//! (the mean over replicates) with a band of ± one standard deviation over replicates.
//! Input is each run's `summary.json`.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::error::{Error, Result};

/// Per-generation mean and spread of one metric in one run.
struct Curve {
    label: String,
    points: Vec<(f64, f64, f64)>, // generation, mean, std
}

/// The label and the parsed `summary.json` of the run directory `dir`. Errors name the
/// directory and what is missing when it is not a run (no `summary.json`, or one without
/// per-generation metrics).
fn load(dir: &Path) -> Result<(String, serde_json::Value)> {
    if !dir.is_dir() {
        return Err(Error::InvalidArgument(format!(
            "{}: not a run directory ({})",
            dir.display(),
            if dir.exists() {
                "a file, not a directory"
            } else {
                "it does not exist"
            }
        )));
    }
    let path = dir.join("summary.json");
    if !path.exists() {
        let missing: Vec<&str> = ["summary.json", "metrics.csv"]
            .into_iter()
            .filter(|f| !dir.join(f).exists())
            .collect();
        return Err(Error::InvalidArgument(format!(
            "{}: not a run directory: {} missing (`collapse run --out DIR` writes summary.json \
             and metrics.csv; plot reads summary.json)",
            dir.display(),
            missing.join(" and ")
        )));
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
    if metric_names(&v).is_empty() {
        return Err(Error::Data(format!(
            "{}: no per-generation metrics (\"generations\"[…].\"metrics\"): not the summary of \
             a run written by `collapse run`",
            path.display()
        )));
    }
    let policy = serde_json::from_value::<crate::experiment::Policy>(v["config"]["policy"].clone())
        .map(|p| p.to_string())
        .unwrap_or_else(|_| v["config"]["policy"].to_string());
    let label = format!(
        "{} ({}, {})",
        dir.file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default(),
        policy,
        v["config"]["backend"].as_str().unwrap_or("?")
    );
    Ok((label, v))
}

/// Names of the metrics of a summary (every column after `generation, replicate`).
fn metric_names(v: &serde_json::Value) -> Vec<String> {
    v["generations"][0]["metrics"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// Draw every metric shared by the runs in `dirs` into `out/METRIC.svg`; returns the files.
pub fn plot_runs(dirs: &[PathBuf], out: &Path) -> Result<Vec<PathBuf>> {
    if dirs.is_empty() {
        return Err(Error::InvalidArgument("no run directories to plot".into()));
    }
    let mut runs: Vec<(String, serde_json::Value)> =
        dirs.iter().map(|d| load(d)).collect::<Result<_>>()?;
    // Runs whose labels collide (same folder name, policy and backend, e.g. two experiments'
    // `replace`) are told apart by their parent folder.
    let labels: Vec<String> = runs.iter().map(|(l, _)| l.clone()).collect();
    for (i, (label, _)) in runs.iter_mut().enumerate() {
        if labels.iter().filter(|l| **l == labels[i]).count() > 1
            && let Some(parent) = dirs[i].parent().and_then(|p| p.file_name())
        {
            *label = format!("{}/{label}", parent.to_string_lossy());
        }
    }
    let mut names = metric_names(&runs[0].1);
    names.retain(|n| {
        !matches!(n.as_str(), "pool_size") && runs.iter().all(|(_, v)| metric_names(v).contains(n))
    });
    if names.is_empty() {
        return Err(Error::Data(format!(
            "the runs {} share no metric to plot",
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::Io(format!("{}: {e}", out.display())))?;
    let mut files = Vec::new();
    for name in names {
        let curves: Vec<Curve> = runs
            .iter()
            .map(|(label, v)| Curve {
                label: label.clone(),
                points: v["generations"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|g| {
                        let m = &g["metrics"][&name];
                        Some((
                            g["generation"].as_f64()?,
                            m["mean"].as_f64()?,
                            m["std"].as_f64().unwrap_or(0.0),
                        ))
                    })
                    .filter(|(_, m, s)| m.is_finite() && s.is_finite())
                    .collect(),
            })
            .collect();
        let path = out.join(format!("{name}.svg"));
        draw(&path, &name, &curves).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
        files.push(path);
    }
    Ok(files)
}

fn draw(
    path: &Path,
    metric: &str,
    curves: &[Curve],
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let all = curves.iter().flat_map(|c| c.points.iter());
    let (mut x1, mut y0, mut y1) = (1.0f64, f64::INFINITY, f64::NEG_INFINITY);
    for &(g, m, s) in all {
        x1 = x1.max(g);
        y0 = y0.min(m - s);
        y1 = y1.max(m + s);
    }
    if !y0.is_finite() {
        (y0, y1) = (0.0, 1.0);
    }
    if y1 - y0 < 1e-12 {
        (y0, y1) = (y0 - 0.5, y1 + 0.5);
    }
    let pad = 0.05 * (y1 - y0);
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{metric} vs generation (mean ± 1 sd over replicates)"),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x1, (y0 - pad)..(y1 + pad))?;
    chart
        .configure_mesh()
        .x_desc("generation")
        .y_desc(metric)
        .draw()?;
    for (i, c) in curves.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let band: Vec<(f64, f64)> = c
            .points
            .iter()
            .map(|&(g, m, s)| (g, m + s))
            .chain(c.points.iter().rev().map(|&(g, m, s)| (g, m - s)))
            .collect();
        chart.draw_series(std::iter::once(Polygon::new(
            band,
            color.mix(0.15).filled(),
        )))?;
        chart
            .draw_series(LineSeries::new(
                c.points.iter().map(|&(g, m, _)| (g, m)),
                color.stroke_width(2),
            ))?
            .label(c.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
