//! The f32 mixture sampler, `LANES` samples at a time: Philox and Box–Muller run lane-wise
//! (vectorised), the component choice and `μ + L z` per sample in the order of
//! [`crate::ops::sampling`]. Values equal `cpu64::sampling::sample_range::<f32>` exactly.

use super::lanes::{LANES, box_muller_lanes, philox_lanes_at};
use crate::backend::cpu64::sampling::{Params, sample_range};
use crate::ops::sampling::{PreparedMixture, blocks_per_sample};
use crate::rng::StreamKey;

/// As [`sample_range`] for f32, batching `LANES` samples; the ragged tail goes through
/// [`sample_range`] itself.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn sample_range_lanes(
    p: &PreparedMixture,
    params: &Params<f32>,
    m: usize,
    key: StreamKey,
    first: u64,
    i0: usize,
    out: &mut [f64],
    comps: &mut [u32],
) {
    let (k, d) = (p.batch.k, p.batch.d);
    let sb = blocks_per_sample(d);
    let nb = d.div_ceil(4);
    let full = p.is_full();
    let groups = comps.len() / LANES;
    // z[lane][j] for j < 4·nb.
    let mut z = vec![[0f32; LANES]; 4 * nb];
    for g in 0..groups {
        let s0 = g * LANES;
        let base: [u64; LANES] = std::array::from_fn(|l| (first + (i0 + s0 + l) as u64) * sb);
        let w = philox_lanes_at(key, base);
        for b in 0..nb {
            let x = philox_lanes_at(key, std::array::from_fn(|l| base[l] + 1 + b as u64));
            let (z0, z1) = box_muller_lanes(&x[0], &x[1]);
            let (z2, z3) = box_muller_lanes(&x[2], &x[3]);
            z[4 * b] = z0;
            z[4 * b + 1] = z1;
            z[4 * b + 2] = z2;
            z[4 * b + 3] = z3;
        }
        for l in 0..LANES {
            let s = s0 + l;
            let rep = (i0 + s) / m;
            let comp = p.component(rep, w[0][l]) as usize;
            comps[s] = comp as u32;
            let rc = rep * k + comp;
            let mu = &params.means[rc * d..(rc + 1) * d];
            let x = &mut out[s * d..(s + 1) * d];
            if full {
                let lf = &params.factor[rc * d * d..(rc + 1) * d * d];
                for (row, xv) in x.iter_mut().enumerate() {
                    let lrow = &lf[row * d..row * d + row + 1];
                    let mut acc = mu[row];
                    for (j, &lv) in lrow.iter().enumerate() {
                        acc += lv * z[j][l];
                    }
                    *xv = acc as f64;
                }
            } else {
                let sd = &params.factor[rc * d..(rc + 1) * d];
                for (row, xv) in x.iter_mut().enumerate() {
                    *xv = (mu[row] + sd[row] * z[row][l]) as f64;
                }
            }
        }
    }
    let done = groups * LANES;
    sample_range(
        p,
        params,
        m,
        key,
        first,
        i0 + done,
        &mut out[done * d..],
        &mut comps[done..],
    );
}
