//! Philox fills in f64, one block at a time.

use crate::rng::{StreamKey, fill_blocks, normals_f64, unit_f64};

/// Raw draws `start ..` of `key`.
pub fn uniform_u32(key: StreamKey, start: u64, out: &mut [u32]) {
    fill_blocks(key, start, out, |w| w);
}

/// f64 uniforms in `[0, 1)`.
pub fn uniform(key: StreamKey, start: u64, out: &mut [f64]) {
    fill_blocks(key, start, out, |w| w.map(unit_f64));
}

/// f64 Box–Muller normals.
pub fn normal(key: StreamKey, start: u64, out: &mut [f64]) {
    fill_blocks(key, start, out, normals_f64);
}
