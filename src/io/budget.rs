//! Memory budgets: every size a user controls (a flag, a shape, a policy) is turned into a byte
//! count with checked arithmetic and compared with the memory the machine has, *before* anything
//! is allocated, so a size that cannot fit ends in a one-line [`Error::InvalidArgument`] naming
//! the flag to change, never in `memory allocation of N bytes failed` or a capacity-overflow
//! panic.
//!
//! - [`Tally`] sums the byte counts of the buffers an operation will hold at once (`dims` ×
//!   element size, every product and sum checked; an overflow is remembered and reported as
//!   "more than 18.4 EB").
//! - [`available`] is what the machine can give: Linux's `MemAvailable` (`/proc/meminfo`),
//!   lowered to the cgroup's remaining allowance when one is set (`/sys/fs/cgroup/memory.max`
//!   minus `memory.current`, or cgroup v1's `memory.limit_in_bytes` minus `memory.usage_in_bytes`).
//!   The environment variable [`LIMIT_ENV`] (`COLLAPSE_MEMORY_LIMIT`, e.g. `4G`) replaces it: for
//!   a shared node whose fair share is less than what is free, and for tests. When none is known
//!   only overflow is checked.
//! - [`Tally::check`] (and [`check`]) turn "what, bytes, hint" into the message, e.g.
//!   `collapse run's pools and models would need 80.0 GB (the machine has 22.9 GB available);
//!   lower --samples`.
//! - [`check_device`] compares one buffer with an adapter limit (wgpu's `max_buffer_size`,
//!   `max_storage_buffer_binding_size`), for GPU backends; this module knows no GPU, the caller
//!   passes the limit.
//!
//! Sizes are decimal (1 GB = 10⁹ bytes), printed with one decimal by [`human`].

use crate::error::{Error, Result};

/// Environment variable that, when set, is the memory budget in bytes instead of what the
/// machine reports: a plain number of bytes or one with a suffix `K`, `M`, `G`, `T` (powers of
/// 1000, an optional trailing `B`) or `Ki`, `Mi`, `Gi`, `Ti` (powers of 1024, optional `B`).
pub const LIMIT_ENV: &str = "COLLAPSE_MEMORY_LIMIT";

/// A byte count as one short decimal figure: `512 B`, `3.2 kB`, `80.0 GB`, `18.4 EB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["kB", "MB", "GB", "TB", "PB", "EB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1000.0;
    let mut unit = 0;
    while v >= 999.95 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `dims[0] · dims[1] · … · elem_bytes`, or `None` when the product overflows 64 bits.
pub fn product(dims: &[usize], elem_bytes: usize) -> Option<u64> {
    dims.iter()
        .try_fold(elem_bytes as u64, |acc, &d| acc.checked_mul(d as u64))
}

/// The bytes of the buffers one operation holds at once, summed with checked arithmetic, and
/// the one-line refusal when they cannot fit (see the module documentation).
///
/// ```
/// use collapse_kernels::io::budget::Tally;
/// let mut t = Tally::new("collapse rng's draws", "lower --count");
/// t.add(&[1_000_000, 2], 8); // two f64 buffers of 10⁶ values
/// assert_eq!(t.bytes(), Some(16_000_000));
/// assert!(t.check_against(Some(1_000_000.into())).is_err());
/// ```
#[derive(Clone, Debug)]
pub struct Tally {
    what: String,
    hint: String,
    /// `None` once a product or sum overflowed.
    bytes: Option<u64>,
}

impl Tally {
    /// An empty tally for `what` (the subject of the message: "`what` would need …") whose
    /// refusal ends with `hint` (what to change, naming the flag: "lower --samples").
    pub fn new(what: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            hint: hint.into(),
            bytes: Some(0),
        }
    }

    /// Add a buffer of `dims[0] · dims[1] · …` elements of `elem_bytes` bytes.
    pub fn add(&mut self, dims: &[usize], elem_bytes: usize) -> &mut Self {
        self.bytes = self
            .bytes
            .zip(product(dims, elem_bytes))
            .and_then(|(a, b)| a.checked_add(b));
        self
    }

    /// Multiply everything tallied so far by `count` (e.g. one set of buffers per replicate).
    pub fn times(&mut self, count: usize) -> &mut Self {
        self.bytes = self.bytes.and_then(|b| b.checked_mul(count as u64));
        self
    }

    /// Add another tally's bytes (its message parts are dropped).
    pub fn add_tally(&mut self, other: &Tally) -> &mut Self {
        self.bytes = self
            .bytes
            .zip(other.bytes)
            .and_then(|(a, b)| a.checked_add(b));
        self
    }

    /// The total so far, `None` if it overflowed 64 bits.
    pub fn bytes(&self) -> Option<u64> {
        self.bytes
    }

    /// Refuse (see [`Tally::check_against`]) when the total does not fit in what the machine
    /// has ([`available`]); returns the total.
    pub fn check(&self) -> Result<u64> {
        self.check_against(available())
    }

    /// Refuse with a one-line [`Error::InvalidArgument`] when the total overflowed or exceeds
    /// `available` bytes (`None`: unknown, only overflow is checked); returns the total.
    pub fn check_against(&self, available: Option<Available>) -> Result<u64> {
        match self.bytes {
            None => Err(Error::InvalidArgument(format!(
                "{} would need more than {} (the byte count overflows 64 bits); {}",
                self.what,
                human(u64::MAX),
                self.hint
            ))),
            Some(b) => match available {
                Some(a) if b > a.bytes => Err(too_big(&self.what, b, a, &self.hint)),
                _ => Ok(b),
            },
        }
    }
}

/// How much memory a check may use, and where the figure came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Available {
    /// Bytes.
    pub bytes: u64,
    /// Whether the figure is [`LIMIT_ENV`]'s rather than the machine's.
    pub from_env: bool,
}

impl From<u64> for Available {
    /// The machine's figure of `bytes`.
    fn from(bytes: u64) -> Self {
        Self {
            bytes,
            from_env: false,
        }
    }
}

/// The refusal of `what`, which would need `bytes` of the `available`: one line ending in
/// `hint`.
pub fn too_big(what: &str, bytes: u64, available: Available, hint: &str) -> Error {
    let has = if available.from_env {
        format!("{LIMIT_ENV} allows {}", human(available.bytes))
    } else {
        format!("the machine has {} available", human(available.bytes))
    };
    Error::InvalidArgument(format!(
        "{what} would need {} ({has}); {hint}",
        human(bytes)
    ))
}

/// [`Tally`] of one buffer: refuse `what` of `dims` × `elem_bytes` bytes unless it fits in the
/// machine's [`available`] memory; returns the bytes.
pub fn check(what: &str, dims: &[usize], elem_bytes: usize, hint: &str) -> Result<u64> {
    let mut t = Tally::new(what, hint);
    t.add(dims, elem_bytes);
    t.check()
}

/// Refuse a device buffer `what` of `bytes` (`None`: overflowed) over an adapter limit `limit`
/// (bytes) called `limit_name` (e.g. `max_storage_buffer_binding_size`), naming the `hint`.
pub fn check_device(
    what: &str,
    bytes: Option<u64>,
    limit: u64,
    limit_name: &str,
    hint: &str,
) -> Result<()> {
    match bytes {
        Some(b) if b <= limit => Ok(()),
        _ => Err(Error::InvalidArgument(format!(
            "{what} would need a GPU buffer of {} (the adapter's {limit_name} is {}); {hint}",
            bytes.map_or_else(|| format!("more than {}", human(u64::MAX)), human),
            human(limit)
        ))),
    }
}

/// The memory this process may still allocate: [`LIMIT_ENV`] when set (and valid), else
/// `MemAvailable` lowered to the cgroup's remaining allowance; `None` when neither is known
/// (not Linux, no `/proc`). Read afresh on every call.
pub fn available() -> Option<Available> {
    if let Some(b) = std::env::var(LIMIT_ENV).ok().and_then(|v| parse_size(&v)) {
        return Some(Available {
            bytes: b,
            from_env: true,
        });
    }
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let mem = read("/proc/meminfo").and_then(|t| mem_available(&t));
    let cgroup = [
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ]
    .iter()
    .find_map(|(max, cur)| cgroup_room(&read(max)?, read(cur).as_deref()));
    match (mem, cgroup) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
    .map(Available::from)
}

/// `MemAvailable` of a `/proc/meminfo` text, in bytes (the file gives kB, i.e. KiB).
pub fn mem_available(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix("MemAvailable:")?;
        let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        kb.checked_mul(1024)
    })
}

/// What a cgroup with limit text `max` (a byte count, or `max` for none) and usage text
/// `current` lets the process still allocate; `None` when there is no limit. cgroup v1 writes
/// "no limit" as a huge number (≥ 2⁶²), read as none too.
pub fn cgroup_room(max: &str, current: Option<&str>) -> Option<u64> {
    let limit: u64 = max.trim().parse().ok().filter(|&l| l < 1 << 62)?;
    let used: u64 = current.and_then(|c| c.trim().parse().ok()).unwrap_or(0);
    Some(limit.saturating_sub(used))
}

/// A size such as `4096`, `4G`, `4GB`, `1.5T`, `512Mi` or `2GiB` in bytes (see [`LIMIT_ENV`]);
/// `None` when it is not one.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num.parse().ok()?;
    let unit = unit.trim();
    let unit = unit.strip_suffix('B').unwrap_or(unit);
    let scale = match unit {
        "" => 1.0,
        "k" | "K" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        _ => return None,
    };
    let b = v * scale;
    (b.is_finite() && b >= 0.0 && b < u64::MAX as f64).then_some(b as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes_are_short_and_decimal() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(999), "999 B");
        assert_eq!(human(3_200), "3.2 kB");
        assert_eq!(human(80_000_000_000), "80.0 GB");
        assert_eq!(human(22_900_000_000), "22.9 GB");
        assert_eq!(human(999_999_999), "1.0 GB");
        assert_eq!(human(u64::MAX), "18.4 EB");
    }

    #[test]
    fn tally_sums_with_checked_arithmetic() {
        let mut t = Tally::new("x", "lower --n");
        t.add(&[10, 3], 8).add(&[5], 4);
        assert_eq!(t.bytes(), Some(260));
        t.times(2);
        assert_eq!(t.bytes(), Some(520));
        assert_eq!(t.check_against(None).unwrap(), 520);
        assert_eq!(t.check_against(Some(520.into())).unwrap(), 520);
        // A product that wraps in 64 bits is an overflow, not a small number.
        let mut w = Tally::new("bench gmm's data", "lower --shape's N");
        w.add(&[1 << 32, 1 << 32], 8);
        assert_eq!(w.bytes(), None);
        let e = w.check_against(None).unwrap_err().to_string();
        assert!(
            e.contains("overflows 64 bits") && e.ends_with("lower --shape's N"),
            "{e}"
        );
        assert!(!e.contains('\n'));
        // Overflow is sticky.
        w.add(&[1], 1);
        assert_eq!(w.bytes(), None);
        let mut s = Tally::new("s", "h");
        s.add(&[usize::MAX], 1).add(&[usize::MAX], 1);
        if usize::BITS == 64 {
            assert_eq!(s.bytes(), None, "2·(2⁶⁴ − 1) overflows");
        }
        assert_eq!(product(&[], 8), Some(8));
        assert_eq!(product(&[0, usize::MAX], 8), Some(0));
    }

    #[test]
    fn refusals_say_bytes_budget_and_hint() {
        let mut t = Tally::new("collapse run's pools", "lower --samples");
        t.add(&[10_000_000_000], 8);
        let e = t.check_against(Some(22_900_000_000.into())).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid argument: collapse run's pools would need 80.0 GB (the machine has 22.9 GB \
             available); lower --samples"
        );
        let env = Some(Available {
            bytes: 4_000_000_000,
            from_env: true,
        });
        let e = t.check_against(env).unwrap_err().to_string();
        assert!(e.contains("COLLAPSE_MEMORY_LIMIT allows 4.0 GB"), "{e}");
        let e = check_device(
            "matmul 8x8x8's A",
            Some(256),
            128,
            "max_storage_buffer_binding_size",
            "lower --sizes",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("256 B") && e.contains("128 B") && e.contains("--sizes"),
            "{e}"
        );
        assert!(check_device("a", Some(128), 128, "l", "h").is_ok());
        assert!(check_device("a", None, 128, "l", "h").is_err());
    }

    #[test]
    fn meminfo_and_cgroup_texts_are_read() {
        let info = "MemTotal:       32000000 kB\nMemFree:  100 kB\nMemAvailable:   23978380 kB\n";
        assert_eq!(mem_available(info), Some(23_978_380 * 1024));
        assert_eq!(mem_available("MemTotal: 5 kB\n"), None);
        assert_eq!(mem_available("MemAvailable: lots kB\n"), None);
        assert_eq!(cgroup_room("max\n", Some("100")), None);
        assert_eq!(cgroup_room("1000\n", Some("300\n")), Some(700));
        assert_eq!(cgroup_room("1000", Some("3000")), Some(0));
        assert_eq!(cgroup_room("1000", None), Some(1000));
        assert_eq!(
            cgroup_room("9223372036854771712", Some("5")),
            None,
            "cgroup v1 no limit"
        );
        // The machine's figure is plausible where /proc exists (never an error).
        if std::path::Path::new("/proc/meminfo").exists() && std::env::var(LIMIT_ENV).is_err() {
            assert!(available().is_some_and(|a| a.bytes > 0 && !a.from_env));
        }
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("4G"), Some(4_000_000_000));
        assert_eq!(parse_size("4GB"), Some(4_000_000_000));
        assert_eq!(parse_size("1.5T"), Some(1_500_000_000_000));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("512Mi"), Some(512 << 20));
        assert_eq!(parse_size(" 7k "), Some(7000));
        for bad in ["", "G", "4X", "-1", "1e30", "four"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }
}
