//! Philox4x32-10 as `#[cube]` kernels: the same arithmetic as `src/rng/mod.rs` and
//! `shaders/common/philox.wgsl` (16-bit-split mulhi, same stream layout and conversions).
//!
//! Launch layout: one unit per Philox block; unit `g` (`ABSOLUTE_POS` over an `(x, y)` cube grid
//! of 64-unit cubes) computes block `first_block + g` and writes its values
//! `out[4g + l - lane0]` for lanes `l` that fall inside `0..count`.

use cubecl::prelude::*;

use crate::backend::launch::{WORKGROUP, groups, philox_blocks};
use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::rng::StreamKey;

/// What a fill produces.
#[derive(Clone, Copy, Debug)]
pub enum Fill {
    /// Raw u32 draws.
    U32,
    /// f32 uniforms in `[0, 1)`.
    UniformF32,
    /// f32 Box–Muller normals.
    NormalF32,
}

#[cube]
pub(crate) fn mulhi(a: u32, b: u32) -> u32 {
    let a_lo = a & 0xFFFF;
    let a_hi = a >> 16;
    let b_lo = b & 0xFFFF;
    let b_hi = b >> 16;
    let lo_lo = a_lo * b_lo;
    let hi_lo = a_hi * b_lo;
    let lo_hi = a_lo * b_hi;
    let hi_hi = a_hi * b_hi;
    let cross = (lo_lo >> 16) + (hi_lo & 0xFFFF) + (lo_hi & 0xFFFF);
    hi_hi + (hi_lo >> 16) + (lo_hi >> 16) + (cross >> 16)
}

/// Philox4x32-10 of counter `(c0, c1, c2, c3)` under key `(k0, k1)`, written to `x[0..4]`.
#[cube]
pub(crate) fn philox(x: &mut Array<u32>, c0: u32, c1: u32, c2: u32, c3: u32, k0: u32, k1: u32) {
    let m0 = 0xD2511F53u32;
    let m1 = 0xCD9E8D57u32;
    let mut x0 = c0;
    let mut x1 = c1;
    let mut x2 = c2;
    let mut x3 = c3;
    let mut ka = k0;
    let mut kb = k1;
    #[unroll]
    for r in 0..10u32 {
        if r > 0 {
            ka += 0x9E3779B9u32;
            kb += 0xBB67AE85u32;
        }
        let hi0 = mulhi(m0, x0);
        let lo0 = m0 * x0;
        let hi1 = mulhi(m1, x2);
        let lo1 = m1 * x2;
        let y0 = hi1 ^ x1 ^ ka;
        let y2 = hi0 ^ x3 ^ kb;
        x0 = y0;
        x1 = lo1;
        x2 = y2;
        x3 = lo0;
    }
    x[0] = x0;
    x[1] = x1;
    x[2] = x2;
    x[3] = x3;
}

#[cube]
pub(crate) fn unit_f32(x: u32) -> f32 {
    f32::cast_from(x >> 8) * 5.9604645e-8f32
}

#[cube]
pub(crate) fn open_unit_f32(x: u32) -> f32 {
    f32::cast_from((x >> 8) + 1) * 5.9604645e-8f32
}

/// The four Box–Muller normals of Philox block `x`, written to `z[at..at + 4]`.
#[cube]
pub(crate) fn normals(x: &Array<u32>, z: &mut Array<f32>, at: usize) {
    #[unroll]
    for p in 0..2u32 {
        let i = (2 * p) as usize;
        let u1 = open_unit_f32(x[i]);
        let u2 = unit_f32(x[i + 1]);
        let r = f32::sqrt(-2.0f32 * f32::ln(u1));
        let theta = 6.2831855f32 * (u2 - 0.5f32);
        z[at + i] = r * f32::cos(theta);
        z[at + i + 1] = r * f32::sin(theta);
    }
}

/// `mode`: 0 = raw u32 bits, 1 = f32 uniforms, 2 = f32 normals (as bit patterns).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn philox_fill(
    out: &mut [u32],
    k0: u32,
    k1: u32,
    s0: u32,
    s1: u32,
    b0: u32,
    b1: u32,
    count: u32,
    lane0: u32,
    #[comptime] mode: u32,
) {
    let g = ABSOLUTE_POS as u32;
    if 4 * g < count + lane0 {
        let lo = b0 + g;
        let carry = if lo < b0 { 1u32 } else { 0u32 };
        let mut x = Array::<u32>::new(4usize);
        philox(&mut x, lo, b1 + carry, s0, s1, k0, k1);
        let mut v = Array::<u32>::new(4usize);
        if comptime![mode == 0] {
            #[unroll]
            for l in 0..4u32 {
                v[l as usize] = x[l as usize];
            }
        } else if comptime![mode == 1] {
            #[unroll]
            for l in 0..4u32 {
                v[l as usize] = u32::reinterpret(unit_f32(x[l as usize]));
            }
        } else {
            let mut z = Array::<f32>::new(4usize);
            normals(&x, &mut z, 0usize);
            #[unroll]
            for l in 0..4u32 {
                v[l as usize] = u32::reinterpret(z[l as usize]);
            }
        }
        #[unroll]
        for l in 0..4u32 {
            let j = 4 * g + l;
            if j >= lane0 && j - lane0 < count {
                out[(j - lane0) as usize] = v[l as usize];
            }
        }
    }
}

/// Launch the fill of values `start .. start + count` of `key` into the device handle `out`
/// (`count` within one binding); nothing is read back.
pub fn fill_into(
    client: &Client,
    which: Fill,
    key: StreamKey,
    start: u64,
    count: usize,
    out: &cubecl::server::Handle,
) {
    let mode = match which {
        Fill::U32 => 0,
        Fill::UniformF32 => 1,
        Fill::NormalF32 => 2,
    };
    let [k0, k1] = key.key_words();
    let block = start / 4;
    let lane0 = (start % 4) as u32;
    let blocks = philox_blocks(count, lane0);
    let (gx, gy) = groups(blocks as usize);
    philox_fill::launch(
        client,
        CubeCount::Static(gx, gy, 1),
        CubeDim::new_1d(WORKGROUP),
        unsafe { BufferArg::from_raw_parts(out.clone(), count) },
        k0,
        k1,
        key.stream as u32,
        (key.stream >> 32) as u32,
        block as u32,
        (block >> 32) as u32,
        count as u32,
        lane0,
        mode,
    );
}

/// Fill `out` (u32 draws or f32 bit patterns) with values `start ..` of `key`, chunked to the
/// adapter's binding limit.
pub fn fill<T: bytemuck::Pod>(
    client: &Client,
    gpu: &GpuContext,
    which: Fill,
    key: StreamKey,
    start: u64,
    out: &mut [T],
) -> Result<()> {
    debug_assert_eq!(std::mem::size_of::<T>(), 4);
    let max = gpu.max_binding_elements(4) as usize;
    let mut done = 0usize;
    while done < out.len() {
        let n = (out.len() - done).min(max);
        let init: Vec<u32> = if gpu.poisoning() {
            vec![crate::gpu::POISON_WORD; n]
        } else {
            vec![0; n]
        };
        let handle = client.create_from_slice(bytemuck::cast_slice(&init));
        fill_into(client, which, key, start + done as u64, n, &handle);
        let bytes = client
            .read_one(handle)
            .map_err(|e| Error::Cubecl(format!("{e:?}")))?;
        let host: &[T] = bytemuck::cast_slice(&bytes[..n * 4]);
        out[done..done + n].copy_from_slice(host);
        done += n;
    }
    Ok(())
}

/// Like [`fill`] for an f32 mode, widening the results into `out`.
pub fn fill_f32_widened(
    client: &Client,
    gpu: &GpuContext,
    which: Fill,
    key: StreamKey,
    start: u64,
    out: &mut [f64],
) -> Result<()> {
    let mut tmp = vec![0f32; out.len()];
    fill(client, gpu, which, key, start, &mut tmp)?;
    for (o, v) in out.iter_mut().zip(tmp) {
        *o = v as f64;
    }
    Ok(())
}
