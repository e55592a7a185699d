//! SVG plots of the drift study: pair distances, spread and absorption against generation, and
//! kernel error against problem size.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::chain::{Report, Trajectory};
use crate::error::{Error, Result};

/// One line of a plot, optionally with a band `(x, low, high)`.
pub struct Series {
    /// Legend label.
    pub label: String,
    /// Points `(x, y)`.
    pub points: Vec<(f64, f64)>,
    /// Optional band.
    pub band: Vec<(f64, f64, f64)>,
    /// Dashed instead of solid.
    pub dashed: bool,
    /// Palette index (default: the series' position).
    pub color: Option<usize>,
}

/// Axis scale.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Linear.
    Linear,
    /// Base-10 logarithmic (non-positive values are dropped).
    Log,
}

/// Draw `series` into the SVG `path`.
pub fn lines(
    path: &Path,
    title: &str,
    (x_desc, x_scale): (&str, Scale),
    (y_desc, y_scale): (&str, Scale),
    series: &[Series],
) -> Result<()> {
    draw(path, title, (x_desc, x_scale), (y_desc, y_scale), series)
        .map_err(|e| Error::Io(format!("{}: {e}", path.display())))
}

/// Axis tick text: `1e-7` on log axes, `250` or `0.25` on linear ones.
fn tick(scale: Scale, v: f64) -> String {
    match scale {
        Scale::Log => format!("{v:.0e}"),
        Scale::Linear if v == v.round() && v.abs() < 1e6 => format!("{v:.0}"),
        Scale::Linear => format!("{v:.3}"),
    }
}

fn keep(scale: Scale, v: f64) -> bool {
    v.is_finite() && (scale == Scale::Linear || v > 0.0)
}

fn draw(
    path: &Path,
    title: &str,
    (x_desc, xs): (&str, Scale),
    (y_desc, ys): (&str, Scale),
    series: &[Series],
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let pts = series.iter().flat_map(|s| {
        s.points
            .iter()
            .copied()
            .chain(s.band.iter().flat_map(|&(x, lo, hi)| [(x, lo), (x, hi)]))
    });
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for (x, y) in pts {
        if keep(xs, x) && keep(ys, y) {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
    }
    if !x0.is_finite() {
        (x0, x1, y0, y1) = (1.0, 10.0, 1.0, 10.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 * (1.0 + 1e-12) {
        (y0, y1) = match ys {
            Scale::Log => (y0 / 10.0, y1 * 10.0),
            Scale::Linear => (y0 - 0.5, y1 + 0.5),
        };
    }
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut b = ChartBuilder::on(&root);
    b.caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80);
    // Four axis combinations, each its own coordinate type.
    macro_rules! body {
        ($chart:expr) => {{
            let mut chart = $chart;
            let fx = |v: &f64| tick(xs, *v);
            let fy = |v: &f64| tick(ys, *v);
            chart
                .configure_mesh()
                .x_desc(x_desc)
                .y_desc(y_desc)
                .x_label_formatter(&fx)
                .y_label_formatter(&fy)
                .draw()?;
            for (i, s) in series.iter().enumerate() {
                let color = Palette99::pick(s.color.unwrap_or(i)).to_rgba();
                let band: Vec<(f64, f64)> = s
                    .band
                    .iter()
                    .filter(|b| keep(xs, b.0) && keep(ys, b.1) && keep(ys, b.2))
                    .map(|&(x, _, hi)| (x, hi))
                    .chain(
                        s.band
                            .iter()
                            .rev()
                            .filter(|b| keep(xs, b.0) && keep(ys, b.1) && keep(ys, b.2))
                            .map(|&(x, lo, _)| (x, lo)),
                    )
                    .collect();
                if band.len() > 2 {
                    chart.draw_series(std::iter::once(Polygon::new(
                        band,
                        color.mix(0.12).filled(),
                    )))?;
                }
                let p: Vec<(f64, f64)> = s
                    .points
                    .iter()
                    .copied()
                    .filter(|&(x, y)| keep(xs, x) && keep(ys, y))
                    .collect();
                let style = color.stroke_width(2);
                if s.dashed {
                    chart
                        .draw_series(DashedLineSeries::new(p, 6, 4, style))?
                        .label(s.label.clone())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
                } else {
                    chart
                        .draw_series(LineSeries::new(p, style))?
                        .label(s.label.clone())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
                }
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }};
    }
    match (xs, ys) {
        (Scale::Linear, Scale::Linear) => body!(b.build_cartesian_2d(x0..x1, y0..y1)?),
        (Scale::Linear, Scale::Log) => body!(b.build_cartesian_2d(x0..x1, (y0..y1).log_scale())?),
        (Scale::Log, Scale::Linear) => body!(b.build_cartesian_2d((x0..x1).log_scale(), y0..y1)?),
        (Scale::Log, Scale::Log) => {
            body!(b.build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())?)
        }
    }
    root.present()?;
    Ok(())
}

/// The plots of a chain report: `param_rel.svg` and `scale_rel.svg` (median over replicates,
/// every pair with the first backend), `sigma.svg` (median smallest σ per backend with its
/// 10–90% band), `absorbed.svg` (fraction of replicates absorbed: `zero` solid, `floor`
/// dashed).
pub fn chain_plots(dir: &Path, runs: &[Trajectory], report: &Report) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
    let reference = &runs[0].name;
    let mut files = Vec::new();
    for (measure, title) in [
        (
            "param_rel",
            "relative parameter distance to the reference (median over replicates)",
        ),
        (
            "scale_rel",
            "largest relative variance difference (median over replicates)",
        ),
    ] {
        let series: Vec<Series> = runs[1..]
            .iter()
            .map(|t| Series {
                label: format!("{} vs {reference}", t.name),
                points: report
                    .pairs
                    .iter()
                    .filter(|p| &p.a == reference && p.b == t.name)
                    .map(|p| {
                        let v = if measure == "param_rel" {
                            p.param_rel_median
                        } else {
                            p.scale_rel_median
                        };
                        (p.generation as f64, v)
                    })
                    .collect(),
                band: Vec::new(),
                dashed: false,
                color: None,
            })
            .collect();
        let path = dir.join(format!("{measure}.svg"));
        lines(
            &path,
            title,
            ("generation", Scale::Linear),
            (measure, Scale::Log),
            &series,
        )?;
        files.push(path);
    }
    fn spread_of<'a>(
        report: &'a Report,
        t: &'a Trajectory,
    ) -> impl Iterator<Item = &'a super::chain::SpreadRow> + 'a {
        report.spread.iter().filter(move |s| s.backend == t.name)
    }
    let series: Vec<Series> = runs
        .iter()
        .map(|t| Series {
            label: t.name.clone(),
            points: spread_of(report, t)
                .map(|s| (s.generation as f64, s.sigma_median))
                .collect(),
            band: spread_of(report, t)
                .map(|s| (s.generation as f64, s.sigma_p10, s.sigma_p90))
                .collect(),
            dashed: false,
            color: None,
        })
        .collect();
    let path = dir.join("sigma.svg");
    lines(
        &path,
        "smallest σ of the model: median and 10–90% over replicates (0 not shown)",
        ("generation", Scale::Linear),
        ("σ", Scale::Log),
        &series,
    )?;
    files.push(path);
    let mut series = Vec::new();
    for (i, t) in runs.iter().enumerate() {
        series.push(Series {
            label: format!("{} zero", t.name),
            points: spread_of(report, t)
                .map(|s| (s.generation as f64, s.absorbed_zero))
                .collect(),
            band: Vec::new(),
            dashed: false,
            color: Some(i),
        });
        series.push(Series {
            label: format!("{} floor", t.name),
            points: spread_of(report, t)
                .map(|s| (s.generation as f64, s.absorbed_floor))
                .collect(),
            band: Vec::new(),
            dashed: true,
            color: Some(i),
        });
    }
    let path = dir.join("absorbed.svg");
    lines(
        &path,
        "fraction of replicates in the absorbing state (solid: σ = 0, dashed: σ ≤ 16u·|μ|)",
        ("generation", Scale::Linear),
        ("fraction absorbed", Scale::Linear),
        &series,
    )?;
    files.push(path);
    Ok(files)
}
