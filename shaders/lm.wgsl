// lm.wgsl — the language model's kernels besides its matrix products (those run through
// matmul.wgsl / matmul_vec4.wgsl, batched over heads for attention). Each entry point is the f32
// form of one step of src/models/lm/cpu.rs; src/models/lm/device.rs calls them in cpu.rs's order.
// Layout: row-major f32 arrays. Activations [N][C] (N = rows·len positions), per-head arrays
// [rows][H][len][d], attention rows [R][len], logits [N][256], KV caches [rows][ctx][C].
//
// Bindings (group 0); each entry point uses the subset named in its comment:
//   0: uniform  LmParams { n, c, len, heads, d, pos0, stride, flags, x0..x7 }
//   1..6: storage, read_write  b1 .. b6: array<f32>   (roles per entry point below)
//   7: storage, read  tok: array<u32>                 (tokens or targets)
//
// Grids: element-wise kernels use workgroups of 256 over a 2-D grid, element
// i = gid.x + gid.y · 256 · nwg.x; row kernels use one workgroup of 256 per row,
// row = wid.x + wid.y · nwg.x; reductions in workgroup memory are trees over 256 lanes.
//
// Entry points (b1..b6 roles; n, c, … from LmParams):
//   fill            b4[i] = x0, i < n
//   embed           b4[i][j] = b1[tok[i]][j] + b2[pos0 + i % len][j]      (i < n, j < c)
//   layer_norm      row kernel: b1 x → b4 y = x̂·b2 + b3, b5 x̂, b6[row] rstd; x0 = ε
//   ln_back         row kernel: dy b1, x̂ b2, rstd b3, γ b4: b5 dx += rstd(dx̂ − m1 − x̂·m2),
//                   b6 = dy⊙x̂
//   col_sum         one lane per column j < c: b4[j] = Σ_{r<n} b1[r][j] in order
//   gather_heads    i over n = rows·H·len·d: b4[r][h][t][e] = b1[(r·len+t)·stride + pos0 + h·d + e]
//   scatter_heads   the inverse: b4[(r·len+t)·stride + pos0 + h·d + e] = b1[r][h][t][e]
//   causal_softmax  row kernel over n rows of len in b4: ×x0, mask j > row % len, softmax
//   softmax_back    row kernel: P b1, dP b4 → dS = P(dP − Σ P·dP)·x0 in b4
//   gelu            b4 = GELU(b1) (tanh form), i < n
//   gelu_back       b4 ← b4·GELU′(b1), i < n
//   cross_entropy   row kernel over n rows of 256 logits b4, targets tok: b5[row] = lse − l[y];
//                   with flags & 1, b4 ← (softmax − onehot)·x0
//   mean            one lane: b6[0] = Σ_{i<n} b5[i] / n in order
//   onehot          i over n·256: b4[i] = f32(tok[i / 256] == i % 256)
//   pos_grad        i over ctx·c (ctx = stride): b4[t][j] = Σ_{r<n} b1[(r·len + t)·c + j] for t < len, else 0
//   sumsq           one workgroup: b6[pos0] = Σ_{i<n} b1[i]²
//   adamw           i < n: p b1, g b2, m b3, v b5, norms b6 (heads = tensors): AdamW with decay
//                   factor x4, lr x0, β₁ x1, β₂ x2, ε x3, 1/c₁ x5, 1/c₂ x6, clip x7 (0: none)
//   kv_store        i over n·c (n = rows): b4[(r·len + pos0)·c + j] = b1[r·3c + c + j],
//                   b5[…] = b1[r·3c + 2c + j]  (len = ctx)
//   decode_attention row kernel per (row r, head h) = (row / heads, row % heads): the query in
//                   b1[r·3c + h·d ..] against keys b4 and values b5 at positions 0..=pos0 of row
//                   r's cache (len = ctx): b6[r·c + h·d + e]; scores in workgroup memory (ctx ≤ 1024)

struct LmParams {
    n: u32,
    c: u32,
    len: u32,
    heads: u32,
    d: u32,
    pos0: u32,
    stride: u32,
    flags: u32,
    x0: f32,
    x1: f32,
    x2: f32,
    x3: f32,
    x4: f32,
    x5: f32,
    x6: f32,
    x7: f32,
}

@group(0) @binding(0) var<uniform> P: LmParams;
@group(0) @binding(1) var<storage, read_write> b1: array<f32>;
@group(0) @binding(2) var<storage, read_write> b2: array<f32>;
@group(0) @binding(3) var<storage, read_write> b3: array<f32>;
@group(0) @binding(4) var<storage, read_write> b4: array<f32>;
@group(0) @binding(5) var<storage, read_write> b5: array<f32>;
@group(0) @binding(6) var<storage, read_write> b6: array<f32>;
@group(0) @binding(7) var<storage, read> tok: array<u32>;

var<workgroup> red: array<f32, 256>;
var<workgroup> scores: array<f32, 1024>;

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
    if (i < P.n) {
        b4[i] = P.x0;
    }
}

@compute @workgroup_size(256)
fn embed(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= P.n * P.c) {
        return;
    }
    let row = i / P.c;
    let j = i % P.c;
    let t = P.pos0 + row % P.len;
    b4[i] = b1[tok[row] * P.c + j] + b2[t * P.c + j];
}

@compute @workgroup_size(256)
fn layer_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let row = row_of(wid, nwg);
    if (row >= P.n) {
        return;
    }
    let c = P.c;
    let base = row * c;
    var s = 0.0;
    for (var j = lid; j < c; j = j + 256u) {
        s = s + b1[base + j];
    }
    red[lid] = s;
    let mean = tree_sum(lid) / f32(c);
    var q = 0.0;
    for (var j = lid; j < c; j = j + 256u) {
        let dv = b1[base + j] - mean;
        q = q + dv * dv;
    }
    red[lid] = q;
    let r = 1.0 / sqrt(tree_sum(lid) / f32(c) + P.x0);
    for (var j = lid; j < c; j = j + 256u) {
        let xh = (b1[base + j] - mean) * r;
        b5[base + j] = xh;
        b4[base + j] = xh * b2[j] + b3[j];
    }
    if (lid == 0u) {
        b6[row] = r;
    }
}

@compute @workgroup_size(256)
fn ln_back(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let row = row_of(wid, nwg);
    if (row >= P.n) {
        return;
    }
    let c = P.c;
    let base = row * c;
    var s1 = 0.0;
    var s2 = 0.0;
    for (var j = lid; j < c; j = j + 256u) {
        let dxh = b1[base + j] * b4[j];
        s1 = s1 + dxh;
        s2 = s2 + dxh * b2[base + j];
    }
    red[lid] = s1;
    let m1 = tree_sum(lid) / f32(c);
    red[lid] = s2;
    let m2 = tree_sum(lid) / f32(c);
    let r = b3[row];
    for (var j = lid; j < c; j = j + 256u) {
        let dy = b1[base + j];
        let xh = b2[base + j];
        let dxh = dy * b4[j];
        b5[base + j] = b5[base + j] + r * (dxh - m1 - xh * m2);
        b6[base + j] = dy * xh;
    }
}

@compute @workgroup_size(256)
fn col_sum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = flat(gid, nwg);
    if (j >= P.c) {
        return;
    }
    var s = 0.0;
    for (var r = 0u; r < P.n; r = r + 1u) {
        s = s + b1[r * P.c + j];
    }
    b4[j] = s;
}

// (r, h, t, e) of element i of a [rows][H][len][d] array, as the source/destination index in the
// [rows·len][stride] array.
fn head_index(i: u32) -> u32 {
    let d = P.d;
    let e = i % d;
    let t = (i / d) % P.len;
    let h = (i / (d * P.len)) % P.heads;
    let r = i / (d * P.len * P.heads);
    return (r * P.len + t) * P.stride + P.pos0 + h * d + e;
}

@compute @workgroup_size(256)
fn gather_heads(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i < P.n) {
        b4[i] = b1[head_index(i)];
    }
}

@compute @workgroup_size(256)
fn scatter_heads(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i < P.n) {
        b4[head_index(i)] = b1[i];
    }
}

@compute @workgroup_size(256)
fn causal_softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let row = row_of(wid, nwg);
    if (row >= P.n) {
        return;
    }
    let len = P.len;
    let last = row % len;
    let base = row * len;
    var m = -3.0e38;
    for (var j = lid; j <= last; j = j + 256u) {
        m = max(m, b4[base + j] * P.x0);
    }
    red[lid] = m;
    let mx = tree_max(lid);
    var s = 0.0;
    for (var j = lid; j <= last; j = j + 256u) {
        let e = exp(b4[base + j] * P.x0 - mx);
        b4[base + j] = e;
        s = s + e;
    }
    red[lid] = s;
    let z = tree_sum(lid);
    for (var j = lid; j < len; j = j + 256u) {
        if (j <= last) {
            b4[base + j] = b4[base + j] / z;
        } else {
            b4[base + j] = 0.0;
        }
    }
}

@compute @workgroup_size(256)
fn softmax_back(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let row = row_of(wid, nwg);
    if (row >= P.n) {
        return;
    }
    let len = P.len;
    let base = row * len;
    var s = 0.0;
    for (var j = lid; j < len; j = j + 256u) {
        s = s + b1[base + j] * b4[base + j];
    }
    red[lid] = s;
    let tot = tree_sum(lid);
    for (var j = lid; j < len; j = j + 256u) {
        b4[base + j] = b1[base + j] * (b4[base + j] - tot) * P.x0;
    }
}

const GELU_A: f32 = 0.044715;
const GELU_S: f32 = 0.7978845608028654;

@compute @workgroup_size(256)
fn gelu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= P.n) {
        return;
    }
    let x = b1[i];
    b4[i] = 0.5 * x * (1.0 + tanh(GELU_S * (x + GELU_A * x * x * x)));
}

@compute @workgroup_size(256)
fn gelu_back(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= P.n) {
        return;
    }
    let x = b1[i];
    let t = tanh(GELU_S * (x + GELU_A * x * x * x));
    let dg = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_S * (1.0 + 3.0 * GELU_A * x * x);
    b4[i] = b4[i] * dg;
}

@compute @workgroup_size(256)
fn cross_entropy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let row = row_of(wid, nwg);
    if (row >= P.n) {
        return;
    }
    let i = row * 256u + lid;
    let l = b4[i];
    red[lid] = l;
    let m = tree_max(lid);
    let e = exp(l - m);
    red[lid] = e;
    let z = tree_sum(lid);
    let y = tok[row];
    if (lid == y) {
        b5[row] = log(z) + m - l;
    }
    if ((P.flags & 1u) != 0u) {
        var onehot = 0.0;
        if (lid == y) {
            onehot = 1.0;
        }
        b4[i] = (e / z - onehot) * P.x0;
    }
}

@compute @workgroup_size(1)
fn mean() {
    var s = 0.0;
    for (var i = 0u; i < P.n; i = i + 1u) {
        s = s + b5[i];
    }
    b6[0] = s / f32(P.n);
}

@compute @workgroup_size(256)
fn onehot(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= P.n * 256u) {
        return;
    }
    b4[i] = select(0.0, 1.0, tok[i / 256u] == i % 256u);
}

@compute @workgroup_size(256)
fn pos_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= P.stride * P.c) {
        return;
    }
    let t = i / P.c;
    let j = i % P.c;
    var s = 0.0;
    if (t < P.len) {
        for (var r = 0u; r < P.n; r = r + 1u) {
            s = s + b1[(r * P.len + t) * P.c + j];
        }
    }
    b4[i] = s;
}

@compute @workgroup_size(256)
fn sumsq(@builtin(local_invocation_index) lid: u32) {
    var s = 0.0;
    for (var i = lid; i < P.n; i = i + 256u) {
        s = s + b1[i] * b1[i];
    }
    red[lid] = s;
    let tot = tree_sum(lid);
    if (lid == 0u) {
        b6[P.pos0] = tot;
    }
}

@compute @workgroup_size(256)
fn adamw(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= P.n) {
        return;
    }
    var scale = 1.0;
    if (P.x7 > 0.0) {
        var tot = 0.0;
        for (var k = 0u; k < P.heads; k = k + 1u) {
            tot = tot + b6[k];
        }
        let norm = sqrt(tot);
        if (norm > P.x7) {
            scale = P.x7 / norm;
        }
    }
    let g = b2[i] * scale;
    b3[i] = P.x1 * b3[i] + (1.0 - P.x1) * g;
    b5[i] = P.x2 * b5[i] + (1.0 - P.x2) * g * g;
    let p = b1[i] * P.x4;
    let mh = b3[i] * P.x5;
    let vh = b5[i] * P.x6;
    b1[i] = p - P.x0 * mh / (sqrt(vh) + P.x3);
}

@compute @workgroup_size(256)
fn kv_store(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= P.n * P.c) {
        return;
    }
    let r = i / P.c;
    let j = i % P.c;
    let dst = (r * P.len + P.pos0) * P.c + j;
    b4[dst] = b1[r * 3u * P.c + P.c + j];
    b5[dst] = b1[r * 3u * P.c + 2u * P.c + j];
}

@compute @workgroup_size(256)
fn decode_attention(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let row = row_of(wid, nwg);
    if (row >= P.n * P.heads) {
        return;
    }
    let r = row / P.heads;
    let h = row % P.heads;
    let c = P.c;
    let d = P.d;
    let q0 = r * 3u * c + h * d;
    let cache0 = r * P.len * c + h * d;
    var m = -3.0e38;
    for (var j = lid; j <= P.pos0; j = j + 256u) {
        var s = 0.0;
        for (var e = 0u; e < d; e = e + 1u) {
            s = s + b1[q0 + e] * b4[cache0 + j * c + e];
        }
        s = s * P.x0;
        scores[j] = s;
        m = max(m, s);
    }
    red[lid] = m;
    let mx = tree_max(lid);
    var z = 0.0;
    for (var j = lid; j <= P.pos0; j = j + 256u) {
        let e = exp(scores[j] - mx);
        scores[j] = e;
        z = z + e;
    }
    red[lid] = z;
    let tot = tree_sum(lid);
    for (var e = lid; e < d; e = e + 256u) {
        var acc = 0.0;
        for (var j = 0u; j <= P.pos0; j = j + 1u) {
            acc = acc + scores[j] * b5[cache0 + j * c + e];
        }
        b6[r * c + h * d + e] = acc / tot;
    }
}
