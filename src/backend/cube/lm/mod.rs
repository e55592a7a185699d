//! The language model as `#[cube]` kernels: [`LmOps`] for [`CubeKernels`] (whose cubecl matmul
//! serves the products, batched over heads for attention) with the kernels of [`kernels`]; the
//! orchestration is [`crate::models::lm::device`]'s, shared with the WGSL backend. Each method
//! launches its kernel over the units [`kernels`] describes and tells it the length of every
//! buffer it binds.

mod kernels;

use cubecl::prelude::CubeDim;

use self::kernels::*;
use super::memory::{CubeKernels, arg, arg_whole, dim, grid};
use super::reduce::{FLAT_UNITS, Terms, block_grid};
use crate::error::Result;
use crate::ops::lm::{AdamStep, LmOps};

type Handle = cubecl::server::Handle;

impl LmOps for CubeKernels<'_> {
    fn fill(&self, out: &Handle, count: usize, value: f32) -> Result<()> {
        fill_kernel::launch(
            self.client,
            grid(count),
            dim(),
            arg(out, count),
            count as u32,
            value,
        );
        Ok(())
    }

    fn embed(
        &self,
        tokens: &Handle,
        tok_emb: &Handle,
        pos_emb: &Handle,
        out: &Handle,
        n: usize,
        len: usize,
        pos0: usize,
        c: usize,
    ) -> Result<()> {
        embed_kernel::launch(
            self.client,
            grid(n * c),
            dim(),
            arg(tokens, n),
            arg(tok_emb, 256 * c),
            arg(pos_emb, (pos0 + len) * c),
            arg(out, n * c),
            n as u32,
            len as u32,
            pos0 as u32,
            c as u32,
        );
        Ok(())
    }

    fn layer_norm(
        &self,
        x: &Handle,
        gamma: &Handle,
        beta: &Handle,
        y: &Handle,
        xhat: &Handle,
        rstd: &Handle,
        n: usize,
        c: usize,
        eps: f32,
    ) -> Result<()> {
        layer_norm_kernel::launch(
            self.client,
            grid(n),
            dim(),
            arg(x, n * c),
            arg(gamma, c),
            arg(beta, c),
            arg(y, n * c),
            arg(xhat, n * c),
            arg(rstd, n),
            n as u32,
            c as u32,
            eps,
        );
        Ok(())
    }

    fn layer_norm_back(
        &self,
        dy: &Handle,
        xhat: &Handle,
        rstd: &Handle,
        gamma: &Handle,
        dx: &Handle,
        prod: &Handle,
        n: usize,
        c: usize,
    ) -> Result<()> {
        ln_back_kernel::launch(
            self.client,
            grid(n),
            dim(),
            arg(dy, n * c),
            arg(xhat, n * c),
            arg(rstd, n),
            arg(gamma, c),
            arg(dx, n * c),
            arg(prod, n * c),
            n as u32,
            c as u32,
        );
        Ok(())
    }

    fn col_sum(&self, rows: &Handle, out: &Handle, n: usize, c: usize) -> Result<()> {
        self.col_sums(rows, out, n, c, c)
    }

    fn gather_heads(
        &self,
        src: &Handle,
        dst: &Handle,
        (rows, heads, len, d): (usize, usize, usize, usize),
        stride: usize,
        offset: usize,
    ) -> Result<()> {
        let count = rows * heads * len * d;
        gather_heads_kernel::launch(
            self.client,
            grid(count),
            dim(),
            arg(src, rows * len * stride),
            arg(dst, count),
            count as u32,
            len as u32,
            heads as u32,
            d as u32,
            stride as u32,
            offset as u32,
        );
        Ok(())
    }

    fn scatter_heads(
        &self,
        src: &Handle,
        dst: &Handle,
        (rows, heads, len, d): (usize, usize, usize, usize),
        stride: usize,
        offset: usize,
    ) -> Result<()> {
        let count = rows * heads * len * d;
        scatter_heads_kernel::launch(
            self.client,
            grid(count),
            dim(),
            arg(src, count),
            arg(dst, rows * len * stride),
            count as u32,
            len as u32,
            heads as u32,
            d as u32,
            stride as u32,
            offset as u32,
        );
        Ok(())
    }

    fn causal_softmax(&self, s: &Handle, r: usize, len: usize, scale: f32) -> Result<()> {
        causal_softmax_kernel::launch(
            self.client,
            grid(r),
            dim(),
            arg(s, r * len),
            r as u32,
            len as u32,
            scale,
        );
        Ok(())
    }

    fn softmax_back(
        &self,
        p: &Handle,
        dp: &Handle,
        r: usize,
        len: usize,
        scale: f32,
    ) -> Result<()> {
        softmax_back_kernel::launch(
            self.client,
            grid(r),
            dim(),
            arg(p, r * len),
            arg(dp, r * len),
            r as u32,
            len as u32,
            scale,
        );
        Ok(())
    }

    fn gelu(&self, f: &Handle, g: &Handle, count: usize) -> Result<()> {
        gelu_kernel::launch(
            self.client,
            grid(count),
            dim(),
            arg(f, count),
            arg(g, count),
            count as u32,
        );
        Ok(())
    }

    fn gelu_back(&self, f: &Handle, dg: &Handle, count: usize) -> Result<()> {
        gelu_back_kernel::launch(
            self.client,
            grid(count),
            dim(),
            arg(f, count),
            arg(dg, count),
            count as u32,
        );
        Ok(())
    }

    fn cross_entropy(
        &self,
        logits: &Handle,
        targets: &Handle,
        weights: &Handle,
        rows: &Handle,
        n: usize,
        grad: bool,
    ) -> Result<()> {
        cross_entropy_kernel::launch(
            self.client,
            grid(n),
            dim(),
            arg(logits, n * 256),
            arg(targets, n),
            arg(weights, n),
            arg(rows, n),
            n as u32,
            grad as u32,
        );
        Ok(())
    }

    fn mean(
        &self,
        rows: &Handle,
        weights: &Handle,
        out: &Handle,
        n: usize,
        count: usize,
    ) -> Result<()> {
        let inv = 1.0 / count as f32;
        self.total(rows, Some(weights), n, Terms::Weighted, (out, 0, 1), inv)
    }

    fn onehot(&self, tokens: &Handle, out: &Handle, n: usize) -> Result<()> {
        onehot_kernel::launch(
            self.client,
            grid(n * 256),
            dim(),
            arg(tokens, n),
            arg(out, n * 256),
            n as u32,
        );
        Ok(())
    }

    fn pos_grad(
        &self,
        dh: &Handle,
        out: &Handle,
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
        grads: &Handle,
        blocks: &Handle,
        n_blocks: usize,
        parts: &Handle,
    ) -> Result<()> {
        self.block_sumsq(grads, blocks, n_blocks, parts)
    }

    fn clip_scale(&self, parts: &Handle, n: usize, clip: f32, scale: &Handle) -> Result<()> {
        self.clip_factor(parts, n, clip, scale)
    }

    fn adamw(
        &self,
        [p, g, m, v]: [&Handle; 4],
        blocks: &Handle,
        n_blocks: usize,
        scale: &Handle,
        s: &AdamStep,
        decay: f32,
    ) -> Result<()> {
        adamw_kernel::launch(
            self.client,
            block_grid(n_blocks),
            CubeDim::new_1d(FLAT_UNITS),
            arg_whole(p),
            arg_whole(g),
            arg_whole(m),
            arg_whole(v),
            arg(blocks, n_blocks * 4),
            arg(scale, 1),
            n_blocks as u32,
            s.lr,
            s.betas.0,
            s.betas.1,
            s.eps,
            decay,
            s.inv_corr.0,
            s.inv_corr.1,
        );
        Ok(())
    }

    fn kv_store(
        &self,
        qkv: &Handle,
        k: &Handle,
        v: &Handle,
        rows: usize,
        ctx: usize,
        c: usize,
        pos: usize,
    ) -> Result<()> {
        kv_store_kernel::launch(
            self.client,
            grid(rows * c),
            dim(),
            arg(qkv, rows * 3 * c),
            arg(k, rows * ctx * c),
            arg(v, rows * ctx * c),
            rows as u32,
            ctx as u32,
            c as u32,
            pos as u32,
        );
        Ok(())
    }

    fn decode_attention(
        &self,
        qkv: &Handle,
        k: &Handle,
        v: &Handle,
        o: &Handle,
        (rows, heads, ctx, d): (usize, usize, usize, usize),
        pos: usize,
        scale: f32,
    ) -> Result<()> {
        let c = heads * d;
        decode_attention_kernel::launch(
            self.client,
            grid(rows * c),
            dim(),
            arg(qkv, rows * 3 * c),
            arg(k, rows * ctx * c),
            arg(v, rows * ctx * c),
            arg(o, rows * c),
            rows as u32,
            heads as u32,
            ctx as u32,
            d as u32,
            pos as u32,
            scale,
        );
        Ok(())
    }
}
