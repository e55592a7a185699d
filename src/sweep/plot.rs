//! A sweep's collapse curves: one SVG per metric, one line per group of jobs (by default every
//! axis but `seed` that takes more than one value), the band the group's 95% confidence
//! interval of the mean over its seeds × replicates (or ± 1 sd, or none), labels made of the
//! group's axis values.

use std::path::{Path, PathBuf};

use super::collect::{self, Collected};
use super::manifest::Manifest;
use crate::error::{Error, Result};
use crate::report::{Band, Curve, PlotOptions, draw_metric};

/// The default grouping of a plot: the axes but `seed` that take more than one value.
pub fn default_group_by(m: &Manifest) -> Vec<String> {
    m.axes
        .iter()
        .enumerate()
        .filter(|(i, a)| {
            *a != "seed" && {
                let first = m.jobs.first().map(|j| &j.axes[*i].1);
                m.jobs.iter().any(|j| Some(&j.axes[*i].1) != first)
            }
        })
        .map(|(_, a)| a.clone())
        .collect()
}

/// Draw every metric of the finished jobs of sweep `m` in `root`, grouped by `group_by`, into
/// `out/METRIC.svg`; returns the files.
pub fn plot_sweep(
    root: &Path,
    m: &Manifest,
    group_by: &[String],
    out: &Path,
    o: &PlotOptions,
) -> Result<Vec<PathBuf>> {
    let c: Collected = collect::collect(root, m, group_by, None)?;
    if c.jobs_done == 0 {
        return Err(Error::InvalidArgument(format!(
            "{}: no job of the sweep is done yet (`collapse sweep status {}`)",
            root.display(),
            root.display()
        )));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::Io(format!("{}: {e}", out.display())))?;
    let mut groups: Vec<Vec<String>> = Vec::new();
    for r in &c.summary {
        if !groups.contains(&r.group) {
            groups.push(r.group.clone());
        }
    }
    let label = |g: &[String]| {
        if g.is_empty() {
            "all jobs".to_string()
        } else {
            group_by
                .iter()
                .zip(g)
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let mut files = Vec::new();
    for metric in c.metrics.iter().filter(|m| *m != "pool_size") {
        let curves: Vec<Curve> = groups
            .iter()
            .map(|g| Curve {
                label: label(g),
                points: c
                    .summary
                    .iter()
                    .filter(|r| &r.group == g && &r.metric == metric && r.stats.mean.is_finite())
                    .map(|r| {
                        let s = r.stats;
                        let (lo, hi) = match o.band {
                            Band::Ci95 if s.ci_low.is_finite() => (s.ci_low, s.ci_high),
                            Band::Sd if s.sd.is_finite() => (s.mean - s.sd, s.mean + s.sd),
                            _ => (s.mean, s.mean),
                        };
                        (r.generation as f64, s.mean, lo, hi)
                    })
                    .collect(),
            })
            .collect();
        let path = out.join(format!("{metric}.svg"));
        draw_metric(&path, metric, &curves, o)?;
        files.push(path);
    }
    Ok(files)
}
