//! The headline of a drift run: per metric, how much of the collapse is arithmetic.
//!
//! Read from the per-backend `metrics.csv` files a drift run writes (`OUT/<backend>/`, the
//! format of `collapse run`): for every model metric (the columns after the pool's) and every
//! backend `b` besides the reference `ref` (the first of `--backends`),
//! - `diff_mean_max`: the largest, over generations g, of the mean over replicates r of
//!   `|m_b(g, r) − m_ref(g, r)|` (and `diff_mean_generation`, the first g attaining it);
//! - `diff_max`: the largest `|m_b(g, r) − m_ref(g, r)|` over generations and replicates (and
//!   `diff_max_generation`);
//! - `collapse`: the size of the collapse itself on the reference, the mean over replicates of
//!   `|m_ref(G, r) − m_ref(0, r)|` (G the last generation);
//! - `ratio = diff_mean_max / collapse`: the share of the collapse that is arithmetic (0: none
//!   of it; 1: the backends disagree by as much as the metric moves).
//!
//! Pairs where either value is not finite (a metric's NaN) are left out of every mean and
//! maximum; a quantity with no finite pair is NaN.

use std::path::Path;

use crate::error::{Error, Result};
use crate::experiment::generations::POOL_COLUMNS;

/// One metric of one backend against the reference (see the module documentation).
#[derive(Clone, Debug, serde::Serialize)]
pub struct HeadlineRow {
    /// The `metrics.csv` column.
    pub metric: String,
    /// The reference backend (the first of `--backends`).
    pub reference: String,
    /// The backend compared with it.
    pub backend: String,
    /// Largest mean over replicates of `|m_b − m_ref|` at any generation (metric units).
    pub diff_mean_max: f64,
    /// The first generation attaining `diff_mean_max` (absent when it is NaN).
    pub diff_mean_generation: Option<usize>,
    /// Largest `|m_b − m_ref|` over generations and replicates (metric units).
    pub diff_max: f64,
    /// The first generation attaining `diff_max`.
    pub diff_max_generation: Option<usize>,
    /// Mean over replicates of `|m_ref(last generation) − m_ref(0)|` (metric units).
    pub collapse: f64,
    /// `diff_mean_max / collapse`.
    pub ratio: f64,
}

/// A `metrics.csv`: its metric column names (after the pool's) and, per row, generation,
/// replicate and those metrics' values.
struct Metrics {
    names: Vec<String>,
    rows: Vec<(usize, usize, Vec<f64>)>,
}

fn read(path: &Path) -> Result<Metrics> {
    let err = |e: &dyn std::fmt::Display| Error::Data(format!("{}: {e}", path.display()));
    let mut rdr = csv::Reader::from_path(path).map_err(|e| err(&e))?;
    let header: Vec<String> = rdr
        .headers()
        .map_err(|e| err(&e))?
        .iter()
        .map(String::from)
        .collect();
    if header.len() < POOL_COLUMNS.len() || header[..POOL_COLUMNS.len()] != POOL_COLUMNS {
        return Err(err(
            &"not a collapse run's metrics.csv (its first columns are not \
                          generation, replicate, pool_size, pool_real_fraction, \
                          pool_composition)",
        ));
    }
    let mut rows = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| err(&e))?;
        let int = |c: usize| {
            rec[c].parse::<usize>().map_err(|_| {
                err(&format!(
                    "line {}: {} {:?} is not an integer",
                    i + 2,
                    header[c],
                    &rec[c]
                ))
            })
        };
        let values = (POOL_COLUMNS.len()..header.len())
            .map(|c| {
                rec[c].parse::<f64>().map_err(|_| {
                    err(&format!(
                        "line {}: {} {:?} is not a number",
                        i + 2,
                        header[c],
                        &rec[c]
                    ))
                })
            })
            .collect::<Result<Vec<f64>>>()?;
        rows.push((int(0)?, int(1)?, values));
    }
    Ok(Metrics {
        names: header[POOL_COLUMNS.len()..].to_vec(),
        rows,
    })
}

/// The headline of the drift run in `dir` over `backends` (the first is the reference): one
/// row per metric and non-reference backend, in column then backend order, from
/// `dir/<backend>/metrics.csv`.
pub fn headline(dir: &Path, backends: &[String]) -> Result<Vec<HeadlineRow>> {
    let tables = backends
        .iter()
        .map(|b| read(&dir.join(b).join(crate::experiment::METRICS_FILE)))
        .collect::<Result<Vec<_>>>()?;
    let reference = &tables[0];
    for (b, t) in backends.iter().zip(&tables).skip(1) {
        if t.names != reference.names || t.rows.len() != reference.rows.len() {
            return Err(Error::Data(format!(
                "{}/{b}/metrics.csv: other columns or rows than {}/{}/metrics.csv",
                dir.display(),
                dir.display(),
                backends[0]
            )));
        }
    }
    let last = reference.rows.iter().map(|r| r.0).max().unwrap_or(0);
    let replicates = reference.rows.iter().map(|r| r.1 + 1).max().unwrap_or(0);
    // Each table as [generation][replicate] → the row's values (NaN where a row is missing).
    let grids: Vec<Vec<Vec<Vec<f64>>>> = tables
        .iter()
        .map(|t| {
            let mut g = vec![vec![vec![f64::NAN; t.names.len()]; replicates]; last + 1];
            for (gi, r, v) in &t.rows {
                if *gi <= last && *r < replicates {
                    g[*gi][*r] = v.clone();
                }
            }
            g
        })
        .collect();
    let pair = |a: f64, b: f64| (a.is_finite() && b.is_finite()).then(|| (b - a).abs());
    let reference = &grids[0];
    let mut out = Vec::new();
    for (c, metric) in tables[0].names.iter().enumerate() {
        // Collapse: |m_ref(G) − m_ref(0)| per replicate.
        let sizes: Vec<f64> = (0..replicates)
            .filter_map(|r| pair(reference[0][r][c], reference[last][r][c]))
            .collect();
        let collapse = mean(&sizes);
        for (b, t) in backends.iter().zip(&grids).skip(1) {
            let (mut mean_max, mut mean_gen) = (f64::NAN, None);
            let (mut max, mut max_gen) = (f64::NAN, None);
            for g in 0..=last {
                let diffs: Vec<f64> = (0..replicates)
                    .filter_map(|r| pair(reference[g][r][c], t[g][r][c]))
                    .collect();
                let m = mean(&diffs);
                if m.is_finite() && (mean_max.is_nan() || m > mean_max) {
                    (mean_max, mean_gen) = (m, Some(g));
                }
                if let Some(x) = diffs.iter().copied().reduce(f64::max)
                    && (max.is_nan() || x > max)
                {
                    (max, max_gen) = (x, Some(g));
                }
            }
            out.push(HeadlineRow {
                metric: metric.clone(),
                reference: backends[0].clone(),
                backend: b.clone(),
                diff_mean_max: mean_max,
                diff_mean_generation: mean_gen,
                diff_max: max,
                diff_max_generation: max_gen,
                collapse,
                ratio: mean_max / collapse,
            });
        }
    }
    Ok(out)
}

/// Mean of `v`; NaN when empty.
fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}
