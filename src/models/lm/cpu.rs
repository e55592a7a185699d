//! The language model on the CPU, generic over the float type: `f64` with plain loops (the
//! cpu64 reference) and `f32` with `matrixmultiply` (cpu32), as [`crate::models::vae::cpu`].
//!
//! # Backward pass (N = rows·len positions, gradients of the mean loss)
//!
//! ```text
//! dlogits = (softmax(logits) − onehot(target)) / N
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
//! Bias and LayerNorm sums over positions are matrix products with a ones vector (the gemm's own
//! summation order); the loss is a pairwise sum.

use super::idx::*;
use super::{
    Decoder, Kind, LmConfig, LmLoss, LmTrainer, Tensor, VOCAB, check_params, check_sequences,
    layout,
};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::num::float::HostFloat;

/// LayerNorm's ε.
pub const LN_EPS: f64 = 1e-5;

/// A language model trained on the CPU in `T` arithmetic.
pub struct CpuLm<T: HostFloat> {
    cfg: LmConfig,
    tensors: Vec<Tensor>,
    idx: Idx,
    p: Vec<T>,
    m: Vec<T>,
    v: Vec<T>,
    t: u32,
    last: Option<LmLoss>,
}

/// LayerNorm output, normalised input and reciprocal standard deviation per row.
struct Norm<T> {
    y: Vec<T>,
    xhat: Vec<T>,
    rstd: Vec<T>,
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

fn layer_norm<T: HostFloat>(x: &[T], c: usize, g: &[T], b: &[T]) -> Norm<T> {
    let n = x.len() / c;
    let (mut y, mut xhat, mut rstd) = (
        vec![T::zero(); n * c],
        vec![T::zero(); n * c],
        vec![T::zero(); n],
    );
    let cf = T::of(c as f64);
    // Rows in parallel; each row's sums in its own (pairwise) order.
    x.par_chunks(c)
        .zip(y.par_chunks_mut(c))
        .zip(xhat.par_chunks_mut(c))
        .zip(rstd.par_iter_mut())
        .for_each(|(((row, yr), xr), rs)| {
            let mean = T::psum(row) / cf;
            let dev: Vec<T> = row.iter().map(|v| (*v - mean) * (*v - mean)).collect();
            let var = T::psum(&dev) / cf;
            let r = T::one() / (var + T::of(LN_EPS)).sqrt();
            *rs = r;
            for j in 0..c {
                let xh = (row[j] - mean) * r;
                xr[j] = xh;
                yr[j] = xh * g[j] + b[j];
            }
        });
    Norm { y, xhat, rstd }
}

/// LayerNorm backward: returns `dx`; `dg`, `db` receive the column sums (overwritten).
fn layer_norm_back<T: HostFloat>(
    dy: &[T],
    nm: &Norm<T>,
    g: &[T],
    c: usize,
    dg: &mut [T],
    db: &mut [T],
) -> Vec<T> {
    let n = dy.len() / c;
    let prod: Vec<T> = dy.iter().zip(&nm.xhat).map(|(a, b)| *a * *b).collect();
    col_sums(&prod, n, c, dg);
    col_sums(dy, n, c, db);
    let mut dx = vec![T::zero(); n * c];
    let cf = T::of(c as f64);
    dx.par_chunks_mut(c).enumerate().for_each(|(i, dxr)| {
        let dxh: Vec<T> = (0..c).map(|j| dy[i * c + j] * g[j]).collect();
        let xh = &nm.xhat[i * c..(i + 1) * c];
        let m1 = T::psum(&dxh) / cf;
        let m2 = T::psum(&dxh.iter().zip(xh).map(|(a, b)| *a * *b).collect::<Vec<_>>()) / cf;
        for j in 0..c {
            dxr[j] = nm.rstd[i] * (dxh[j] - m1 - xh[j] * m2);
        }
    });
    dx
}

/// Column sums of `x` (`[n][c]`) into `out` (overwritten), as `onesᵀ·x`.
fn col_sums<T: HostFloat>(x: &[T], n: usize, c: usize, out: &mut [T]) {
    let ones = vec![T::one(); n];
    T::gemm(1, c, n, &ones, false, x, false, out, false);
}

const GELU_A: f64 = 0.044_715;
/// √(2/π).
const GELU_S: f64 = 0.797_884_560_802_865_4;

/// `tanh(√(2/π)(x + 0.044715x³))`, GELU's inner term.
fn gelu_tanh<T: HostFloat>(x: T) -> T {
    (T::of(GELU_S) * (x + T::of(GELU_A) * x * x * x)).tanh()
}

/// GELU of `x` given its [`gelu_tanh`] `t`.
fn gelu_of<T: HostFloat>(x: T, t: T) -> T {
    T::of(0.5) * x * (T::one() + t)
}

/// GELU′ of `x` given its [`gelu_tanh`] `t`.
fn gelu_grad<T: HostFloat>(x: T, t: T) -> T {
    let (a, s, half) = (T::of(GELU_A), T::of(GELU_S), T::of(0.5));
    half * (T::one() + t) + half * x * (T::one() - t * t) * s * (T::one() + T::of(3.0) * a * x * x)
}

/// `(tanh terms, GELU)` of `f`, elements in parallel.
fn gelu_forward<T: HostFloat>(f: &[T]) -> (Vec<T>, Vec<T>) {
    let t: Vec<T> = f.par_iter().map(|x| gelu_tanh(*x)).collect();
    let g = f.par_iter().zip(&t).map(|(x, t)| gelu_of(*x, *t)).collect();
    (t, g)
}

/// `y = x·W (+ b)` for `x` `[n][k]`, `W` `[k][m]`.
fn linear<T: HostFloat>(x: &[T], n: usize, k: usize, w: &[T], b: Option<&[T]>, m: usize) -> Vec<T> {
    let mut y = vec![T::zero(); n * m];
    T::gemm(n, m, k, x, false, w, false, &mut y, false);
    if let Some(b) = b {
        for row in y.chunks_mut(m) {
            for (v, bb) in row.iter_mut().zip(b) {
                *v = *v + *bb;
            }
        }
    }
    y
}

/// Softmax over `row[..=last]` in place (the rest set to 0).
fn causal_softmax<T: HostFloat>(row: &mut [T], last: usize) {
    let m = row[..=last]
        .iter()
        .cloned()
        .fold(T::neg_infinity(), |a, b| a.max(b));
    for v in row[..=last].iter_mut() {
        *v = (*v - m).exp();
    }
    let z = T::psum(&row[..=last]);
    for v in row[..=last].iter_mut() {
        *v = *v / z;
    }
    for v in row[last + 1..].iter_mut() {
        *v = T::zero();
    }
}

/// Copy head `hh` of part `part` (0 = q, 1 = k, 2 = v) of sequence `r` out of `qkv` → `[len][d]`.
fn head_slice<T: HostFloat>(
    qkv: &[T],
    c: usize,
    len: usize,
    r: usize,
    part: usize,
    hh: usize,
    d: usize,
) -> Vec<T> {
    let mut out = Vec::with_capacity(len * d);
    for t in 0..len {
        let base = (r * len + t) * 3 * c + part * c + hh * d;
        out.extend_from_slice(&qkv[base..base + d]);
    }
    out
}

impl<T: HostFloat> CpuLm<T> {
    /// A model with parameters `params` (flat, [`layout`] order, rounded to `T`) and fresh
    /// AdamW state.
    pub fn new(cfg: &LmConfig, params: &[f64]) -> Result<Self> {
        check_params(cfg, params)?;
        let n = params.len();
        Ok(Self {
            cfg: *cfg,
            tensors: layout(cfg),
            idx: Idx { layers: cfg.layers },
            p: params.iter().map(|&v| T::of(v)).collect(),
            m: vec![T::zero(); n],
            v: vec![T::zero(); n],
            t: 0,
            last: None,
        })
    }

    fn w(&self, i: usize) -> &[T] {
        &self.p[self.tensors[i].range()]
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
        let (hn, d) = (self.cfg.heads, self.cfg.head_dim());
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
        let scale = T::of(1.0 / (d as f64).sqrt());
        let mut blocks = Vec::with_capacity(self.cfg.layers);
        for l in 0..self.cfg.layers {
            let bw = |j| self.w(self.idx.block(l, j));
            let ln1 = layer_norm(&h, c, bw(LN1_G), bw(LN1_B));
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

    /// Mean cross-entropy and (when `grad`) `dlogits`.
    fn cross_entropy(&self, fw: &Forward<T>, grad: bool) -> (f64, Vec<T>) {
        let n = fw.rows * fw.len;
        let mut dl = if grad {
            vec![T::zero(); n * VOCAB]
        } else {
            vec![]
        };
        let inv_n = T::of(1.0 / n as f64);
        let row_loss = |i: usize, dlr: Option<&mut [T]>| {
            let row = &fw.logits[i * VOCAB..(i + 1) * VOCAB];
            let m = row.iter().cloned().fold(T::neg_infinity(), |a, b| a.max(b));
            let e: Vec<T> = row.iter().map(|v| (*v - m).exp()).collect();
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
        (T::psum(&terms).wide() / n as f64, dl)
    }

    /// Loss and gradient (in `T`) of `tokens`.
    fn gradient(&self, tokens: &[u8], len: usize) -> Result<(f64, Vec<T>)> {
        let fw = self.forward(tokens, len)?;
        let (loss, dlogits) = self.cross_entropy(&fw, true);
        let c = self.cfg.width;
        let (hn, d) = (self.cfg.heads, self.cfg.head_dim());
        let (rows, len) = (fw.rows, fw.len);
        let n = rows * len;
        let mut grad = vec![T::zero(); self.p.len()];
        let range = |i: usize| self.tensors[i].range();
        // Head and final LayerNorm.
        T::gemm(
            c,
            VOCAB,
            n,
            &fw.lnf.y,
            true,
            &dlogits,
            false,
            &mut grad[range(self.idx.head())],
            false,
        );
        let mut daf = vec![T::zero(); n * c];
        T::gemm(
            n,
            c,
            VOCAB,
            &dlogits,
            false,
            self.w(self.idx.head()),
            true,
            &mut daf,
            false,
        );
        let (mut dg, mut db) = (vec![T::zero(); c], vec![T::zero(); c]);
        let mut dh = layer_norm_back(&daf, &fw.lnf, self.w(self.idx.lnf_g()), c, &mut dg, &mut db);
        grad[range(self.idx.lnf_g())].copy_from_slice(&dg);
        grad[range(self.idx.lnf_b())].copy_from_slice(&db);
        let scale = T::of(1.0 / (d as f64).sqrt());
        for l in (0..self.cfg.layers).rev() {
            let bc = &fw.blocks[l];
            let ti = |j| self.idx.block(l, j);
            // MLP.
            T::gemm(
                4 * c,
                c,
                n,
                &bc.g,
                true,
                &dh,
                false,
                &mut grad[range(ti(OUT_W))],
                false,
            );
            col_sums(&dh, n, c, &mut grad[range(ti(OUT_B))]);
            let mut df = vec![T::zero(); n * 4 * c];
            T::gemm(
                n,
                4 * c,
                c,
                &dh,
                false,
                self.w(ti(OUT_W)),
                true,
                &mut df,
                false,
            );
            df.par_iter_mut()
                .zip(bc.f.par_iter().zip(&bc.t))
                .for_each(|(a, (x, t))| *a = *a * gelu_grad(*x, *t));
            T::gemm(
                c,
                4 * c,
                n,
                &bc.ln2.y,
                true,
                &df,
                false,
                &mut grad[range(ti(FC_W))],
                false,
            );
            col_sums(&df, n, 4 * c, &mut grad[range(ti(FC_B))]);
            let mut da2 = vec![T::zero(); n * c];
            T::gemm(
                n,
                c,
                4 * c,
                &df,
                false,
                self.w(ti(FC_W)),
                true,
                &mut da2,
                false,
            );
            let dx = layer_norm_back(&da2, &bc.ln2, self.w(ti(LN2_G)), c, &mut dg, &mut db);
            grad[range(ti(LN2_G))].copy_from_slice(&dg);
            grad[range(ti(LN2_B))].copy_from_slice(&db);
            dh.iter_mut().zip(&dx).for_each(|(a, b)| *a = *a + *b);
            // Attention.
            T::gemm(
                c,
                c,
                n,
                &bc.o,
                true,
                &dh,
                false,
                &mut grad[range(ti(PROJ_W))],
                false,
            );
            col_sums(&dh, n, c, &mut grad[range(ti(PROJ_B))]);
            let mut d_o = vec![T::zero(); n * c];
            T::gemm(
                n,
                c,
                c,
                &dh,
                false,
                self.w(ti(PROJ_W)),
                true,
                &mut d_o,
                false,
            );
            let mut dqkv = vec![T::zero(); n * 3 * c];
            dqkv.par_chunks_mut(len * 3 * c)
                .enumerate()
                .for_each(|(r, dqkv_r)| {
                    for hh in 0..hn {
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
                        // dS = P ⊙ (dP − rowsum(P ⊙ dP)), times the score scale.
                        for i in 0..len {
                            let pr = &p[i * len..(i + 1) * len];
                            let dr = &mut dp[i * len..(i + 1) * len];
                            let prod: Vec<T> =
                                pr.iter().zip(dr.iter()).map(|(a, b)| *a * *b).collect();
                            let s = T::psum(&prod);
                            for j in 0..len {
                                dr[j] = pr[j] * (dr[j] - s) * scale;
                            }
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
                });
            T::gemm(
                c,
                3 * c,
                n,
                &bc.ln1.y,
                true,
                &dqkv,
                false,
                &mut grad[range(ti(QKV_W))],
                false,
            );
            col_sums(&dqkv, n, 3 * c, &mut grad[range(ti(QKV_B))]);
            let mut da1 = vec![T::zero(); n * c];
            T::gemm(
                n,
                c,
                3 * c,
                &dqkv,
                false,
                self.w(ti(QKV_W)),
                true,
                &mut da1,
                false,
            );
            let dx = layer_norm_back(&da1, &bc.ln1, self.w(ti(LN1_G)), c, &mut dg, &mut db);
            grad[range(ti(LN1_G))].copy_from_slice(&dg);
            grad[range(ti(LN1_B))].copy_from_slice(&db);
            dh.iter_mut().zip(&dx).for_each(|(a, b)| *a = *a + *b);
        }
        // Embeddings (scatter-add in position order).
        let (tok_off, pos_off) = (self.tensors[Idx::TOK].offset, self.tensors[Idx::POS].offset);
        for (i, &x) in fw.inputs.iter().enumerate() {
            let t = i % len;
            for j in 0..c {
                let g = dh[i * c + j];
                grad[tok_off + x as usize * c + j] = grad[tok_off + x as usize * c + j] + g;
                grad[pos_off + t * c + j] = grad[pos_off + t * c + j] + g;
            }
        }
        Ok((loss, grad))
    }

    /// AdamW on gradient `g` (clipped to the configured global norm first).
    fn adamw(&mut self, mut g: Vec<T>) {
        let a = self.cfg.adam;
        if let Some(clip) = a.clip {
            let norm = g.iter().map(|v| v.wide() * v.wide()).sum::<f64>().sqrt();
            if norm > clip {
                let s = T::of(clip / norm);
                g.iter_mut().for_each(|v| *v = *v * s);
            }
        }
        self.t += 1;
        let c1 = 1.0 - a.beta1.powi(self.t as i32);
        let c2 = 1.0 - a.beta2.powi(self.t as i32);
        let (b1, b2) = (T::of(a.beta1), T::of(a.beta2));
        let (lr, eps) = (T::of(a.lr), T::of(a.eps));
        let (ic1, ic2) = (T::of(1.0 / c1), T::of(1.0 / c2));
        let decay = T::of(1.0 - a.lr * a.weight_decay);
        for t in &self.tensors {
            let decayed = matches!(t.kind, Kind::Weight | Kind::Residual);
            for i in t.range() {
                let gi = g[i];
                self.m[i] = b1 * self.m[i] + (T::one() - b1) * gi;
                self.v[i] = b2 * self.v[i] + (T::one() - b2) * gi * gi;
                if decayed {
                    self.p[i] = self.p[i] * decay;
                }
                let mhat = self.m[i] * ic1;
                let vhat = self.v[i] * ic2;
                self.p[i] = self.p[i] - lr * mhat / (vhat.sqrt() + eps);
            }
        }
    }
}

impl<T: HostFloat> LmTrainer for CpuLm<T> {
    fn config(&self) -> &LmConfig {
        &self.cfg
    }

    fn step(&mut self, tokens: &[u8], len: usize) -> Result<()> {
        let (loss, g) = self.gradient(tokens, len)?;
        let checked = LmLoss::checked(loss)?;
        self.adamw(g);
        self.last = Some(checked);
        Ok(())
    }

    fn last_loss(&mut self) -> Result<LmLoss> {
        self.last
            .ok_or_else(|| Error::InvalidArgument("no training step yet".into()))
    }

    fn loss_and_gradient(&mut self, tokens: &[u8], len: usize) -> Result<(LmLoss, Vec<f64>)> {
        let (loss, g) = self.gradient(tokens, len)?;
        Ok((LmLoss { loss }, g.iter().map(|v| v.wide()).collect()))
    }

    fn loss(&mut self, tokens: &[u8], len: usize) -> Result<f64> {
        let fw = self.forward(tokens, len)?;
        Ok(self.cross_entropy(&fw, false).0)
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
        Ok(Box::new(CpuDecoder {
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

/// Incremental decoding on the CPU: keys and values of every layer cached
/// `[layer][row][position][C]`.
struct CpuDecoder<'a, T: HostFloat> {
    lm: &'a CpuLm<T>,
    rows: usize,
    pos: usize,
    k: Vec<Vec<T>>,
    v: Vec<Vec<T>>,
}

impl<T: HostFloat> Decoder for CpuDecoder<'_, T> {
    fn feed(&mut self, tokens: &[u8]) -> Result<Vec<f64>> {
        let lm = self.lm;
        let cfg = &lm.cfg;
        let (c, hn, d, ctx) = (cfg.width, cfg.heads, cfg.head_dim(), cfg.context);
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
        let (tok, pos) = (lm.w(Idx::TOK), lm.w(Idx::POS));
        let mut h = vec![T::zero(); n * c];
        for (i, &x) in tokens.iter().enumerate() {
            for j in 0..c {
                h[i * c + j] = tok[x as usize * c + j] + pos[t * c + j];
            }
        }
        let scale = T::of(1.0 / (d as f64).sqrt());
        for l in 0..cfg.layers {
            let bw = |j| lm.w(lm.idx.block(l, j));
            let ln1 = layer_norm(&h, c, bw(LN1_G), bw(LN1_B));
            let qkv = linear(&ln1.y, n, c, bw(QKV_W), Some(bw(QKV_B)), 3 * c);
            // Rows are independent sequences: in parallel, each with its own scratch (the
            // arithmetic per row is the same as one after the other).
            let mut o = vec![T::zero(); n * c];
            self.k[l]
                .par_chunks_mut(ctx * c)
                .zip(self.v[l].par_chunks_mut(ctx * c))
                .zip(o.par_chunks_mut(c))
                .enumerate()
                .for_each(|(r, ((kc, vc), orow))| {
                    let qkv = &qkv[r * 3 * c..(r + 1) * 3 * c];
                    kc[t * c..(t + 1) * c].copy_from_slice(&qkv[c..2 * c]);
                    vc[t * c..(t + 1) * c].copy_from_slice(&qkv[2 * c..]);
                    let mut prod = vec![T::zero(); d];
                    let mut s = vec![T::zero(); t + 1];
                    for hh in 0..hn {
                        let q = &qkv[hh * d..(hh + 1) * d];
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
                });
            let proj = linear(&o, n, c, bw(PROJ_W), Some(bw(PROJ_B)), c);
            h.iter_mut().zip(&proj).for_each(|(a, b)| *a = *a + *b);
            lm.mlp(l, &mut h);
        }
        let (_, logits) = lm.head(&h);
        self.pos += 1;
        Ok(logits.iter().map(|v| v.wide()).collect())
    }

    fn position(&self) -> usize {
        self.pos
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
