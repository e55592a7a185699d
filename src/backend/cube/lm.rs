//! The language model as `#[cube]` kernels: [`LmOps`] for [`CubeKernels`] (whose cubecl matmul
//! serves the products, batched over heads for attention); the orchestration is [`crate::models::lm::device`]'s, shared with
//! the WGSL backend. Row operations (LayerNorm, softmax, cross-entropy) run one unit per row,
//! summing in index order; element-wise ones one unit per element; incremental attention one
//! unit per output element (it recomputes the row's scores: fine at sampling sizes). Cubes of 64
//! units on `(x, y)` grids.

use cubecl::prelude::*;

use super::memory::{CubeKernels, arg, dim, grid};
use crate::error::Result;
use crate::ops::lm::{AdamStep, LmOps};

type Handle = cubecl::server::Handle;

#[cube(launch)]
fn fill_kernel(out: &mut [f32], n: u32, value: f32) {
    let i = ABSOLUTE_POS as u32;
    if i < n {
        out[i as usize] = value;
    }
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn embed_kernel(
    tokens: &[u32],
    tok_emb: &[f32],
    pos_emb: &[f32],
    out: &mut [f32],
    n: u32,
    len: u32,
    pos0: u32,
    c: u32,
) {
    let i = ABSOLUTE_POS as u32;
    if i < n * c {
        let row = i / c;
        let j = i % c;
        let t = pos0 + row % len;
        out[i as usize] =
            tok_emb[(tokens[row as usize] * c + j) as usize] + pos_emb[(t * c + j) as usize];
    }
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn layer_norm_kernel(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    y: &mut [f32],
    xhat: &mut [f32],
    rstd: &mut [f32],
    n: u32,
    c: u32,
    eps: f32,
) {
    let row = ABSOLUTE_POS as u32;
    if row < n {
        let base = row * c;
        let mut s = f32::new(0.0);
        for j in 0..c {
            s += x[(base + j) as usize];
        }
        let mean = s / f32::cast_from(c);
        let mut q = f32::new(0.0);
        for j in 0..c {
            let dv = x[(base + j) as usize] - mean;
            q += dv * dv;
        }
        let r = 1.0f32 / f32::sqrt(q / f32::cast_from(c) + eps);
        for j in 0..c {
            let k = (base + j) as usize;
            let xh = (x[k] - mean) * r;
            xhat[k] = xh;
            y[k] = xh * gamma[j as usize] + beta[j as usize];
        }
        rstd[row as usize] = r;
    }
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn ln_back_kernel(
    dy: &[f32],
    xhat: &[f32],
    rstd: &[f32],
    gamma: &[f32],
    dx: &mut [f32],
    prod: &mut [f32],
    n: u32,
    c: u32,
) {
    let row = ABSOLUTE_POS as u32;
    if row < n {
        let base = row * c;
        let mut s1 = f32::new(0.0);
        let mut s2 = f32::new(0.0);
        for j in 0..c {
            let k = (base + j) as usize;
            let dxh = dy[k] * gamma[j as usize];
            s1 += dxh;
            s2 += dxh * xhat[k];
        }
        let m1 = s1 / f32::cast_from(c);
        let m2 = s2 / f32::cast_from(c);
        let r = rstd[row as usize];
        for j in 0..c {
            let k = (base + j) as usize;
            let dxh = dy[k] * gamma[j as usize];
            dx[k] += r * (dxh - m1 - xhat[k] * m2);
            prod[k] = dy[k] * xhat[k];
        }
    }
}

#[cube(launch)]
fn col_sum_kernel(rows: &[f32], out: &mut [f32], n: u32, c: u32) {
    let j = ABSOLUTE_POS as u32;
    if j < c {
        let mut s = f32::new(0.0);
        for r in 0..n {
            s += rows[(r * c + j) as usize];
        }
        out[j as usize] = s;
    }
}

/// Index in the `[rows·len][stride]` array of element `i` of the `[rows][H][len][d]` array.
#[cube]
fn head_index(i: u32, len: u32, heads: u32, d: u32, stride: u32, offset: u32) -> u32 {
    let e = i % d;
    let t = (i / d) % len;
    let h = (i / (d * len)) % heads;
    let r = i / (d * len * heads);
    (r * len + t) * stride + offset + h * d + e
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn gather_heads_kernel(
    src: &[f32],
    dst: &mut [f32],
    count: u32,
    len: u32,
    heads: u32,
    d: u32,
    stride: u32,
    offset: u32,
) {
    let i = ABSOLUTE_POS as u32;
    if i < count {
        dst[i as usize] = src[head_index(i, len, heads, d, stride, offset) as usize];
    }
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn scatter_heads_kernel(
    src: &[f32],
    dst: &mut [f32],
    count: u32,
    len: u32,
    heads: u32,
    d: u32,
    stride: u32,
    offset: u32,
) {
    let i = ABSOLUTE_POS as u32;
    if i < count {
        dst[head_index(i, len, heads, d, stride, offset) as usize] = src[i as usize];
    }
}

#[cube(launch)]
fn causal_softmax_kernel(s: &mut [f32], r: u32, len: u32, scale: f32) {
    let row = ABSOLUTE_POS as u32;
    if row < r {
        let last = row % len;
        let base = row * len;
        let mut m = f32::new(-3.0e38);
        for j in 0..last + 1 {
            let v = s[(base + j) as usize] * scale;
            if v > m {
                m = v;
            }
        }
        let mut z = f32::new(0.0);
        for j in 0..last + 1 {
            let k = (base + j) as usize;
            let e = f32::exp(s[k] * scale - m);
            s[k] = e;
            z += e;
        }
        for j in 0..len {
            let k = (base + j) as usize;
            if j <= last {
                s[k] /= z;
            } else {
                s[k] = f32::new(0.0);
            }
        }
    }
}

#[cube(launch)]
fn softmax_back_kernel(p: &[f32], dp: &mut [f32], r: u32, len: u32, scale: f32) {
    let row = ABSOLUTE_POS as u32;
    if row < r {
        let base = row * len;
        let mut s = f32::new(0.0);
        for j in 0..len {
            let k = (base + j) as usize;
            s += p[k] * dp[k];
        }
        for j in 0..len {
            let k = (base + j) as usize;
            dp[k] = p[k] * (dp[k] - s) * scale;
        }
    }
}

/// `tanh` from one exponential (exact to f32 rounding; `e^{−2|x|}` never overflows).
#[cube]
fn tanh_f32(x: f32) -> f32 {
    let mut ax = x;
    if x < 0.0f32 {
        ax = -x;
    }
    let e = f32::exp(-2.0f32 * ax);
    let t = (1.0f32 - e) / (1.0f32 + e);
    let mut out = t;
    if x < 0.0f32 {
        out = -t;
    }
    out
}

#[cube(launch)]
fn gelu_kernel(f: &[f32], g: &mut [f32], n: u32) {
    let i = ABSOLUTE_POS as u32;
    if i < n {
        let x = f[i as usize];
        let t = tanh_f32(0.797_884_6f32 * (x + 0.044_715f32 * x * x * x));
        g[i as usize] = 0.5f32 * x * (1.0f32 + t);
    }
}

#[cube(launch)]
fn gelu_back_kernel(f: &[f32], dg: &mut [f32], n: u32) {
    let i = ABSOLUTE_POS as u32;
    if i < n {
        let x = f[i as usize];
        let s = 0.797_884_6f32;
        let a = 0.044_715f32;
        let t = tanh_f32(s * (x + a * x * x * x));
        let d = 0.5f32 * (1.0f32 + t)
            + 0.5f32 * x * (1.0f32 - t * t) * s * (1.0f32 + 3.0f32 * a * x * x);
        dg[i as usize] *= d;
    }
}

#[cube(launch)]
fn cross_entropy_kernel(
    logits: &mut [f32],
    targets: &[u32],
    rows: &mut [f32],
    n: u32,
    grad: u32,
    inv_n: f32,
) {
    let row = ABSOLUTE_POS as u32;
    if row < n {
        let base = row * 256;
        let mut m = f32::new(-3.0e38);
        for j in 0..256u32 {
            let v = logits[(base + j) as usize];
            if v > m {
                m = v;
            }
        }
        let mut z = f32::new(0.0);
        for j in 0..256u32 {
            z += f32::exp(logits[(base + j) as usize] - m);
        }
        let y = targets[row as usize];
        rows[row as usize] = f32::ln(z) + m - logits[(base + y) as usize];
        if grad == 1 {
            for j in 0..256u32 {
                let k = (base + j) as usize;
                let mut onehot = f32::new(0.0);
                if j == y {
                    onehot = f32::new(1.0);
                }
                logits[k] = (f32::exp(logits[k] - m) / z - onehot) * inv_n;
            }
        }
    }
}

#[cube(launch)]
fn mean_kernel(rows: &[f32], out: &mut [f32], n: u32) {
    if ABSOLUTE_POS == 0 {
        let mut s = f32::new(0.0);
        for i in 0..n {
            s += rows[i as usize];
        }
        out[0] = s / f32::cast_from(n);
    }
}

#[cube(launch)]
fn onehot_kernel(tokens: &[u32], out: &mut [f32], n: u32) {
    let i = ABSOLUTE_POS as u32;
    if i < n * 256 {
        let mut v = f32::new(0.0);
        if tokens[(i / 256) as usize] == i % 256 {
            v = f32::new(1.0);
        }
        out[i as usize] = v;
    }
}

#[cube(launch)]
fn pos_grad_kernel(dh: &[f32], out: &mut [f32], rows: u32, len: u32, ctx: u32, c: u32) {
    let i = ABSOLUTE_POS as u32;
    if i < ctx * c {
        let t = i / c;
        let j = i % c;
        let mut s = f32::new(0.0);
        if t < len {
            for r in 0..rows {
                s += dh[((r * len + t) * c + j) as usize];
            }
        }
        out[i as usize] = s;
    }
}

#[cube(launch)]
fn sumsq_kernel(g: &[f32], norms: &mut [f32], count: u32, slot: u32) {
    if ABSOLUTE_POS == 0 {
        let mut s = f32::new(0.0);
        for i in 0..count {
            let v = g[i as usize];
            s += v * v;
        }
        norms[slot as usize] = s;
    }
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn adamw_kernel(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    norms: &[f32],
    n: u32,
    tensors: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    decay: f32,
    ic1: f32,
    ic2: f32,
    clip: f32,
) {
    let i = ABSOLUTE_POS as u32;
    if i < n {
        let mut scale = f32::new(1.0);
        if clip > 0.0f32 {
            let mut tot = f32::new(0.0);
            for k in 0..tensors {
                tot += norms[k as usize];
            }
            let norm = f32::sqrt(tot);
            if norm > clip {
                scale = clip / norm;
            }
        }
        let k = i as usize;
        let gi = g[k] * scale;
        m[k] = beta1 * m[k] + (1.0f32 - beta1) * gi;
        v[k] = beta2 * v[k] + (1.0f32 - beta2) * gi * gi;
        let pd = p[k] * decay;
        p[k] = pd - lr * (m[k] * ic1) / (f32::sqrt(v[k] * ic2) + eps);
    }
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn kv_store_kernel(
    qkv: &[f32],
    k: &mut [f32],
    v: &mut [f32],
    rows: u32,
    ctx: u32,
    c: u32,
    pos: u32,
) {
    let i = ABSOLUTE_POS as u32;
    if i < rows * c {
        let r = i / c;
        let j = i % c;
        let dst = ((r * ctx + pos) * c + j) as usize;
        k[dst] = qkv[(r * 3 * c + c + j) as usize];
        v[dst] = qkv[(r * 3 * c + 2 * c + j) as usize];
    }
}

/// One unit per output element `(r, h, e)`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn decode_attention_kernel(
    qkv: &[f32],
    k: &[f32],
    v: &[f32],
    o: &mut [f32],
    rows: u32,
    heads: u32,
    ctx: u32,
    d: u32,
    pos: u32,
    scale: f32,
) {
    let i = ABSOLUTE_POS as u32;
    let c = heads * d;
    if i < rows * c {
        let r = i / c;
        let h = (i % c) / d;
        let e = i % d;
        let q0 = r * 3 * c + h * d;
        let cache0 = r * ctx * c + h * d;
        let mut m = f32::new(-3.0e38);
        for j in 0..pos + 1 {
            let mut s = f32::new(0.0);
            for x in 0..d {
                s += qkv[(q0 + x) as usize] * k[(cache0 + j * c + x) as usize];
            }
            s *= scale;
            if s > m {
                m = s;
            }
        }
        let mut z = f32::new(0.0);
        let mut acc = f32::new(0.0);
        for j in 0..pos + 1 {
            let mut s = f32::new(0.0);
            for x in 0..d {
                s += qkv[(q0 + x) as usize] * k[(cache0 + j * c + x) as usize];
            }
            let w = f32::exp(s * scale - m);
            z += w;
            acc += w * v[(cache0 + j * c + e) as usize];
        }
        o[(r * c + h * d + e) as usize] = acc / z;
    }
}

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
        col_sum_kernel::launch(
            self.client,
            grid(c),
            dim(),
            arg(rows, n * c),
            arg(out, c),
            n as u32,
            c as u32,
        );
        Ok(())
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
        rows: &Handle,
        n: usize,
        grad: bool,
        inv_n: f32,
    ) -> Result<()> {
        cross_entropy_kernel::launch(
            self.client,
            grid(n),
            dim(),
            arg(logits, n * 256),
            arg(targets, n),
            arg(rows, n),
            n as u32,
            grad as u32,
            inv_n,
        );
        Ok(())
    }

    fn mean(&self, rows: &Handle, out: &Handle, n: usize) -> Result<()> {
        mean_kernel::launch(
            self.client,
            CubeCount::Static(1, 1, 1),
            CubeDim::new_1d(1),
            arg(rows, n),
            arg(out, 1),
            n as u32,
        );
        Ok(())
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
        pos_grad_kernel::launch(
            self.client,
            grid(ctx * c),
            dim(),
            arg(dh, rows * len * c),
            arg(out, ctx * c),
            rows as u32,
            len as u32,
            ctx as u32,
            c as u32,
        );
        Ok(())
    }

    fn sumsq(&self, g: &Handle, count: usize, norms: &Handle, slot: usize) -> Result<()> {
        sumsq_kernel::launch(
            self.client,
            CubeCount::Static(1, 1, 1),
            CubeDim::new_1d(1),
            arg(g, count),
            arg(norms, slot + 1),
            count as u32,
            slot as u32,
        );
        Ok(())
    }

    fn adamw(
        &self,
        p: &Handle,
        g: &Handle,
        m: &Handle,
        v: &Handle,
        norms: &Handle,
        count: usize,
        s: &AdamStep,
    ) -> Result<()> {
        adamw_kernel::launch(
            self.client,
            grid(count),
            dim(),
            arg(p, count),
            arg(g, count),
            arg(m, count),
            arg(v, count),
            arg(norms, s.tensors),
            count as u32,
            s.tensors as u32,
            s.lr,
            s.betas.0,
            s.betas.1,
            s.eps,
            s.decay,
            s.inv_corr.0,
            s.inv_corr.1,
            s.clip,
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
