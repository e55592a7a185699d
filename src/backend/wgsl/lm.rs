//! The language model on wgpu: [`LmOps`] for [`WgslKernels`] (whose matmul kernels serve the
//! products, batched over heads for attention) with `shaders/lm.wgsl`; the orchestration is
//! [`crate::models::lm::device`]'s.
//! Each method fills its entry point's uniform (one `#[repr(C)]` twin per parameter struct of
//! `lm.wgsl`, bound at that struct's binding) and binds its buffers by name (the binding
//! numbers of `lm.wgsl`'s header, as constants). Training and generational runs queue the
//! dispatches ([`crate::gpu::GpuOptions::queued`]); benches and tests wait for and time each one.

use super::memory::WgslKernels;
use crate::backend::launch::{LOSS_BLOCK, WIDE_WORKGROUP};
use crate::error::Result;
use crate::gpu::{Bindable, BufferRange, GpuContext};
use crate::ops::lm::{AdamStep, LmOps};

/// Binding numbers of `lm.wgsl` (group 0), named as there.
mod bind {
    pub const ELEM_P: u32 = 0;
    pub const EMBED_P: u32 = 1;
    pub const NORM_P: u32 = 2;
    pub const HEAD_P: u32 = 4;
    pub const SOFTMAX_P: u32 = 5;
    pub const LOSS_P: u32 = 6;
    pub const SUMSQ_P: u32 = 7;
    pub const ADAM_P: u32 = 8;
    pub const DECODE_P: u32 = 9;
    pub const TOKENS: u32 = 10;
    pub const TARGETS: u32 = 11;
    pub const OUT: u32 = 12;
    pub const TOK_EMB: u32 = 13;
    pub const POS_EMB: u32 = 14;
    pub const X: u32 = 15;
    pub const GAMMA: u32 = 16;
    pub const BETA: u32 = 17;
    pub const Y: u32 = 18;
    pub const XHAT: u32 = 19;
    pub const RSTD: u32 = 20;
    pub const DY: u32 = 21;
    pub const DX: u32 = 22;
    pub const PROD: u32 = 23;
    pub const SRC: u32 = 26;
    pub const DST: u32 = 27;
    pub const SCORES: u32 = 28;
    pub const PROB: u32 = 29;
    pub const DPROB: u32 = 30;
    pub const PRE: u32 = 31;
    pub const POST: u32 = 32;
    pub const LOGITS: u32 = 33;
    pub const ROW_LOSS: u32 = 34;
    pub const LOSS: u32 = 35;
    pub const GRAD: u32 = 36;
    pub const NORMS: u32 = 37;
    pub const PARAM: u32 = 38;
    pub const ADAM_M: u32 = 39;
    pub const ADAM_V: u32 = 40;
    pub const QKV: u32 = 41;
    pub const K_CACHE: u32 = 42;
    pub const V_CACHE: u32 = 43;
    pub const ATTN_OUT: u32 = 44;
    pub const LOSS_W: u32 = 45;
    pub const PARTS: u32 = 46;
    pub const SCALE: u32 = 47;
    pub const BLOCKS: u32 = 48;
    pub const DST1: u32 = 51;
    pub const DST2: u32 = 52;
    pub const SRC1: u32 = 53;
    pub const SRC2: u32 = 54;
}

/// `ElemParams` of `lm.wgsl` (fill, gelu, gelu_back; 16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct ElemParams {
    count: u32,
    value: f32,
    pad: [u32; 2],
}

/// `EmbedParams` of `lm.wgsl` (embed; 16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct EmbedParams {
    n: u32,
    c: u32,
    len: u32,
    pos0: u32,
}

/// `NormParams` of `lm.wgsl` (layer_norm, ln_back; 16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct NormParams {
    rows: u32,
    c: u32,
    eps: f32,
    pad: u32,
}

/// `HeadParams` of `lm.wgsl` (gather_heads, scatter_heads; 32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct HeadParams {
    count: u32,
    len: u32,
    heads: u32,
    d: u32,
    stride: u32,
    offset: u32,
    pad: [u32; 2],
}

/// `SoftmaxParams` of `lm.wgsl` (causal_softmax, softmax_back; 16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct SoftmaxParams {
    rows: u32,
    len: u32,
    scale: f32,
    pad: u32,
}

/// `LossParams` of `lm.wgsl` (cross_entropy, mean, onehot; 16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct LossParams {
    rows: u32,
    grad: u32,
    count: u32,
    pad: u32,
}

/// `SumsqParams` of `lm.wgsl` (sumsq_partial: blocks; clip_scale: partials; 16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct SumsqParams {
    count: u32,
    clip: f32,
    pad: [u32; 2],
}

/// `AdamParams` of `lm.wgsl` (adamw over a flat layout's blocks; 32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct AdamParams {
    decay: f32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    inv_c1: f32,
    inv_c2: f32,
    blocks: u32,
}

/// `DecodeParams` of `lm.wgsl` (kv_store, decode_attention; 32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct DecodeParams {
    rows: u32,
    c: u32,
    ctx: u32,
    heads: u32,
    d: u32,
    pos: u32,
    scale: f32,
    pad: u32,
}

/// `HeadParams` of `gather_qkv` / `scatter_qkv` for `(rows, H, len, d)`: stride 3C, offset 0
/// (the kernels add C and 2C for K and V).
fn qkv_params((rows, heads, len, d): (usize, usize, usize, usize)) -> HeadParams {
    HeadParams {
        count: (rows * heads * len * d) as u32,
        len: len as u32,
        heads: heads as u32,
        d: d as u32,
        stride: (3 * heads * d) as u32,
        offset: 0,
        ..Default::default()
    }
}

/// Workgroups of [`WIDE_WORKGROUP`] invocations covering `count` elements.
fn elems(count: usize) -> usize {
    count.div_ceil(WIDE_WORKGROUP as usize)
}

impl WgslKernels {
    /// Dispatch `entry` of `lm.wgsl` with the uniform `params` at binding `at` and `buffers`
    /// at theirs, over `groups` workgroups (2-D when over 65535).
    fn run_lm<P: bytemuck::Pod>(
        &self,
        entry: &str,
        (at, params): (u32, P),
        buffers: &[(u32, &dyn Bindable)],
        groups: usize,
    ) -> Result<()> {
        let pipe = self.gpu.pipeline("lm.wgsl", entry)?;
        let uniform = self
            .gpu
            .uniform_buffer("lm params", bytemuck::bytes_of(&params))?;
        let mut all: Vec<(u32, &dyn Bindable)> = buffers.to_vec();
        all.push((at, &uniform));
        let bind = self.gpu.bind_at(&pipe, &all)?;
        self.gpu.dispatch(
            &format!("lm.wgsl:{entry}"),
            &pipe,
            &bind,
            GpuContext::grid((groups as u32).max(1)),
        )?;
        Ok(())
    }

    /// `gather_heads` or `scatter_heads` (`entry`) of `lm.wgsl`: `src` into `dst` for heads of
    /// `(rows, H, len, d)` at `stride` and column `offset`.
    fn move_heads(
        &self,
        entry: &str,
        src: &BufferRange,
        dst: &BufferRange,
        (rows, heads, len, d): (usize, usize, usize, usize),
        stride: usize,
        offset: usize,
    ) -> Result<()> {
        let count = rows * heads * len * d;
        let p = HeadParams {
            count: count as u32,
            len: len as u32,
            heads: heads as u32,
            d: d as u32,
            stride: stride as u32,
            offset: offset as u32,
            ..Default::default()
        };
        self.run_lm(
            entry,
            (bind::HEAD_P, p),
            &[(bind::SRC, src), (bind::DST, dst)],
            elems(count),
        )
    }

    /// `fill`, `gelu` or `gelu_back` (`entry`) over `count` elements.
    fn run_elems(
        &self,
        entry: &str,
        count: usize,
        value: f32,
        buffers: &[(u32, &dyn Bindable)],
    ) -> Result<()> {
        let p = ElemParams {
            count: count as u32,
            value,
            ..Default::default()
        };
        self.run_lm(entry, (bind::ELEM_P, p), buffers, elems(count))
    }
}

impl LmOps for WgslKernels {
    fn fill(&self, out: &BufferRange, count: usize, value: f32) -> Result<()> {
        self.run_elems("fill", count, value, &[(bind::OUT, out)])
    }

    fn embed(
        &self,
        tokens: &BufferRange,
        tok_emb: &BufferRange,
        pos_emb: &BufferRange,
        out: &BufferRange,
        n: usize,
        len: usize,
        pos0: usize,
        c: usize,
    ) -> Result<()> {
        let p = EmbedParams {
            n: n as u32,
            c: c as u32,
            len: len as u32,
            pos0: pos0 as u32,
        };
        self.run_lm(
            "embed",
            (bind::EMBED_P, p),
            &[
                (bind::TOK_EMB, tok_emb),
                (bind::POS_EMB, pos_emb),
                (bind::OUT, out),
                (bind::TOKENS, tokens),
            ],
            elems(n * c),
        )
    }

    fn layer_norm(
        &self,
        x: &BufferRange,
        gamma: &BufferRange,
        beta: &BufferRange,
        y: &BufferRange,
        xhat: &BufferRange,
        rstd: &BufferRange,
        n: usize,
        c: usize,
        eps: f32,
    ) -> Result<()> {
        let p = NormParams {
            rows: n as u32,
            c: c as u32,
            eps,
            ..Default::default()
        };
        self.run_lm(
            "layer_norm",
            (bind::NORM_P, p),
            &[
                (bind::X, x),
                (bind::GAMMA, gamma),
                (bind::BETA, beta),
                (bind::Y, y),
                (bind::XHAT, xhat),
                (bind::RSTD, rstd),
            ],
            n,
        )
    }

    fn layer_norm_back(
        &self,
        dy: &BufferRange,
        xhat: &BufferRange,
        rstd: &BufferRange,
        gamma: &BufferRange,
        dx: &BufferRange,
        prod: &BufferRange,
        n: usize,
        c: usize,
    ) -> Result<()> {
        let p = NormParams {
            rows: n as u32,
            c: c as u32,
            ..Default::default()
        };
        self.run_lm(
            "ln_back",
            (bind::NORM_P, p),
            &[
                (bind::DY, dy),
                (bind::XHAT, xhat),
                (bind::RSTD, rstd),
                (bind::GAMMA, gamma),
                (bind::DX, dx),
                (bind::PROD, prod),
            ],
            n,
        )
    }

    fn col_sum(&self, rows: &BufferRange, out: &BufferRange, n: usize, c: usize) -> Result<()> {
        self.col_sums(rows, out, n, c, c)
    }

    fn gather_heads(
        &self,
        src: &BufferRange,
        dst: &BufferRange,
        shape: (usize, usize, usize, usize),
        stride: usize,
        offset: usize,
    ) -> Result<()> {
        self.move_heads("gather_heads", src, dst, shape, stride, offset)
    }

    fn scatter_heads(
        &self,
        src: &BufferRange,
        dst: &BufferRange,
        shape: (usize, usize, usize, usize),
        stride: usize,
        offset: usize,
    ) -> Result<()> {
        self.move_heads("scatter_heads", src, dst, shape, stride, offset)
    }

    fn gather_qkv(
        &self,
        qkv: &BufferRange,
        [q, k, v]: [&BufferRange; 3],
        shape: (usize, usize, usize, usize),
    ) -> Result<()> {
        let p = qkv_params(shape);
        self.run_lm(
            "gather_qkv",
            (bind::HEAD_P, p),
            &[
                (bind::SRC, qkv),
                (bind::DST, q),
                (bind::DST1, k),
                (bind::DST2, v),
            ],
            elems(p.count as usize),
        )
    }

    fn scatter_qkv(
        &self,
        [q, k, v]: [&BufferRange; 3],
        qkv: &BufferRange,
        shape: (usize, usize, usize, usize),
    ) -> Result<()> {
        let p = qkv_params(shape);
        self.run_lm(
            "scatter_qkv",
            (bind::HEAD_P, p),
            &[
                (bind::SRC, q),
                (bind::SRC1, k),
                (bind::SRC2, v),
                (bind::DST, qkv),
            ],
            elems(p.count as usize),
        )
    }

    fn causal_softmax(&self, s: &BufferRange, r: usize, len: usize, scale: f32) -> Result<()> {
        let p = SoftmaxParams {
            rows: r as u32,
            len: len as u32,
            scale,
            ..Default::default()
        };
        self.run_lm(
            "causal_softmax",
            (bind::SOFTMAX_P, p),
            &[(bind::SCORES, s)],
            r,
        )
    }

    fn softmax_back(
        &self,
        prob: &BufferRange,
        dp: &BufferRange,
        r: usize,
        len: usize,
        scale: f32,
    ) -> Result<()> {
        let p = SoftmaxParams {
            rows: r as u32,
            len: len as u32,
            scale,
            ..Default::default()
        };
        self.run_lm(
            "softmax_back",
            (bind::SOFTMAX_P, p),
            &[(bind::PROB, prob), (bind::DPROB, dp)],
            r,
        )
    }

    fn gelu(&self, f: &BufferRange, g: &BufferRange, count: usize) -> Result<()> {
        self.run_elems("gelu", count, 0.0, &[(bind::PRE, f), (bind::POST, g)])
    }

    fn gelu_back(&self, f: &BufferRange, dg: &BufferRange, count: usize) -> Result<()> {
        self.run_elems("gelu_back", count, 0.0, &[(bind::PRE, f), (bind::POST, dg)])
    }

    fn cross_entropy(
        &self,
        logits: &BufferRange,
        targets: &BufferRange,
        weights: &BufferRange,
        rows: &BufferRange,
        n: usize,
        grad: bool,
    ) -> Result<()> {
        let p = LossParams {
            rows: n as u32,
            grad: grad as u32,
            ..Default::default()
        };
        self.run_lm(
            "cross_entropy",
            (bind::LOSS_P, p),
            &[
                (bind::LOGITS, logits),
                (bind::ROW_LOSS, rows),
                (bind::TARGETS, targets),
                (bind::LOSS_W, weights),
            ],
            n,
        )
    }

    fn mean(
        &self,
        rows: &BufferRange,
        weights: &BufferRange,
        out: &BufferRange,
        n: usize,
        count: usize,
    ) -> Result<()> {
        let blocks = n.div_ceil(LOSS_BLOCK).max(1);
        let parts = self.scratch(blocks)?;
        // `grad` marks a single block, whose total loss_partial finishes itself.
        let p = LossParams {
            rows: n as u32,
            count: count as u32,
            grad: (blocks == 1) as u32,
            ..Default::default()
        };
        self.run_lm(
            "loss_partial",
            (bind::LOSS_P, p),
            &[
                (bind::ROW_LOSS, rows),
                (bind::LOSS_W, weights),
                (bind::PARTS, &parts),
                (bind::LOSS, out),
            ],
            blocks,
        )?;
        if blocks == 1 {
            return Ok(());
        }
        let p = LossParams {
            rows: blocks as u32,
            ..p
        };
        self.run_lm(
            "loss_final",
            (bind::LOSS_P, p),
            &[(bind::PARTS, &parts), (bind::LOSS, out)],
            1,
        )
    }

    fn onehot(&self, tokens: &BufferRange, out: &BufferRange, n: usize) -> Result<()> {
        let p = LossParams {
            rows: n as u32,
            ..Default::default()
        };
        self.run_lm(
            "onehot",
            (bind::LOSS_P, p),
            &[(bind::OUT, out), (bind::TOKENS, tokens)],
            elems(n * 256),
        )
    }

    fn pos_grad(
        &self,
        dh: &BufferRange,
        out: &BufferRange,
        rows: usize,
        len: usize,
        ctx: usize,
        c: usize,
    ) -> Result<()> {
        // dh is [rows][len·c]: its column sums are out[t][j] for t < len; the rest are zeros.
        self.col_sums(dh, out, rows, len * c, ctx * c)
    }

    fn sumsq(
        &self,
        grads: &BufferRange,
        blocks: &BufferRange,
        n_blocks: usize,
        parts: &BufferRange,
    ) -> Result<()> {
        let p = SumsqParams {
            count: n_blocks as u32,
            ..Default::default()
        };
        self.run_lm(
            "sumsq_partial",
            (bind::SUMSQ_P, p),
            &[
                (bind::GRAD, grads),
                (bind::BLOCKS, blocks),
                (bind::NORMS, parts),
            ],
            n_blocks,
        )
    }

    fn clip_scale(
        &self,
        parts: &BufferRange,
        n: usize,
        clip: f32,
        scale: &BufferRange,
    ) -> Result<()> {
        let p = SumsqParams {
            count: n as u32,
            clip,
            ..Default::default()
        };
        self.run_lm(
            "clip_scale",
            (bind::SUMSQ_P, p),
            &[(bind::NORMS, parts), (bind::SCALE, scale)],
            1,
        )
    }

    fn adamw(
        &self,
        [p, g, m, v]: [&BufferRange; 4],
        blocks: &BufferRange,
        n_blocks: usize,
        scale: &BufferRange,
        s: &AdamStep,
        decay: f32,
    ) -> Result<()> {
        let u = AdamParams {
            decay,
            lr: s.lr,
            beta1: s.betas.0,
            beta2: s.betas.1,
            eps: s.eps,
            inv_c1: s.inv_corr.0,
            inv_c2: s.inv_corr.1,
            blocks: n_blocks as u32,
        };
        self.run_lm(
            "adamw",
            (bind::ADAM_P, u),
            &[
                (bind::PARAM, p),
                (bind::GRAD, g),
                (bind::ADAM_M, m),
                (bind::ADAM_V, v),
                (bind::BLOCKS, blocks),
                (bind::SCALE, scale),
            ],
            n_blocks,
        )
    }

    fn kv_store(
        &self,
        qkv: &BufferRange,
        k: &BufferRange,
        v: &BufferRange,
        rows: usize,
        ctx: usize,
        c: usize,
        pos: usize,
    ) -> Result<()> {
        let p = DecodeParams {
            rows: rows as u32,
            c: c as u32,
            ctx: ctx as u32,
            pos: pos as u32,
            ..Default::default()
        };
        self.run_lm(
            "kv_store",
            (bind::DECODE_P, p),
            &[(bind::QKV, qkv), (bind::K_CACHE, k), (bind::V_CACHE, v)],
            elems(rows * c),
        )
    }

    fn decode_attention(
        &self,
        qkv: &BufferRange,
        k: &BufferRange,
        v: &BufferRange,
        o: &BufferRange,
        (rows, heads, ctx, d): (usize, usize, usize, usize),
        pos: usize,
        scale: f32,
    ) -> Result<()> {
        let p = DecodeParams {
            rows: rows as u32,
            c: (heads * d) as u32,
            ctx: ctx as u32,
            heads: heads as u32,
            d: d as u32,
            pos: pos as u32,
            scale,
            ..Default::default()
        };
        self.run_lm(
            "decode_attention",
            (bind::DECODE_P, p),
            &[
                (bind::QKV, qkv),
                (bind::K_CACHE, k),
                (bind::V_CACHE, v),
                (bind::ATTN_OUT, o),
            ],
            rows * heads,
        )
    }
}
