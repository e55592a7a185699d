//! Categorical sampling as a `#[cube]` kernel: the method and summation order of
//! [`crate::ops::sampling::Categorical`], one unit per sample, kept as the straightforward
//! reference. Each unit scans its row on its own: the row's maximum, the top-k threshold (a
//! 32-step bisection on the logits' order keys, ties at the threshold kept in index order), the
//! total of `exp((x − max)/T)` over the kept logits, then its Philox draw times that total and a
//! second scan that stops at the first kept logit whose running sum exceeds it (the last kept
//! one if none does). `shaders/categorical.wgsl` no longer does the same: it builds one CDF per
//! row and binary-searches it per sample.

use cubecl::prelude::*;

use super::rng::{philox, unit_f32};
use crate::backend::launch::{WORKGROUP, check_categorical_limits, groups};
use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::ops::sampling::Categorical;
use crate::rng::StreamKey;

#[cube]
fn order_key(x: f32) -> u32 {
    let b = u32::reinterpret(x);
    let mut k = b ^ 0x80000000u32;
    if (b & 0x80000000u32) != 0 {
        k = !b;
    }
    k
}

#[cube]
fn from_order_key(k: u32) -> f32 {
    let mut b = !k;
    if (k & 0x80000000u32) != 0 {
        b = k ^ 0x80000000u32;
    }
    f32::reinterpret(b)
}

/// One unit per sample: unit `s` is sample `chunk_start + s`, row `(chunk_start + s) / spr`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn sample_categorical_kernel(
    logits: &[f32],
    out: &mut [u32],
    k0: u32,
    k1: u32,
    s0: u32,
    s1: u32,
    f0: u32,
    f1: u32,
    n: u32,
    chunk_start: u32,
    spr: u32,
    v: u32,
    k: u32,
    inv_t: f32,
) {
    let s = ABSOLUTE_POS as u32;
    if s < n {
        let excluded = -1e30f32;
        let i = chunk_start + s;
        let row = i / spr;
        let base = (row * v) as usize;
        let vu = v as usize;

        let mut m = f32::new(-1e30f32);
        for j in 0..vu {
            if logits[base + j] > m {
                m = logits[base + j];
            }
        }

        let mut t = f32::new(-1e30f32);
        let mut ties = 0xFFFFFFFFu32;
        if k < v {
            let mut prefix = 0u32;
            for bit in 0..32u32 {
                let cand = prefix | (0x80000000u32 >> bit);
                let mut count = 0u32;
                for j in 0..vu {
                    if order_key(logits[base + j]) >= cand {
                        count += 1;
                    }
                }
                if count >= k {
                    prefix = cand;
                }
            }
            t = from_order_key(prefix);
            let mut above = 0u32;
            for j in 0..vu {
                if logits[base + j] > t {
                    above += 1;
                }
            }
            ties = k - above;
        }

        let mut total = 0.0f32;
        let mut last = 0u32;
        let mut left = ties;
        for j in 0..vu {
            let x = logits[base + j];
            let mut keep = x > excluded && x > t;
            if x > excluded && x == t && left > 0 {
                keep = true;
                left -= 1;
            }
            if keep {
                last = j as u32;
                total += f32::exp((x - m) * inv_t);
            }
        }

        // Draw first + i: block (first + i) / 4, lane (first + i) % 4.
        let dlo = f0 + i;
        let carry = if dlo < f0 { 1u32 } else { 0u32 };
        let dhi = f1 + carry;
        let mut w = Array::<u32>::new(4usize);
        philox(&mut w, (dlo >> 2) | (dhi << 30), dhi >> 2, s0, s1, k0, k1);
        let target = unit_f32(w[(dlo & 3) as usize]) * total;

        let mut chosen = last;
        let mut acc = 0.0f32;
        let mut found = false;
        left = ties;
        for j in 0..vu {
            let x = logits[base + j];
            let mut keep = x > excluded && x > t;
            if x > excluded && x == t && left > 0 {
                keep = true;
                left -= 1;
            }
            if keep && !found {
                acc += f32::exp((x - m) * inv_t);
                if acc > target {
                    chosen = j as u32;
                    found = true;
                }
            }
        }
        out[s as usize] = chosen;
    }
}

/// Sample as [`crate::ops::Backend::sample_categorical`] documents.
pub fn sample_categorical(
    client: &Client,
    gpu: &GpuContext,
    c: &Categorical,
    s: usize,
    key: StreamKey,
    first: u64,
    out: &mut [u32],
) -> Result<()> {
    check_categorical_limits(gpu, c, s)?;
    let logits_v: Vec<f32> = c.logits.iter().map(|&x| x as f32).collect();
    let logits = client.create_from_slice(bytemuck::cast_slice(&logits_v));
    let chunk = gpu.max_binding_elements(4) as usize;
    let mut done = 0usize;
    while done < out.len() {
        let n = (out.len() - done).min(chunk);
        let init = vec![
            if gpu.poisoning() {
                crate::gpu::POISON_WORD
            } else {
                0
            };
            n
        ];
        let classes = client.create_from_slice(bytemuck::cast_slice(&init));
        let (gx, gy) = groups(n);
        sample_categorical_kernel::launch(
            client,
            CubeCount::Static(gx, gy, 1),
            CubeDim::new_1d(WORKGROUP),
            unsafe { BufferArg::from_raw_parts(logits.clone(), logits_v.len()) },
            unsafe { BufferArg::from_raw_parts(classes.clone(), n) },
            key.key_words()[0],
            key.key_words()[1],
            key.stream as u32,
            (key.stream >> 32) as u32,
            first as u32,
            (first >> 32) as u32,
            n as u32,
            done as u32,
            s as u32,
            c.classes as u32,
            c.k() as u32,
            (1.0 / c.temperature) as f32,
        );
        let got = client
            .read_one(classes)
            .map_err(|e| Error::Cubecl(format!("{e:?}")))?;
        out[done..done + n].copy_from_slice(bytemuck::cast_slice(&got[..n * 4]));
        done += n;
    }
    Ok(())
}
