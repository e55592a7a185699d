//! Incremental decoding on the CPU: one position of every row per call, keys and values of
//! earlier positions cached, the same arithmetic as the full forward pass of [`super::CpuLm`]
//! (its tests check the logits agree at every position).

use rayon::prelude::*;

use super::CpuLm;
use super::layers::{causal_softmax, layer_norm, linear};
use crate::error::{Error, Result};
use crate::models::lm::Decoder;
use crate::models::lm::idx::*;
use crate::num::float::HostFloat;

/// Incremental decoding on the CPU: keys and values of every layer cached
/// `[layer][row][position][C]`.
pub(super) struct CpuDecoder<'a, T: HostFloat> {
    pub(super) lm: &'a CpuLm<T>,
    pub(super) rows: usize,
    pub(super) pos: usize,
    pub(super) k: Vec<Vec<T>>,
    pub(super) v: Vec<Vec<T>>,
}

/// Attention of one row at position `t` over its cached keys `kc` and values `vc`
/// (`[ctx][C]`, positions `0..=t` filled), head by head, into `orow` (`[C]`, zero on entry):
/// scores `q·k_j/√d` (pairwise sums), causal softmax, `o = Σ_j p_j v_j` in `j` order.
fn attend_row<T: HostFloat>(
    q_row: &[T],
    kc: &[T],
    vc: &[T],
    orow: &mut [T],
    (t, hn, d): (usize, usize, usize),
) {
    let c = orow.len();
    let scale = T::of(1.0 / (d as f64).sqrt());
    let mut prod = vec![T::zero(); d];
    let mut s = vec![T::zero(); t + 1];
    for hh in 0..hn {
        let q = &q_row[hh * d..(hh + 1) * d];
        for (j, sj) in s.iter_mut().enumerate() {
            let kj = &kc[j * c + hh * d..j * c + (hh + 1) * d];
            prod.iter_mut()
                .zip(q.iter().zip(kj))
                .for_each(|(p, (a, b))| *p = *a * *b);
            *sj = T::psum(&prod) * scale;
        }
        causal_softmax(&mut s, t);
        let oh = &mut orow[hh * d..(hh + 1) * d];
        for (j, pj) in s.iter().enumerate() {
            let vj = &vc[j * c + hh * d..j * c + (hh + 1) * d];
            for (oe, ve) in oh.iter_mut().zip(vj) {
                *oe = *oe + *pj * *ve;
            }
        }
    }
}

/// One group of rows at a position: their input tokens and, per layer, their slices of the
/// key and value caches (`[rows][ctx][C]` each).
struct Group<'a, T> {
    tokens: &'a [u8],
    k: Vec<&'a mut [T]>,
    v: Vec<&'a mut [T]>,
}

impl<T: HostFloat> CpuDecoder<'_, T> {
    /// The attention half of block `l` at position `t` on the rows of `h` (`[rows][C]`, the
    /// group's), with the group's caches `kc`, `vc`: the new keys and values cached,
    /// `h += attention·W_proj + b_proj`. Rows one after the other (the arithmetic per row does not
    /// depend on which group holds it).
    fn attention(lm: &CpuLm<T>, l: usize, t: usize, h: &mut [T], kc: &mut [T], vc: &mut [T]) {
        let cfg = &lm.cfg;
        let (c, hn, d, ctx) = (cfg.width, cfg.heads, cfg.head_dim(), cfg.context);
        let n = h.len() / c;
        let bw = |j| lm.w(lm.idx.block(l, j));
        let ln1 = layer_norm(h, c, bw(LN1_G), bw(LN1_B));
        let qkv = linear(&ln1.y, n, c, bw(QKV_W), Some(bw(QKV_B)), 3 * c);
        let mut o = vec![T::zero(); n * c];
        for (r, ((kc, vc), orow)) in kc
            .chunks_mut(ctx * c)
            .zip(vc.chunks_mut(ctx * c))
            .zip(o.chunks_mut(c))
            .enumerate()
        {
            let qkv = &qkv[r * 3 * c..(r + 1) * 3 * c];
            kc[t * c..(t + 1) * c].copy_from_slice(&qkv[c..2 * c]);
            vc[t * c..(t + 1) * c].copy_from_slice(&qkv[2 * c..]);
            attend_row(qkv, kc, vc, orow, (t, hn, d));
        }
        let proj = linear(&o, n, c, bw(PROJ_W), Some(bw(PROJ_B)), c);
        h.iter_mut().zip(&proj).for_each(|(a, b)| *a = *a + *b);
    }

    /// Position `t` of one group of rows, every layer and the head, on the calling thread:
    /// the group's logits `[rows][V]`.
    fn group_forward(lm: &CpuLm<T>, t: usize, g: Group<'_, T>) -> Vec<T> {
        let c = lm.cfg.width;
        let (tok, pos) = (lm.w(Idx::TOK), lm.w(Idx::POS));
        let mut h = vec![T::zero(); g.tokens.len() * c];
        for (i, &x) in g.tokens.iter().enumerate() {
            for j in 0..c {
                h[i * c + j] = tok[x as usize * c + j] + pos[t * c + j];
            }
        }
        for (l, (kc, vc)) in g.k.into_iter().zip(g.v).enumerate() {
            Self::attention(lm, l, t, &mut h, kc, vc);
            lm.mlp(l, &mut h);
        }
        lm.head(&h).1
    }
}

impl<T: HostFloat> Decoder for CpuDecoder<'_, T> {
    /// One position of every row: the rows split into as many groups as rayon has threads (at
    /// most one per row), each group decoded start to end by one worker — **one parallel region
    /// per position**, not one per layer piece. Products of a few rows stay on their worker
    /// ([`crate::num::gemm::sgemm`] runs them unsplit), so the bits do not depend on the
    /// grouping (tested with 1 and 2 threads).
    fn feed(&mut self, tokens: &[u8]) -> Result<Vec<f64>> {
        let lm = self.lm;
        let cfg = &lm.cfg;
        let (c, ctx) = (cfg.width, cfg.context);
        if tokens.len() != self.rows {
            return Err(Error::InvalidArgument(format!(
                "{} tokens fed to a {}-row decoder",
                tokens.len(),
                self.rows
            )));
        }
        if self.pos >= ctx {
            return Err(Error::InvalidArgument(format!(
                "the context of {ctx} positions is full"
            )));
        }
        let (n, t) = (self.rows, self.pos);
        let per = n.div_ceil(rayon::current_num_threads().clamp(1, n));
        let mut groups: Vec<Group<'_, T>> = tokens
            .chunks(per)
            .map(|tokens| Group {
                tokens,
                k: Vec::with_capacity(cfg.layers),
                v: Vec::with_capacity(cfg.layers),
            })
            .collect();
        for (kl, vl) in self.k.iter_mut().zip(self.v.iter_mut()) {
            for (g, (kc, vc)) in groups.iter_mut().zip(
                kl.chunks_mut(per * ctx * c)
                    .zip(vl.chunks_mut(per * ctx * c)),
            ) {
                g.k.push(kc);
                g.v.push(vc);
            }
        }
        let logits: Vec<Vec<T>> = groups
            .into_par_iter()
            .map(|g| Self::group_forward(lm, t, g))
            .collect();
        self.pos += 1;
        Ok(logits.iter().flatten().map(|v| v.wide()).collect())
    }

    fn position(&self) -> usize {
        self.pos
    }
}
