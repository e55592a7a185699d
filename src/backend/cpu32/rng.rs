//! Philox fills in f32, split across threads in chunks of whole blocks.

use rayon::prelude::*;

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

/// f32 Box–Muller normals, widened.
pub fn normal(key: StreamKey, start: u64, out: &mut [f64]) {
    par_fill(key, start, out, |w| normals_f32(w).map(f64::from));
}
