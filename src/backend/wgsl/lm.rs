//! The language model on wgpu: [`LmOps`] implemented with the matmul kernels (batched over
//! heads for attention) and `shaders/lm.wgsl`; the orchestration is [`crate::lm::device`]'s.
//! Training and generational runs queue the dispatches ([`crate::gpu::GpuOptions::queued`]);
//! benches and tests wait for and time each one.

use std::sync::Arc;

use super::matmul::{DeviceOperands, TileConfig, launch};
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::lm::device::{AdamStep, LmOps};
use crate::matmul::Matmul;

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

/// The WGSL kernels of the language model on one device.
pub struct WgslLmOps {
    gpu: Arc<GpuContext>,
    tile: TileConfig,
    dummy: wgpu::Buffer,
}

impl WgslLmOps {
    /// Kernels on `gpu`, matrix products with `tile`.
    pub fn new(gpu: Arc<GpuContext>, tile: TileConfig) -> Result<Self> {
        Ok(Self {
            dummy: gpu.input_buffer("no bias", &[0u8; 4])?,
            gpu,
            tile,
        })
    }

    /// Dispatch `entry` with `p` over `groups` workgroups (2-D when over 65535).
    fn run(
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

    fn elems(count: usize) -> usize {
        count.div_ceil(256)
    }
}

impl LmOps for WgslLmOps {
    type Buf = wgpu::Buffer;

    fn alloc(&self, label: &str, len: usize) -> Result<wgpu::Buffer> {
        self.gpu.output_buffer(label, (len * 4) as u64)
    }

    fn upload(&self, label: &str, data: &[f32]) -> Result<wgpu::Buffer> {
        self.gpu.input_buffer(label, bytemuck::cast_slice(data))
    }

    fn upload_u32(&self, label: &str, data: &[u32]) -> Result<wgpu::Buffer> {
        self.gpu.input_buffer(label, bytemuck::cast_slice(data))
    }

    fn read(&self, buf: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
        self.gpu.read_buffer(buf, len)
    }

    fn gemm(
        &self,
        p: &Matmul,
        a: &wgpu::Buffer,
        b: &wgpu::Buffer,
        c: &wgpu::Buffer,
        bias: Option<&wgpu::Buffer>,
    ) -> Result<()> {
        let ops = DeviceOperands {
            a: a.clone(),
            b: b.clone(),
            bias: bias.unwrap_or(&self.dummy).clone(),
            c: c.clone(),
        };
        launch(&self.gpu, p, &self.tile, &ops, true)?;
        Ok(())
    }

    fn fill(&self, out: &wgpu::Buffer, count: usize, value: f32) -> Result<()> {
        let mut p = Params {
            n: count as u32,
            ..Default::default()
        };
        p.x[0] = value;
        self.run("fill", p, &[(4, out)], Self::elems(count))
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
        self.run(
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
        self.run(
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
        self.run(
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
        self.run("col_sum", p, &[(1, rows), (4, out)], Self::elems(c))
    }

    fn gather_heads(
        &self,
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
        self.run("gather_heads", p, &[(1, src), (4, dst)], Self::elems(count))
    }

    fn scatter_heads(
        &self,
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
        self.run(
            "scatter_heads",
            p,
            &[(1, src), (4, dst)],
            Self::elems(count),
        )
    }

    fn causal_softmax(&self, s: &wgpu::Buffer, r: usize, len: usize, scale: f32) -> Result<()> {
        let mut p = Params {
            n: r as u32,
            len: len as u32,
            ..Default::default()
        };
        p.x[0] = scale;
        self.run("causal_softmax", p, &[(4, s)], r)
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
        self.run("softmax_back", p, &[(1, prob), (4, dp)], r)
    }

    fn gelu(&self, f: &wgpu::Buffer, g: &wgpu::Buffer, count: usize) -> Result<()> {
        let p = Params {
            n: count as u32,
            ..Default::default()
        };
        self.run("gelu", p, &[(1, f), (4, g)], Self::elems(count))
    }

    fn gelu_back(&self, f: &wgpu::Buffer, dg: &wgpu::Buffer, count: usize) -> Result<()> {
        let p = Params {
            n: count as u32,
            ..Default::default()
        };
        self.run("gelu_back", p, &[(1, f), (4, dg)], Self::elems(count))
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
        self.run(
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
        self.run("mean", p, &[(5, rows), (6, out)], 1)
    }

    fn onehot(&self, tokens: &wgpu::Buffer, out: &wgpu::Buffer, n: usize) -> Result<()> {
        let p = Params {
            n: n as u32,
            ..Default::default()
        };
        self.run("onehot", p, &[(4, out), (7, tokens)], Self::elems(n * 256))
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
        self.run("pos_grad", p, &[(1, dh), (4, out)], Self::elems(ctx * c))
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
        self.run("sumsq", p, &[(1, g), (6, norms)], 1)
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
        self.run(
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
        self.run(
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
        self.run(
            "decode_attention",
            p,
            &[(1, qkv), (4, k), (5, v), (6, o)],
            rows * heads,
        )
    }
}
