// vae.wgsl — the VAE's element-wise and reduction kernels (the layers' products run through
// matmul.wgsl / matmul_vec4.wgsl with their bias and ReLU epilogues). See src/models/vae/cpu.rs for the
// maths; every kernel here is the f32 form of one step there.
// Layout: row-major f32 arrays; [B][D] is B images of D values (weights, in the matmul calls,
// are [in][out]; see src/models/vae/mod.rs).
//
// Bindings (group 0); each entry point uses the subset named beside it, bound by number:
//   0: uniform  VaeParams { b, d, z, flags, count, inv_b, beta, pad }        (all but adam, reparam_noise)
//   1: storage, read_write  logits: array<f32> [B][D] (bce_rows: becomes dlogits when flags & 1)
//   2: storage, read        x: array<f32> [B][D]
//   3: storage, read_write  bce_row: array<f32> [B]
//   4: storage, read        mu: array<f32> [B][Z]
//   5: storage, read        lv: array<f32> [B][Z]      (log σ²)
//   6: storage, read        eps: array<f32> [B][Z]     (Philox normals, rng.wgsl fill_normal_f32)
//   7: storage, read        dz: array<f32> [B][Z]
//   8: storage, read_write  dmu: array<f32> [B][Z]
//   9: storage, read_write  dlv: array<f32> [B][Z]
//  10: storage, read_write  kl_row: array<f32> [B]
//  11: storage, read_write  z: array<f32> [B][Z]
//  12: storage, read        act: array<f32> (relu_grad: the layer's ReLU output)
//  13: storage, read_write  grad: array<f32> (relu_grad: zeroed where act <= 0)
//  16: storage, read_write  loss: array<f32> [3] (loss, bce, kl: means over the batch)
//  22: storage, read_write  parts: array<f32> partial sums: loss_partial writes [blocks][2] (bce, kl),
//                           loss_final reads them
//  17: uniform  AdamParams { lr, beta1, beta2, eps, wd, c1, c2, blocks }
//  18: storage, read_write  p: array<f32>     19: storage, read g: array<f32>
//  20: storage, read_write  m: array<f32>     21: storage, read_write v: array<f32>
//                           (the flat parameters, gradients and moments of every tensor, one
//                           layout: src/ops/memory.rs FlatLayout)
//  25: uniform  NoiseParams { key, stream, count }               (reparam_noise)
//  26: storage, read_write  eps_out: array<f32> [B][Z]  (reparam_noise writes the normals it draws)
//  23: storage, read        blocks: array<vec4<u32>> the layout's blocks (start, count ≤ 4096,
//                           flag, 0), tensor by tensor
//
// Entry points and shapes (1-D grids of x <= 65535 workgroups; (x, y) grids index
// i = gid.x + gid.y * 256 * nwg.x for the element-wise ones):
//   bce_rows  workgroup 256, one workgroup per image (grid (B, 1)): BCE of the row, tree-reduced
//             in workgroup memory into bce_row[b]; with flags & 1 also dlogits = (σ(l) − x)/B.
//   reparam   workgroup 256, one invocation per latent: z = mu + exp(lv/2)·eps.
//   reparam_noise workgroup 64, one invocation per Philox block g of four latents: draws
//             normals 4g .. 4g + 4 of (key, stream) exactly as rng.wgsl's fill_normal_f32 (from
//             value 0), writes them to eps_out and z = mu + exp(lv/2)·eps (i < count): the
//             noise fill and reparam in one dispatch.
//   latent    workgroup 64, one invocation per image: kl_row[b]; with flags & 1 the gradients
//             dmu = dz + β·mu/B and dlv = dz·eps·exp(lv/2)/2 + β·(exp(lv) − 1)/(2B).
//   relu_grad workgroup 256, one invocation per element: grad = 0 where act <= 0.
//   (column sums — the bias gradients — run colsum.wgsl.)
//   loss_partial workgroup 256, one workgroup per block of 1024 images: lane-strided sums of
//             bce_row and kl_row in fixed order, tree-reduced into parts[2w], parts[2w + 1];
//             with flags & 2 (a single block, B ≤ 1024) it writes loss[] as loss_final does,
//             and loss_final is not run.
//   loss_final workgroup 256, one workgroup: the z blocks' partials summed lane-strided and
//             tree-reduced; loss[1] = Σ bce / B, loss[2] = Σ kl / B, loss[0] = loss[1] + β·loss[2].
// Every reduction has a fixed order (no atomics): the same bits every run.
//   adam      workgroup 256, one workgroup per block (start, count) of the flat layout, 16
//             elements per lane: PyTorch's Adam with L2 decay on p/g/m/v[start + j], j < count.

//!include common/philox.wgsl

struct NoiseParams {
    key: vec2<u32>,
    stream: vec2<u32>,
    count: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

struct VaeParams {
    b: u32,
    d: u32,
    z: u32,
    flags: u32,
    count: u32,
    inv_b: f32,
    beta: f32,
    pad: u32,
}

struct AdamParams {
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    wd: f32,
    c1: f32,
    c2: f32,
    blocks: u32,
}

@group(0) @binding(0) var<uniform> params: VaeParams;
@group(0) @binding(1) var<storage, read_write> logits: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> bce_row: array<f32>;
@group(0) @binding(4) var<storage, read> mu: array<f32>;
@group(0) @binding(5) var<storage, read> lv: array<f32>;
@group(0) @binding(6) var<storage, read> eps: array<f32>;
@group(0) @binding(7) var<storage, read> dz: array<f32>;
@group(0) @binding(8) var<storage, read_write> dmu: array<f32>;
@group(0) @binding(9) var<storage, read_write> dlv: array<f32>;
@group(0) @binding(10) var<storage, read_write> kl_row: array<f32>;
@group(0) @binding(11) var<storage, read_write> z: array<f32>;
@group(0) @binding(12) var<storage, read> act: array<f32>;
@group(0) @binding(13) var<storage, read_write> grad: array<f32>;
@group(0) @binding(16) var<storage, read_write> loss: array<f32>;
@group(0) @binding(17) var<uniform> adam_params: AdamParams;
@group(0) @binding(18) var<storage, read_write> p: array<f32>;
@group(0) @binding(19) var<storage, read> g: array<f32>;
@group(0) @binding(20) var<storage, read_write> m: array<f32>;
@group(0) @binding(21) var<storage, read_write> v: array<f32>;
@group(0) @binding(22) var<storage, read_write> parts: array<f32>;
@group(0) @binding(23) var<storage, read> blocks: array<vec4<u32>>;
@group(0) @binding(25) var<uniform> noise_p: NoiseParams;
@group(0) @binding(26) var<storage, read_write> eps_out: array<f32>;

var<workgroup> partial: array<f32, 256>;
var<workgroup> partial2: array<f32, 256>;

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * (nwg.x * 256u);
}

@compute @workgroup_size(256)
fn bce_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.x;
    let d = params.d;
    var acc = 0.0;
    for (var j = lid; j < d; j = j + 256u) {
        let i = row * d + j;
        let l = logits[i];
        let xv = x[i];
        let e = exp(-abs(l));
        acc = acc + (max(l, 0.0) - xv * l + log(1.0 + e));
        if ((params.flags & 1u) != 0u) {
            var s = 1.0 / (1.0 + e);
            if (l < 0.0) {
                s = e / (1.0 + e);
            }
            logits[i] = (s - xv) * params.inv_b;
        }
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var w = 128u; w > 0u; w = w / 2u) {
        if (lid < w) {
            partial[lid] = partial[lid] + partial[lid + w];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        bce_row[row] = partial[0];
    }
}

@compute @workgroup_size(256)
fn reparam(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= params.b * params.z) {
        return;
    }
    z[i] = mu[i] + exp(0.5 * lv[i]) * eps[i];
}

@compute @workgroup_size(64)
fn reparam_noise(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = gid.x + gid.y * (nwg.x * 64u);
    if (4u * g >= noise_p.count) {
        return;
    }
    let e = philox_normals(philox4x32_10(philox_counter(vec2<u32>(g, 0u), noise_p.stream), noise_p.key));
    for (var l = 0u; l < 4u; l = l + 1u) {
        let i = 4u * g + l;
        if (i < noise_p.count) {
            eps_out[i] = e[l];
            z[i] = mu[i] + exp(0.5 * lv[i]) * e[l];
        }
    }
}

@compute @workgroup_size(64)
fn latent(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.x;
    if (row >= params.b) {
        return;
    }
    var kl = 0.0;
    for (var j = 0u; j < params.z; j = j + 1u) {
        let i = row * params.z + j;
        let m0 = mu[i];
        let l = lv[i];
        let el = exp(l);
        kl = kl - 0.5 * (1.0 + l - m0 * m0 - el);
        if ((params.flags & 1u) != 0u) {
            dmu[i] = dz[i] + params.beta * m0 * params.inv_b;
            dlv[i] = dz[i] * eps[i] * 0.5 * exp(0.5 * l)
                + params.beta * 0.5 * (el - 1.0) * params.inv_b;
        }
    }
    kl_row[row] = kl;
}

@compute @workgroup_size(256)
fn relu_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= params.count) {
        return;
    }
    if (act[i] <= 0.0) {
        grad[i] = 0.0;
    }
}

// Tree sums of partial[0..256] and partial2[0..256] (every lane calls it); the totals in
// partial[0], partial2[0].
fn tree_sum2(lid: u32) {
    workgroupBarrier();
    for (var w = 128u; w > 0u; w = w / 2u) {
        if (lid < w) {
            partial[lid] = partial[lid] + partial[lid + w];
            partial2[lid] = partial2[lid] + partial2[lid + w];
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(256)
fn loss_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let base = wid.x * 1024u;
    var b = 0.0;
    var k = 0.0;
    for (var q = 0u; q < 4u; q = q + 1u) {
        let r = base + q * 256u + lid;
        if (r < params.b) {
            b = b + bce_row[r];
            k = k + kl_row[r];
        }
    }
    partial[lid] = b;
    partial2[lid] = k;
    tree_sum2(lid);
    if (lid == 0u) {
        if ((params.flags & 2u) != 0u) {
            // One block (B ≤ 1024): the totals are final.
            loss[1] = partial[0] * params.inv_b;
            loss[2] = partial2[0] * params.inv_b;
            loss[0] = loss[1] + params.beta * loss[2];
        } else {
            parts[2u * wid.x] = partial[0];
            parts[2u * wid.x + 1u] = partial2[0];
        }
    }
}

@compute @workgroup_size(256)
fn loss_final(@builtin(local_invocation_index) lid: u32) {
    var b = 0.0;
    var k = 0.0;
    for (var w = lid; w < params.z; w = w + 256u) {
        b = b + parts[2u * w];
        k = k + parts[2u * w + 1u];
    }
    partial[lid] = b;
    partial2[lid] = k;
    tree_sum2(lid);
    if (lid == 0u) {
        loss[1] = partial[0] * params.inv_b;
        loss[2] = partial2[0] * params.inv_b;
        loss[0] = loss[1] + params.beta * loss[2];
    }
}

@compute @workgroup_size(256)
fn adam(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let a = adam_params;
    let w = wid.x + wid.y * nwg.x;
    if (w >= a.blocks) {
        return;
    }
    let blk = blocks[w];
    for (var q = 0u; q < 16u; q = q + 1u) {
        let j = q * 256u + lid;
        if (j < blk.y) {
            let k = blk.x + j;
            let pv = p[k];
            let gi = g[k] + a.wd * pv;
            let mk = a.beta1 * m[k] + (1.0 - a.beta1) * gi;
            let vk = a.beta2 * v[k] + (1.0 - a.beta2) * gi * gi;
            m[k] = mk;
            v[k] = vk;
            let mh = mk / a.c1;
            let vh = vk / a.c2;
            p[k] = pv - a.lr * mh / (sqrt(vh) + a.eps);
        }
    }
}
