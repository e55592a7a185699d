//! Per-kernel device-time tables: the recorded dispatch times of a bench ([`KernelTime`]s from
//! [`crate::gpu::GpuContext::take_timings`]) summed per kernel and sorted by total time, so a
//! bench can say which kernels a step spends its device time in (`bench lm`, `bench vae`,
//! `bench gmm`). Times are GPU timestamps where the adapter has them, else wall clock around
//! each dispatch (then they include submission and wait overhead; the table says which).

use std::collections::HashMap;

use crate::gpu::{KernelTime, TimingSource};

/// One kernel's share of a bench's recorded device time.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KernelRow {
    /// Kernel label (`shader:entry`).
    pub kernel: String,
    /// Dispatches recorded.
    pub calls: usize,
    /// Total seconds over those dispatches.
    pub seconds: f64,
    /// `seconds` as a fraction of the whole table's seconds (0–1).
    pub share: f64,
}

/// Recorded kernel times summed per kernel, largest total first.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KernelTable {
    /// Per-kernel rows, sorted by `seconds` descending (ties by name).
    pub rows: Vec<KernelRow>,
    /// Sum of every row's seconds.
    pub total_seconds: f64,
    /// Total dispatches.
    pub calls: usize,
    /// How the times were measured: GPU timestamps, wall clock, or mixed/none.
    pub source: String,
}

impl KernelTable {
    /// Sum `times` per kernel label.
    pub fn from_times(times: &[KernelTime]) -> Self {
        let mut by: HashMap<&str, (usize, f64)> = HashMap::new();
        for t in times {
            let e = by.entry(t.kernel.as_str()).or_default();
            e.0 += 1;
            e.1 += t.seconds;
        }
        let total: f64 = by.values().map(|v| v.1).sum();
        let mut rows: Vec<KernelRow> = by
            .into_iter()
            .map(|(k, (calls, seconds))| KernelRow {
                kernel: k.to_string(),
                calls,
                seconds,
                share: if total > 0.0 { seconds / total } else { 0.0 },
            })
            .collect();
        rows.sort_by(|a, b| {
            b.seconds
                .total_cmp(&a.seconds)
                .then_with(|| a.kernel.cmp(&b.kernel))
        });
        let source = match times.first().map(|t| t.source) {
            None => "none".to_string(),
            Some(s) if times.iter().all(|t| t.source == s) => match s {
                TimingSource::GpuTimestamp => "GPU timestamps".to_string(),
                TimingSource::WallClock => "wall clock per dispatch".to_string(),
                TimingSource::Queued => "queued (untimed)".to_string(),
            },
            Some(_) => "mixed".to_string(),
        };
        Self {
            calls: times.len(),
            rows,
            total_seconds: total,
            source,
        }
    }

    /// The table as text: a header naming `title`, the time source and the totals, then the
    /// first `top` kernels (calls, total ms, ms per call, share of the total).
    pub fn render(&self, title: &str, top: usize) -> String {
        let mut s = format!(
            "{title}: {} dispatches, {:.3} ms of device time ({})\n",
            self.calls,
            self.total_seconds * 1e3,
            self.source
        );
        s += &format!(
            "  {:<40} {:>7} {:>11} {:>11} {:>7}\n",
            "kernel", "calls", "total ms", "ms/call", "share"
        );
        for r in self.rows.iter().take(top) {
            s += &format!(
                "  {:<40} {:>7} {:>11.3} {:>11.4} {:>6.1}%\n",
                r.kernel,
                r.calls,
                r.seconds * 1e3,
                r.seconds * 1e3 / r.calls.max(1) as f64,
                r.share * 100.0
            );
        }
        if self.rows.len() > top {
            let rest: f64 = self.rows[top..].iter().map(|r| r.seconds).sum();
            s += &format!(
                "  ({} more kernels, {:.3} ms)\n",
                self.rows.len() - top,
                rest * 1e3
            );
        }
        s
    }

    /// The rows as CSV (`kernel,calls,seconds,share`, header first) for pandas.
    pub fn csv(&self) -> String {
        let mut s = String::from("kernel,calls,seconds,share\n");
        for r in &self.rows {
            s += &format!("{},{},{:e},{:.6}\n", r.kernel, r.calls, r.seconds, r.share);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(k: &str, s: f64) -> KernelTime {
        KernelTime {
            kernel: k.into(),
            seconds: s,
            source: TimingSource::GpuTimestamp,
        }
    }

    #[test]
    fn sums_per_kernel_and_sorts_by_total() {
        let times = [t("a", 1.0), t("b", 0.5), t("a", 2.0), t("c", 4.0)];
        let tab = KernelTable::from_times(&times);
        let names: Vec<_> = tab.rows.iter().map(|r| r.kernel.as_str()).collect();
        assert_eq!(names, ["c", "a", "b"]);
        assert_eq!(tab.rows[1].calls, 2);
        assert_eq!(tab.rows[1].seconds, 3.0);
        assert_eq!(tab.calls, 4);
        assert!((tab.rows[0].share - 4.0 / 7.5).abs() < 1e-15);
        assert_eq!(tab.source, "GPU timestamps");
        let text = tab.render("step", 2);
        assert!(text.contains("(1 more kernels, 500.000 ms)"), "{text}");
        assert_eq!(tab.csv().lines().count(), 4);
    }
}
