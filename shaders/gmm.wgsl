// gmm.wgsl — EM passes of a Gaussian mixture over one chunk of points (the host loops over
// chunks so no binding exceeds the adapter's limit), and the one-pass reduction of a table of
// partial sums. Every sum is in a fixed order (same bits run to run): in order within a thread,
// then a fixed tree within a workgroup, then `reduce`, one pass over the partials.
//
// Shared uniform (binding 0 of every entry point):
//   GmmParams { n, d, k, cov, tile, cols, row0, mode, rows, lanes, _, _ }
//   n     points in this chunk          d, k   dimensions, components
//   cov   covariance type: 0 diagonal, 1 full (CovarianceType::code; the per-component factor
//         layout is the only thing a type changes: [k][d] for diagonal, [k][d][d] for full)
//   tile  points per M-step tile        cols   columns of a partial-sum table
//   row0  first row of the partial table this launch writes (its chunk's offset)
//   mode  msum: 0 first pass, 1 diagonal scatter, 2 full scatter
//   rows, lanes   reduce: rows of the table, tile lanes per column (power of two, 1..64)
// Layouts (row-major): x [n][d]; resp [n][k]; means [k][d];
//   prec [k][d][d] upper-triangular U with inv(Sigma) = U U^T, zeros below the diagonal (full)
//   or [k][d] = 1/sigma (diag); cst [k] = ln w_k + ln det U_k - d/2 ln 2pi; partial [rows][cols].
//
// estep   bindings 1 x, 2 means, 3 prec, 4 cst, 5 resp (rw), 6 lse_part (rw).
//   Workgroup 64 x 1 x 1 = 64 points, one per invocation (workgroup w = wid.x + wid.y * nwg.x
//   owns points 64w ..): the workgroup stages its points' coordinates DC = 32 at a time in
//   workgroup memory (xs, [64][DC + 1], padded: conflict-free), and per component the matching
//   rows of U (a [DC][JB = 8] block as vec4, broadcast reads) and of mu. Full: each invocation keeps
//   y = (x - mu)^T U for JB columns in registers (two vec4), q = sum |y|^2; diagonal: q = sum
//   ((x - mu) / sigma)^2. l_k = -q/2 + cst_k is stored in resp, then lse = max + ln sum exp(l -
//   max) and resp[p][k] = exp(l_k - lse). lse_part[row0 + w] = the 64 points' lse summed by a
//   fixed tree in workgroup memory.
// msum    bindings 1 x, 2 means, 5 resp, 7 partial (rw).
//   Workgroup 64 = 8 x 8 invocations, each a 4 x 4 register block of a 32 x 32 output block
//   (rows u = 4 tu + i, columns v = 4 tv + j); grid x = output blocks, y = tiles of `tile`
//   points. Points go through workgroup memory 16 at a time (ls [16][32] left operand, rs
//   [16][32] right operand, as vec4: two 16-byte loads per point feed 16 FMAs) and each
//   invocation sums its block over the tile's points in order:
//   mode 0: u = component, v = coordinate (v = d: the constant 1): sum r_u x_v,
//           column u (d + 1) + v (N_k and the unnormalised means, R^T [X | 1]);
//   mode 1: u = component, v = coordinate: sum r_u (x_v - mu_uv)^2, column u d + v;
//   mode 2: one component kk per group of blocks, u, v coordinates:
//           sum (r_kk (x_u - mu_u)) (x_v - mu_v), column kk d d + u d + v (a weighted X^T X).
//   partial[row0 + tile][column] = the sum.
// reduce  bindings 0 params, 8 src, 9 dst (rw): dst[c] = sum over the `rows` rows of src[.][c].
//   Workgroup 64 = (64 / lanes) columns x lanes tile lanes; lane l sums rows l, l + lanes, ...
//   in order, then a fixed tree over the lanes.

const WG: u32 = 64u;
const DC: u32 = 32u;
const XS_STRIDE: u32 = 33u;
const JB: u32 = 8u;
const PC: u32 = 16u;
const OB: u32 = 32u;

struct GmmParams {
    n: u32,
    d: u32,
    k: u32,
    cov: u32,
    tile: u32,
    cols: u32,
    row0: u32,
    mode: u32,
    rows: u32,
    lanes: u32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> params: GmmParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> means: array<f32>;
@group(0) @binding(3) var<storage, read> prec: array<f32>;
@group(0) @binding(4) var<storage, read> cst: array<f32>;
@group(0) @binding(5) var<storage, read_write> resp: array<f32>;
@group(0) @binding(6) var<storage, read_write> lse_part: array<f32>;
@group(0) @binding(7) var<storage, read_write> partial: array<f32>;
@group(0) @binding(8) var<storage, read> src: array<f32>;
@group(0) @binding(9) var<storage, read_write> dst: array<f32>;

var<workgroup> xs: array<f32, 2112>; // [WG][XS_STRIDE]
var<workgroup> us: array<vec4<f32>, 64>; // [DC][JB / 4]: U block (full) or 1/sigma in .x (diag)
var<workgroup> ms: array<f32, 32>; // [DC]
var<workgroup> red: array<f32, 64>;
var<workgroup> ls: array<vec4<f32>, 128>; // [PC][OB / 4]
var<workgroup> rs: array<vec4<f32>, 128>; // [PC][OB / 4]

@compute @workgroup_size(64)
fn estep(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let lane = lid.x;
    let w = wid.x + wid.y * nwg.x;
    let p0 = w * WG;
    let p = p0 + lane;
    let n = params.n;
    let d = params.d;
    let k = params.k;
    let full = params.cov == 1u;
    let live = p < n;
    // Column blocks of U per component (full); a diagonal factor takes one pass.
    let nb = select(1u, (d + JB - 1u) / JB, full);
    var m = -3.4e38;
    var staged = 0xffffffffu;
    for (var c = 0u; c < k; c = c + 1u) {
        var q = 0.0;
        for (var jb = 0u; jb < nb; jb = jb + 1u) {
            let j0 = jb * JB;
            // Full: y_j needs rows i <= j of U, so rows below j0 + JB.
            let iend = select(d, min(j0 + JB, d), full);
            var y0 = vec4<f32>(0.0);
            var y1 = vec4<f32>(0.0);
            for (var i0 = 0u; i0 < iend; i0 = i0 + DC) {
                let dc = min(DC, d - i0);
                workgroupBarrier();
                if (i0 != staged) {
                    // The workgroup's 64 points, coordinates i0 .. i0 + dc (coalesced rows).
                    for (var e = lane; e < WG * dc; e = e + WG) {
                        let pt = e / dc;
                        let ii = e % dc;
                        var v = 0.0;
                        if (p0 + pt < n) {
                            v = x[(p0 + pt) * d + i0 + ii];
                        }
                        xs[pt * XS_STRIDE + ii] = v;
                    }
                    staged = i0;
                }
                if (full) {
                    for (var e = lane; e < DC * JB; e = e + WG) {
                        let gi = i0 + e / JB;
                        let gj = j0 + e % JB;
                        var v = 0.0;
                        if (gi < d && gj < d) {
                            v = prec[(c * d + gi) * d + gj];
                        }
                        us[e / 4u][e % 4u] = v;
                    }
                } else if (lane < dc) {
                    us[lane].x = prec[c * d + i0 + lane];
                }
                if (lane < dc) {
                    ms[lane] = means[c * d + i0 + lane];
                }
                workgroupBarrier();
                let ni = min(dc, iend - i0);
                if (full) {
                    for (var ii = 0u; ii < ni; ii = ii + 1u) {
                        let v = vec4<f32>(xs[lane * XS_STRIDE + ii] - ms[ii]);
                        y0 = fma(v, us[2u * ii], y0);
                        y1 = fma(v, us[2u * ii + 1u], y1);
                    }
                } else {
                    for (var ii = 0u; ii < ni; ii = ii + 1u) {
                        let y = (xs[lane * XS_STRIDE + ii] - ms[ii]) * us[ii].x;
                        q = fma(y, y, q);
                    }
                }
            }
            if (full) {
                q = q + (dot(y0, y0) + dot(y1, y1));
            }
        }
        let l = -0.5 * q + cst[c];
        if (live) {
            resp[p * k + c] = l;
        }
        m = max(m, l);
    }
    var total = 0.0;
    if (live) {
        var s = 0.0;
        for (var c = 0u; c < k; c = c + 1u) {
            s = s + exp(resp[p * k + c] - m);
        }
        total = m + log(s);
        for (var c = 0u; c < k; c = c + 1u) {
            resp[p * k + c] = exp(resp[p * k + c] - total);
        }
    }
    red[lane] = total;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h = h / 2u) {
        if (lane < h) {
            red[lane] = red[lane] + red[lane + h];
        }
        workgroupBarrier();
    }
    if (lane == 0u && p0 < n) {
        lse_part[params.row0 + w] = red[0];
    }
}

@compute @workgroup_size(64)
fn msum(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let lane = lid.x;
    let tu = lane % 8u;
    let tv = lane / 8u;
    let d = params.d;
    let k = params.k;
    let mode = params.mode;
    // Output rows U x columns V per component group; blocks of OB x OB.
    var nu = k;
    var nv = d + 1u;
    if (mode == 1u) {
        nv = d;
    }
    if (mode == 2u) {
        nu = d;
        nv = d;
    }
    let bu_n = (nu + OB - 1u) / OB;
    let bv_n = (nv + OB - 1u) / OB;
    let per = bu_n * bv_n;
    let kk = wid.x / per;
    let u0 = ((wid.x % per) / bv_n) * OB;
    let v0 = (wid.x % bv_n) * OB;
    let t = wid.y;
    let p0 = t * params.tile;
    let p1 = min(p0 + params.tile, params.n);
    // mode 1: the means of this thread's (component, coordinate) pairs.
    var mu = array<vec4<f32>, 4>();
    if (mode == 1u) {
        for (var i = 0u; i < 4u; i = i + 1u) {
            let u = u0 + 4u * tu + i;
            var mv = vec4<f32>(0.0);
            for (var j = 0u; j < 4u; j = j + 1u) {
                let v = v0 + 4u * tv + j;
                if (u < nu && v < nv) {
                    mv[j] = means[u * d + v];
                }
            }
            mu[i] = mv;
        }
    }
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var pc = p0; pc < p1; pc = pc + PC) {
        workgroupBarrier();
        for (var e = lane; e < PC * OB; e = e + WG) {
            let pp = e / OB;
            let o = e % OB;
            let pt = pc + pp;
            var lv = 0.0;
            var rv = 0.0;
            if (pt < p1) {
                let u = u0 + o;
                let v = v0 + o;
                if (mode == 2u) {
                    let r = resp[pt * k + kk];
                    if (u < d) {
                        lv = r * (x[pt * d + u] - means[kk * d + u]);
                    }
                    if (v < d) {
                        rv = x[pt * d + v] - means[kk * d + v];
                    }
                } else {
                    if (u < k) {
                        lv = resp[pt * k + u];
                    }
                    if (v < d) {
                        rv = x[pt * d + v];
                    } else if (v == d && mode == 0u) {
                        rv = 1.0;
                    }
                }
            }
            ls[e / 4u][e % 4u] = lv;
            rs[e / 4u][e % 4u] = rv;
        }
        workgroupBarrier();
        let np = min(PC, p1 - pc);
        for (var pp = 0u; pp < np; pp = pp + 1u) {
            let rv = rs[pp * 8u + tv];
            let lq = ls[pp * 8u + tu];
            let l0 = lq.x;
            let l1 = lq.y;
            let l2 = lq.z;
            let l3 = lq.w;
            if (mode == 1u) {
                let c0 = rv - mu[0];
                let c1 = rv - mu[1];
                let c2 = rv - mu[2];
                let c3 = rv - mu[3];
                acc0 = fma(vec4<f32>(l0) * c0, c0, acc0);
                acc1 = fma(vec4<f32>(l1) * c1, c1, acc1);
                acc2 = fma(vec4<f32>(l2) * c2, c2, acc2);
                acc3 = fma(vec4<f32>(l3) * c3, c3, acc3);
            } else {
                acc0 = fma(vec4<f32>(l0), rv, acc0);
                acc1 = fma(vec4<f32>(l1), rv, acc1);
                acc2 = fma(vec4<f32>(l2), rv, acc2);
                acc3 = fma(vec4<f32>(l3), rv, acc3);
            }
        }
    }
    let acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    let row = (params.row0 + t) * params.cols;
    for (var i = 0u; i < 4u; i = i + 1u) {
        let u = u0 + 4u * tu + i;
        for (var j = 0u; j < 4u; j = j + 1u) {
            let v = v0 + 4u * tv + j;
            if (u < nu && v < nv) {
                partial[row + (kk * nu + u) * nv + v] = acc[i][j];
            }
        }
    }
}

@compute @workgroup_size(64)
fn reduce(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let lane = lid.x;
    let lanes = params.lanes;
    let cw = WG / lanes;
    let cl = lane % cw;
    let lt = lane / cw;
    let cols = params.cols;
    let c = (wid.x + wid.y * nwg.x) * cw + cl;
    var acc = 0.0;
    if (c < cols) {
        for (var t = lt; t < params.rows; t = t + lanes) {
            acc = acc + src[t * cols + c];
        }
    }
    red[lane] = acc;
    workgroupBarrier();
    for (var h = lanes / 2u; h > 0u; h = h / 2u) {
        if (lt < h) {
            red[lane] = red[lane] + red[lane + h * cw];
        }
        workgroupBarrier();
    }
    if (lt == 0u && c < cols) {
        dst[c] = red[cl];
    }
}
