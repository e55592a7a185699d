//! Philox fills in f32, split across threads in chunks of whole blocks.

use rayon::prelude::*;

use super::lanes::{LANES, normals_lanes, with_best_isa};
use crate::rng::{StreamKey, fill_blocks, normals_f32, unit_f32};

/// Elements per rayon task (a multiple of 4, so chunks after the first stay block-aligned).
const CHUNK: usize = 1 << 14;

fn par_fill<T: Copy + Send>(
    key: StreamKey,
    start: u64,
    out: &mut [T],
    per_block: impl Fn([u32; 4]) -> [T; 4] + Sync,
) {
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, chunk)| {
            fill_blocks(key, start + (c * CHUNK) as u64, chunk, &per_block);
        });
}

/// Raw draws `start ..` of `key`.
pub fn uniform_u32(key: StreamKey, start: u64, out: &mut [u32]) {
    par_fill(key, start, out, |w| w);
}

/// f32 uniforms in `[0, 1)`, widened.
pub fn uniform(key: StreamKey, start: u64, out: &mut [f64]) {
    par_fill(key, start, out, |w| w.map(|x| unit_f32(x) as f64));
}

/// f32 Box–Muller normals, widened: `LANES` blocks at a time where the range is block-aligned,
/// one block at a time at the ragged ends (same values either way).
pub fn normal(key: StreamKey, start: u64, out: &mut [f64]) {
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, chunk)| {
            let s = start + (c * CHUNK) as u64;
            // Scalar head up to the next block boundary.
            let head = (((4 - s % 4) % 4) as usize).min(chunk.len());
            fill_blocks(key, s, &mut chunk[..head], |w| {
                normals_f32(w).map(f64::from)
            });
            let body = &mut chunk[head..];
            let first_block = (s + head as u64) / 4;
            let groups = body.len() / (4 * LANES);
            with_best_isa(|| {
                let mut z = [0f32; 4 * LANES];
                for (g, dst) in body.chunks_exact_mut(4 * LANES).enumerate() {
                    normals_lanes(key, first_block + (g * LANES) as u64, &mut z);
                    for (d, v) in dst.iter_mut().zip(z) {
                        *d = v as f64;
                    }
                }
            });
            let done = groups * 4 * LANES;
            fill_blocks(key, s + (head + done) as u64, &mut body[done..], |w| {
                normals_f32(w).map(f64::from)
            });
        });
}
