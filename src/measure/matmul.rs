//! `collapse bench matmul` as library calls: the products it times ([`cases`]), the check
//! reference of each ([`reference`]), the timing loop over shapes and backends ([`bench`]:
//! each backend's C checked against the reference, its throughput compared with cpu32's and,
//! on a GPU, with the adapter's measured ceilings) and the JSON records of a run
//! ([`records`]). The CLI parses the flags, calls these and prints the table.
//!
//! The per-product timing itself ([`super::bench::time_matmul`]) and the inputs
//! ([`super::bench::matmul_inputs`]) live in [`super::bench`], shared with the criterion
//! bench `benches/matmul.rs`.

use std::sync::Arc;

use super::bench::{Ceilings, MATMUL_MODEL_SHAPES, MatmulTiming, matmul_runner, time_matmul};
use super::records::{Record, Stamp, gpu_names};
use crate::backend::BackendKind;
use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::ops::matmul::Matmul;

/// Largest product (in flops, `2MNK`) checked against cpu64; bigger ones are checked against
/// cpu32, since the f64 reference would take minutes. `2·512³`: a 512³ product.
pub const CPU64_REFERENCE_FLOPS: f64 = 2.0 * 512.0 * 512.0 * 512.0;

/// Largest accepted norm-wise relative error of a backend's C against the reference; a bench
/// row above it (or NaN) stops the bench with [`Error::Numerical`].
pub const MAX_REL_ERROR: f64 = 1e-4;

/// Parse a product shape `MxNxK` (every size ≥ 1), e.g. `4096x1024x256`.
pub fn parse_shape(s: &str) -> Result<Matmul> {
    let bad = || Error::InvalidArgument(format!("shape {s:?}: use MxNxK, e.g. 4096x1024x256"));
    let v: Vec<usize> = s
        .split('x')
        .map(|t| t.parse().map_err(|_| bad()))
        .collect::<Result<_>>()?;
    match v[..] {
        [m, n, k] if m > 0 && n > 0 && k > 0 => Ok(Matmul::new(m, n, k)),
        _ => Err(bad()),
    }
}

/// Refuse, before anything is allocated, the product `m×n×k` (given as `flag`, e.g.
/// `--sizes 100000`) when the host cannot hold what its bench row holds at once: the f64
/// reference C, the f64 inputs, the backend's f32 copies and its f64 result, i.e. at least
/// `12·(MK + KN) + 20·MN` bytes (every product checked: a size whose square wraps is refused,
/// not timed as an empty product).
pub fn check_host_memory(flag: &str, m: usize, n: usize, k: usize) -> Result<u64> {
    host_tally(flag, m, n, k).check()
}

/// The bytes [`check_host_memory`] counts.
fn host_tally(flag: &str, m: usize, n: usize, k: usize) -> crate::io::budget::Tally {
    let mut t = crate::io::budget::Tally::new(
        format!("bench matmul {flag} ({m}x{n}x{k})"),
        format!("lower {}", flag.split(' ').next().unwrap_or(flag)),
    );
    t.add(&[m, k], 12).add(&[k, n], 12).add(&[m, n], 20);
    t
}

/// Refuse a product of `cases` whose A, B or C (f32) exceeds what one kernel binding may hold
/// here ([`GpuContext::max_binding_elements`]: wgpu's `max_storage_buffer_binding_size`, at
/// most `max_buffer_size` and 2²⁸ bytes, the limit the GPU matmuls check), naming the flags
/// that set the shapes; before anything is allocated.
pub fn check_device_sizes(cases: &[(String, Matmul)], gpu: &GpuContext) -> Result<()> {
    let limit = gpu.max_binding_elements(1);
    for (label, p) in cases {
        for (name, rows, cols) in [("A", p.m, p.k), ("B", p.k, p.n), ("C", p.m, p.n)] {
            crate::io::budget::check_device(
                &format!("bench matmul {label}'s {name}"),
                crate::io::budget::product(&[rows, cols], 4),
                limit,
                "storage binding limit",
                "lower --sizes or --shape, or time it on cpu32 (--backends cpu32)",
            )?;
        }
    }
    Ok(())
}

/// The labelled products of a bench run, in table order: the squares `N×N·N×N` of `sizes`
/// (label `NxNxN`), then every `MxNxK` of `shapes` (labelled as given), then, with `models`,
/// [`MATMUL_MODEL_SHAPES`]. Errors on a size of 0, a malformed shape, or a product the host
/// cannot hold ([`check_host_memory`]).
pub fn cases(sizes: &[usize], shapes: &[String], models: bool) -> Result<Vec<(String, Matmul)>> {
    let mut out = Vec::new();
    for &n in sizes {
        if n == 0 {
            return Err(Error::InvalidArgument("--sizes must be at least 1".into()));
        }
        check_host_memory(&format!("--sizes {n}"), n, n, n)?;
        out.push((format!("{n}x{n}x{n}"), Matmul::new(n, n, n)));
    }
    for s in shapes {
        let p = parse_shape(s)?;
        check_host_memory(&format!("--shape {s}"), p.m, p.n, p.k)?;
        out.push((s.clone(), p));
    }
    if models {
        for (label, m, n, k, ta, tb) in MATMUL_MODEL_SHAPES {
            let mut p = Matmul::new(m, n, k);
            (p.trans_a, p.trans_b) = (ta, tb);
            out.push((label.to_string(), p));
        }
    }
    Ok(out)
}

/// The check reference of `p`: the backend that computes it (cpu64 up to
/// [`CPU64_REFERENCE_FLOPS`], cpu32 above) and its C (`[M][N]`, widened to f64) for the
/// bench's inputs.
pub fn reference(p: &Matmul) -> Result<(BackendKind, Vec<f64>)> {
    let kind = if p.flops() <= CPU64_REFERENCE_FLOPS {
        BackendKind::Cpu64
    } else {
        BackendKind::Cpu32
    };
    let mut r = matmul_runner(kind, None, p)?;
    r.run()?;
    Ok((kind, r.result()?))
}

/// One row of the bench table: a backend's timing of one product and how it compares.
#[derive(Clone, Debug)]
pub struct MatmulRow {
    /// The timing (median seconds, GFLOP/s, GB/s, relative error vs the reference, tile).
    pub timing: MatmulTiming,
    /// GFLOP/s over cpu32's for the same product, when cpu32 ran before this backend on it.
    pub vs_cpu32: Option<f64>,
    /// For GPU backends with measured ceilings: GFLOP/s and GB/s as percentages of the
    /// adapter's FMA and copy ceilings (the roofline).
    pub roofline_percent: Option<(f64, f64)>,
}

/// Time every product of `cases` on every backend of `kinds` (in that order; GPU backends on
/// `gpu`), `reps` timed runs each after one checked warm-up (see [`time_matmul`]). Calls
/// `on_row` with each row as soon as it is measured, then stops with [`Error::Numerical`] if
/// that row's error exceeds [`MAX_REL_ERROR`]. `ceilings`: the adapter's, for the GPU rows'
/// roofline percentages.
pub fn bench(
    kinds: &[BackendKind],
    gpu: Option<&Arc<GpuContext>>,
    cases: &[(String, Matmul)],
    reps: usize,
    ceilings: Option<Ceilings>,
    on_row: &mut dyn FnMut(&MatmulRow),
) -> Result<Vec<MatmulRow>> {
    let mut rows = Vec::new();
    for (label, p) in cases {
        let (ref_kind, want) = reference(p)?;
        let mut cpu32_gflops = None;
        for &kind in kinds {
            let t = time_matmul(kind, gpu, label, p, reps, (ref_kind.name(), &want))?;
            if kind == BackendKind::Cpu32 {
                cpu32_gflops = Some(t.gflops);
            }
            let row = MatmulRow {
                vs_cpu32: cpu32_gflops.map(|c| t.gflops / c),
                roofline_percent: match ceilings {
                    Some(c) if kind.needs_gpu() => {
                        Some((100.0 * t.gflops / c.gflops, 100.0 * t.gb_per_s / c.gb_per_s))
                    }
                    _ => None,
                },
                timing: t,
            };
            on_row(&row);
            let t = &row.timing;
            if t.rel_error.is_nan() || t.rel_error > MAX_REL_ERROR {
                return Err(Error::Numerical(format!(
                    "{} {label}: relative error {:.3e} vs {} exceeds 1e-4",
                    t.backend, t.rel_error, t.reference
                )));
            }
            rows.push(row);
        }
    }
    Ok(rows)
}

/// The JSON records of a bench run stamped `stamp`: with `ceilings`, one `fma` (GFLOP/s) and
/// one `copy` (GB/s) record of the adapter (backend `wgsl`, shape `probe`), then one `matmul`
/// record (GFLOP/s) per row. GPU rows carry the adapter and driver of `gpu`, CPU rows the
/// host description.
pub fn records(
    stamp: &Stamp,
    rows: &[MatmulRow],
    ceilings: Option<Ceilings>,
    gpu: Option<&GpuContext>,
) -> Vec<Record> {
    let (adapter, driver) = gpu.map(gpu_names).unwrap_or_default();
    let mut recs = Vec::new();
    if let Some(c) = ceilings {
        for (kernel, value, unit) in [("fma", c.gflops, "GFLOP/s"), ("copy", c.gb_per_s, "GB/s")] {
            recs.push(stamp.record(
                kernel,
                "wgsl",
                (&adapter, &driver),
                "probe",
                0.0,
                0.0,
                (value, unit),
            ));
        }
    }
    for r in rows {
        let t = &r.timing;
        let gpu_row = t.backend == "wgsl" || t.backend == "cube";
        let (ad, dr) = if gpu_row {
            (adapter.as_str(), driver.as_str())
        } else {
            (t.device.as_str(), "")
        };
        recs.push(stamp.record(
            "matmul",
            &t.backend,
            (ad, dr),
            &t.shape,
            t.seconds,
            t.seconds - t.min_seconds,
            (t.gflops, "GFLOP/s"),
        ));
    }
    recs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse_and_cases_keep_table_order() {
        let p = parse_shape("4096x1024x256").unwrap();
        assert_eq!((p.m, p.n, p.k), (4096, 1024, 256));
        for bad in ["4096x1024", "0x2x3", "axbxc", "1x2x3x4", ""] {
            let e = parse_shape(bad).unwrap_err().to_string();
            assert!(e.contains("MxNxK"), "{bad}: {e}");
        }
        let c = cases(&[2, 3], &["5x6x7".into()], true).unwrap();
        let labels: Vec<&str> = c.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(
            labels[..5],
            ["2x2x2", "3x3x3", "5x6x7", "lm_mlp_up", "vae_enc1"]
        );
        assert_eq!(labels.len(), 3 + MATMUL_MODEL_SHAPES.len());
        let dw = c.iter().find(|(l, _)| l == "lm_qkv_dW").unwrap();
        assert!(dw.1.trans_a && !dw.1.trans_b && (dw.1.m, dw.1.n, dw.1.k) == (128, 384, 2048));
        assert_eq!((c[2].1.m, c[2].1.n, c[2].1.k), (5, 6, 7));
        assert!(cases(&[0], &[], false).is_err());
    }

    #[test]
    fn products_that_wrap_or_cannot_fit_are_refused_before_allocating() {
        // 2³² squared wraps to 0 in 64 bits: refused as an overflow, not timed as empty.
        let e = cases(&[1 << 32], &[], false).unwrap_err().to_string();
        assert!(
            e.contains("--sizes 4294967296") && e.contains("overflows"),
            "{e}"
        );
        assert!(e.ends_with("lower --sizes"), "{e}");
        // 10⁵: 440 GB, refused against a 1 GB budget with the bytes and the flag.
        let t = host_tally("--shape 100000x100000x100000", 100_000, 100_000, 100_000);
        let e = t.check_against(Some(1_000_000_000.into())).unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains("440.0 GB") && e.ends_with("lower --shape"),
            "{e}"
        );
        assert_eq!(check_host_memory("--sizes 2", 2, 2, 2).unwrap(), 176);
    }

    #[test]
    fn small_products_are_checked_against_cpu64() {
        let (kind, c) = reference(&Matmul::new(3, 4, 5)).unwrap();
        assert_eq!((kind, c.len()), (BackendKind::Cpu64, 12));
        let mut rows = Vec::new();
        let out = bench(
            &[BackendKind::Cpu64, BackendKind::Cpu32],
            None,
            &[("3x4x5".into(), Matmul::new(3, 4, 5))],
            1,
            None,
            &mut |r| rows.push(r.vs_cpu32),
        )
        .unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].timing.rel_error, 0.0, "cpu64 is the reference");
        assert!(out[1].timing.rel_error < MAX_REL_ERROR);
        assert_eq!(rows[0], None, "cpu32 has not run yet");
        assert!(rows[1].is_some(), "cpu32's own ratio");
        let stamp = Stamp::new("test");
        let recs = records(&stamp, &out, None, None);
        assert_eq!(recs.len(), 2);
        assert!(
            recs.iter()
                .all(|r| r.kernel == "matmul" && r.driver.is_empty())
        );
    }
}
