// categorical.wgsl — sample classes from B rows of V logits: temperature, optional top-k,
// inverse CDF, exactly the method and summation order of src/ops/sampling.rs (Categorical).
//
// Bindings (group 0):
//   0: uniform  CatParams (below)
//   1: storage, read        logits: array<f32>  [B][V] row-major; a logit <= -1e30 (or -inf)
//                           has probability 0
//   2: storage, read_write  out:    array<u32>  [n]    class of each sample of this chunk
// Layout: local sample s (0 <= s < n) is sample i = chunk_start + s of the call, row i / S; its
//   uniform is draw (first + i) of the Philox stream.
// Workgroup: 64 x 1 x 1, one invocation per sample on an (x, y) grid (x <= 65535):
//   s = gid.x + gid.y * 64 * num_workgroups.x. Each invocation scans its row: max, top-k cut
//   (radix select on order-preserving keys, 32 passes, only when k < V), total, then the CDF.
//!include common/philox.wgsl

const EXCLUDED: f32 = -1e30;

struct CatParams {
    key: vec2<u32>,
    stream: vec2<u32>,
    first: vec2<u32>,
    n: u32,
    chunk_start: u32,
    s: u32,
    v: u32,
    k: u32,
    inv_t: f32,
}

@group(0) @binding(0) var<uniform> params: CatParams;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

// Order-preserving map f32 -> u32 (for non-NaN values).
fn order_key(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    return select(b ^ 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn from_order_key(k: u32) -> f32 {
    return bitcast<f32>(select(~k, k ^ 0x80000000u, (k & 0x80000000u) != 0u));
}

@compute @workgroup_size(64)
fn sample_categorical(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let s = gid.x + gid.y * (nwg.x * 64u);
    if (s >= params.n) {
        return;
    }
    let i = params.chunk_start + s;
    let row = i / params.s;
    let v = params.v;
    let base = row * v;

    var m = EXCLUDED;
    for (var j = 0u; j < v; j = j + 1u) {
        m = select(m, logits[base + j], logits[base + j] > m);
    }

    var t = EXCLUDED;
    var ties = 0xFFFFFFFFu;
    if (params.k < v) {
        var prefix = 0u;
        for (var bit = 0u; bit < 32u; bit = bit + 1u) {
            let cand = prefix | (0x80000000u >> bit);
            var count = 0u;
            for (var j = 0u; j < v; j = j + 1u) {
                count = count + select(0u, 1u, order_key(logits[base + j]) >= cand);
            }
            prefix = select(prefix, cand, count >= params.k);
        }
        t = from_order_key(prefix);
        var above = 0u;
        for (var j = 0u; j < v; j = j + 1u) {
            above = above + select(0u, 1u, logits[base + j] > t);
        }
        ties = params.k - above;
    }

    var total = 0.0;
    var last = 0u;
    var left = ties;
    for (var j = 0u; j < v; j = j + 1u) {
        let x = logits[base + j];
        var keep = x > EXCLUDED && x > t;
        if (x > EXCLUDED && x == t && left > 0u) {
            keep = true;
            left = left - 1u;
        }
        if (keep) {
            last = j;
            total = total + exp((x - m) * params.inv_t);
        }
    }

    let d = philox_add64(params.first, i);
    let w = philox4x32_10(philox_counter(vec2<u32>(d.x >> 2u | (d.y << 30u), d.y >> 2u), params.stream), params.key);
    let target_ = philox_unit_f32(w[d.x & 3u]) * total;

    var chosen = last;
    var acc = 0.0;
    left = ties;
    for (var j = 0u; j < v; j = j + 1u) {
        let x = logits[base + j];
        var keep = x > EXCLUDED && x > t;
        if (x > EXCLUDED && x == t && left > 0u) {
            keep = true;
            left = left - 1u;
        }
        if (keep) {
            acc = acc + exp((x - m) * params.inv_t);
            if (acc > target_) {
                chosen = j;
                break;
            }
        }
    }
    out[s] = chosen;
}
