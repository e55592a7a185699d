//! Plots of collapse curves: one SVG per metric, metric against generation, one line per run
//! or group (the mean over replicates) with a band: the 95% confidence interval of the mean
//! (Student t over the replicates, the default), ± one standard deviation, or none; a linear
//! or logarithmic y axis. Input is each run's `summary.json` ([`plot_runs`]), or curves built
//! elsewhere (a sweep's groups: [`draw_metric`]).

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::error::{Error, Result};

/// The band drawn around each curve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Band {
    /// The 95% confidence interval of the mean: mean ± t₀.₉₇₅,ₙ₋₁ · sd / √n over the replicates.
    #[default]
    Ci95,
    /// Mean ± one sample standard deviation over the replicates.
    Sd,
    /// No band.
    None,
}

impl Band {
    /// How the caption describes the band.
    pub fn caption(self) -> &'static str {
        match self {
            Band::Ci95 => "mean, 95% CI of the mean",
            Band::Sd => "mean ± 1 sd",
            Band::None => "mean",
        }
    }
}

/// How curves are drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PlotOptions {
    /// The band around each curve.
    pub band: Band,
    /// A logarithmic y axis (points ≤ 0 are left out).
    pub log_y: bool,
}

/// One line of a plot: per generation `(generation, centre, band low, band high)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    /// The legend entry.
    pub label: String,
    /// The points, by generation.
    pub points: Vec<(f64, f64, f64, f64)>,
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
    Ok((dir.display().to_string(), v))
}

/// Names of the metrics of a summary (every column after `generation, replicate`).
fn metric_names(v: &serde_json::Value) -> Vec<String> {
    v["generations"][0]["metrics"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// The legend labels of several runs: the configuration fields whose values differ between
/// them (`seed=3, samples=100`); a single run, or runs whose settings are all equal, are
/// `FOLDER (policy, backend)`, with the parent folder in front when that still collides.
fn labels(dirs: &[PathBuf], runs: &[serde_json::Value]) -> Vec<String> {
    let folder = |d: &Path| {
        d.file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| d.display().to_string())
    };
    let policy = |v: &serde_json::Value| {
        serde_json::from_value::<crate::experiment::Policy>(v["config"]["policy"].clone())
            .map(|p| p.to_string())
            .unwrap_or_else(|_| v["config"]["policy"].to_string())
    };
    let plain = |i: usize| {
        format!(
            "{} ({}, {})",
            folder(&dirs[i]),
            policy(&runs[i]),
            runs[i]["config"]["backend"].as_str().unwrap_or("?")
        )
    };
    if runs.len() == 1 {
        return vec![plain(0)];
    }
    // Flatten each configuration to `key=value` (nested tables as `vae.lr`), the policy in its
    // command-line spelling.
    let flat = |v: &serde_json::Value| -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(o) = v["config"].as_object() {
            for (k, x) in o {
                match x {
                    serde_json::Value::Object(inner) if k != "truth" => {
                        for (k2, y) in inner {
                            out.push((format!("{k}.{k2}"), y.to_string()));
                        }
                    }
                    _ if k == "policy" => out.push((k.clone(), policy(v))),
                    serde_json::Value::String(t) => out.push((k.clone(), t.clone())),
                    _ => out.push((k.clone(), x.to_string())),
                }
            }
        }
        out
    };
    let flats: Vec<Vec<(String, String)>> = runs.iter().map(flat).collect();
    let keys: Vec<String> = flats[0]
        .iter()
        .map(|(k, _)| k.clone())
        .filter(|k| {
            let first = flats[0].iter().find(|(x, _)| x == k).map(|(_, v)| v);
            flats
                .iter()
                .any(|f| f.iter().find(|(x, _)| x == k).map(|(_, v)| v) != first)
        })
        .collect();
    let mut out: Vec<String> = flats
        .iter()
        .map(|f| {
            keys.iter()
                .filter_map(|k| {
                    let v = f.iter().find(|(x, _)| x == k)?;
                    Some(format!("{}={}", v.0, v.1.trim_matches('"')))
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .collect();
    for (i, l) in out.iter_mut().enumerate() {
        if l.is_empty() {
            *l = plain(i);
        }
    }
    // Runs that still collide (identical settings, e.g. two experiments' `replace`) are told
    // apart by their parent folders.
    let copy = out.clone();
    for (i, l) in out.iter_mut().enumerate() {
        if copy.iter().filter(|x| **x == copy[i]).count() > 1
            && let Some(parent) = dirs[i].parent().and_then(|p| p.file_name())
        {
            *l = format!("{}/{l}", parent.to_string_lossy());
        }
    }
    out
}

/// Draw every metric shared by the runs in `dirs` into `out/METRIC.svg` (the default options:
/// 95% CI bands, linear axes); returns the files.
pub fn plot_runs(dirs: &[PathBuf], out: &Path) -> Result<Vec<PathBuf>> {
    plot_runs_with(dirs, out, &PlotOptions::default())
}

/// [`plot_runs`] with the band and axis of `o`.
pub fn plot_runs_with(dirs: &[PathBuf], out: &Path, o: &PlotOptions) -> Result<Vec<PathBuf>> {
    if dirs.is_empty() {
        return Err(Error::InvalidArgument("no run directories to plot".into()));
    }
    let runs: Vec<serde_json::Value> = dirs
        .iter()
        .map(|d| load(d).map(|(_, v)| v))
        .collect::<Result<_>>()?;
    let labels = labels(dirs, &runs);
    let mut names = metric_names(&runs[0]);
    names.retain(|n| {
        !matches!(n.as_str(), "pool_size") && runs.iter().all(|v| metric_names(v).contains(n))
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
            .zip(&labels)
            .map(|(v, label)| Curve {
                label: label.clone(),
                points: v["generations"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|g| {
                        let m = &g["metrics"][&name];
                        let mean = m["mean"].as_f64()?;
                        let sd = m["std"].as_f64().unwrap_or(0.0);
                        let n = g["replicates"].as_u64().unwrap_or(1) as usize;
                        let half = match o.band {
                            Band::Sd => sd,
                            Band::Ci95 if n > 1 => {
                                crate::num::stats::t_quantile(0.975, (n - 1) as f64) * sd
                                    / (n as f64).sqrt()
                            }
                            _ => 0.0,
                        };
                        Some((g["generation"].as_f64()?, mean, mean - half, mean + half))
                    })
                    .filter(|(_, m, lo, hi)| m.is_finite() && lo.is_finite() && hi.is_finite())
                    .collect(),
            })
            .collect();
        let path = out.join(format!("{name}.svg"));
        draw_metric(&path, &name, &curves, o)?;
        files.push(path);
    }
    Ok(files)
}

/// Draw `curves` of metric `metric` into the SVG file `path` (one line per curve, its band
/// shaded unless `o.band` is `None`; on a log axis, points whose band or centre is ≤ 0 are
/// left out).
pub fn draw_metric(path: &Path, metric: &str, curves: &[Curve], o: &PlotOptions) -> Result<()> {
    draw(path, metric, curves, o).map_err(|e| Error::Io(format!("{}: {e}", path.display())))
}

fn draw(
    path: &Path,
    metric: &str,
    curves: &[Curve],
    o: &PlotOptions,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let keep = |&(_, m, lo, hi): &(f64, f64, f64, f64)| {
        !o.log_y || (m > 0.0 && (o.band == Band::None || lo > 0.0) && hi > 0.0)
    };
    let curves: Vec<Curve> = curves
        .iter()
        .map(|c| Curve {
            label: c.label.clone(),
            points: c.points.iter().copied().filter(keep).collect(),
        })
        .collect();
    let (mut x1, mut y0, mut y1) = (1.0f64, f64::INFINITY, f64::NEG_INFINITY);
    for &(g, m, lo, hi) in curves.iter().flat_map(|c| c.points.iter()) {
        let (a, b) = if o.band == Band::None {
            (m, m)
        } else {
            (lo, hi)
        };
        x1 = x1.max(g);
        y0 = y0.min(a.min(m));
        y1 = y1.max(b.max(m));
    }
    if !y0.is_finite() {
        (y0, y1) = if o.log_y { (0.1, 1.0) } else { (0.0, 1.0) };
    }
    let caption = format!(
        "{metric} vs generation ({} over replicates)",
        o.band.caption()
    );
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80);
    if o.log_y {
        if y1 / y0 < 1.0 + 1e-9 {
            (y0, y1) = (y0 / 2.0, y1 * 2.0);
        }
        let mut chart = builder.build_cartesian_2d(0f64..x1, (y0 / 1.1..y1 * 1.1).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("generation")
            .y_desc(format!("{metric} (log scale)"))
            .draw()?;
        series(&mut chart, &curves, o)?;
    } else {
        if y1 - y0 < 1e-12 {
            (y0, y1) = (y0 - 0.5, y1 + 0.5);
        }
        let pad = 0.05 * (y1 - y0);
        let mut chart = builder.build_cartesian_2d(0f64..x1, (y0 - pad)..(y1 + pad))?;
        chart
            .configure_mesh()
            .x_desc("generation")
            .y_desc(metric)
            .draw()?;
        series(&mut chart, &curves, o)?;
    }
    root.present()?;
    Ok(())
}

/// The curves, their bands and the legend on `chart`.
fn series<'a, Y>(
    chart: &mut ChartContext<
        'a,
        SVGBackend<'a>,
        Cartesian2d<plotters::coord::types::RangedCoordf64, Y>,
    >,
    curves: &[Curve],
    o: &PlotOptions,
) -> std::result::Result<(), Box<dyn std::error::Error>>
where
    Y: Ranged<ValueType = f64>,
{
    for (i, c) in curves.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        if o.band != Band::None && !c.points.is_empty() {
            let band: Vec<(f64, f64)> = c
                .points
                .iter()
                .map(|&(g, _, _, hi)| (g, hi))
                .chain(c.points.iter().rev().map(|&(g, _, lo, _)| (g, lo)))
                .collect();
            chart.draw_series(std::iter::once(Polygon::new(
                band,
                color.mix(0.15).filled(),
            )))?;
        }
        chart
            .draw_series(LineSeries::new(
                c.points.iter().map(|&(g, m, _, _)| (g, m)),
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
    Ok(())
}
