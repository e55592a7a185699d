//! Mixture sampling on the CPU, generic over the precision: the f64 reference, and (through
//! [`sample_range`]) the body of `cpu32`'s parallel sampler.

use crate::num::float::HostFloat;
use crate::ops::sampling::{PreparedMixture, blocks_per_sample};
use crate::rng::StreamKey;

/// Mixture parameters converted to `T` once per call.
pub struct Params<T> {
    /// Means `[R][K][D]`.
    pub means: Vec<T>,
    /// Factors `[R][K][D][D]` or `[R][K][D]`.
    pub factor: Vec<T>,
}

impl<T: HostFloat> Params<T> {
    /// Convert `p`'s parameters to `T`.
    pub fn of(p: &PreparedMixture) -> Self {
        Self {
            means: p.batch.means.iter().map(|&v| T::of(v)).collect(),
            factor: p.factor().iter().map(|&v| T::of(v)).collect(),
        }
    }
}

/// Samples `i0 .. i0 + comps.len()` of the call (sample `i` is replicate `i / m`), written to
/// `out` (`comps.len() × D`) and `comps`, following the layout of [`crate::ops::sampling`].
#[allow(clippy::too_many_arguments)]
pub fn sample_range<T: HostFloat>(
    p: &PreparedMixture,
    params: &Params<T>,
    m: usize,
    key: StreamKey,
    first: u64,
    i0: usize,
    out: &mut [f64],
    comps: &mut [u32],
) {
    let (k, d) = (p.batch.k, p.batch.d);
    let sb = blocks_per_sample(d);
    let full = p.is_full();
    let mut z = vec![T::zero(); d.div_ceil(4) * 4];
    for (s, (x, c)) in out.chunks_mut(d).zip(comps.iter_mut()).enumerate() {
        let i = i0 + s;
        let rep = i / m;
        let block0 = (first + i as u64) * sb;
        let comp = p.component(rep, key.block(block0)[0]) as usize;
        *c = comp as u32;
        for (b, zs) in z.chunks_mut(4).enumerate() {
            zs.copy_from_slice(&T::block_normals(key.block(block0 + 1 + b as u64)));
        }
        let rc = rep * k + comp;
        let mu = &params.means[rc * d..(rc + 1) * d];
        if full {
            let l = &params.factor[rc * d * d..(rc + 1) * d * d];
            for (row, xv) in x.iter_mut().enumerate() {
                let mut acc = mu[row];
                for j in 0..=row {
                    acc = acc + l[row * d + j] * z[j];
                }
                *xv = acc.wide();
            }
        } else {
            let sd = &params.factor[rc * d..(rc + 1) * d];
            for (row, xv) in x.iter_mut().enumerate() {
                *xv = (mu[row] + sd[row] * z[row]).wide();
            }
        }
    }
}

/// Categorical samples for rows `row0 ..` (`out` holds whole rows of `s` samples each), by the
/// inverse-CDF method of [`crate::ops::sampling::Categorical`], in precision `T`.
pub fn categorical_rows<T: HostFloat>(
    c: &crate::ops::sampling::Categorical,
    s: usize,
    key: StreamKey,
    first: u64,
    row0: usize,
    out: &mut [u32],
) {
    let v = c.classes;
    let excluded = T::of(crate::ops::sampling::EXCLUDED_LOGIT);
    let inv_t = T::of(1.0 / c.temperature);
    let mut p = vec![T::zero(); v];
    let mut sorted = Vec::with_capacity(v);
    for (r, out_row) in out.chunks_mut(s).enumerate() {
        let row = row0 + r;
        let l: Vec<T> = c.logits[row * v..(row + 1) * v]
            .iter()
            .map(|&x| T::of(x))
            .collect();
        let mut m = excluded;
        for &x in &l {
            if x > m {
                m = x;
            }
        }
        // Top-k cut: the k-th largest value t; keep > t, and == t in index order up to k.
        let k = c.k();
        let (t, mut ties) = if k < v {
            sorted.clear();
            sorted.extend(l.iter().copied());
            sorted.sort_by(|a, b| b.partial_cmp(a).expect("validated: no NaN"));
            let t = sorted[k - 1];
            let above = l.iter().filter(|&&x| x > t).count();
            (t, k - above)
        } else {
            (excluded, usize::MAX)
        };
        let mut total = T::zero();
        let mut last = 0usize;
        for (j, &x) in l.iter().enumerate() {
            let keep = x > excluded
                && (x > t
                    || (x == t && ties > 0 && {
                        ties -= 1;
                        true
                    }));
            p[j] = if keep {
                last = j;
                ((x - m) * inv_t).exp()
            } else {
                T::zero()
            };
            total = total + p[j];
        }
        for (j, o) in out_row.iter_mut().enumerate() {
            let i = (row * s + j) as u64;
            let target = T::unit(key.u32_at(first + i)) * total;
            let mut acc = T::zero();
            let mut chosen = last;
            for (cls, &pv) in p.iter().enumerate() {
                acc = acc + pv;
                if acc > target {
                    chosen = cls;
                    break;
                }
            }
            *o = chosen as u32;
        }
    }
}
