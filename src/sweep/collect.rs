//! A sweep's results as two tidy tables (pandas reads both with a bare `read_csv`):
//! - the **long table**: `job, <axis>…, generation, replicate, <metric>…` — every row of every
//!   finished job's `metrics.csv`, its fields copied verbatim, under the union of the jobs'
//!   metric columns (a column a job does not have is empty, which pandas reads as NaN);
//! - the **summary**: `<group axis>…, generation, metric, n, mean, sd, ci95_low, ci95_high` —
//!   per group of jobs (by default every axis but `seed`: the seeds and the replicates inside
//!   each job are the sample) and generation, each numeric metric's count of finite values,
//!   mean, sample sd and the 95% Student-t interval of the mean ([`crate::num::stats`]).
//!
//! Axis values are written as the spec spells them (`policy = "mix:0.1"` → `mix:0.1`), the same
//! in every row. Jobs that are not done are left out (their count is reported). The tables
//! depend only on the jobs' files, so a sweep run locally and the same sweep run through Slurm
//! collect to identical bytes.

use std::collections::HashMap;
use std::path::Path;

use super::manifest::Manifest;
use super::status::{JobState, job_state};
use crate::error::{Error, Result};
use crate::num::stats::Summary;

/// Columns of `metrics.csv` that are not metrics, or not numbers.
const NOT_METRICS: &[&str] = &["generation", "replicate", "pool_composition"];

/// One row of the summary.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    /// The group's axis values, in [`Collected::group_by`] order.
    pub group: Vec<String>,
    /// The generation.
    pub generation: usize,
    /// The metric.
    pub metric: String,
    /// Its statistics over the group's replicates.
    pub stats: Summary,
}

/// What [`collect`] gathered.
#[derive(Debug, Clone)]
pub struct Collected {
    /// Jobs collected (done) and jobs left out.
    pub jobs_done: usize,
    /// Jobs left out (not done).
    pub jobs_missing: usize,
    /// Rows of the long table.
    pub rows: usize,
    /// The axes the summary groups by.
    pub group_by: Vec<String>,
    /// The numeric metric columns, in first-seen order.
    pub metrics: Vec<String>,
    /// The summary, groups in job order, then generation, then metric.
    pub summary: Vec<SummaryRow>,
}

/// The default grouping: every axis but `seed`.
pub fn default_group_by(m: &Manifest) -> Vec<String> {
    m.axes.iter().filter(|a| *a != "seed").cloned().collect()
}

/// Read the finished jobs of the sweep `m` in `root`; write the long table to `long` (when
/// given) and return the summary grouped by `group_by` (axis flags of the sweep).
pub fn collect(
    root: &Path,
    m: &Manifest,
    group_by: &[String],
    long: Option<&mut dyn std::io::Write>,
) -> Result<Collected> {
    for g in group_by {
        if !m.axes.contains(g) {
            return Err(Error::InvalidArgument(format!(
                "--group-by {g}: not an axis of the sweep (its axes: {})",
                m.axes.join(", ")
            )));
        }
    }
    let gpos: Vec<usize> = group_by
        .iter()
        .map(|g| m.axes.iter().position(|a| a == g).unwrap_or(0))
        .collect();
    let done: Vec<usize> = (0..m.jobs.len())
        .filter(|&i| job_state(root, m, i) == JobState::Done)
        .collect();
    // Pass 1: the union of the metric columns.
    let mut columns: Vec<String> = Vec::new();
    for &i in &done {
        let path = m.job_dir(root, i).join("metrics.csv");
        let mut rdr = csv::Reader::from_path(&path)
            .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
        let h = rdr
            .headers()
            .map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
        for c in h.iter().skip(2) {
            if !columns.iter().any(|x| x == c) {
                columns.push(c.to_string());
            }
        }
    }
    let metrics: Vec<String> = columns
        .iter()
        .filter(|c| !NOT_METRICS.contains(&c.as_str()))
        .cloned()
        .collect();
    let mut w = long.map(csv::Writer::from_writer);
    let io = |e: csv::Error| Error::Io(e.to_string());
    if let Some(w) = w.as_mut() {
        let mut header = vec!["job".to_string()];
        header.extend(m.axes.iter().cloned());
        header.extend(["generation".to_string(), "replicate".to_string()]);
        header.extend(columns.iter().cloned());
        w.write_record(&header).map_err(io)?;
    }
    // Pass 2: rows, and the values per (group, generation, metric).
    let mut groups: Vec<Vec<String>> = Vec::new();
    let mut values: HashMap<(usize, usize, usize), Vec<f64>> = HashMap::new();
    let mut generations: Vec<usize> = Vec::new();
    let mut rows = 0usize;
    for &i in &done {
        let job = &m.jobs[i];
        let group: Vec<String> = gpos.iter().map(|&p| job.axes[p].1.clone()).collect();
        let gi = groups.iter().position(|g| *g == group).unwrap_or_else(|| {
            groups.push(group.clone());
            groups.len() - 1
        });
        let path = m.job_dir(root, i).join("metrics.csv");
        let mut rdr = csv::Reader::from_path(&path)
            .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
        let h: Vec<String> = rdr
            .headers()
            .map_err(|e| Error::Data(format!("{}: {e}", path.display())))?
            .iter()
            .map(String::from)
            .collect();
        let at: Vec<Option<usize>> = columns
            .iter()
            .map(|c| h.iter().position(|x| x == c))
            .collect();
        let mpos: Vec<Option<usize>> = metrics
            .iter()
            .map(|c| h.iter().position(|x| x == c))
            .collect();
        for (line, rec) in rdr.records().enumerate() {
            let rec = rec.map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
            let generation: usize = rec.get(0).and_then(|g| g.parse().ok()).ok_or_else(|| {
                Error::Data(format!(
                    "{}: line {}: generation is not a number",
                    path.display(),
                    line + 2
                ))
            })?;
            if let Some(w) = w.as_mut() {
                let mut row = vec![i.to_string()];
                row.extend(job.axes.iter().map(|(_, v)| v.clone()));
                row.push(rec.get(0).unwrap_or("").to_string());
                row.push(rec.get(1).unwrap_or("").to_string());
                row.extend(
                    at.iter()
                        .map(|p| p.and_then(|p| rec.get(p)).unwrap_or("").to_string()),
                );
                w.write_record(&row).map_err(io)?;
            }
            if !generations.contains(&generation) {
                generations.push(generation);
            }
            for (mi, p) in mpos.iter().enumerate() {
                if let Some(v) = p
                    .and_then(|p| rec.get(p))
                    .and_then(|v| v.parse::<f64>().ok())
                {
                    values.entry((gi, generation, mi)).or_default().push(v);
                }
            }
            rows += 1;
        }
    }
    if let Some(w) = w.as_mut() {
        w.flush().map_err(|e| Error::Io(e.to_string()))?;
    }
    generations.sort_unstable();
    let mut summary = Vec::new();
    for (gi, group) in groups.iter().enumerate() {
        for &g in &generations {
            for (mi, metric) in metrics.iter().enumerate() {
                if let Some(xs) = values.get(&(gi, g, mi)) {
                    summary.push(SummaryRow {
                        group: group.clone(),
                        generation: g,
                        metric: metric.clone(),
                        stats: Summary::of(xs),
                    });
                }
            }
        }
    }
    Ok(Collected {
        jobs_done: done.len(),
        jobs_missing: m.jobs.len() - done.len(),
        rows,
        group_by: group_by.to_vec(),
        metrics,
        summary,
    })
}

/// The summary as CSV text (see the module documentation).
pub fn summary_csv(c: &Collected) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let io = |e: csv::Error| Error::Io(e.to_string());
    let mut header = c.group_by.clone();
    header.extend(
        [
            "generation",
            "metric",
            "n",
            "mean",
            "sd",
            "ci95_low",
            "ci95_high",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    w.write_record(&header).map_err(io)?;
    let num = |x: f64| {
        if x.is_finite() {
            x.to_string()
        } else {
            String::new()
        }
    };
    for r in &c.summary {
        let mut row = r.group.clone();
        row.extend([
            r.generation.to_string(),
            r.metric.clone(),
            r.stats.n.to_string(),
            num(r.stats.mean),
            num(r.stats.sd),
            num(r.stats.ci_low),
            num(r.stats.ci_high),
        ]);
        w.write_record(&row).map_err(io)?;
    }
    String::from_utf8(w.into_inner().map_err(|e| Error::Io(e.to_string()))?)
        .map_err(|e| Error::Io(e.to_string()))
}
