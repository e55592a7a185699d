//! The language model on a GPU, written once over [`LmOps`] — the kernels a backend provides —
//! so every GPU backend runs the same sequence of operations as `src/models/lm/cpu.rs` (see there for
//! the maths). Weights, gradients, AdamW moments and activations stay in device buffers, one
//! per tensor; a training step uploads its tokens and reads nothing back.
//!
//! Layouts (f32 unless named): tokens and targets `u32 [N]` (`N = rows·len`, row-major over
//! sequences); activations `[N][width]`; per-head arrays `[rows][H][len][d]`; attention
//! probabilities `[rows][H][len][len]`; the KV cache `[rows][context][C]` per block.

use super::idx::*;
use super::{
    Decoder, Kind, LmConfig, LmLoss, LmTrainer, VOCAB, check_mask, check_params, check_sequences,
    layout,
};
use crate::error::{Error, Result};
use crate::ops::lm::{AdamStep, LmOps};
use crate::ops::matmul::{Epilogue, Matmul};
use crate::ops::memory::FlatLayout;

/// Short forms of the [`Matmul`] settings the trainer uses.
trait Shorthand {
    /// A stored `[k][m]`, used transposed.
    fn ta(self) -> Self;
    /// B stored `[n][k]`, used transposed.
    fn tb(self) -> Self;
    /// Accumulate into C (β = 1).
    fn acc(self) -> Self;
    /// Add the bias (the [`Epilogue::Bias`] epilogue).
    fn bias(self) -> Self;
}

impl Shorthand for Matmul {
    fn ta(self) -> Self {
        let tb = self.trans_b;
        self.transposed(true, tb)
    }
    fn tb(self) -> Self {
        let ta = self.trans_a;
        self.transposed(ta, true)
    }
    fn acc(self) -> Self {
        self.scaled(1.0, 1.0)
    }
    fn bias(self) -> Self {
        self.with_epilogue(Epilogue::Bias)
    }
}

/// Activations of one `(rows, len)`.
struct Acts<B> {
    rows: usize,
    len: usize,
    tokens: B,
    targets: B,
    h: B,
    blocks: Vec<BlockActs<B>>,
    lnf: [B; 3],
    logits: B,
    loss_rows: B,
    /// Per-position loss weights `[N]`: `1/N`, or `mask/Σ mask` for a masked loss.
    loss_w: B,
    // Backward scratch.
    dh: B,
    da: B,
    dff: B,
    d_o: B,
    doh: B,
    dp: B,
    dq: B,
    dk: B,
    dv: B,
    dqkv: B,
    prod: B,
    onehot: B,
}

struct BlockActs<B> {
    ln1: [B; 3],
    qkv: B,
    q: B,
    k: B,
    v: B,
    att: B,
    oh: B,
    o: B,
    ln2: [B; 3],
    f: B,
    g: B,
}

/// A language model whose state lives on a device reached through `O`.
pub struct DeviceLm<O: LmOps> {
    ops: O,
    cfg: LmConfig,
    /// Views of every tensor's weights and gradient in `p_flat` and `g_flat`.
    p: Vec<O::Buf>,
    g: Vec<O::Buf>,
    /// Where each tensor lives in the flat buffers (one layout for weights, gradients and
    /// AdamW's moments, in [`layout`] order).
    flat: FlatLayout,
    p_flat: O::Buf,
    g_flat: O::Buf,
    /// AdamW's first and second moments, flat in `flat`'s layout.
    m: O::Buf,
    v: O::Buf,
    /// `flat`'s block table (u32, decayed tensors flagged) and its length.
    blocks: O::Buf,
    n_blocks: usize,
    /// Partial sums of squares of the gradient, one per block, reduced once per step into
    /// `clip`.
    grad_parts: O::Buf,
    /// `[clip factor, Σ g²]` of the step.
    clip: O::Buf,
    loss: O::Buf,
    t: u32,
    stepped: bool,
    acts: Option<Acts<O::Buf>>,
}

impl<O: LmOps> DeviceLm<O> {
    /// Upload `params` (flat, [`layout`] order) and zero AdamW state.
    pub fn new(ops: O, cfg: &LmConfig, params: &[f64]) -> Result<Self> {
        check_params(cfg, params)?;
        if cfg.context > 1024 {
            return Err(Error::Unsupported(format!(
                "context {} over the GPU decoder's 1024 positions",
                cfg.context
            )));
        }
        let tensors = layout(cfg);
        let counts: Vec<usize> = tensors.iter().map(|t| t.rows * t.cols).collect();
        let flat = FlatLayout::new(&counts);
        flat.check_fits(&ops, "the language model")?;
        let vals: Vec<f32> = params.iter().map(|&x| x as f32).collect();
        let p_flat = ops.upload("lm weights", &flat.pack(&vals))?;
        let g_flat = ops.alloc("lm gradients", flat.len())?;
        let zeros = vec![0.0; flat.len()];
        let decayed = |i: usize| matches!(tensors[i].kind, Kind::Weight | Kind::Residual);
        let n_blocks = flat.n_blocks();
        Ok(Self {
            p: flat.views(&ops, &p_flat)?,
            g: flat.views(&ops, &g_flat)?,
            m: ops.upload("adamw m", &zeros)?,
            v: ops.upload("adamw v", &zeros)?,
            blocks: ops.upload_u32("lm flat blocks", &flat.blocks(decayed))?,
            n_blocks,
            grad_parts: ops.alloc("lm grad norm partials", n_blocks)?,
            flat,
            p_flat,
            g_flat,
            clip: ops.alloc("lm clip factor", 2)?,
            loss: ops.alloc("lm loss", 1)?,
            ops,
            cfg: *cfg,
            t: 0,
            stepped: false,
            acts: None,
        })
    }

    fn bi(&self, l: usize, j: usize) -> usize {
        self.idx().block(l, j)
    }
    fn lnf(&self) -> usize {
        self.idx().lnf_g()
    }
    fn idx(&self) -> Idx {
        Idx {
            layers: self.cfg.layers,
        }
    }

    /// LayerNorm of the `n` rows of the residual stream `h` with γ = tensor `t`, β = `t + 1`,
    /// into `ln` (`y`, `x̂`, `rstd`).
    fn norm(&self, h: &O::Buf, t: usize, ln: &[O::Buf; 3], n: usize) -> Result<()> {
        let [y, xh, rs] = ln;
        let eps = super::cpu::LN_EPS as f32;
        let c = self.cfg.width;
        self.ops
            .layer_norm(h, &self.p[t], &self.p[t + 1], y, xh, rs, n, c, eps)
    }

    /// `out = x·W + b` for `n` rows of `k` with weight tensor `t` (`[k][m]`) and bias `t + 1`,
    /// added into `out` when `acc`.
    fn linear(
        &self,
        x: &O::Buf,
        t: usize,
        out: &O::Buf,
        (n, k, m): (usize, usize, usize),
        acc: bool,
    ) -> Result<()> {
        let mut p = Matmul::new(n, m, k).bias();
        if acc {
            p = p.acc();
        }
        self.ops.gemm(&p, x, &self.p[t], out, Some(&self.p[t + 1]))
    }

    /// Backward of [`Self::linear`] over `n` rows of `k` → `m` (input `x`, output gradient
    /// `dy`): `dW = xᵀ·dy` and `db = Σ dy` into the gradients of tensors `t` and `t + 1`,
    /// `dx = dy·Wᵀ` into `dx`.
    fn linear_back(
        &self,
        x: &O::Buf,
        dy: &O::Buf,
        t: usize,
        dx: &O::Buf,
        (n, k, m): (usize, usize, usize),
    ) -> Result<()> {
        let o = &self.ops;
        o.gemm(&Matmul::new(k, m, n).ta(), x, dy, &self.g[t], None)?;
        o.col_sum(dy, &self.g[t + 1], n, m)?;
        o.gemm(&Matmul::new(n, k, m).tb(), dy, &self.p[t], dx, None)
    }

    /// Backward of [`Self::norm`] (γ = tensor `t`, β = `t + 1`, saved `ln`) for the output
    /// gradient `dy`: `dx` added into `dh`, `dγ` and `dβ` into the gradients (`prod` is scratch).
    fn norm_back(
        &self,
        dy: &O::Buf,
        ln: &[O::Buf; 3],
        t: usize,
        dh: &O::Buf,
        prod: &O::Buf,
        n: usize,
    ) -> Result<()> {
        let (o, c) = (&self.ops, self.cfg.width);
        o.layer_norm_back(dy, &ln[1], &ln[2], &self.p[t], dh, prod, n, c)?;
        o.col_sum(prod, &self.g[t], n, c)?;
        o.col_sum(dy, &self.g[t + 1], n, c)
    }

    /// The MLP half of block `l` on the `n` rows of `h`:
    /// `h += GELU(LN₂(h)·W_fc + b_fc)·W_out + b_out`, LN₂'s outputs kept in `ln`, the
    /// pre-activation in `f` and GELU's output in `g`.
    fn mlp(
        &self,
        l: usize,
        h: &O::Buf,
        ln: &[O::Buf; 3],
        [f, g]: [&O::Buf; 2],
        n: usize,
    ) -> Result<()> {
        let c = self.cfg.width;
        self.norm(h, self.bi(l, LN2_G), ln, n)?;
        self.linear(&ln[0], self.bi(l, FC_W), f, (n, c, 4 * c), false)?;
        self.ops.gelu(f, g, n * 4 * c)?;
        self.linear(g, self.bi(l, OUT_W), h, (n, 4 * c, c), true)
    }

    /// Final LayerNorm (into `ln`) and head: `logits` of the `n` rows of `h`.
    fn head(&self, h: &O::Buf, ln: &[O::Buf; 3], logits: &O::Buf, n: usize) -> Result<()> {
        let f = self.lnf();
        self.norm(h, f, ln, n)?;
        let p = Matmul::new(n, VOCAB, self.cfg.width);
        self.ops.gemm(&p, &ln[0], &self.p[f + 2], logits, None)
    }

    fn acts(&mut self, rows: usize, len: usize) -> Result<()> {
        if self
            .acts
            .as_ref()
            .is_some_and(|a| a.rows == rows && a.len == len)
        {
            return Ok(());
        }
        self.acts = None; // free the old set first
        let o = &self.ops;
        let c = self.cfg.width;
        let hn = self.cfg.heads;
        let n = rows * len;
        let ht = rows * hn * len;
        let what = format!("a batch of {rows} sequences of {len} bytes");
        let per_row = len * (4 * c).max(VOCAB).max(hn * len);
        crate::ops::memory::check_batch_fits(o, &what, rows, per_row, "sequences")?;
        let ln = |label: &str| -> Result<[O::Buf; 3]> {
            Ok([
                o.alloc(label, n * c)?,
                o.alloc(label, n * c)?,
                o.alloc(label, n)?,
            ])
        };
        let blocks = (0..self.cfg.layers)
            .map(|_| {
                Ok(BlockActs {
                    ln1: ln("ln1")?,
                    qkv: o.alloc("qkv", n * 3 * c)?,
                    q: o.alloc("q", n * c)?,
                    k: o.alloc("k", n * c)?,
                    v: o.alloc("v", n * c)?,
                    att: o.alloc("att", ht * len)?,
                    oh: o.alloc("oh", n * c)?,
                    o: o.alloc("o", n * c)?,
                    ln2: ln("ln2")?,
                    f: o.alloc("f", n * 4 * c)?,
                    g: o.alloc("g", n * 4 * c)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        self.acts = Some(Acts {
            rows,
            len,
            tokens: o.upload_u32("tokens", &vec![0; n])?,
            targets: o.upload_u32("targets", &vec![0; n])?,
            h: o.alloc("h", n * c)?,
            blocks,
            lnf: ln("lnf")?,
            logits: o.alloc("logits", n * VOCAB)?,
            loss_rows: o.alloc("loss rows", n)?,
            loss_w: o.alloc("loss weights", n)?,
            dh: o.alloc("dh", n * c)?,
            da: o.alloc("da", n * c)?,
            dff: o.alloc("dff", n * 4 * c)?,
            d_o: o.alloc("do", n * c)?,
            doh: o.alloc("doh", n * c)?,
            dp: o.alloc("dp", ht * len)?,
            dq: o.alloc("dq", n * c)?,
            dk: o.alloc("dk", n * c)?,
            dv: o.alloc("dv", n * c)?,
            dqkv: o.alloc("dqkv", n * 3 * c)?,
            prod: o.alloc("ln prod", n * c)?,
            onehot: o.alloc("onehot", n * VOCAB)?,
        });
        Ok(())
    }

    /// Upload `tokens` (and the loss weights: `1/N` each, or with `mask` `1/Σ mask` where it
    /// is 1 and 0 elsewhere) and run the forward pass and the loss (into `self.loss`: the mean
    /// over the counted positions); with `grad` the logits become dlogits. An all-ones mask
    /// uploads the same weights and count as none.
    fn forward(
        &mut self,
        tokens: &[u8],
        mask: Option<&[u8]>,
        len: usize,
        grad: bool,
    ) -> Result<()> {
        let (rows, len) = check_sequences(&self.cfg, tokens, len)?;
        let n = rows * len;
        let (weights, count) = match mask {
            None => (vec![1.0 / n as f32; n], n),
            Some(m) => {
                let count = check_mask(m, rows, len)?;
                let w = 1.0 / count as f32;
                (
                    m.iter().map(|&v| if v == 1 { w } else { 0.0 }).collect(),
                    count,
                )
            }
        };
        let mut inputs = Vec::with_capacity(rows * len);
        let mut targets = Vec::with_capacity(rows * len);
        for s in tokens.chunks(len + 1) {
            inputs.extend(s[..len].iter().map(|&b| b as u32));
            targets.extend(s[1..].iter().map(|&b| b as u32));
        }
        self.acts(rows, len)?;
        let a = self.acts.as_mut().expect("allocated above");
        a.tokens = self.ops.upload_u32("tokens", &inputs)?;
        a.targets = self.ops.upload_u32("targets", &targets)?;
        a.loss_w = self.ops.upload("loss weights", &weights)?;
        let a = self.acts.as_ref().expect("allocated above");
        let (o, p) = (&self.ops, &self.p);
        let c = self.cfg.width;
        let (hn, d) = (self.cfg.heads, self.cfg.head_dim());
        let scale = 1.0 / (d as f32).sqrt();
        let shape = (rows, hn, len, d);
        o.embed(&a.tokens, &p[0], &p[1], &a.h, n, len, 0, c)?;
        for (l, b) in a.blocks.iter().enumerate() {
            self.norm(&a.h, self.bi(l, LN1_G), &b.ln1, n)?;
            self.linear(&b.ln1[0], self.bi(l, QKV_W), &b.qkv, (n, c, 3 * c), false)?;
            o.gather_qkv(&b.qkv, [&b.q, &b.k, &b.v], shape)?;
            o.gemm(
                &Matmul::new(len, len, d).tb().batched(rows * hn),
                &b.q,
                &b.k,
                &b.att,
                None,
            )?;
            o.causal_softmax(&b.att, rows * hn * len, len, scale)?;
            o.gemm(
                &Matmul::new(len, d, len).batched(rows * hn),
                &b.att,
                &b.v,
                &b.oh,
                None,
            )?;
            o.scatter_heads(&b.oh, &b.o, shape, c, 0)?;
            self.linear(&b.o, self.bi(l, PROJ_W), &a.h, (n, c, c), true)?;
            self.mlp(l, &a.h, &b.ln2, [&b.f, &b.g], n)?;
        }
        self.head(&a.h, &a.lnf, &a.logits, n)?;
        o.cross_entropy(&a.logits, &a.targets, &a.loss_w, &a.loss_rows, n, grad)?;
        o.mean(&a.loss_rows, &a.loss_w, &self.loss, n, count)
    }

    /// Gradients into `g` after `forward(…, grad = true)`.
    fn backward(&self) -> Result<()> {
        let a = self.acts.as_ref().expect("forward ran");
        let (o, p, g) = (&self.ops, &self.p, &self.g);
        let c = self.cfg.width;
        let (hn, d) = (self.cfg.heads, self.cfg.head_dim());
        let (rows, len) = (a.rows, a.len);
        let n = rows * len;
        let shape = (rows, hn, len, d);
        let scale = 1.0 / (d as f32).sqrt();
        let f = self.lnf();
        // Head, final LayerNorm (a.logits holds dlogits).
        o.gemm(
            &Matmul::new(c, VOCAB, n).ta(),
            &a.lnf[0],
            &a.logits,
            &g[f + 2],
            None,
        )?;
        o.gemm(
            &Matmul::new(n, c, VOCAB).tb(),
            &a.logits,
            &p[f + 2],
            &a.da,
            None,
        )?;
        o.fill(&a.dh, n * c, 0.0)?;
        self.norm_back(&a.da, &a.lnf, f, &a.dh, &a.prod, n)?;
        for l in (0..self.cfg.layers).rev() {
            let b = &a.blocks[l];
            let ti = |j| self.bi(l, j);
            // MLP.
            self.linear_back(&b.g, &a.dh, ti(OUT_W), &a.dff, (n, 4 * c, c))?;
            o.gelu_back(&b.f, &a.dff, n * 4 * c)?;
            self.linear_back(&b.ln2[0], &a.dff, ti(FC_W), &a.da, (n, c, 4 * c))?;
            self.norm_back(&a.da, &b.ln2, ti(LN2_G), &a.dh, &a.prod, n)?;
            // Attention.
            self.linear_back(&b.o, &a.dh, ti(PROJ_W), &a.d_o, (n, c, c))?;
            o.gather_heads(&a.d_o, &a.doh, shape, c, 0)?;
            let bh = rows * hn;
            o.gemm(
                &Matmul::new(len, len, d).tb().batched(bh),
                &a.doh,
                &b.v,
                &a.dp,
                None,
            )?;
            o.gemm(
                &Matmul::new(len, d, len).ta().batched(bh),
                &b.att,
                &a.doh,
                &a.dv,
                None,
            )?;
            o.softmax_back(&b.att, &a.dp, bh * len, len, scale)?;
            o.gemm(
                &Matmul::new(len, d, len).batched(bh),
                &a.dp,
                &b.k,
                &a.dq,
                None,
            )?;
            o.gemm(
                &Matmul::new(len, d, len).ta().batched(bh),
                &a.dp,
                &b.q,
                &a.dk,
                None,
            )?;
            o.scatter_qkv([&a.dq, &a.dk, &a.dv], &a.dqkv, shape)?;
            self.linear_back(&b.ln1[0], &a.dqkv, ti(QKV_W), &a.da, (n, c, 3 * c))?;
            self.norm_back(&a.da, &b.ln1, ti(LN1_G), &a.dh, &a.prod, n)?;
        }
        // Embeddings: dtok = onehotᵀ·dh; dpos = Σ over sequences.
        o.onehot(&a.tokens, &a.onehot, n)?;
        o.gemm(
            &Matmul::new(VOCAB, c, n).ta(),
            &a.onehot,
            &a.dh,
            &g[0],
            None,
        )?;
        o.pos_grad(&a.dh, &g[1], rows, len, self.cfg.context, c)
    }

    fn adamw(&mut self) -> Result<()> {
        self.t += 1;
        let a = self.cfg.adam;
        let c1 = 1.0 - a.beta1.powi(self.t as i32);
        let c2 = 1.0 - a.beta2.powi(self.t as i32);
        self.ops
            .sumsq(&self.g_flat, &self.blocks, self.n_blocks, &self.grad_parts)?;
        let clip = a.clip.unwrap_or(0.0) as f32;
        self.ops
            .clip_scale(&self.grad_parts, self.n_blocks, clip, &self.clip)?;
        let s = AdamStep {
            lr: a.lr as f32,
            betas: (a.beta1 as f32, a.beta2 as f32),
            eps: a.eps as f32,
            inv_corr: ((1.0 / c1) as f32, (1.0 / c2) as f32),
        };
        let decayed = (1.0 - a.lr * a.weight_decay) as f32;
        self.ops.adamw(
            [&self.p_flat, &self.g_flat, &self.m, &self.v],
            &self.blocks,
            self.n_blocks,
            &self.clip,
            &s,
            decayed,
        )
    }

    /// [`LmTrainer::step`] or (with `mask`) [`LmTrainer::step_masked`].
    fn step_with(&mut self, tokens: &[u8], mask: Option<&[u8]>, len: usize) -> Result<()> {
        self.forward(tokens, mask, len, true)?;
        self.backward()?;
        self.adamw()?;
        self.stepped = true;
        Ok(())
    }

    /// [`LmTrainer::loss_and_gradient`] or (with `mask`) its masked form.
    fn gradient_with(
        &mut self,
        tokens: &[u8],
        mask: Option<&[u8]>,
        len: usize,
    ) -> Result<(LmLoss, Vec<f64>)> {
        self.forward(tokens, mask, len, true)?;
        self.backward()?;
        self.stepped = false;
        Ok((
            LmLoss {
                loss: self.read_loss()?,
            },
            self.flat.read_tensors(&self.ops, &self.g_flat)?,
        ))
    }

    /// [`LmTrainer::loss`] or (with `mask`) [`LmTrainer::loss_masked`].
    fn loss_with(&mut self, tokens: &[u8], mask: Option<&[u8]>, len: usize) -> Result<f64> {
        // Bad input changes nothing: the last step's loss stays readable.
        let (rows, len) = check_sequences(&self.cfg, tokens, len)?;
        if let Some(m) = mask {
            check_mask(m, rows, len)?;
        }
        self.stepped = false;
        self.forward(tokens, mask, len, false)?;
        self.read_loss()
    }

    fn read_loss(&self) -> Result<f64> {
        Ok(self.ops.read(&self.loss, 1)?[0] as f64)
    }
}

impl<O: LmOps> LmTrainer for DeviceLm<O> {
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
        if !self.stepped {
            return Err(Error::InvalidArgument("no training step yet".into()));
        }
        LmLoss::checked(self.read_loss()?)
    }

    fn loss_and_gradient(&mut self, tokens: &[u8], len: usize) -> Result<(LmLoss, Vec<f64>)> {
        self.gradient_with(tokens, None, len)
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
        self.gradient_with(tokens, Some(mask), len)
    }

    fn loss_masked(&mut self, tokens: &[u8], mask: &[u8], len: usize) -> Result<f64> {
        self.loss_with(tokens, Some(mask), len)
    }

    fn logits(&mut self, tokens: &[u8], rows: usize, len: usize) -> Result<Vec<f64>> {
        if tokens.len() != rows * len || len == 0 {
            return Err(Error::InvalidArgument(format!(
                "{} tokens are not {rows} sequences of {len}",
                tokens.len()
            )));
        }
        let mut seq = Vec::with_capacity(rows * (len + 1));
        for s in tokens.chunks(len) {
            seq.extend_from_slice(s);
            seq.push(0);
        }
        self.stepped = false;
        self.forward(&seq, None, len, false)?;
        let a = self.acts.as_ref().expect("forward ran");
        Ok(self
            .ops
            .read(&a.logits, rows * len * VOCAB)?
            .iter()
            .map(|&x| x as f64)
            .collect())
    }

    fn decoder(&self, rows: usize) -> Result<Box<dyn Decoder + '_>> {
        if rows == 0 {
            return Err(Error::InvalidArgument("decoding needs ≥ 1 row".into()));
        }
        let (o, c) = (&self.ops, self.cfg.width);
        let cache = rows * self.cfg.context * c;
        Ok(Box::new(DeviceDecoder {
            lm: self,
            rows,
            pos: 0,
            k: (0..self.cfg.layers)
                .map(|_| o.alloc("k cache", cache))
                .collect::<Result<_>>()?,
            v: (0..self.cfg.layers)
                .map(|_| o.alloc("v cache", cache))
                .collect::<Result<_>>()?,
            h: o.alloc("dec h", rows * c)?,
            ln: [
                o.alloc("dec ln", rows * c)?,
                o.alloc("dec ln", rows * c)?,
                o.alloc("dec ln", rows)?,
            ],
            qkv: o.alloc("dec qkv", rows * 3 * c)?,
            att: o.alloc("dec o", rows * c)?,
            f: o.alloc("dec f", rows * 4 * c)?,
            g: o.alloc("dec g", rows * 4 * c)?,
            logits: o.alloc("dec logits", rows * VOCAB)?,
        }))
    }

    fn params(&self) -> Result<Vec<f64>> {
        self.flat.read_tensors(&self.ops, &self.p_flat)
    }
}

/// Incremental decoding on the device with a KV cache per block.
struct DeviceDecoder<'a, O: LmOps> {
    lm: &'a DeviceLm<O>,
    rows: usize,
    pos: usize,
    k: Vec<O::Buf>,
    v: Vec<O::Buf>,
    h: O::Buf,
    ln: [O::Buf; 3],
    qkv: O::Buf,
    att: O::Buf,
    f: O::Buf,
    g: O::Buf,
    logits: O::Buf,
}

impl<O: LmOps> Decoder for DeviceDecoder<'_, O> {
    fn feed(&mut self, tokens: &[u8]) -> Result<Vec<f64>> {
        let lm = self.lm;
        let (o, p, cfg) = (&lm.ops, &lm.p, &lm.cfg);
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
        let n = self.rows;
        let tok: Vec<u32> = tokens.iter().map(|&b| b as u32).collect();
        let tok = o.upload_u32("dec tokens", &tok)?;
        o.embed(&tok, &p[0], &p[1], &self.h, n, 1, self.pos, c)?;
        for l in 0..cfg.layers {
            lm.norm(&self.h, lm.bi(l, LN1_G), &self.ln, n)?;
            lm.linear(
                &self.ln[0],
                lm.bi(l, QKV_W),
                &self.qkv,
                (n, c, 3 * c),
                false,
            )?;
            o.kv_store(&self.qkv, &self.k[l], &self.v[l], n, ctx, c, self.pos)?;
            o.decode_attention(
                &self.qkv,
                &self.k[l],
                &self.v[l],
                &self.att,
                (n, hn, ctx, d),
                self.pos,
                1.0 / (d as f32).sqrt(),
            )?;
            lm.linear(&self.att, lm.bi(l, PROJ_W), &self.h, (n, c, c), true)?;
            lm.mlp(l, &self.h, &self.ln, [&self.f, &self.g], n)?;
        }
        lm.head(&self.h, &self.ln, &self.logits, n)?;
        self.pos += 1;
        Ok(o.read(&self.logits, n * VOCAB)?
            .iter()
            .map(|&x| x as f64)
            .collect())
    }

    fn position(&self) -> usize {
        self.pos
    }
}
