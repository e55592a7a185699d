// gmm.wgsl — EM passes of a Gaussian mixture over one chunk of points (the host loops over
// chunks so no binding exceeds the adapter's limit), plus the pairwise tree reduction the
// M-step sums and the log-likelihood total go through.
//
// Shared uniform (binding 0 of every entry point): GmmParams { n, d, k, full, tile, cols, t_in, mode }
//   n     points in this chunk          d, k   dimensions, components (d <= MAX_DIM)
//   full  1 = full covariances, 0 = diagonal
//   tile  points per M-step tile        cols   columns of the table being summed
//   t_in  rows of the table a tree_reduce step reads
// Layouts (row-major): x [n][d]; resp [n][k]; lse [n]; means [k][d];
//   prec [k][d][d] upper-triangular U with inv(Sigma) = U U^T (full) or [k][d] = 1/sigma (diag);
//   cst [k] = ln w_k + ln det U_k - d/2 ln 2pi; partial sums [tiles][cols].
//
// estep        bindings 1 x, 2 means, 3 prec, 4 cst, 5 resp (rw), 6 lse (rw).
//   Workgroup 64 x 1 x 1; one invocation per point p (grid (x, y), p = gid.x + gid.y * 64 * nwg.x):
//   l_k = -1/2 |(x - mu_k)^T U_k|^2 + cst_k, lse = max + ln sum exp(l - max) (no overflow or
//   underflow), resp[p][k] = exp(l_k - lse), lse[p] = lse.
// msum         bindings 1 x, 2 means, 5 resp, 7 partial (rw).
//   Workgroup 64 x 1 x 1; invocation (column c = gid.x, tile t = gid.y) sums over the tile's points
//   in order. cols = k*(d+1) for the first M-step pass: c = kk*(d+1) + j gives
//   sum r[p][kk]*x[p][j] (j < d) or sum r[p][kk] (j = d). cols = k*d*d (full) or k*d (diag) for the
//   second: sum r (x_a - mu_a)(x_b - mu_b) centred on the new means (two-pass, no cancellation).
//   mode selects: 0 = first pass, 1 = scatter.
// tree_reduce  bindings 8 src, 9 dst (rw): dst[t][c] = src[2t][c] + src[2t+1][c] (the second term
//   only when 2t+1 < t_in). Workgroup 64 x 1 x 1, invocation (c = gid.x, t = gid.y + gid.z * nwg.y).
//   Repeated until one row is left, this sums the rows pairwise (error O(eps log T)).

const MAX_DIM: u32 = 128u;

struct GmmParams {
    n: u32,
    d: u32,
    k: u32,
    full: u32,
    tile: u32,
    cols: u32,
    t_in: u32,
    mode: u32,
}

@group(0) @binding(0) var<uniform> params: GmmParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> means: array<f32>;
@group(0) @binding(3) var<storage, read> prec: array<f32>;
@group(0) @binding(4) var<storage, read> cst: array<f32>;
@group(0) @binding(5) var<storage, read_write> resp: array<f32>;
@group(0) @binding(6) var<storage, read_write> lse: array<f32>;
@group(0) @binding(7) var<storage, read_write> partial: array<f32>;
@group(0) @binding(8) var<storage, read> src: array<f32>;
@group(0) @binding(9) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(64)
fn estep(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let p = gid.x + gid.y * (nwg.x * 64u);
    if (p >= params.n) {
        return;
    }
    let d = params.d;
    let k = params.k;
    var m = -3.4e38;
    for (var c = 0u; c < k; c = c + 1u) {
        var xc: array<f32, MAX_DIM>;
        for (var i = 0u; i < d; i = i + 1u) {
            xc[i] = x[p * d + i] - means[c * d + i];
        }
        var q = 0.0;
        if (params.full != 0u) {
            let base = c * d * d;
            for (var j = 0u; j < d; j = j + 1u) {
                var y = 0.0;
                for (var i = 0u; i <= j; i = i + 1u) {
                    y = y + xc[i] * prec[base + i * d + j];
                }
                q = q + y * y;
            }
        } else {
            for (var i = 0u; i < d; i = i + 1u) {
                let y = xc[i] * prec[c * d + i];
                q = q + y * y;
            }
        }
        let l = -0.5 * q + cst[c];
        resp[p * k + c] = l;
        m = max(m, l);
    }
    var s = 0.0;
    for (var c = 0u; c < k; c = c + 1u) {
        s = s + exp(resp[p * k + c] - m);
    }
    let total = m + log(s);
    for (var c = 0u; c < k; c = c + 1u) {
        resp[p * k + c] = exp(resp[p * k + c] - total);
    }
    lse[p] = total;
}

@compute @workgroup_size(64)
fn msum(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let t = gid.y;
    if (c >= params.cols) {
        return;
    }
    let d = params.d;
    let k = params.k;
    let p0 = t * params.tile;
    let p1 = min(p0 + params.tile, params.n);
    var acc = 0.0;
    if (params.mode == 0u) {
        let kk = c / (d + 1u);
        let j = c % (d + 1u);
        for (var p = p0; p < p1; p = p + 1u) {
            let r = resp[p * k + kk];
            acc = acc + select(r, r * x[p * d + min(j, d - 1u)], j < d);
        }
    } else if (params.full != 0u) {
        let kk = c / (d * d);
        let a = (c / d) % d;
        let b = c % d;
        for (var p = p0; p < p1; p = p + 1u) {
            let r = resp[p * k + kk];
            acc = acc + r * (x[p * d + a] - means[kk * d + a]) * (x[p * d + b] - means[kk * d + b]);
        }
    } else {
        let kk = c / d;
        let a = c % d;
        for (var p = p0; p < p1; p = p + 1u) {
            let v = x[p * d + a] - means[kk * d + a];
            acc = acc + resp[p * k + kk] * v * v;
        }
    }
    partial[t * params.cols + c] = acc;
}

@compute @workgroup_size(64)
fn tree_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = gid.x;
    let t = gid.y + gid.z * nwg.y;
    let cols = params.cols;
    if (c >= cols || 2u * t >= params.t_in) {
        return;
    }
    var v = src[2u * t * cols + c];
    if (2u * t + 1u < params.t_in) {
        v = v + src[(2u * t + 1u) * cols + c];
    }
    dst[t * cols + c] = v;
}
