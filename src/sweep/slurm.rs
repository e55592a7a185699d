//! sbatch scripts for a sweep's pending jobs: one job array per block of indices below
//! Slurm's `MaxArraySize` (task id = job index − the block's offset, passed to
//! `collapse sweep task --index-offset`), throttled by `%L`, requeued on preemption, each task
//! running `collapse sweep task DIR` with the absolute path of the binary. The script names no
//! cluster: `sbatch` and the tasks use whatever `SLURM_CONF` (or the default configuration) the
//! environment names.

use std::path::Path;

/// What the `#SBATCH` lines say.
#[derive(Debug, Clone, Default)]
pub struct SlurmOptions {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--time` (Slurm's syntax, e.g. `01:00:00`).
    pub time: Option<String>,
    /// `--cpus-per-task` (also each task's `--threads`).
    pub cpus_per_task: usize,
    /// `--mem` (e.g. `2G`).
    pub mem: Option<String>,
    /// The `%L` throttle: at most this many tasks at once (0 = no limit).
    pub array_limit: usize,
    /// Further `#SBATCH` arguments, verbatim.
    pub extra: Vec<String>,
}

/// Slurm's `--array` list for `indices` (sorted, distinct) minus `offset`: ranges `a-b` and
/// single ids joined by commas, then `%L` when `limit > 0`.
pub fn array_spec(indices: &[usize], offset: usize, limit: usize) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let start = indices[i];
        let mut end = start;
        while i + 1 < indices.len() && indices[i + 1] == end + 1 {
            i += 1;
            end = indices[i];
        }
        parts.push(if start == end {
            format!("{}", start - offset)
        } else {
            format!("{}-{}", start - offset, end - offset)
        });
        i += 1;
    }
    let mut s = parts.join(",");
    if limit > 0 {
        s.push_str(&format!("%{limit}"));
    }
    s
}

/// Split sorted `indices` into blocks of ids `< max_array`: `(offset, indices)` with every
/// index in `[offset, offset + max_array)`.
pub fn blocks(indices: &[usize], max_array: usize) -> Vec<(usize, Vec<usize>)> {
    let max_array = max_array.max(1);
    let mut out: Vec<(usize, Vec<usize>)> = Vec::new();
    for &i in indices {
        let offset = i / max_array * max_array;
        match out.last_mut() {
            Some((o, v)) if *o == offset => v.push(i),
            _ => out.push((offset, vec![i])),
        }
    }
    out
}

/// Shell-quote `s` (single quotes).
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The sbatch script running the jobs `indices` (one block, see [`blocks`]) of the sweep in
/// `dir` with the binary `collapse`.
pub fn script(
    collapse: &Path,
    dir: &Path,
    indices: &[usize],
    offset: usize,
    o: &SlurmOptions,
) -> String {
    let d = dir.display().to_string();
    let mut s = String::from("#!/bin/bash\n");
    s.push_str(
        "# Written by `collapse sweep slurm`: one array task per pending job of the sweep.\n",
    );
    s.push_str("#SBATCH --job-name=collapse-sweep\n");
    s.push_str(&format!(
        "#SBATCH --array={}\n",
        array_spec(indices, offset, o.array_limit)
    ));
    s.push_str(&format!("#SBATCH --output={d}/logs/slurm-%A_%a.out\n"));
    s.push_str("#SBATCH --requeue\n");
    s.push_str(&format!(
        "#SBATCH --cpus-per-task={}\n",
        o.cpus_per_task.max(1)
    ));
    if let Some(p) = &o.partition {
        s.push_str(&format!("#SBATCH --partition={p}\n"));
    }
    if let Some(t) = &o.time {
        s.push_str(&format!("#SBATCH --time={t}\n"));
    }
    if let Some(m) = &o.mem {
        s.push_str(&format!("#SBATCH --mem={m}\n"));
    }
    for e in &o.extra {
        s.push_str(&format!("#SBATCH {e}\n"));
    }
    s.push_str(&format!(
        "# Task id + {offset} = job index; the task takes the job's run lock, so a requeued or\n\
         # duplicated task cannot write it twice, and a finished job is skipped.\n\
         exec {} --threads \"${{SLURM_CPUS_PER_TASK:-{}}}\" sweep task {} --index-offset {offset}\n",
        quote(&collapse.display().to_string()),
        o.cpus_per_task.max(1),
        quote(&d)
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_lists_compress_ranges_and_blocks_respect_the_size_limit() {
        assert_eq!(array_spec(&[0, 1, 2, 3, 5, 7, 8], 0, 4), "0-3,5,7-8%4");
        assert_eq!(array_spec(&[1000, 1001, 1500], 1000, 0), "0-1,500");
        assert_eq!(
            blocks(&[0, 999, 1000, 2500], 1000),
            vec![(0, vec![0, 999]), (1000, vec![1000]), (2000, vec![2500])]
        );
        let s = script(
            Path::new("/opt/c ollapse"),
            Path::new("/s"),
            &[3, 4],
            0,
            &SlurmOptions {
                cpus_per_task: 2,
                array_limit: 4,
                partition: Some("debug".into()),
                ..Default::default()
            },
        );
        assert!(s.contains("#SBATCH --array=3-4%4\n"), "{s}");
        assert!(s.contains("#SBATCH --partition=debug\n"), "{s}");
        assert!(
            s.contains(
                "exec '/opt/c ollapse' --threads \"${SLURM_CPUS_PER_TASK:-2}\" sweep task '/s'"
            ),
            "{s}"
        );
    }
}
