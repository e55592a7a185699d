// sampling.wgsl — batched sampling from R Gaussian mixtures of K components in D dimensions (a
// Gaussian is K = 1). Follows the draw layout of src/ops/sampling.rs exactly.
//
// Bindings (group 0):
//   0: uniform  MixParams (below)
//   1: storage, read   thresholds: array<u32>  [R][K]   component thresholds c_k (k < K-1)
//   2: storage, read   means:      array<f32>  [R][K][D]
//   3: storage, read   factor:     array<f32>  [R][K][D][D] lower Cholesky (full != 0) or [R][K][D] std devs
//   4: storage, read_write out:    array<f32>  [n][D]  samples of this chunk
//   5: storage, read_write comps:  array<u32>  [n]     component of each sample
// Layout: local sample s (0 <= s < n) is sample i = chunk_start + s of the call, replicate
//   i / m; its Philox blocks start at first_block + s * sb (64-bit). Word 0 of the first block,
//   shifted right by 1, picks the component by counting thresholds <= it; the next ceil(D/4)
//   blocks give D normals z; x_d = mu_d + sum_{j<=d} L_dj z_j accumulated in order j = 0..d.
// Workgroup: WG x 1 x 1 (override, 64 unless the workgroup array below does not fit, then 32),
//   one invocation per sample, workgroups on an (x, y) grid with x <= 65535:
//   s = (wid.x + wid.y * num_workgroups.x) * WG + local index. D <= MAX_DIM (128).
// Workgroup memory: zs [ZD][WG + 1] f32 (ZD = D rounded up to 4, an override): column l holds
//   invocation l's normals, overwritten in place by its sample (rows d-1 down to 0: row d needs
//   z_0..z_d only), so no per-invocation array with a run-time bound lives in local memory; the
//   +1 padding keeps both the per-invocation accesses and the transposed read below free of bank
//   conflicts. After a barrier the workgroup writes its WG samples' WG*D floats to `out` as one
//   contiguous, coalesced run (not D-strided per invocation).
//!include common/philox.wgsl

const MAX_DIM: u32 = 128u;

override WG: u32 = 64u;
override ZD: u32 = 128u;
override SP: u32 = WG + 1u;

var<workgroup> zs: array<f32, ZD * SP>;

struct MixParams {
    key: vec2<u32>,
    stream: vec2<u32>,
    first_block: vec2<u32>,
    sb: u32,
    n: u32,
    chunk_start: u32,
    m: u32,
    k: u32,
    d: u32,
    full: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: MixParams;
@group(0) @binding(1) var<storage, read> thresholds: array<u32>;
@group(0) @binding(2) var<storage, read> means: array<f32>;
@group(0) @binding(3) var<storage, read> factor: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> comps: array<u32>;

@compute @workgroup_size(WG)
fn sample_mixture(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let s0 = (wid.x + wid.y * nwg.x) * WG;
    if (s0 >= params.n) {
        return;
    }
    let s = s0 + lid;
    let d = params.d;
    if (s < params.n) {
        let i = params.chunk_start + s;
        let rep = i / params.m;
        let blk = philox_add64v(params.first_block, philox_mul64(s, params.sb));
        let w = philox4x32_10(philox_counter(blk, params.stream), params.key);
        let x = w.x >> 1u;
        var comp = 0u;
        let tbase = rep * params.k;
        for (var j = 0u; j + 1u < params.k; j = j + 1u) {
            comp = comp + select(0u, 1u, x >= thresholds[tbase + j]);
        }
        comps[s] = comp;

        let rc = rep * params.k + comp;
        let nb = (d + 3u) / 4u;
        for (var b = 0u; b < nb; b = b + 1u) {
            let ctr = philox_counter(philox_add64(blk, 1u + b), params.stream);
            let v = philox_normals(philox4x32_10(ctr, params.key));
            for (var q = 0u; q < 4u; q = q + 1u) {
                let row = 4u * b + q;
                if (params.full != 0u) {
                    zs[row * SP + lid] = v[q];
                } else if (row < d) {
                    zs[row * SP + lid] = means[rc * d + row] + factor[rc * d + row] * v[q];
                }
            }
        }
        if (params.full != 0u) {
            let base = rc * d * d;
            for (var r = 0u; r < d; r = r + 1u) {
                let row = d - 1u - r;
                var acc = means[rc * d + row];
                for (var j = 0u; j <= row; j = j + 1u) {
                    acc = acc + factor[base + row * d + j] * zs[j * SP + lid];
                }
                zs[row * SP + lid] = acc;
            }
        }
    }
    workgroupBarrier();
    let count = min(WG, params.n - s0) * d;
    for (var e = lid; e < count; e = e + WG) {
        out[s0 * d + e] = zs[(e % d) * SP + e / d];
    }
}
