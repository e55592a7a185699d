//! The language model on the CPU, generic over the float type: `f64` with plain loops (the
//! cpu64 reference) and `f32` with the `gemm` crate (cpu32), as [`crate::models::vae::cpu`].
//!
//! # Backward pass (N = rows·len positions, gradients of the mean loss)
//!
//! ```text
//! dlogits = (softmax(logits) − onehot(target))·w,   w = 1/N   (masked: mask_i/Σ mask)
//! dW_head = afᵀ·dlogits;  daf = dlogits·W_headᵀ;  dh = LN_f⁻(daf)
//! block (reversed):  dW_out = gᵀ·dh, df = (dh·W_outᵀ) ⊙ GELU′(f), dW_fc = a₂ᵀ·df,
//!                    dh += LN₂⁻(df·W_fcᵀ)
//!                    dW_proj = oᵀ·dh, do = dh·W_projᵀ; per (row, head):
//!                    dP = do·vᵀ, dv = Pᵀ·do, dS = P ⊙ (dP − rowsum(P ⊙ dP)),
//!                    dq = dS·k/√d, dk = dSᵀ·q/√d;  dW_qkv = a₁ᵀ·dqkv,  dh += LN₁⁻(dqkv·W_qkvᵀ)
//! dtok_emb[x] += dh,  dpos_emb[t] += dh
//! LN⁻(dy) = rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂ ⊙ x̂)),  dx̂ = dy ⊙ γ;  dγ = Σ dy ⊙ x̂, dβ = Σ dy
//! ```
//!
//! Bias and LayerNorm sums over positions are column sums in row order
//! ([`crate::num::linalg::col_sums_rows`]); the loss is a pairwise sum.
//!
//! This file holds the model, its forward pass (embeddings, then per block [`CpuLm`]'s
//! attention and MLP halves, then the head), the loss and the optimiser step; the pieces
//! (LayerNorm, linear, GELU, softmax, forward and backward) are in `cpu/layers.rs`, the backward
//! pass in `cpu/backward.rs` (one function per piece, mirroring `device.rs`), and incremental
//! decoding in `cpu/decoder.rs`.

mod backward;
mod decoder;
mod layers;

use rayon::prelude::*;

use super::idx::*;
use super::{
    Decoder, Kind, LmConfig, LmLoss, LmTrainer, Tensor, VOCAB, check_mask, check_params,
    check_sequences, layout,
};
use crate::error::{Error, Result};
use crate::num::adam::{AdamState, adamw_step, clip_global_norm};
use crate::num::float::HostFloat;
pub use layers::LN_EPS;
use layers::{Norm, causal_softmax, gelu_forward, head_slice, layer_norm, linear};

/// A language model trained on the CPU in `T` arithmetic.
pub struct CpuLm<T: HostFloat> {
    cfg: LmConfig,
    tensors: Vec<Tensor>,
    idx: Idx,
    p: Vec<T>,
    adam: AdamState<T>,
    last: Option<LmLoss>,
}

/// Activations of one block.
struct BlockCache<T> {
    ln1: Norm<T>,
    qkv: Vec<T>,
    /// Attention probabilities `[rows][H][len][len]` (0 above the diagonal).
    att: Vec<T>,
    /// Heads' outputs, concatenated `[N][C]`.
    o: Vec<T>,
    ln2: Norm<T>,
    /// Pre-activation of the MLP `[N][4C]`.
    f: Vec<T>,
    /// GELU's tanh term of `f` (kept for the backward pass).
    t: Vec<T>,
    /// GELU(f).
    g: Vec<T>,
}

/// Activations of one forward pass.
struct Forward<T> {
    rows: usize,
    len: usize,
    inputs: Vec<u8>,
    targets: Vec<u8>,
    blocks: Vec<BlockCache<T>>,
    lnf: Norm<T>,
    logits: Vec<T>,
}

impl<T: HostFloat> CpuLm<T> {
    /// A model with parameters `params` (flat, [`layout`] order, rounded to `T`) and fresh
    /// AdamW state.
    pub fn new(cfg: &LmConfig, params: &[f64]) -> Result<Self> {
        check_params(cfg, params)?;
        Ok(Self {
            cfg: *cfg,
            tensors: layout(cfg),
            idx: Idx { layers: cfg.layers },
            p: params.iter().map(|&v| T::of(v)).collect(),
            adam: AdamState::new(params.len()),
            last: None,
        })
    }

    fn w(&self, i: usize) -> &[T] {
        &self.p[self.tensors[i].range()]
    }

    /// The attention half of block `l` on the residual stream `h` (`[rows·len][C]`):
    /// `h += concat_heads softmax(q·kᵀ/√d + causal mask)·v ·W_proj + b_proj` with
    /// `[q|k|v] = LN₁(h)·W_qkv + b_qkv`. Returns LN₁'s outputs, `[q|k|v]`, the probabilities and
    /// the heads' outputs (what the backward pass needs).
    fn attention(
        &self,
        l: usize,
        h: &mut [T],
        (rows, len): (usize, usize),
    ) -> (Norm<T>, Vec<T>, Vec<T>, Vec<T>) {
        let c = self.cfg.width;
        let (hn, d) = (self.cfg.heads, self.cfg.head_dim());
        let n = rows * len;
        let bw = |j| self.w(self.idx.block(l, j));
        let scale = T::of(1.0 / (d as f64).sqrt());
        let ln1 = layer_norm(h, c, bw(LN1_G), bw(LN1_B));
        let qkv = linear(&ln1.y, n, c, bw(QKV_W), Some(bw(QKV_B)), 3 * c);
        let mut att = vec![T::zero(); rows * hn * len * len];
        let mut o = vec![T::zero(); n * c];
        // Sequences in parallel; each writes its own probabilities and outputs.
        att.par_chunks_mut(hn * len * len)
            .zip(o.par_chunks_mut(len * c))
            .enumerate()
            .for_each(|(r, (att_r, o_r))| {
                for hh in 0..hn {
                    let q = head_slice(&qkv, c, len, r, 0, hh, d);
                    let k = head_slice(&qkv, c, len, r, 1, hh, d);
                    let v = head_slice(&qkv, c, len, r, 2, hh, d);
                    let p = &mut att_r[hh * len * len..(hh + 1) * len * len];
                    T::gemm(len, len, d, &q, false, &k, true, p, false);
                    for (i, row) in p.chunks_mut(len).enumerate() {
                        row.iter_mut().for_each(|s| *s = *s * scale);
                        causal_softmax(row, i);
                    }
                    let mut oh = vec![T::zero(); len * d];
                    T::gemm(len, d, len, p, false, &v, false, &mut oh, false);
                    for t in 0..len {
                        o_r[t * c + hh * d..t * c + (hh + 1) * d]
                            .copy_from_slice(&oh[t * d..(t + 1) * d]);
                    }
                }
            });
        let proj = linear(&o, n, c, bw(PROJ_W), Some(bw(PROJ_B)), c);
        h.iter_mut().zip(&proj).for_each(|(a, b)| *a = *a + *b);
        (ln1, qkv, att, o)
    }

    /// The MLP half of block `l` on the residual stream `h` (`[n][C]`):
    /// `h += GELU(LN₂(h)·W_fc + b_fc)·W_out + b_out`. Returns LN₂'s outputs, the pre-activation,
    /// GELU's tanh terms and its output (what the backward pass needs).
    fn mlp(&self, l: usize, h: &mut [T]) -> (Norm<T>, Vec<T>, Vec<T>, Vec<T>) {
        let c = self.cfg.width;
        let n = h.len() / c;
        let bw = |j| self.w(self.idx.block(l, j));
        let ln2 = layer_norm(h, c, bw(LN2_G), bw(LN2_B));
        let f = linear(&ln2.y, n, c, bw(FC_W), Some(bw(FC_B)), 4 * c);
        let (t, g) = gelu_forward(&f);
        let out = linear(&g, n, 4 * c, bw(OUT_W), Some(bw(OUT_B)), c);
        h.iter_mut().zip(&out).for_each(|(a, b)| *a = *a + *b);
        (ln2, f, t, g)
    }

    /// Final LayerNorm and head: the LayerNorm's outputs and the logits (`[n][V]`) of `h`.
    fn head(&self, h: &[T]) -> (Norm<T>, Vec<T>) {
        let c = self.cfg.width;
        let lnf = layer_norm(h, c, self.w(self.idx.lnf_g()), self.w(self.idx.lnf_b()));
        let logits = linear(&lnf.y, h.len() / c, c, self.w(self.idx.head()), None, VOCAB);
        (lnf, logits)
    }

    fn forward(&self, tokens: &[u8], len: usize) -> Result<Forward<T>> {
        let (rows, len) = check_sequences(&self.cfg, tokens, len)?;
        let c = self.cfg.width;
        let n = rows * len;
        let mut inputs = Vec::with_capacity(n);
        let mut targets = Vec::with_capacity(n);
        for s in tokens.chunks(len + 1) {
            inputs.extend_from_slice(&s[..len]);
            targets.extend_from_slice(&s[1..]);
        }
        // Embeddings.
        let (tok, pos) = (self.w(Idx::TOK), self.w(Idx::POS));
        let mut h = vec![T::zero(); n * c];
        for (i, &x) in inputs.iter().enumerate() {
            let t = i % len;
            for j in 0..c {
                h[i * c + j] = tok[x as usize * c + j] + pos[t * c + j];
            }
        }
        let mut blocks = Vec::with_capacity(self.cfg.layers);
        for l in 0..self.cfg.layers {
            let (ln1, qkv, att, o) = self.attention(l, &mut h, (rows, len));
            let (ln2, f, t, g) = self.mlp(l, &mut h);
            blocks.push(BlockCache {
                ln1,
                qkv,
                att,
                o,
                ln2,
                f,
                t,
                g,
            });
        }
        let (lnf, logits) = self.head(&h);
        Ok(Forward {
            rows,
            len,
            inputs,
            targets,
            blocks,
            lnf,
            logits,
        })
    }

    /// Mean cross-entropy and (when `grad`) `dlogits`, over every position or (with `mask`,
    /// checked by [`check_mask`]) over the counted ones: the loss is the pairwise sum of the
    /// counted positions' terms (0 in place of the others) over their count, and position i's
    /// `dlogits` are `(softmax − onehot)·w_i` with `w_i = 1/count` when counted, else 0. With
    /// no mask or an all-ones one, `count = n`: the same arithmetic either way.
    fn cross_entropy(&self, fw: &Forward<T>, grad: bool, mask: Option<&[u8]>) -> (f64, Vec<T>) {
        let n = fw.rows * fw.len;
        let mut dl = if grad {
            vec![T::zero(); n * VOCAB]
        } else {
            vec![]
        };
        let counted = |i: usize| mask.is_none_or(|m| m[i] == 1);
        let count = mask.map_or(n, |m| m.iter().filter(|&&v| v == 1).count());
        let inv_n = T::of(1.0 / count as f64);
        let row_loss = |i: usize, dlr: Option<&mut [T]>| {
            if !counted(i) {
                // Not counted: no loss term, and dlogits stay 0.
                return T::zero();
            }
            let row = &fw.logits[i * VOCAB..(i + 1) * VOCAB];
            let m = row.iter().cloned().fold(T::neg_infinity(), |a, b| a.max(b));
            let mut e: Vec<T> = row.iter().map(|v| *v - m).collect();
            T::exp_slice(&mut e);
            let z = T::psum(&e);
            let y = fw.targets[i] as usize;
            if let Some(dlr) = dlr {
                for j in 0..VOCAB {
                    let onehot = if j == y { T::one() } else { T::zero() };
                    dlr[j] = (e[j] / z - onehot) * inv_n;
                }
            }
            z.ln() + m - row[y]
        };
        // Rows in parallel.
        let terms: Vec<T> = if grad {
            dl.par_chunks_mut(VOCAB)
                .enumerate()
                .map(|(i, dlr)| row_loss(i, Some(dlr)))
                .collect()
        } else {
            (0..n).into_par_iter().map(|i| row_loss(i, None)).collect()
        };
        (T::psum(&terms).wide() / count as f64, dl)
    }

    /// [`LmTrainer::step`] or (with `mask`) [`LmTrainer::step_masked`].
    fn step_with(&mut self, tokens: &[u8], mask: Option<&[u8]>, len: usize) -> Result<()> {
        let (loss, g) = self.gradient(tokens, len, mask)?;
        let checked = LmLoss::checked(loss)?;
        self.adamw(g);
        self.last = Some(checked);
        Ok(())
    }

    /// [`LmTrainer::loss`] or (with `mask`) [`LmTrainer::loss_masked`].
    fn loss_with(&self, tokens: &[u8], mask: Option<&[u8]>, len: usize) -> Result<f64> {
        self.check_mask_for(tokens, mask, len)?;
        let fw = self.forward(tokens, len)?;
        Ok(self.cross_entropy(&fw, false, mask).0)
    }

    /// Check `tokens` and, when given, `mask` for them ([`check_sequences`], [`check_mask`])
    /// before any work.
    fn check_mask_for(&self, tokens: &[u8], mask: Option<&[u8]>, len: usize) -> Result<()> {
        let (rows, len) = check_sequences(&self.cfg, tokens, len)?;
        if let Some(m) = mask {
            check_mask(m, rows, len)?;
        }
        Ok(())
    }

    /// AdamW on gradient `g`, clipped to the configured global norm first
    /// ([`clip_global_norm`], [`adamw_step`]).
    fn adamw(&mut self, mut g: Vec<T>) {
        let a = self.cfg.adam;
        clip_global_norm(&mut g, a.clip);
        let tensors = self
            .tensors
            .iter()
            .map(|t| (t.range(), matches!(t.kind, Kind::Weight | Kind::Residual)));
        adamw_step(&a.hyper(), &mut self.adam, &mut self.p, &g, tensors);
    }
}

impl<T: HostFloat> LmTrainer for CpuLm<T> {
    fn config(&self) -> &LmConfig {
        &self.cfg
    }

    fn step(&mut self, tokens: &[u8], len: usize) -> Result<()> {
        self.step_with(tokens, None, len)
    }

    fn step_masked(&mut self, tokens: &[u8], mask: &[u8], len: usize) -> Result<()> {
        self.step_with(tokens, Some(mask), len)
    }

    fn last_loss(&mut self) -> Result<LmLoss> {
        self.last
            .ok_or_else(|| Error::InvalidArgument("no training step yet".into()))
    }

    fn loss_and_gradient(&mut self, tokens: &[u8], len: usize) -> Result<(LmLoss, Vec<f64>)> {
        let (loss, g) = self.gradient(tokens, len, None)?;
        Ok((LmLoss { loss }, g.iter().map(|v| v.wide()).collect()))
    }

    fn loss(&mut self, tokens: &[u8], len: usize) -> Result<f64> {
        self.loss_with(tokens, None, len)
    }

    fn loss_and_gradient_masked(
        &mut self,
        tokens: &[u8],
        mask: &[u8],
        len: usize,
    ) -> Result<(LmLoss, Vec<f64>)> {
        let (loss, g) = self.gradient(tokens, len, Some(mask))?;
        Ok((LmLoss { loss }, g.iter().map(|v| v.wide()).collect()))
    }

    fn loss_masked(&mut self, tokens: &[u8], mask: &[u8], len: usize) -> Result<f64> {
        self.loss_with(tokens, Some(mask), len)
    }

    fn logits(&mut self, tokens: &[u8], rows: usize, len: usize) -> Result<Vec<f64>> {
        // Inputs only: append a dummy target byte to each sequence.
        if tokens.len() != rows * len {
            return Err(Error::InvalidArgument(format!(
                "{} tokens are not {rows} sequences of {len}",
                tokens.len()
            )));
        }
        let mut seq = Vec::with_capacity(rows * (len + 1));
        for s in tokens.chunks(len.max(1)) {
            seq.extend_from_slice(s);
            seq.push(0);
        }
        let fw = self.forward(&seq, len)?;
        Ok(fw.logits.iter().map(|v| v.wide()).collect())
    }

    fn decoder(&self, rows: usize) -> Result<Box<dyn Decoder + '_>> {
        if rows == 0 {
            return Err(Error::InvalidArgument("decoding needs ≥ 1 row".into()));
        }
        let per_layer = rows * self.cfg.context * self.cfg.width;
        Ok(Box::new(decoder::CpuDecoder {
            lm: self,
            rows,
            pos: 0,
            k: vec![vec![T::zero(); per_layer]; self.cfg.layers],
            v: vec![vec![T::zero(); per_layer]; self.cfg.layers],
        }))
    }

    fn params(&self) -> Result<Vec<f64>> {
        Ok(self.p.iter().map(|v| v.wide()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::lm::init_params;

    fn tiny() -> LmConfig {
        LmConfig {
            width: 8,
            layers: 2,
            heads: 2,
            context: 6,
            ..Default::default()
        }
    }

    /// Bytes of a fixed text, as `rows` sequences of `len + 1`.
    fn batch(rows: usize, len: usize) -> Vec<u8> {
        let text = b"the quick brown fox jumps over the lazy dog; pack my box with five dozen jugs";
        (0..rows)
            .flat_map(|r| text[r * 3..r * 3 + len + 1].to_vec())
            .collect()
    }

    /// Every gradient entry of the f64 model against central differences of the loss, on
    /// weights perturbed from the initialisation so LayerNorm and biases are not at special
    /// points: agreement within 1e-6 relative to the gradient's largest entry (the FD error at
    /// h = 1e-5 is O(h²) ≈ 1e-10; rounding ≈ 1e-16/h).
    #[test]
    fn gradient_matches_finite_differences() {
        let cfg = tiny();
        let mut p = init_params(&cfg, 1);
        let mut noise = vec![0.0; p.len()];
        // Test-local key (no result or golden depends on it).
        crate::rng::host_normals_f64(crate::rng::StreamKey::new(9, 9), 0, &mut noise);
        p.iter_mut().zip(&noise).for_each(|(a, b)| *a += 0.3 * b);
        let (rows, len) = (2, 5);
        let x = batch(rows, len);
        let mut lm = CpuLm::<f64>::new(&cfg, &p).unwrap();
        let (_, g) = lm.loss_and_gradient(&x, len).unwrap();
        let gmax = g.iter().fold(0.0f64, |a, b| a.max(b.abs()));
        assert!(gmax > 1e-3);
        let h = 1e-5;
        let mut worst = (0.0, String::new());
        for t in layout(&cfg) {
            // Every entry of small tensors, a strided subset of the embeddings and head.
            let step = if t.rows * t.cols > 300 { 37 } else { 1 };
            for i in t.range().step_by(step) {
                let mut pp = p.clone();
                pp[i] += h;
                let up = CpuLm::<f64>::new(&cfg, &pp).unwrap().loss(&x, len).unwrap();
                pp[i] -= 2.0 * h;
                let down = CpuLm::<f64>::new(&cfg, &pp).unwrap().loss(&x, len).unwrap();
                let fd = (up - down) / (2.0 * h);
                let err = (fd - g[i]).abs() / gmax;
                if err > worst.0 {
                    worst = (
                        err,
                        format!("{}[{}]: fd {fd} vs {}", t.name, i - t.offset, g[i]),
                    );
                }
            }
        }
        assert!(worst.0 < 1e-6, "worst {worst:?}");
    }

    /// The decoder's incremental logits equal the full forward pass's at every position.
    #[test]
    fn kv_cache_matches_full_forward() {
        let cfg = tiny();
        let p = init_params(&cfg, 2);
        let mut lm = CpuLm::<f64>::new(&cfg, &p).unwrap();
        let (rows, len) = (2, 6);
        let x: Vec<u8> = batch(rows, len - 1);
        let full = lm.logits(&x, rows, len).unwrap();
        let mut dec = lm.decoder(rows).unwrap();
        for t in 0..len {
            let step = dec.feed(&[x[t], x[len + t]]).unwrap();
            for r in 0..rows {
                let want = &full[(r * len + t) * VOCAB..(r * len + t + 1) * VOCAB];
                let got = &step[r * VOCAB..(r + 1) * VOCAB];
                let err = want
                    .iter()
                    .zip(got)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f64::max);
                assert!(err < 1e-12, "row {r} position {t}: {err}");
            }
        }
        assert!(dec.feed(&[1, 2]).is_err(), "context full");
    }

    /// The f32 decoder's logits do not depend on how its rows are grouped over threads (1 vs
    /// 2 threads, an odd row count), and agree with the full forward pass within f32 rounding.
    #[test]
    fn f32_decoding_ignores_the_thread_count() {
        let cfg = tiny();
        let p = init_params(&cfg, 4);
        let (rows, len) = (3, 6);
        let x: Vec<u8> = batch(rows, len - 1);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let lm = CpuLm::<f32>::new(&cfg, &p).unwrap();
                let mut dec = lm.decoder(rows).unwrap();
                let mut all = Vec::new();
                for t in 0..len {
                    let tok: Vec<u8> = (0..rows).map(|r| x[r * len + t]).collect();
                    all.extend(dec.feed(&tok).unwrap());
                }
                all
            })
        };
        let (one, two) = (run(1), run(2));
        assert!(
            one.iter()
                .zip(&two)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
        let full = CpuLm::<f32>::new(&cfg, &p)
            .unwrap()
            .logits(&x, rows, len)
            .unwrap();
        for t in 0..len {
            for r in 0..rows {
                for v in 0..VOCAB {
                    let got = two[(t * rows + r) * VOCAB + v];
                    let want = full[(r * len + t) * VOCAB + v];
                    assert!((got - want).abs() < 1e-5, "row {r} position {t}");
                }
            }
        }
    }

    /// Untrained logits are near zero, so the loss is near ln 256; training steps lower it.
    #[test]
    fn steps_lower_the_loss() {
        let cfg = LmConfig {
            adam: crate::models::lm::AdamW {
                lr: 1e-2,
                ..Default::default()
            },
            ..tiny()
        };
        let mut lm = CpuLm::<f32>::new(&cfg, &init_params(&cfg, 3)).unwrap();
        let x = batch(4, 6);
        let l0 = lm.loss(&x, 6).unwrap();
        assert!((l0 - (256f64).ln()).abs() < 0.05, "{l0}");
        for _ in 0..30 {
            lm.step(&x, 6).unwrap();
        }
        let l1 = lm.loss(&x, 6).unwrap();
        assert!(l1 < 0.5 * l0, "{l0} → {l1}");
    }
}
