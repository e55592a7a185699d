// categorical.wgsl — sample classes from B rows of V logits: temperature, optional top-k,
// inverse CDF, exactly the method and summation order of src/ops/sampling.rs (Categorical).
// Two entry points: one pass per row builds the row's CDF, then one binary search per sample.
//
// Bindings (group 0):
//   0: uniform  CatParams (below)
//   1: storage, read        logits:   array<f32>  [B][V] row-major; a logit <= -1e30 (or -inf)
//                           has probability 0                              (categorical_rows)
//   2: storage, read_write  out:      array<u32>  [n]    class of each sample of this chunk
//                                                                           (categorical_search)
//   3: storage, read_write  cdf:      array<f32>  [B][V] running sums of the kept classes'
//                           exp((x - max) / T) in class order (written by categorical_rows,
//                           read by categorical_search); cdf[row][V-1] is the row's total
//   4: storage, read_write  row_last: array<u32>  [B]    the last kept class of each row
// Layout: local sample s (0 <= s < n) is sample i = chunk_start + s of the call, row i / S; its
//   uniform is draw (first + i) of the Philox stream.
// categorical_rows — workgroup 64 x 1 x 1, one workgroup per row on an (x, y) grid
//   (row = wid.x + wid.y * num_workgroups.x): the max and the top-k cut (radix select on
//   order-preserving keys, 32 passes, only when k < V) are counted by all 64 lanes (max and
//   integer counts are exact, so any order gives the same result); the CDF is then summed by
//   lane 0 in class order, the order of the reference, so every running sum has its bits.
// categorical_search — workgroup 64 x 1 x 1, one invocation per sample on an (x, y) grid:
//   s = gid.x + gid.y * 64 * num_workgroups.x; target = u * total; the class is the first j with
//   cdf[j] > target (the CDF is non-decreasing and rises only at kept classes, so this is the
//   first kept class whose running sum passes the target, as the serial scan finds), else the
//   row's last kept class.
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
    rows: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> params: CatParams;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
@group(0) @binding(3) var<storage, read_write> cdf: array<f32>;
@group(0) @binding(4) var<storage, read_write> row_last: array<u32>;

var<workgroup> red_f: array<f32, 64>;
var<workgroup> red_u: array<u32, 64>;

// Order-preserving map f32 -> u32 (for non-NaN values).
fn order_key(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    return select(b ^ 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn from_order_key(k: u32) -> f32 {
    return bitcast<f32>(select(~k, k ^ 0x80000000u, (k & 0x80000000u) != 0u));
}

// The workgroup's max of red_f (every lane gets it).
fn group_max(lid: u32) -> f32 {
    for (var w = 32u; w > 0u; w = w >> 1u) {
        workgroupBarrier();
        if (lid < w) {
            red_f[lid] = max(red_f[lid], red_f[lid + w]);
        }
    }
    workgroupBarrier();
    let r = red_f[0];
    workgroupBarrier();
    return r;
}

// The workgroup's sum of red_u (exact; every lane gets it).
fn group_count(lid: u32) -> u32 {
    for (var w = 32u; w > 0u; w = w >> 1u) {
        workgroupBarrier();
        if (lid < w) {
            red_u[lid] = red_u[lid] + red_u[lid + w];
        }
    }
    workgroupBarrier();
    let r = red_u[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(64)
fn categorical_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= params.rows) {
        return;
    }
    let v = params.v;
    let base = row * v;

    var m = EXCLUDED;
    for (var j = lid; j < v; j = j + 64u) {
        m = select(m, logits[base + j], logits[base + j] > m);
    }
    red_f[lid] = m;
    m = group_max(lid);

    var t = EXCLUDED;
    var ties = 0xFFFFFFFFu;
    if (params.k < v) {
        var prefix = 0u;
        for (var bit = 0u; bit < 32u; bit = bit + 1u) {
            let cand = prefix | (0x80000000u >> bit);
            var count = 0u;
            for (var j = lid; j < v; j = j + 64u) {
                count = count + select(0u, 1u, order_key(logits[base + j]) >= cand);
            }
            red_u[lid] = count;
            prefix = select(prefix, cand, group_count(lid) >= params.k);
        }
        t = from_order_key(prefix);
        var above = 0u;
        for (var j = lid; j < v; j = j + 64u) {
            above = above + select(0u, 1u, logits[base + j] > t);
        }
        red_u[lid] = above;
        ties = params.k - group_count(lid);
    }

    if (lid == 0u) {
        var acc = 0.0;
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
                acc = acc + exp((x - m) * params.inv_t);
            }
            cdf[base + j] = acc;
        }
        row_last[row] = last;
    }
}

@compute @workgroup_size(64)
fn categorical_search(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let s = gid.x + gid.y * (nwg.x * 64u);
    if (s >= params.n) {
        return;
    }
    let i = params.chunk_start + s;
    let row = i / params.s;
    let v = params.v;
    let base = row * v;
    let total = cdf[base + v - 1u];

    let d = philox_add64(params.first, i);
    let w = philox4x32_10(philox_counter(vec2<u32>(d.x >> 2u | (d.y << 30u), d.y >> 2u), params.stream), params.key);
    let target_ = philox_unit_f32(w[d.x & 3u]) * total;

    // First j with cdf[j] > target_ (lo == v: none).
    var lo = 0u;
    var hi = v;
    while (lo < hi) {
        let mid = (lo + hi) / 2u;
        if (cdf[base + mid] > target_) {
            hi = mid;
        } else {
            lo = mid + 1u;
        }
    }
    out[s] = select(lo, row_last[row], lo == v);
}
