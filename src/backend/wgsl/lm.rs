//! The language model on wgpu: [`LmOps`] for [`WgslKernels`] (whose matmul kernels serve the
//! products, batched over heads for attention) with `shaders/lm.wgsl`; the orchestration is
//! [`crate::models::lm::device`]'s.
//! Training and generational runs queue the dispatches ([`crate::gpu::GpuOptions::queued`]);
//! benches and tests wait for and time each one.

use super::memory::WgslKernels;
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::ops::lm::{AdamStep, LmOps};

/// `LmParams` of `lm.wgsl` (uniform, 64 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    c: u32,
    len: u32,
    heads: u32,
    d: u32,
    pos0: u32,
    stride: u32,
    flags: u32,
    x: [f32; 8],
}

impl WgslKernels {
    /// Dispatch `entry` with `p` over `groups` workgroups (2-D when over 65535).
    fn run_lm(
        &self,
        entry: &str,
        p: Params,
        buffers: &[(u32, &wgpu::Buffer)],
        groups: usize,
    ) -> Result<()> {
        let pipe = self.gpu.pipeline("lm.wgsl", entry)?;
        let uniform = self
            .gpu
            .uniform_buffer("lm params", bytemuck::bytes_of(&p))?;
        let mut all: Vec<(u32, &wgpu::Buffer)> = buffers.to_vec();
        all.push((0, &uniform));
        let bind = self.gpu.bind_at(&pipe, &all)?;
        self.gpu.dispatch(
            &format!("lm.wgsl:{entry}"),
            &pipe,
            &bind,
            GpuContext::grid((groups as u32).max(1)),
        )?;
        Ok(())
    }

    /// `gather_heads` or `scatter_heads` (`entry`) of `lm.wgsl`: `src` (binding 1) into `dst`
    /// (binding 4) for heads of `(rows, H, len, d)` at `stride` and column `offset`.
    fn move_heads(
        &self,
        entry: &str,
        src: &wgpu::Buffer,
        dst: &wgpu::Buffer,
        (rows, heads, len, d): (usize, usize, usize, usize),
        stride: usize,
        offset: usize,
    ) -> Result<()> {
        let count = rows * heads * len * d;
        let p = Params {
            n: count as u32,
            len: len as u32,
            heads: heads as u32,
            d: d as u32,
            pos0: offset as u32,
            stride: stride as u32,
            ..Default::default()
        };
        self.run_lm(entry, p, &[(1, src), (4, dst)], Self::elems(count))
    }

    fn elems(count: usize) -> usize {
        count.div_ceil(256)
    }
}

impl LmOps for WgslKernels {
    fn fill(&self, out: &wgpu::Buffer, count: usize, value: f32) -> Result<()> {
        let mut p = Params {
            n: count as u32,
            ..Default::default()
        };
        p.x[0] = value;
        self.run_lm("fill", p, &[(4, out)], Self::elems(count))
    }

    fn embed(
        &self,
        tokens: &wgpu::Buffer,
        tok_emb: &wgpu::Buffer,
        pos_emb: &wgpu::Buffer,
        out: &wgpu::Buffer,
        n: usize,
        len: usize,
        pos0: usize,
        c: usize,
    ) -> Result<()> {
        let p = Params {
            n: n as u32,
            c: c as u32,
            len: len as u32,
            pos0: pos0 as u32,
            ..Default::default()
        };
        self.run_lm(
            "embed",
            p,
            &[(1, tok_emb), (2, pos_emb), (4, out), (7, tokens)],
            Self::elems(n * c),
        )
    }

    fn layer_norm(
        &self,
        x: &wgpu::Buffer,
        gamma: &wgpu::Buffer,
        beta: &wgpu::Buffer,
        y: &wgpu::Buffer,
        xhat: &wgpu::Buffer,
        rstd: &wgpu::Buffer,
        n: usize,
        c: usize,
        eps: f32,
    ) -> Result<()> {
        let mut p = Params {
            n: n as u32,
            c: c as u32,
            ..Default::default()
        };
        p.x[0] = eps;
        self.run_lm(
            "layer_norm",
            p,
            &[(1, x), (2, gamma), (3, beta), (4, y), (5, xhat), (6, rstd)],
            n,
        )
    }

    fn layer_norm_back(
        &self,
        dy: &wgpu::Buffer,
        xhat: &wgpu::Buffer,
        rstd: &wgpu::Buffer,
        gamma: &wgpu::Buffer,
        dx: &wgpu::Buffer,
        prod: &wgpu::Buffer,
        n: usize,
        c: usize,
    ) -> Result<()> {
        let p = Params {
            n: n as u32,
            c: c as u32,
            ..Default::default()
        };
        self.run_lm(
            "ln_back",
            p,
            &[
                (1, dy),
                (2, xhat),
                (3, rstd),
                (4, gamma),
                (5, dx),
                (6, prod),
            ],
            n,
        )
    }

    fn col_sum(&self, rows: &wgpu::Buffer, out: &wgpu::Buffer, n: usize, c: usize) -> Result<()> {
        let p = Params {
            n: n as u32,
            c: c as u32,
            ..Default::default()
        };
        self.run_lm("col_sum", p, &[(1, rows), (4, out)], Self::elems(c))
    }

    fn gather_heads(
        &self,
        src: &wgpu::Buffer,
        dst: &wgpu::Buffer,
        shape: (usize, usize, usize, usize),
        stride: usize,
        offset: usize,
    ) -> Result<()> {
        self.move_heads("gather_heads", src, dst, shape, stride, offset)
    }

    fn scatter_heads(
        &self,
        src: &wgpu::Buffer,
        dst: &wgpu::Buffer,
        shape: (usize, usize, usize, usize),
        stride: usize,
        offset: usize,
    ) -> Result<()> {
        self.move_heads("scatter_heads", src, dst, shape, stride, offset)
    }

    fn causal_softmax(&self, s: &wgpu::Buffer, r: usize, len: usize, scale: f32) -> Result<()> {
        let mut p = Params {
            n: r as u32,
            len: len as u32,
            ..Default::default()
        };
        p.x[0] = scale;
        self.run_lm("causal_softmax", p, &[(4, s)], r)
    }

    fn softmax_back(
        &self,
        prob: &wgpu::Buffer,
        dp: &wgpu::Buffer,
        r: usize,
        len: usize,
        scale: f32,
    ) -> Result<()> {
        let mut p = Params {
            n: r as u32,
            len: len as u32,
            ..Default::default()
        };
        p.x[0] = scale;
        self.run_lm("softmax_back", p, &[(1, prob), (4, dp)], r)
    }

    fn gelu(&self, f: &wgpu::Buffer, g: &wgpu::Buffer, count: usize) -> Result<()> {
        let p = Params {
            n: count as u32,
            ..Default::default()
        };
        self.run_lm("gelu", p, &[(1, f), (4, g)], Self::elems(count))
    }

    fn gelu_back(&self, f: &wgpu::Buffer, dg: &wgpu::Buffer, count: usize) -> Result<()> {
        let p = Params {
            n: count as u32,
            ..Default::default()
        };
        self.run_lm("gelu_back", p, &[(1, f), (4, dg)], Self::elems(count))
    }

    fn cross_entropy(
        &self,
        logits: &wgpu::Buffer,
        targets: &wgpu::Buffer,
        rows: &wgpu::Buffer,
        n: usize,
        grad: bool,
        inv_n: f32,
    ) -> Result<()> {
        let mut p = Params {
            n: n as u32,
            flags: grad as u32,
            ..Default::default()
        };
        p.x[0] = inv_n;
        self.run_lm(
            "cross_entropy",
            p,
            &[(4, logits), (5, rows), (7, targets)],
            n,
        )
    }

    fn mean(&self, rows: &wgpu::Buffer, out: &wgpu::Buffer, n: usize) -> Result<()> {
        let p = Params {
            n: n as u32,
            ..Default::default()
        };
        self.run_lm("mean", p, &[(5, rows), (6, out)], 1)
    }

    fn onehot(&self, tokens: &wgpu::Buffer, out: &wgpu::Buffer, n: usize) -> Result<()> {
        let p = Params {
            n: n as u32,
            ..Default::default()
        };
        self.run_lm("onehot", p, &[(4, out), (7, tokens)], Self::elems(n * 256))
    }

    fn pos_grad(
        &self,
        dh: &wgpu::Buffer,
        out: &wgpu::Buffer,
        rows: usize,
        len: usize,
        ctx: usize,
        c: usize,
    ) -> Result<()> {
        let p = Params {
            n: rows as u32,
            c: c as u32,
            len: len as u32,
            stride: ctx as u32,
            ..Default::default()
        };
        self.run_lm("pos_grad", p, &[(1, dh), (4, out)], Self::elems(ctx * c))
    }

    fn sumsq(
        &self,
        g: &wgpu::Buffer,
        count: usize,
        norms: &wgpu::Buffer,
        slot: usize,
    ) -> Result<()> {
        let p = Params {
            n: count as u32,
            pos0: slot as u32,
            ..Default::default()
        };
        self.run_lm("sumsq", p, &[(1, g), (6, norms)], 1)
    }

    fn adamw(
        &self,
        pb: &wgpu::Buffer,
        g: &wgpu::Buffer,
        m: &wgpu::Buffer,
        v: &wgpu::Buffer,
        norms: &wgpu::Buffer,
        count: usize,
        s: &AdamStep,
    ) -> Result<()> {
        let p = Params {
            n: count as u32,
            heads: s.tensors as u32,
            x: [
                s.lr,
                s.betas.0,
                s.betas.1,
                s.eps,
                s.decay,
                s.inv_corr.0,
                s.inv_corr.1,
                s.clip,
            ],
            ..Default::default()
        };
        self.run_lm(
            "adamw",
            p,
            &[(1, pb), (2, g), (3, m), (5, v), (6, norms)],
            Self::elems(count),
        )
    }

    fn kv_store(
        &self,
        qkv: &wgpu::Buffer,
        k: &wgpu::Buffer,
        v: &wgpu::Buffer,
        rows: usize,
        ctx: usize,
        c: usize,
        pos: usize,
    ) -> Result<()> {
        let p = Params {
            n: rows as u32,
            c: c as u32,
            len: ctx as u32,
            pos0: pos as u32,
            ..Default::default()
        };
        self.run_lm(
            "kv_store",
            p,
            &[(1, qkv), (4, k), (5, v)],
            Self::elems(rows * c),
        )
    }

    fn decode_attention(
        &self,
        qkv: &wgpu::Buffer,
        k: &wgpu::Buffer,
        v: &wgpu::Buffer,
        o: &wgpu::Buffer,
        (rows, heads, ctx, d): (usize, usize, usize, usize),
        pos: usize,
        scale: f32,
    ) -> Result<()> {
        let mut p = Params {
            n: rows as u32,
            c: (heads * d) as u32,
            len: ctx as u32,
            heads: heads as u32,
            d: d as u32,
            pos0: pos as u32,
            ..Default::default()
        };
        p.x[0] = scale;
        self.run_lm(
            "decode_attention",
            p,
            &[(1, qkv), (4, k), (5, v), (6, o)],
            rows * heads,
        )
    }
}
