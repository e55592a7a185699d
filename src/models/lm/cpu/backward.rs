//! The CPU language model's backward pass (see [`super`] for the equations), one function per
//! piece in reverse order of the forward pass: the head and final LayerNorm, then per block
//! (last first) the MLP and the attention, then the embeddings. Each piece reads the saved
//! activations of [`super::Forward`] and the residual-stream gradient `dh`, and writes its
//! tensors' gradients into the flat `grad` ([`super::layout`] order).

use std::ops::Range;

use rayon::prelude::*;

use super::layers::Norm;
use super::layers::{head_slice, layer_norm_back, linear_back, softmax_back};
use super::{BlockCache, CpuLm, Forward};
use crate::error::Result;
use crate::models::lm::VOCAB;
use crate::models::lm::idx::*;
use crate::num::activation::gelu_grad;
use crate::num::float::HostFloat;

impl<T: HostFloat> CpuLm<T> {
    fn range(&self, i: usize) -> Range<usize> {
        self.tensors[i].range()
    }

    /// Backward of the LayerNorm with γ = tensor `t`, β = `t + 1` (saved `nm`) for the output
    /// gradient `dy`: `dγ`, `dβ` into `grad`; returns `dx`.
    fn norm_back(&self, dy: &[T], nm: &Norm<T>, t: usize, grad: &mut [T]) -> Vec<T> {
        let c = self.cfg.width;
        let (mut dg, mut db) = (vec![T::zero(); c], vec![T::zero(); c]);
        let dx = layer_norm_back(dy, nm, self.w(t), c, &mut dg, &mut db);
        grad[self.range(t)].copy_from_slice(&dg);
        grad[self.range(t + 1)].copy_from_slice(&db);
        dx
    }

    /// Backward of the linear layer with weight tensor `t` (and bias `t + 1` when `bias`) over
    /// `n` rows of `k` → `m`: returns `dx`.
    fn linear_back(
        &self,
        x: &[T],
        dy: &[T],
        t: usize,
        bias: bool,
        nkm: (usize, usize, usize),
        grad: &mut [T],
    ) -> Vec<T> {
        let b = bias.then(|| self.range(t + 1));
        linear_back(x, dy, self.w(t), nkm, grad, self.range(t), b)
    }

    /// Loss and gradient (in `T`) of `tokens`, over every target position or (with `mask`,
    /// `[rows][len]` of 0/1, checked here) over the counted ones.
    pub(super) fn gradient(
        &self,
        tokens: &[u8],
        len: usize,
        mask: Option<&[u8]>,
    ) -> Result<(f64, Vec<T>)> {
        self.check_mask_for(tokens, mask, len)?;
        let fw = self.forward(tokens, len)?;
        let (loss, dlogits) = self.cross_entropy(&fw, true, mask);
        let mut grad = vec![T::zero(); self.p.len()];
        let mut dh = self.head_back(&fw, &dlogits, &mut grad);
        for l in (0..self.cfg.layers).rev() {
            let bc = &fw.blocks[l];
            self.mlp_back(l, bc, &mut dh, &mut grad);
            self.attention_back(l, bc, (fw.rows, fw.len), &mut dh, &mut grad);
        }
        self.embed_back(&fw, &dh, &mut grad);
        Ok((loss, grad))
    }

    /// Head and final LayerNorm: `dW_head = afᵀ·dlogits`, `daf = dlogits·W_headᵀ`; returns
    /// `dh = LN_f⁻(daf)`.
    fn head_back(&self, fw: &Forward<T>, dlogits: &[T], grad: &mut [T]) -> Vec<T> {
        let (c, n) = (self.cfg.width, fw.rows * fw.len);
        let head = self.idx.head();
        let daf = self.linear_back(&fw.lnf.y, dlogits, head, false, (n, c, VOCAB), grad);
        self.norm_back(&daf, &fw.lnf, self.idx.lnf_g(), grad)
    }

    /// The MLP half of block `l`: `dW_out = gᵀ·dh`, `df = (dh·W_outᵀ) ⊙ GELU′(f)`,
    /// `dW_fc = a₂ᵀ·df`, `dh += LN₂⁻(df·W_fcᵀ)`.
    fn mlp_back(&self, l: usize, bc: &BlockCache<T>, dh: &mut [T], grad: &mut [T]) {
        let c = self.cfg.width;
        let n = dh.len() / c;
        let ti = |j| self.idx.block(l, j);
        let mut df = self.linear_back(&bc.g, dh, ti(OUT_W), true, (n, 4 * c, c), grad);
        df.par_iter_mut()
            .zip(bc.f.par_iter().zip(&bc.t))
            .for_each(|(a, (x, t))| *a = *a * gelu_grad(*x, *t));
        let da2 = self.linear_back(&bc.ln2.y, &df, ti(FC_W), true, (n, c, 4 * c), grad);
        let dx = self.norm_back(&da2, &bc.ln2, ti(LN2_G), grad);
        dh.iter_mut().zip(&dx).for_each(|(a, b)| *a = *a + *b);
    }

    /// The attention half of block `l` over `rows` sequences of `len`: `dW_proj = oᵀ·dh`,
    /// `do = dh·W_projᵀ`, per (sequence, head) [`Self::head_back_one`] into `dqkv`, then
    /// `dW_qkv = a₁ᵀ·dqkv`, `dh += LN₁⁻(dqkv·W_qkvᵀ)`.
    fn attention_back(
        &self,
        l: usize,
        bc: &BlockCache<T>,
        (rows, len): (usize, usize),
        dh: &mut [T],
        grad: &mut [T],
    ) {
        let c = self.cfg.width;
        let n = rows * len;
        let ti = |j| self.idx.block(l, j);
        let d_o = self.linear_back(&bc.o, dh, ti(PROJ_W), true, (n, c, c), grad);
        let mut dqkv = vec![T::zero(); n * 3 * c];
        // Sequences in parallel; each writes its own rows of dqkv.
        dqkv.par_chunks_mut(len * 3 * c)
            .enumerate()
            .for_each(|(r, dqkv_r)| {
                for hh in 0..self.cfg.heads {
                    self.head_back_one(bc, &d_o, len, r, hh, dqkv_r);
                }
            });
        let da1 = self.linear_back(&bc.ln1.y, &dqkv, ti(QKV_W), true, (n, c, 3 * c), grad);
        let dx = self.norm_back(&da1, &bc.ln1, ti(LN1_G), grad);
        dh.iter_mut().zip(&dx).for_each(|(a, b)| *a = *a + *b);
    }

    /// One head `hh` of sequence `r`: `dP = do·vᵀ`, `dv = Pᵀ·do`, `dS = P ⊙ (dP − rowsum(P ⊙
    /// dP))/√d`, `dq = dS·k`, `dk = dSᵀ·q`, written into the sequence's rows `dqkv_r` of `dqkv`.
    fn head_back_one(
        &self,
        bc: &BlockCache<T>,
        d_o: &[T],
        len: usize,
        r: usize,
        hh: usize,
        dqkv_r: &mut [T],
    ) {
        let c = self.cfg.width;
        let (hn, d) = (self.cfg.heads, self.cfg.head_dim());
        let scale = T::of(1.0 / (d as f64).sqrt());
        let q = head_slice(&bc.qkv, c, len, r, 0, hh, d);
        let k = head_slice(&bc.qkv, c, len, r, 1, hh, d);
        let v = head_slice(&bc.qkv, c, len, r, 2, hh, d);
        let p = &bc.att[(r * hn + hh) * len * len..(r * hn + hh + 1) * len * len];
        let mut doh = Vec::with_capacity(len * d);
        for t in 0..len {
            let s = (r * len + t) * c + hh * d;
            doh.extend_from_slice(&d_o[s..s + d]);
        }
        let mut dp = vec![T::zero(); len * len];
        T::gemm(len, len, d, &doh, false, &v, true, &mut dp, false);
        let mut dv = vec![T::zero(); len * d];
        T::gemm(len, d, len, p, true, &doh, false, &mut dv, false);
        for (pr, dr) in p.chunks(len).zip(dp.chunks_mut(len)) {
            softmax_back(pr, dr, scale);
        }
        let mut dq = vec![T::zero(); len * d];
        T::gemm(len, d, len, &dp, false, &k, false, &mut dq, false);
        let mut dk = vec![T::zero(); len * d];
        T::gemm(len, d, len, &dp, true, &q, false, &mut dk, false);
        for t in 0..len {
            let base = t * 3 * c + hh * d;
            for (part, src) in [(0, &dq), (1, &dk), (2, &dv)] {
                let o = base + part * c;
                dqkv_r[o..o + d].copy_from_slice(&src[t * d..(t + 1) * d]);
            }
        }
    }

    /// Embeddings: `dtok_emb[x] += dh`, `dpos_emb[t] += dh`, scatter-added in position order.
    fn embed_back(&self, fw: &Forward<T>, dh: &[T], grad: &mut [T]) {
        let c = self.cfg.width;
        let (tok_off, pos_off) = (self.tensors[Idx::TOK].offset, self.tensors[Idx::POS].offset);
        for (i, &x) in fw.inputs.iter().enumerate() {
            let t = i % fw.len;
            for j in 0..c {
                let g = dh[i * c + j];
                grad[tok_off + x as usize * c + j] = grad[tok_off + x as usize * c + j] + g;
                grad[pos_off + t * c + j] = grad[pos_off + t * c + j] + g;
            }
        }
    }
}
