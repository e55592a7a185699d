//! `collapse rng`: draw from one Philox stream on a backend, time it, compare with cpu64.

use std::time::Instant;

use clap::ValueEnum;

use collapse_kernels::backend::BackendKind;
use collapse_kernels::gpu::GpuOptions;
use collapse_kernels::io::budget;
use collapse_kernels::ops::Backend;
use collapse_kernels::rng::StreamKey;
use collapse_kernels::trainers::Engine;
use collapse_kernels::{Error, Result};

use crate::common::gpu_for;

/// `collapse rng`'s flags.
#[derive(clap::Args, Debug)]
pub struct RngArgs {
    /// Backend to run on: cpu64 (f64 reference), cpu32 (f32, all cores), wgsl, cube.
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu32)]
    pub backend: BackendKind,
    /// What to draw: raw u32 words, uniforms in [0, 1), or standard normals.
    #[arg(long, value_enum, default_value_t = Kind::Normal)]
    pub kind: Kind,
    /// Experiment seed (the Philox key).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Stream number (e.g. one per replicate chain).
    #[arg(long, default_value_t = 0)]
    pub stream: u64,
    /// Index of the first draw in the stream.
    #[arg(long, default_value_t = 0)]
    pub start: u64,
    /// How many draws.
    #[arg(long, default_value_t = 1 << 20)]
    pub count: usize,
    /// How many values to print.
    #[arg(long, default_value_t = 8)]
    pub show: usize,
}

/// What `collapse rng` draws.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Kind {
    /// Raw 32-bit Philox words (bit-identical on every backend).
    U32,
    /// Uniforms in [0, 1).
    Uniform,
    /// Standard normals (Box–Muller).
    Normal,
}

/// Draw `a.count` values of stream `(a.seed, a.stream)` from `a.start` on `a.backend`, after a
/// small warm-up; print the rate, the first `a.show` values, the largest difference from cpu64
/// and, on a GPU, the kernels' device times.
pub fn rng(options: &GpuOptions, a: &RngArgs) -> Result<()> {
    let (kind, key, start, count) = (a.kind, StreamKey::new(a.seed, a.stream), a.start, a.count);
    if count == 0 {
        return Err(Error::InvalidArgument("--count must be at least 1".into()));
    }
    // Draws start .. start + count must lie in the stream's 2⁶⁴ counter range (no wrap).
    start.checked_add(count as u64 - 1).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "--start {start} + --count {count} runs past the stream's last draw (2^64 − 1); \
             lower --start or --count"
        ))
    })?;
    // The backend's values and cpu64's, side by side.
    let elem = if matches!(kind, Kind::U32) { 4 } else { 8 };
    budget::check(
        &format!("collapse rng --count {count}"),
        &[count, 2],
        elem,
        "lower --count",
    )?;
    let gpu = gpu_for(options, &[a.backend])?;
    let b = Engine::create(a.backend, gpu.as_ref())?;
    let reference = Engine::create(BackendKind::Cpu64, None)?;
    println!(
        "backend {} on {}; stream (seed {}, stream {}), draws {}..{}",
        b.name(),
        b.device(),
        key.seed,
        key.stream,
        start,
        u128::from(start) + count as u128
    );
    // Warm-up on a small range so pipeline compilation is not in the timing (inside the
    // counter range even when `start` is at its end).
    let (mut warm, mut warm_u32) = ([0f64; 4], [0u32; 4]);
    let warm_start = start.min(u64::MAX - 3);
    b.uniform_u32(key, warm_start, &mut warm_u32)?;
    b.uniform(key, warm_start, &mut warm)?;
    b.normal(key, warm_start, &mut warm)?;
    if let Some(g) = &gpu {
        g.take_timings();
    }
    let t = Instant::now();
    let (shown, max_diff): (Vec<String>, f64) = match kind {
        Kind::U32 => {
            let mut v = vec![0u32; count];
            b.uniform_u32(key, start, &mut v)?;
            let secs = t.elapsed().as_secs_f64();
            report_rate(count, secs);
            let mut r = vec![0u32; count];
            reference.uniform_u32(key, start, &mut r)?;
            let mismatches = v.iter().zip(&r).filter(|(a, b)| a != b).count();
            (
                v.iter()
                    .take(a.show)
                    .map(|x| format!("{x:#010x}"))
                    .collect(),
                mismatches as f64,
            )
        }
        Kind::Uniform | Kind::Normal => {
            let mut v = vec![0f64; count];
            let mut r = vec![0f64; count];
            if matches!(kind, Kind::Uniform) {
                b.uniform(key, start, &mut v)?;
                report_rate(count, t.elapsed().as_secs_f64());
                reference.uniform(key, start, &mut r)?;
            } else {
                b.normal(key, start, &mut v)?;
                report_rate(count, t.elapsed().as_secs_f64());
                reference.normal(key, start, &mut r)?;
            }
            let d = v
                .iter()
                .zip(&r)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            (
                v.iter().take(a.show).map(|x| format!("{x:.7}")).collect(),
                d,
            )
        }
    };
    println!("first {}: {}", shown.len(), shown.join(" "));
    match kind {
        Kind::U32 => println!("words differing from cpu64: {max_diff}"),
        _ => println!(
            "max |value - cpu64 value|: {max_diff:.3e} (f32 uniforms carry 24 bits, f64 ones 32: \
             f32 normals differ most in the far tails, where u1 is smallest)"
        ),
    }
    if let Some(g) = gpu {
        for t in g.take_timings() {
            println!(
                "  kernel {} {:.3} ms ({:?})",
                t.kernel,
                t.seconds * 1e3,
                t.source
            );
        }
    }
    Ok(())
}

/// Print the draw rate of `count` values in `secs` seconds.
fn report_rate(count: usize, secs: f64) {
    println!(
        "drew {count} values in {:.3} ms: {:.1} M values/s (host wall clock; GPU figures include readback)",
        secs * 1e3,
        count as f64 / secs / 1e6
    );
}
