//! Mixture sampling as a `#[cube]` kernel: the layout of [`crate::ops::sampling`], the same
//! arithmetic order as `shaders/sampling.wgsl` and the CPU backends. `D` and full/diagonal are
//! compile-time parameters (one kernel per shape), everything else is a runtime scalar.

use cubecl::prelude::*;

use super::rng::{mulhi, normals, philox};
use crate::backend::launch::{WORKGROUP, check_mixture_limits, groups, mixture_chunk};
use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::ops::sampling::{PreparedMixture, blocks_per_sample};
use crate::rng::StreamKey;

/// One unit per sample: unit `s` is sample `chunk_start + s` of the call (see the module docs of
/// [`crate::ops::sampling`]); `(fb0, fb1)` is the 64-bit first block of the chunk.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn sample_mixture_kernel(
    thresholds: &[u32],
    means: &[f32],
    factor: &[f32],
    out: &mut [f32],
    comps: &mut [u32],
    k0: u32,
    k1: u32,
    s0: u32,
    s1: u32,
    fb0: u32,
    fb1: u32,
    sb: u32,
    n: u32,
    chunk_start: u32,
    m: u32,
    k: u32,
    #[comptime] d: usize,
    #[comptime] full: bool,
) {
    let s = ABSOLUTE_POS as u32;
    if s < n {
        let i = chunk_start + s;
        let rep = i / m;
        // 64-bit block index fb + s·sb.
        let plo = s * sb;
        let phi = mulhi(s, sb);
        let lo = fb0 + plo;
        let carry = if lo < fb0 { 1u32 } else { 0u32 };
        let hi = fb1 + phi + carry;
        let mut w = Array::<u32>::new(4usize);
        philox(&mut w, lo, hi, s0, s1, k0, k1);
        let x = w[0] >> 1;
        let mut comp = 0u32;
        let tbase = (rep * k) as usize;
        let kk = (k - 1) as usize;
        for j in 0..kk {
            if x >= thresholds[tbase + j] {
                comp += 1;
            }
        }
        comps[s as usize] = comp;

        let nb = comptime![d.div_ceil(4)];
        let mut z = Array::<f32>::new(comptime![d.div_ceil(4) * 4]);
        for b in 0..nb {
            let blo = lo + 1 + b as u32;
            let bcarry = if blo < lo { 1u32 } else { 0u32 };
            philox(&mut w, blo, hi + bcarry, s0, s1, k0, k1);
            normals(&w, &mut z, 4 * b);
        }

        let rc = (rep * k + comp) as usize;
        let su = s as usize;
        if comptime![full] {
            let base = rc * d * d;
            for row in 0..d {
                let mut acc = means[rc * d + row];
                for j in 0..row + 1 {
                    acc += factor[base + row * d + j] * z[j];
                }
                out[su * d + row] = acc;
            }
        } else {
            for row in 0..d {
                out[su * d + row] = means[rc * d + row] + factor[rc * d + row] * z[row];
            }
        }
    }
}

/// Sample as [`crate::ops::Backend::sample_mixture`] documents.
#[allow(clippy::too_many_arguments)]
pub fn sample_mixture(
    client: &Client,
    gpu: &GpuContext,
    mix: &PreparedMixture,
    m: usize,
    key: StreamKey,
    first: u64,
    out: &mut [f64],
    comps: &mut [u32],
) -> Result<()> {
    check_mixture_limits(gpu, mix, m)?;
    let d = mix.batch.d;
    let n_total = comps.len();
    let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    let (means_v, factor_v) = (f32s(&mix.batch.means), f32s(mix.factor()));
    let thresholds = client.create_from_slice(bytemuck::cast_slice(&mix.thresholds));
    let means = client.create_from_slice(bytemuck::cast_slice(&means_v));
    let factor = client.create_from_slice(bytemuck::cast_slice(&factor_v));
    let sb = blocks_per_sample(d);
    let chunk = mixture_chunk(gpu, d);
    let [k0, k1] = key.key_words();
    let poison = |len: usize| -> Vec<u32> {
        vec![
            if gpu.poisoning() {
                crate::gpu::POISON_WORD
            } else {
                0
            };
            len
        ]
    };
    let mut done = 0usize;
    while done < n_total {
        let n = (n_total - done).min(chunk);
        let fb = (first + done as u64) * sb;
        let samples = client.create_from_slice(bytemuck::cast_slice(&poison(n * d)));
        let comp_h = client.create_from_slice(bytemuck::cast_slice(&poison(n)));
        let (gx, gy) = groups(n);
        sample_mixture_kernel::launch(
            client,
            CubeCount::Static(gx, gy, 1),
            CubeDim::new_1d(WORKGROUP),
            unsafe { BufferArg::from_raw_parts(thresholds.clone(), mix.thresholds.len()) },
            unsafe { BufferArg::from_raw_parts(means.clone(), means_v.len()) },
            unsafe { BufferArg::from_raw_parts(factor.clone(), factor_v.len()) },
            unsafe { BufferArg::from_raw_parts(samples.clone(), n * d) },
            unsafe { BufferArg::from_raw_parts(comp_h.clone(), n) },
            k0,
            k1,
            key.stream as u32,
            (key.stream >> 32) as u32,
            fb as u32,
            (fb >> 32) as u32,
            sb as u32,
            n as u32,
            done as u32,
            m as u32,
            mix.batch.k as u32,
            d,
            mix.is_full(),
        );
        let xs = client
            .read_one(samples)
            .map_err(|e| Error::Cubecl(format!("{e:?}")))?;
        let cs = client
            .read_one(comp_h)
            .map_err(|e| Error::Cubecl(format!("{e:?}")))?;
        let xs: &[f32] = bytemuck::cast_slice(&xs[..n * d * 4]);
        for (o, &v) in out[done * d..(done + n) * d].iter_mut().zip(xs) {
            *o = v as f64;
        }
        comps[done..done + n].copy_from_slice(bytemuck::cast_slice(&cs[..n * 4]));
        done += n;
    }
    Ok(())
}
