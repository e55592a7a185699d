// lm.wgsl — the language model's kernels besides its matrix products (those run through
// matmul.wgsl / matmul_vec4.wgsl, batched over heads for attention). Each entry point is the f32
// form of one step of src/models/lm/cpu.rs; src/models/lm/device.rs calls them in cpu.rs's order
// (through src/backend/wgsl/lm.rs, which binds each entry point's subset below by number; column
// sums run colsum.wgsl).
// Layout: row-major f32 arrays (tokens and targets u32). Activations [N][C] (N = rows·len
// positions), per-head arrays [rows][H][len][d], attention rows [R][len], logits [N][256], KV
// caches [rows][ctx][C].
//
// Bindings (group 0). Uniforms, one per family of entry points (each padded to 16 bytes):
//   0: elem_p     ElemParams    { count, value }                  fill, gelu, gelu_back
//   1: embed_p    EmbedParams   { n, c, len, pos0 }               embed
//   2: norm_p     NormParams    { rows, c, eps }                  layer_norm, ln_back
//   4: head_p     HeadParams    { count, len, heads, d, stride, offset }  gather_heads,
//                                 scatter_heads, gather_qkv, scatter_qkv
//   5: softmax_p  SoftmaxParams { rows, len, scale }              causal_softmax, softmax_back
//   6: loss_p     LossParams    { rows, grad, count }             cross_entropy, loss_partial,
//                                                                 loss_final, onehot
//   7: sumsq_p    SumsqParams   { count, clip }    sumsq_partial (count: blocks), clip_scale
//   8: adam_p     AdamParams    { decay, lr, beta1, beta2, eps, inv_c1, inv_c2, blocks }  adamw
//   9: decode_p   DecodeParams  { rows, c, ctx, heads, d, pos, scale }  kv_store, decode_attention
// Storage (read: read-only; rw: read_write):
//  10: tokens   u32 read  [N]                embed, onehot
//  11: targets  u32 read  [N]                cross_entropy
//  12: out      rw        fill [count]; embed [N][C]; onehot [N][256]
//  13: tok_emb  read [256][C]                14: pos_emb  read [ctx][C]          (embed)
//  15: x        read [N][C]                  layer_norm
//  16: gamma    read [C]                     layer_norm, ln_back
//  17: beta     read [C]                     layer_norm
//  18: y        rw   [N][C]                  layer_norm
//  19: xhat     rw   [N][C]                  layer_norm (writes), ln_back (reads)
//  20: rstd     rw   [N]                     layer_norm (writes), ln_back (reads)
//  21: dy       read [N][C]                  22: dx  rw [N][C] (added into)   23: prod  rw [N][C]
//                                            (ln_back)
//  46: parts    rw   partial sums: loss_partial writes [workgroups], loss_final reads them
//  26: src      read                         27: dst  rw        (gather_heads, scatter_heads,
//                                            gather_qkv (src, dst), scatter_qkv (src, dst))
//  51: dst1     52: dst2   rw                gather_qkv (K, V; dst is Q)
//  53: src1     54: src2   read              scatter_qkv (dK, dV; src is dQ)
//  28: scores   rw   [R][len]                causal_softmax (in place)
//  29: prob     read [R][len]                30: dprob  rw [R][len] (softmax_back, in place)
//  31: pre      read [count]                 gelu, gelu_back (the pre-activation)
//  32: post     rw   [count]                 gelu: GELU(pre); gelu_back: the output gradient,
//                                            scaled in place to the input gradient
//  33: logits   rw   [N][256]                cross_entropy (the gradient in place when grad)
//  34: row_loss rw   [N]                     cross_entropy (writes), loss_partial (reads)
//  35: loss     rw   [1]                     loss_final (loss_partial when one block)
//  45: loss_w   read [N]                     cross_entropy (gradient weights: 1/N, or mask/Σ mask),
//                                            loss_partial (rows of weight 0 skipped)
//  36: grad     read   the flat gradient of every tensor     sumsq_partial, adamw
//  48: blocks   vec4<u32> read [blocks]    the flat layout's blocks (start, count ≤ 4096, decayed,
//                                            0), tensor by tensor (src/ops/memory.rs FlatLayout)
//  37: norms    rw   sumsq_partial writes [blocks] (block w's sum of squares at w);
//                    clip_scale reads [count] of them and writes scale[0..2]
//  47: scale    rw   [2]                     clip_scale (writes [clip factor, Σ g²]), adamw
//                                            (reads the factor)
//  38: param    rw   39: adam_m   rw   40: adam_v  rw   adamw: the flat parameters and
//                                            moments, in grad's layout
//  41: qkv      read [rows][3C]              kv_store, decode_attention
//  42: k_cache  rw   43: v_cache  rw   [rows][ctx][C]   kv_store (writes), decode_attention (reads)
//  44: attn_out rw   [rows][C]               decode_attention
//
// Workgroups and grids: every entry point has workgroups of 256.
// Element-wise kernels run one invocation per element over a 2-D grid, element i = gid.x +
// gid.y · 256 · nwg.x; row kernels (layer_norm, ln_back, causal_softmax, softmax_back,
// cross_entropy, decode_attention) one workgroup of 256 per row, row = wid.x + wid.y · nwg.x,
// their reductions trees over the 256 lanes in workgroup memory.
// Reductions are two-level and deterministic (fixed order, no atomics): column sums (bias,
// LayerNorm and position-embedding gradients) run colsum.wgsl; loss_partial and sumsq_partial have each
// workgroup sum a block (1024 rows; 4096 elements) lane-strided in fixed order and tree-reduce
// it, loss_final and clip_scale are one workgroup summing the partials likewise.
//
// Entry points:
//   fill            out[i] = value, i < count
//   embed           out[i][j] = tok_emb[tokens[i]][j] + pos_emb[pos0 + i % len][j]  (i < n, j < c)
//   layer_norm      row kernel: y = x̂·gamma + beta, xhat = x̂, rstd[row]; eps
//   ln_back         row kernel: dx += rstd(dx̂ − m1 − x̂·m2) with dx̂ = dy⊙gamma, prod = dy⊙x̂
//   gather_heads    i < count = rows·H·len·d: dst[r][h][t][e] = src[(r·len+t)·stride + offset + h·d + e]
//   scatter_heads   the inverse: dst[(r·len+t)·stride + offset + h·d + e] = src[r][h][t][e]
//   gather_qkv      gather_heads into dst, dst1, dst2 at offsets 0, C, 2C (C = heads·d, stride 3C)
//   scatter_qkv     scatter_heads of src, src1, src2 to offsets 0, C, 2C of dst
//   causal_softmax  row kernel over rows of len: ×scale, mask j > row % len, softmax
//   softmax_back    row kernel: dprob ← prob(dprob − Σ prob·dprob)·scale
//   gelu            post = GELU(pre) (tanh form; tanh from exp, not the builtin), i < count
//   gelu_back       post ← post·GELU′(pre), i < count
//   cross_entropy   row kernel over rows of 256 logits: row_loss[row] = lse − l[targets[row]];
//                   with grad & 1, logits ← (softmax − onehot)·loss_w[row]
//   loss_partial    workgroup w: parts[w] = Σ_{1024w ≤ i < min(1024(w+1), rows), loss_w[i] ≠ 0} row_loss[i]
//                   (grad ≠ 0 marks a single block, rows ≤ 1024: loss[0] = parts[0] / count
//                   directly, and loss_final is not run)
//   loss_final      one workgroup: loss[0] = Σ_{w < rows} parts[w] / count (rows = partials)
//   onehot          i < rows·256: out[i] = f32(tokens[i / 256] == i % 256)
//   sumsq_partial   one workgroup per block w = (start, count): norms[w] =
//                   Σ_{j < count} grad[start + j]² (lane-strided, 16 per lane, tree-reduced)
//   clip_scale      one workgroup: q = Σ_{k < count} norms[k]; scale = [clip/√q if clip > 0 and
//                   √q > clip else 1, q]
//   adamw           one workgroup per block (start, count, decayed): every element k of it,
//                   AdamW with grad[k]·scale[0] (the global clip factor), weight factor decay
//                   where decayed (else 1), bias corrections 1/c₁, 1/c₂, moments adam_m/v[k]
//   kv_store        i < rows·c: k_cache[(r·ctx + pos)·c + j] = qkv[r·3c + c + j],
//                   v_cache[…] = qkv[r·3c + 2c + j]
//   decode_attention row kernel per (row r, head h) = (row / heads, row % heads): the query in
//                   qkv[r·3c + h·d ..] against k_cache and v_cache at positions 0..=pos of row
//                   r's cache: attn_out[r·c + h·d + e]; scores in workgroup memory (ctx ≤ 1024)

struct ElemParams {
    count: u32,
    value: f32,
    pad0: u32,
    pad1: u32,
}

struct EmbedParams {
    n: u32,
    c: u32,
    len: u32,
    pos0: u32,
}

struct NormParams {
    rows: u32,
    c: u32,
    eps: f32,
    pad: u32,
}

struct HeadParams {
    count: u32,
    len: u32,
    heads: u32,
    d: u32,
    stride: u32,
    offset: u32,
    pad0: u32,
    pad1: u32,
}

struct SoftmaxParams {
    rows: u32,
    len: u32,
    scale: f32,
    pad: u32,
}

struct LossParams {
    rows: u32,
    grad: u32,
    count: u32,
    pad: u32,
}

struct SumsqParams {
    count: u32,
    clip: f32,
    pad0: u32,
    pad1: u32,
}

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

@group(0) @binding(0) var<uniform> elem_p: ElemParams;
@group(0) @binding(1) var<uniform> embed_p: EmbedParams;
@group(0) @binding(2) var<uniform> norm_p: NormParams;
@group(0) @binding(4) var<uniform> head_p: HeadParams;
@group(0) @binding(5) var<uniform> softmax_p: SoftmaxParams;
@group(0) @binding(6) var<uniform> loss_p: LossParams;
@group(0) @binding(7) var<uniform> sumsq_p: SumsqParams;
@group(0) @binding(8) var<uniform> adam_p: AdamParams;
@group(0) @binding(9) var<uniform> decode_p: DecodeParams;
@group(0) @binding(10) var<storage, read> tokens: array<u32>;
@group(0) @binding(11) var<storage, read> targets: array<u32>;
@group(0) @binding(12) var<storage, read_write> out: array<f32>;
@group(0) @binding(13) var<storage, read> tok_emb: array<f32>;
@group(0) @binding(14) var<storage, read> pos_emb: array<f32>;
@group(0) @binding(15) var<storage, read> x: array<f32>;
@group(0) @binding(16) var<storage, read> gamma: array<f32>;
@group(0) @binding(17) var<storage, read> beta: array<f32>;
@group(0) @binding(18) var<storage, read_write> y: array<f32>;
@group(0) @binding(19) var<storage, read_write> xhat: array<f32>;
@group(0) @binding(20) var<storage, read_write> rstd: array<f32>;
@group(0) @binding(21) var<storage, read> dy: array<f32>;
@group(0) @binding(22) var<storage, read_write> dx: array<f32>;
@group(0) @binding(23) var<storage, read_write> prod: array<f32>;
@group(0) @binding(26) var<storage, read> src: array<f32>;
@group(0) @binding(27) var<storage, read_write> dst: array<f32>;
@group(0) @binding(28) var<storage, read_write> scores: array<f32>;
@group(0) @binding(29) var<storage, read> prob: array<f32>;
@group(0) @binding(30) var<storage, read_write> dprob: array<f32>;
@group(0) @binding(31) var<storage, read> pre: array<f32>;
@group(0) @binding(32) var<storage, read_write> post: array<f32>;
@group(0) @binding(33) var<storage, read_write> logits: array<f32>;
@group(0) @binding(34) var<storage, read_write> row_loss: array<f32>;
@group(0) @binding(35) var<storage, read_write> loss: array<f32>;
@group(0) @binding(36) var<storage, read> grad: array<f32>;
@group(0) @binding(37) var<storage, read_write> norms: array<f32>;
@group(0) @binding(38) var<storage, read_write> param: array<f32>;
@group(0) @binding(39) var<storage, read_write> adam_m: array<f32>;
@group(0) @binding(40) var<storage, read_write> adam_v: array<f32>;
@group(0) @binding(41) var<storage, read> qkv: array<f32>;
@group(0) @binding(42) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding(43) var<storage, read_write> v_cache: array<f32>;
@group(0) @binding(44) var<storage, read_write> attn_out: array<f32>;
@group(0) @binding(45) var<storage, read> loss_w: array<f32>;
@group(0) @binding(46) var<storage, read_write> parts: array<f32>;
@group(0) @binding(47) var<storage, read_write> scale: array<f32>;
@group(0) @binding(48) var<storage, read> blocks: array<vec4<u32>>;
@group(0) @binding(51) var<storage, read_write> dst1: array<f32>;
@group(0) @binding(52) var<storage, read_write> dst2: array<f32>;
@group(0) @binding(53) var<storage, read> src1: array<f32>;
@group(0) @binding(54) var<storage, read> src2: array<f32>;

var<workgroup> red: array<f32, 256>;
var<workgroup> att_w: array<f32, 1024>;

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * (nwg.x * 256u);
}

fn row_of(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// Tree sum of red[0..256] (every lane calls it); returns the total.
fn tree_sum(lid: u32) -> f32 {
    workgroupBarrier();
    for (var w = 128u; w > 0u; w = w / 2u) {
        if (lid < w) {
            red[lid] = red[lid] + red[lid + w];
        }
        workgroupBarrier();
    }
    let s = red[0];
    workgroupBarrier();
    return s;
}

fn tree_max(lid: u32) -> f32 {
    workgroupBarrier();
    for (var w = 128u; w > 0u; w = w / 2u) {
        if (lid < w) {
            red[lid] = max(red[lid], red[lid + w]);
        }
        workgroupBarrier();
    }
    let s = red[0];
    workgroupBarrier();
    return s;
}

@compute @workgroup_size(256)
fn fill(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i < elem_p.count) {
        out[i] = elem_p.value;
    }
}

@compute @workgroup_size(256)
fn embed(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= embed_p.n * embed_p.c) {
        return;
    }
    let row = i / embed_p.c;
    let j = i % embed_p.c;
    let t = embed_p.pos0 + row % embed_p.len;
    out[i] = tok_emb[tokens[row] * embed_p.c + j] + pos_emb[t * embed_p.c + j];
}

@compute @workgroup_size(256)
fn layer_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let row = row_of(wid, nwg);
    if (row >= norm_p.rows) {
        return;
    }
    let c = norm_p.c;
    let base = row * c;
    var s = 0.0;
    for (var j = lid; j < c; j = j + 256u) {
        s = s + x[base + j];
    }
    red[lid] = s;
    let mean = tree_sum(lid) / f32(c);
    var q = 0.0;
    for (var j = lid; j < c; j = j + 256u) {
        let dv = x[base + j] - mean;
        q = q + dv * dv;
    }
    red[lid] = q;
    let r = 1.0 / sqrt(tree_sum(lid) / f32(c) + norm_p.eps);
    for (var j = lid; j < c; j = j + 256u) {
        let xh = (x[base + j] - mean) * r;
        xhat[base + j] = xh;
        y[base + j] = xh * gamma[j] + beta[j];
    }
    if (lid == 0u) {
        rstd[row] = r;
    }
}

@compute @workgroup_size(256)
fn ln_back(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let row = row_of(wid, nwg);
    if (row >= norm_p.rows) {
        return;
    }
    let c = norm_p.c;
    let base = row * c;
    var s1 = 0.0;
    var s2 = 0.0;
    for (var j = lid; j < c; j = j + 256u) {
        let dxh = dy[base + j] * gamma[j];
        s1 = s1 + dxh;
        s2 = s2 + dxh * xhat[base + j];
    }
    red[lid] = s1;
    let m1 = tree_sum(lid) / f32(c);
    red[lid] = s2;
    let m2 = tree_sum(lid) / f32(c);
    let r = rstd[row];
    for (var j = lid; j < c; j = j + 256u) {
        let g = dy[base + j];
        let xh = xhat[base + j];
        let dxh = g * gamma[j];
        dx[base + j] = dx[base + j] + r * (dxh - m1 - xh * m2);
        prod[base + j] = g * xh;
    }
}

// (r, h, t, e) of element i of a [rows][H][len][d] array, as the source/destination index in the
// [rows·len][stride] array.
fn head_index(i: u32) -> u32 {
    let d = head_p.d;
    let e = i % d;
    let t = (i / d) % head_p.len;
    let h = (i / (d * head_p.len)) % head_p.heads;
    let r = i / (d * head_p.len * head_p.heads);
    return (r * head_p.len + t) * head_p.stride + head_p.offset + h * d + e;
}

@compute @workgroup_size(256)
fn gather_heads(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i < head_p.count) {
        dst[i] = src[head_index(i)];
    }
}

@compute @workgroup_size(256)
fn scatter_heads(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i < head_p.count) {
        dst[head_index(i)] = src[i];
    }
}

@compute @workgroup_size(256)
fn gather_qkv(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i < head_p.count) {
        let at = head_index(i);
        let c = head_p.heads * head_p.d;
        dst[i] = src[at];
        dst1[i] = src[at + c];
        dst2[i] = src[at + 2u * c];
    }
}

@compute @workgroup_size(256)
fn scatter_qkv(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i < head_p.count) {
        let at = head_index(i);
        let c = head_p.heads * head_p.d;
        dst[at] = src[i];
        dst[at + c] = src1[i];
        dst[at + 2u * c] = src2[i];
    }
}

@compute @workgroup_size(256)
fn causal_softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let row = row_of(wid, nwg);
    if (row >= softmax_p.rows) {
        return;
    }
    let len = softmax_p.len;
    let last = row % len;
    let base = row * len;
    var m = -3.0e38;
    for (var j = lid; j <= last; j = j + 256u) {
        m = max(m, scores[base + j] * softmax_p.scale);
    }
    red[lid] = m;
    let mx = tree_max(lid);
    var s = 0.0;
    for (var j = lid; j <= last; j = j + 256u) {
        let e = exp(scores[base + j] * softmax_p.scale - mx);
        scores[base + j] = e;
        s = s + e;
    }
    red[lid] = s;
    let z = tree_sum(lid);
    for (var j = lid; j < len; j = j + 256u) {
        if (j <= last) {
            scores[base + j] = scores[base + j] / z;
        } else {
            scores[base + j] = 0.0;
        }
    }
}

@compute @workgroup_size(256)
fn softmax_back(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let row = row_of(wid, nwg);
    if (row >= softmax_p.rows) {
        return;
    }
    let len = softmax_p.len;
    let base = row * len;
    var s = 0.0;
    for (var j = lid; j < len; j = j + 256u) {
        s = s + prob[base + j] * dprob[base + j];
    }
    red[lid] = s;
    let tot = tree_sum(lid);
    for (var j = lid; j < len; j = j + 256u) {
        dprob[base + j] = prob[base + j] * (dprob[base + j] - tot) * softmax_p.scale;
    }
}

// tanh from one exponential, sign-symmetric: e^{−2|x|} ∈ (0, 1] never overflows (the builtin
// tanh may be lowered to a fast approximation on some drivers).
fn tanh_exp(x: f32) -> f32 {
    let e = exp(-2.0 * abs(x));
    let t = (1.0 - e) / (1.0 + e);
    return select(t, -t, x < 0.0);
}

const GELU_A: f32 = 0.044715;
const GELU_S: f32 = 0.7978845608028654;

@compute @workgroup_size(256)
fn gelu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= elem_p.count) {
        return;
    }
    let v = pre[i];
    post[i] = 0.5 * v * (1.0 + tanh_exp(GELU_S * (v + GELU_A * v * v * v)));
}

@compute @workgroup_size(256)
fn gelu_back(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= elem_p.count) {
        return;
    }
    let v = pre[i];
    let t = tanh_exp(GELU_S * (v + GELU_A * v * v * v));
    let dg = 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * GELU_S * (1.0 + 3.0 * GELU_A * v * v);
    post[i] = post[i] * dg;
}

@compute @workgroup_size(256)
fn cross_entropy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let row = row_of(wid, nwg);
    if (row >= loss_p.rows) {
        return;
    }
    let i = row * 256u + lid;
    let l = logits[i];
    red[lid] = l;
    let m = tree_max(lid);
    let e = exp(l - m);
    red[lid] = e;
    let z = tree_sum(lid);
    let target_class = targets[row];
    if (lid == target_class) {
        row_loss[row] = log(z) + m - l;
    }
    if ((loss_p.grad & 1u) != 0u) {
        var hot = 0.0;
        if (lid == target_class) {
            hot = 1.0;
        }
        logits[i] = (e / z - hot) * loss_w[row];
    }
}

@compute @workgroup_size(256)
fn loss_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let w = row_of(wid, nwg);
    let base = w * 1024u;
    var s = 0.0;
    for (var q = 0u; q < 4u; q = q + 1u) {
        let i = base + q * 256u + lid;
        if (i < loss_p.rows && loss_w[i] != 0.0) {
            s = s + row_loss[i];
        }
    }
    red[lid] = s;
    let tot = tree_sum(lid);
    if (lid == 0u) {
        if (loss_p.grad != 0u) {
            // One block (rows ≤ 1024): the total is final.
            loss[0] = tot / f32(loss_p.count);
        } else {
            parts[w] = tot;
        }
    }
}

@compute @workgroup_size(256)
fn loss_final(@builtin(local_invocation_index) lid: u32) {
    var s = 0.0;
    for (var k = lid; k < loss_p.rows; k = k + 256u) {
        s = s + parts[k];
    }
    red[lid] = s;
    let tot = tree_sum(lid);
    if (lid == 0u) {
        loss[0] = tot / f32(loss_p.count);
    }
}

@compute @workgroup_size(256)
fn onehot(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= loss_p.rows * 256u) {
        return;
    }
    out[i] = select(0.0, 1.0, tokens[i / 256u] == i % 256u);
}

@compute @workgroup_size(256)
fn sumsq_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let w = row_of(wid, nwg);
    let nb = sumsq_p.count;
    // Block w of the flat layout (uniform across the workgroup): grad[start .. start + count).
    var blk = vec4<u32>(0u, 0u, 0u, 0u);
    if (w < nb) {
        blk = blocks[w];
    }
    var s = 0.0;
    for (var q = 0u; q < 16u; q = q + 1u) {
        let j = q * 256u + lid;
        if (j < blk.y) {
            let v = grad[blk.x + j];
            s = s + v * v;
        }
    }
    red[lid] = s;
    let tot = tree_sum(lid);
    if (lid == 0u && w < nb) {
        norms[w] = tot;
    }
}

@compute @workgroup_size(256)
fn clip_scale(@builtin(local_invocation_index) lid: u32) {
    var s = 0.0;
    for (var k = lid; k < sumsq_p.count; k = k + 256u) {
        s = s + norms[k];
    }
    red[lid] = s;
    let tot = tree_sum(lid);
    if (lid == 0u) {
        var f = 1.0;
        let norm = sqrt(tot);
        if (sumsq_p.clip > 0.0 && norm > sumsq_p.clip) {
            f = sumsq_p.clip / norm;
        }
        scale[0] = f;
        scale[1] = tot;
    }
}

@compute @workgroup_size(256)
fn adamw(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let a = adam_p;
    let w = row_of(wid, nwg);
    if (w >= a.blocks) {
        return;
    }
    let blk = blocks[w];
    let decay = select(1.0, a.decay, blk.z != 0u);
    let f = scale[0];
    for (var q = 0u; q < 16u; q = q + 1u) {
        let j = q * 256u + lid;
        if (j < blk.y) {
            let k = blk.x + j;
            let g = grad[k] * f;
            let m = a.beta1 * adam_m[k] + (1.0 - a.beta1) * g;
            let v = a.beta2 * adam_v[k] + (1.0 - a.beta2) * g * g;
            adam_m[k] = m;
            adam_v[k] = v;
            let mh = m * a.inv_c1;
            let vh = v * a.inv_c2;
            param[k] = param[k] * decay - a.lr * mh / (sqrt(vh) + a.eps);
        }
    }
}

@compute @workgroup_size(256)
fn kv_store(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    let c = decode_p.c;
    if (i >= decode_p.rows * c) {
        return;
    }
    let r = i / c;
    let j = i % c;
    let at = (r * decode_p.ctx + decode_p.pos) * c + j;
    k_cache[at] = qkv[r * 3u * c + c + j];
    v_cache[at] = qkv[r * 3u * c + 2u * c + j];
}

@compute @workgroup_size(256)
fn decode_attention(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let row = row_of(wid, nwg);
    if (row >= decode_p.rows * decode_p.heads) {
        return;
    }
    let r = row / decode_p.heads;
    let h = row % decode_p.heads;
    let c = decode_p.c;
    let d = decode_p.d;
    let pos = decode_p.pos;
    let q0 = r * 3u * c + h * d;
    let cache0 = r * decode_p.ctx * c + h * d;
    var m = -3.0e38;
    for (var j = lid; j <= pos; j = j + 256u) {
        var s = 0.0;
        for (var e = 0u; e < d; e = e + 1u) {
            s = s + qkv[q0 + e] * k_cache[cache0 + j * c + e];
        }
        s = s * decode_p.scale;
        att_w[j] = s;
        m = max(m, s);
    }
    red[lid] = m;
    let mx = tree_max(lid);
    var z = 0.0;
    for (var j = lid; j <= pos; j = j + 256u) {
        let e = exp(att_w[j] - mx);
        att_w[j] = e;
        z = z + e;
    }
    red[lid] = z;
    let tot = tree_sum(lid);
    for (var e = lid; e < d; e = e + 256u) {
        var acc = 0.0;
        for (var j = 0u; j <= pos; j = j + 1u) {
            acc = acc + att_w[j] * v_cache[cache0 + j * c + e];
        }
        attn_out[r * c + h * d + e] = acc / tot;
    }
}
