//! The language model's `#[cube]` kernels, the f32 forms of `src/models/lm/cpu.rs`'s steps with
//! the summation orders of `shaders/lm.wgsl`; [`super`] wires them to [`crate::ops::lm::LmOps`].
//!
//! Launch layout (what [`super`] passes): one unit per element for the element-wise kernels
//! (`i = ABSOLUTE_POS`), one unit per row for the row kernels (LayerNorm, softmax,
//! cross-entropy: the row's values summed in index order), one unit per output element for
//! incremental attention (it recomputes the row's scores: fine at sampling sizes); the
//! reductions (`col_sum`, `pos_grad`, `mean`, `sumsq`, `clip_scale`) are
//! [`crate::backend::cube`]'s shared two-level ones (`reduce.rs`); cubes of
//! [`crate::backend::launch::WORKGROUP`] units on `(x, y)` grids. Buffers are row-major f32
//! (tokens and targets u32); the shapes are those of the matching [`crate::ops::lm::LmOps`]
//! method.

use cubecl::prelude::*;

/// `out[i] = value`, one unit per element `i < n`.
#[cube(launch)]
pub(super) fn fill_kernel(out: &mut [f32], n: u32, value: f32) {
    let i = ABSOLUTE_POS as u32;
    if i < n {
        out[i as usize] = value;
    }
}

/// `out[i][j] = tok_emb[tokens[i]][j] + pos_emb[pos0 + i % len][j]`, one unit per element of
/// `out` (`[n][c]`).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub(super) fn embed_kernel(
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

/// LayerNorm of row `row < n` of `x` (`[n][c]`), one unit per row: `y = x̂·γ + β`, `x̂`, `rstd`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub(super) fn layer_norm_kernel(
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

/// LayerNorm backward of one row per unit: `dx += rstd·(dx̂ − mean dx̂ − x̂·mean(dx̂⊙x̂))` with
/// `dx̂ = dy⊙γ`, and `prod = dy⊙x̂`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub(super) fn ln_back_kernel(
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

/// Index in the `[rows·len][stride]` array of element `i` of the `[rows][H][len][d]` array.
#[cube]
fn head_index(i: u32, len: u32, heads: u32, d: u32, stride: u32, offset: u32) -> u32 {
    let e = i % d;
    let t = (i / d) % len;
    let h = (i / (d * len)) % heads;
    let r = i / (d * len * heads);
    (r * len + t) * stride + offset + h * d + e
}

/// `dst[r][h][t][e] = src[(r·len + t)·stride + offset + h·d + e]`, one unit per element of `dst`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub(super) fn gather_heads_kernel(
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

/// The inverse of [`gather_heads_kernel`], one unit per element of `src`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub(super) fn scatter_heads_kernel(
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

/// In place on row `row < r` of `s` (`[r][len]`), one unit per row: scale, mask `j > row % len`,
/// softmax (0 above the diagonal).
#[cube(launch)]
pub(super) fn causal_softmax_kernel(s: &mut [f32], r: u32, len: u32, scale: f32) {
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

/// In place on row `row < r` of `dp`, one unit per row: `dS = P⊙(dP − Σ P⊙dP)·scale`.
#[cube(launch)]
pub(super) fn softmax_back_kernel(p: &[f32], dp: &mut [f32], r: u32, len: u32, scale: f32) {
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

/// `g = GELU(f)` (tanh form), one unit per element.
#[cube(launch)]
pub(super) fn gelu_kernel(f: &[f32], g: &mut [f32], n: u32) {
    let i = ABSOLUTE_POS as u32;
    if i < n {
        let x = f[i as usize];
        let t = tanh_f32(0.797_884_6f32 * (x + 0.044_715f32 * x * x * x));
        g[i as usize] = 0.5f32 * x * (1.0f32 + t);
    }
}

/// `dg ← dg·GELU′(f)`, one unit per element.
#[cube(launch)]
pub(super) fn gelu_back_kernel(f: &[f32], dg: &mut [f32], n: u32) {
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

/// Row `row < n` of `logits` (`[n][256]`), one unit per row: `rows[row] = lse − logit[target]`;
/// with `grad == 1`, `logits ← (softmax − onehot)·weights[row]`.
#[cube(launch)]
pub(super) fn cross_entropy_kernel(
    logits: &mut [f32],
    targets: &[u32],
    weights: &[f32],
    rows: &mut [f32],
    n: u32,
    grad: u32,
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
            let w = weights[row as usize];
            for j in 0..256u32 {
                let k = (base + j) as usize;
                let mut onehot = f32::new(0.0);
                if j == y {
                    onehot = f32::new(1.0);
                }
                logits[k] = (f32::exp(logits[k] - m) / z - onehot) * w;
            }
        }
    }
}

/// `out[i][v] = [tokens[i] == v]` (`[n][256]`), one unit per element.
#[cube(launch)]
pub(super) fn onehot_kernel(tokens: &[u32], out: &mut [f32], n: u32) {
    let i = ABSOLUTE_POS as u32;
    if i < n * 256 {
        let mut v = f32::new(0.0);
        if tokens[(i / 256) as usize] == i % 256 {
            v = f32::new(1.0);
        }
        out[i as usize] = v;
    }
}

/// AdamW over one block per cube of a flat layout (`blocks`: `[w][4]` u32 `start, count,
/// decayed, 0`; [`crate::ops::memory::FlatLayout`]), 256 units, 16 elements each: element `k`
/// of `p`, `g`, `m`, `v` (one layout) with the gradient multiplied by the clip factor
/// `scale[0]` (computed once per step by `reduce::clip_kernel`) and the weights by `decay`
/// where the block is flagged.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub(super) fn adamw_kernel(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    blocks: &[u32],
    scale: &[f32],
    n_blocks: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    decay: f32,
    ic1: f32,
    ic2: f32,
) {
    let w = CUBE_POS_X + CUBE_POS_Y * CUBE_COUNT_X;
    if w < n_blocks {
        let start = blocks[(w * 4) as usize];
        let count = blocks[(w * 4 + 1) as usize];
        let mut d = f32::new(1.0);
        if blocks[(w * 4 + 2) as usize] != 0u32 {
            d = decay;
        }
        let f = scale[0];
        for q in 0..16u32 {
            let jj = q * 256 + UNIT_POS_X;
            if jj < count {
                let j = (start + jj) as usize;
                let gi = g[j] * f;
                m[j] = beta1 * m[j] + (1.0f32 - beta1) * gi;
                v[j] = beta2 * v[j] + (1.0f32 - beta2) * gi * gi;
                let pd = p[j] * d;
                p[j] = pd - lr * (m[j] * ic1) / (f32::sqrt(v[j] * ic2) + eps);
            }
        }
    }
}

/// Keys and values of `qkv` (`[rows][3c]`) into position `pos` of the caches (`[rows][ctx][c]`),
/// one unit per `(row, j)`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub(super) fn kv_store_kernel(
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

/// One query per row of `qkv` attending to cache positions `0..=pos`: `o[r][h·d + e]`, one unit
/// per output element `(r, h, e)`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub(super) fn decode_attention_kernel(
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
