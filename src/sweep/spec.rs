//! The sweep specification (TOML) and the job list it expands to.
//!
//! ```toml
//! [base]                  # any `collapse run` flag, without its dashes (`real_rows` or `real-rows`)
//! model = "gaussian"
//! samples = 10
//! generations = 30
//! replicates = 50
//! backend = "cpu64"
//! [axes]                  # each a list of values, or { count = N, start = S } (S, S+1, …, S+N−1)
//! policy = ["replace", "accumulate"]
//! seed = { count = 40 }
//! [zip.size]              # optional: axes that vary together (equal-length lists), one group each
//! samples = [10, 100]
//! generations = [100, 30]
//! ```
//!
//! The jobs are the Cartesian product of the axes and zip groups, in the order the file lists
//! them, the first varying slowest (nested loops: the last axis changes from one job to the
//! next). A job is the `collapse run` flags of `[base]` followed by its axis values; a `true`
//! value is a bare switch, `false` leaves the flag out. `out`, `resume` and `force` are the
//! sweep's own business and refused; a key in both `[base]` and an axis is refused.

use crate::error::{Error, Result};

/// One value of a flag, as it is written on the command line.
pub type FlagValue = String;

/// An axis of the grid: one flag (a plain axis) or several that vary together (a zip group),
/// with its values, one row per point (`values[i][j]` is flag `names[j]`'s value at point `i`).
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    /// The flags (without dashes, `_` spelled `-`), one for a plain axis.
    pub names: Vec<String>,
    /// The points: each the values of `names`, in order.
    pub values: Vec<Vec<FlagValue>>,
}

/// A parsed specification.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// `[base]`: flags every job has, in file order.
    pub base: Vec<(String, FlagValue)>,
    /// The axes and zip groups, in file order (`[axes]` first, then `[zip.*]`).
    pub axes: Vec<Axis>,
}

/// One job of a sweep: its axis values and its `collapse run` arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// `(axis flag, value)` for every axis flag, in [`Spec::axis_names`] order.
    pub axes: Vec<(String, FlagValue)>,
    /// The `collapse run` arguments (`--flag value` …), without `--out`.
    pub args: Vec<String>,
}

/// Flags a sweep sets itself.
const RESERVED: &[&str] = &["out", "resume", "force", "help", "threads"];

impl Spec {
    /// Parse the TOML text `text` of the file `path` (named in every error).
    pub fn parse(text: &str, path: &str) -> Result<Self> {
        let bad = |m: String| Error::InvalidArgument(format!("{path}: {m}"));
        let doc: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| bad(e.to_string().replace('\n', " ")))?;
        for key in doc.keys() {
            if !["base", "axes", "zip"].contains(&key.as_str()) {
                return Err(bad(format!(
                    "unknown table [{key}] (a sweep has [base], [axes] and [zip.NAME])"
                )));
            }
        }
        let table = |key: &str| -> Result<toml::Table> {
            match doc.get(key) {
                None => Ok(toml::Table::new()),
                Some(toml::Value::Table(t)) => Ok(t.clone()),
                Some(_) => Err(bad(format!("[{key}] must be a table"))),
            }
        };
        let mut seen: Vec<String> = Vec::new();
        let mut claim = |name: &str, seen_in: &str| -> Result<String> {
            let flag = flag_name(name);
            if RESERVED.contains(&flag.as_str()) {
                return Err(bad(format!(
                    "{seen_in}: `{name}` is set by the sweep itself (each job runs in its own \
                     directory with its own thread share); remove it"
                )));
            }
            if seen.contains(&flag) {
                return Err(bad(format!(
                    "{seen_in}: `{name}` appears twice (in [base] and an axis, or in two axes)"
                )));
            }
            seen.push(flag.clone());
            Ok(flag)
        };
        let mut base = Vec::new();
        for (k, v) in table("base")? {
            let flag = claim(&k, "[base]")?;
            base.push((
                flag,
                scalar(&v).map_err(|m| bad(format!("[base] {k}: {m}")))?,
            ));
        }
        let mut axes = Vec::new();
        for (k, v) in table("axes")? {
            let flag = claim(&k, "[axes]")?;
            let values = axis_values(&v).map_err(|m| bad(format!("[axes] {k}: {m}")))?;
            axes.push(Axis {
                names: vec![flag],
                values: values.into_iter().map(|v| vec![v]).collect(),
            });
        }
        for (group, v) in table("zip")? {
            let toml::Value::Table(t) = v else {
                return Err(bad(format!(
                    "[zip] {group}: must be a table of equal-length lists ([zip.{group}])"
                )));
            };
            let mut names = Vec::new();
            let mut columns: Vec<Vec<FlagValue>> = Vec::new();
            for (k, v) in t {
                names.push(claim(&k, &format!("[zip.{group}]"))?);
                columns.push(axis_values(&v).map_err(|m| bad(format!("[zip.{group}] {k}: {m}")))?);
            }
            let Some(len) = columns.first().map(Vec::len) else {
                return Err(bad(format!("[zip.{group}] is empty")));
            };
            if let Some((i, c)) = columns.iter().enumerate().find(|(_, c)| c.len() != len) {
                return Err(bad(format!(
                    "[zip.{group}]: `{}` has {} values but `{}` has {len}: zipped axes vary \
                     together and need equal lengths",
                    names[i],
                    c.len(),
                    names[0]
                )));
            }
            axes.push(Axis {
                names,
                values: (0..len)
                    .map(|i| columns.iter().map(|c| c[i].clone()).collect())
                    .collect(),
            });
        }
        Ok(Self { base, axes })
    }

    /// Every axis flag, in order (a zip group's flags in its file order).
    pub fn axis_names(&self) -> Vec<String> {
        self.axes.iter().flat_map(|a| a.names.clone()).collect()
    }

    /// The number of jobs (the product of the axes' lengths; 1 without axes), or `None` on
    /// overflow.
    pub fn job_count(&self) -> Option<usize> {
        self.axes
            .iter()
            .try_fold(1usize, |n, a| n.checked_mul(a.values.len()))
    }

    /// The jobs, in order (see the module documentation). Refuses more than `limit` jobs
    /// before building any.
    pub fn jobs(&self, limit: usize) -> Result<Vec<Job>> {
        let n = self.job_count().filter(|&n| n <= limit).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "the sweep has {} jobs, more than the {limit} a sweep may hold: split it",
                self.job_count()
                    .map_or("too many".to_string(), |n| n.to_string())
            ))
        })?;
        let mut jobs = Vec::with_capacity(n);
        for i in 0..n {
            // Mixed-radix digits of i, the last axis fastest.
            let mut rest = i;
            let mut point = vec![0usize; self.axes.len()];
            for (a, p) in self.axes.iter().zip(point.iter_mut()).rev() {
                *p = rest % a.values.len();
                rest /= a.values.len();
            }
            let axes: Vec<(String, FlagValue)> = self
                .axes
                .iter()
                .zip(&point)
                .flat_map(|(a, &p)| a.names.iter().cloned().zip(a.values[p].iter().cloned()))
                .collect();
            let mut args = Vec::new();
            for (flag, value) in self.base.iter().chain(&axes) {
                push_flag(&mut args, flag, value);
            }
            jobs.push(Job { axes, args });
        }
        Ok(jobs)
    }
}

/// `--flag value`, or `--flag` for `true`, or nothing for `false`.
fn push_flag(args: &mut Vec<String>, flag: &str, value: &str) {
    match value {
        "true" => args.push(format!("--{flag}")),
        "false" => {}
        v => {
            args.push(format!("--{flag}"));
            args.push(v.to_string());
        }
    }
}

/// A spec key as a flag name: `real_rows` → `real-rows`.
fn flag_name(key: &str) -> String {
    key.replace('_', "-")
}

/// A scalar TOML value as its command-line spelling.
fn scalar(v: &toml::Value) -> std::result::Result<FlagValue, String> {
    match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) if f.is_finite() => Ok(f.to_string()),
        toml::Value::Float(f) => Err(format!("{f} is not a finite number")),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        other => Err(format!(
            "expected a string, number or boolean, got {}",
            other.type_str()
        )),
    }
}

/// An axis: a non-empty list of scalars, or `{ count = N, start = S }`.
fn axis_values(v: &toml::Value) -> std::result::Result<Vec<FlagValue>, String> {
    match v {
        toml::Value::Array(a) if a.is_empty() => Err("an axis needs at least one value".into()),
        toml::Value::Array(a) => a.iter().map(scalar).collect(),
        toml::Value::Table(t) => {
            for k in t.keys() {
                if k != "count" && k != "start" {
                    return Err(format!(
                        "unknown key `{k}` (a range axis is {{ count = N, start = S }})"
                    ));
                }
            }
            let int = |k: &str, default: i64| match t.get(k) {
                None => Ok(default),
                Some(toml::Value::Integer(i)) => Ok(*i),
                Some(_) => Err(format!("`{k}` must be an integer")),
            };
            let count = int("count", -1)?;
            let start = int("start", 0)?;
            if count < 1 {
                return Err("{ count = N } needs an integer N ≥ 1".into());
            }
            if start < 0 || start.checked_add(count).is_none() {
                return Err(format!("start = {start}, count = {count} is out of range"));
            }
            Ok((start..start + count).map(|i| i.to_string()).collect())
        }
        other => Err(format!(
            "an axis is a list of values or {{ count = N }}, got {}",
            other.type_str()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUE: &str = r#"
[base]
model = "gaussian"
samples = 10
generations = 30
replicates = 50
backend = "cpu64"
[axes]
policy = ["replace", "accumulate"]
seed = { count = 40 }
"#;

    #[test]
    fn the_issue_spec_expands_to_80_jobs_last_axis_fastest() {
        let s = Spec::parse(ISSUE, "s.toml").unwrap();
        let jobs = s.jobs(100_000).unwrap();
        assert_eq!(jobs.len(), 80);
        assert_eq!(s.axis_names(), ["policy", "seed"]);
        assert_eq!(
            jobs[1].axes,
            [
                ("policy".into(), "replace".into()),
                ("seed".into(), "1".into())
            ]
        );
        assert_eq!(jobs[40].axes[0].1, "accumulate");
        assert_eq!(jobs[40].axes[1].1, "0");
        assert_eq!(
            jobs[41].args,
            [
                "--model",
                "gaussian",
                "--samples",
                "10",
                "--generations",
                "30",
                "--replicates",
                "50",
                "--backend",
                "cpu64",
                "--policy",
                "accumulate",
                "--seed",
                "1"
            ]
        );
    }

    #[test]
    fn zipped_axes_vary_together_and_switches_are_bare() {
        let s = Spec::parse(
            "[base]\nmodel = 'gmm'\nforce_x = true\nno = false\n[axes]\nseed = [3, 4]\n\
             [zip.size]\nsamples = [10, 100]\nreal_rows = [5, 50]\n",
            "z.toml",
        )
        .unwrap();
        let jobs = s.jobs(10).unwrap();
        assert_eq!(jobs.len(), 4);
        assert_eq!(s.axis_names(), ["seed", "samples", "real-rows"]);
        assert_eq!(
            jobs[3].args,
            [
                "--model",
                "gmm",
                "--force-x",
                "--seed",
                "4",
                "--samples",
                "100",
                "--real-rows",
                "50"
            ]
        );
    }

    #[test]
    fn bad_specs_are_refused_naming_the_file_and_key() {
        for (text, needle) in [
            ("[base]\nout = 'x'\n", "`out` is set by the sweep"),
            ("[base]\nseed = 1\n[axes]\nseed = [1, 2]\n", "appears twice"),
            ("[axes]\nseed = []\n", "at least one value"),
            ("[axes]\nseed = { count = 0 }\n", "N ≥ 1"),
            (
                "[axes]\nseed = { count = 2, step = 3 }\n",
                "unknown key `step`",
            ),
            ("[zip.a]\nsamples = [1, 2]\nseed = [1]\n", "equal lengths"),
            ("[grid]\nx = 1\n", "unknown table [grid]"),
            ("[base]\nx = [1]\n", "expected a string"),
            ("[axes\n", "s.toml"),
        ] {
            let e = Spec::parse(text, "s.toml").unwrap_err().to_string();
            assert!(e.contains("s.toml") && e.contains(needle), "{text:?}: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
        let big = Spec::parse(
            "[axes]\na = { count = 1000 }\nb = { count = 1000 }\n",
            "b.toml",
        )
        .unwrap();
        let e = big.jobs(100_000).unwrap_err().to_string();
        assert!(e.contains("1000000 jobs"), "{e}");
    }
}
