// common/matmul_core.wgsl — library: the shared body of the matmul kernels (matmul.wgsl,
// matmul_vec4.wgsl, matmul_f16.wgsl): parameters, bindings 0/3/4, workgroup tiles,
// register-blocked inner product, epilogue. It calls functions its includer defines, so it is
// validated through the kernels that include it. An including file declares bindings 1 (a) and
// 2 (b), defines
//   fn mm_load(tid, k0, row0, col0, bt)  fill As/Bs (through mm_set_a/mm_set_b) for the K step
//                                        starting at k0,
// and (for the scalar loader mm_load_scalar below) fn mm_a(i) -> f32, fn mm_b(i) -> f32.
//
// Operation, per batch bt: C = act(alpha * op(A) op(B) + beta * C + bias), row-major.
//   op(A)[i][p] = a[bt*stride_a + i*rs_a + p*cs_a]   (rs_a, cs_a = K, 1 or 1, M when transposed)
//   op(B)[p][j] = b[bt*stride_b + p*rs_b + j*cs_b]
//   C[i][j]     = c[bt*stride_c + i*n + j]; bias [n]. beta == 0: C is not read.
//   epilogue 0 none, 1 +bias, 2 +bias relu, 3 +bias gelu (tanh form, through exp), 4 +bias
//   sigmoid.
// Bindings (group 0): 0 uniform MatmulParams; 1 a; 2 b (declared by the including file);
//   3 storage read bias: array<f32> (a dummy 1-element buffer when epilogue == 0);
//   4 storage read_write c: array<f32>.
// Tile shape: pipeline-overridable constants chosen per adapter by the host's autotune
//   (TM, TN each 4 or 8; BK a multiple of 4).
//   Workgroup WG_X x WG_Y x 1; workgroup (x, y, z) owns the C block rows y*BM.., columns x*BN..
//   of batch z + batch0, with BM = WG_Y*TM, BN = WG_X*TN. Invocation (lx, ly) computes a
//   TM x TN block made of contiguous 4 x 4 micro-tiles: rows hr*4*WG_Y + 4*ly + q and columns
//   hc*4*WG_X + 4*lx + q' (q, q' < 4; hr < TM/4, hc < TN/4), so each operand is read from
//   workgroup memory as whole vec4s, neighbouring invocations read neighbouring vec4s (no bank
//   conflicts), and each C row segment an invocation writes is 4 contiguous floats.
// Registers: the accumulators are 16 named vec4<f32> (rows 0..7 x column halves a/b), never a
//   dynamically indexed array, so no driver has to spill them to local memory; with TM, TN
//   constants at pipeline creation the unused ones fold away.
// Workgroup memory: As [BK][BM + 4], Bs [BK][BN + 4] (k-major, each k row padded by one vec4
//   against bank conflicts in the transposing tile stores), stored as vec4<f32>; per K step
//   every invocation stores its share of both tiles (zero outside the matrices), then
//   accumulates BK rank-1 updates (TM values of A times TN values of B) with fma.
// Every access is guarded by the sizes in P (or stays inside the workgroup tiles), so the
// kernels run as trusted shader modules (src/gpu/mod.rs).

struct MatmulParams {
    m: u32, n: u32, k: u32, batch0: u32,
    rs_a: u32, cs_a: u32, rs_b: u32, cs_b: u32,
    stride_a: u32, stride_b: u32, stride_c: u32, epilogue: u32,
    alpha: f32, beta: f32, pad0: u32, pad1: u32,
}

@group(0) @binding(0) var<uniform> P: MatmulParams;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

override WG_X: u32 = 16u;
override WG_Y: u32 = 16u;
override TM: u32 = 4u;
override TN: u32 = 4u;
override BK: u32 = 16u;
override BM: u32 = WG_Y * TM;
override BN: u32 = WG_X * TN;
// Padded k-row lengths of the tiles (floats; one vec4 of padding).
override BMP: u32 = BM + 4u;
override BNP: u32 = BN + 4u;

var<workgroup> As: array<vec4<f32>, BMP * BK / 4u>;
var<workgroup> Bs: array<vec4<f32>, BNP * BK / 4u>;

// Store element (kk, i) of the A tile / (kk, j) of the B tile.
fn mm_set_a(kk: u32, i: u32, v: f32) {
    let o = kk * BMP + i;
    As[o / 4u][o % 4u] = v;
}

fn mm_set_b(kk: u32, j: u32, v: f32) {
    let o = kk * BNP + j;
    Bs[o / 4u][o % 4u] = v;
}

// Scalar tile loads for any strides: consecutive invocations read consecutive addresses along
// the contiguous dimension of each operand (k for A untransposed, m for A transposed, ...).
fn mm_load_scalar(tid: u32, k0: u32, row0: u32, col0: u32, bt: u32) {
    let threads = WG_X * WG_Y;
    let a_base = bt * P.stride_a;
    for (var e = tid; e < BM * BK; e += threads) {
        var i = e % BM;
        var kk = e / BM;
        if (P.cs_a == 1u) {
            i = e / BK;
            kk = e % BK;
        }
        let gi = row0 + i;
        let gk = k0 + kk;
        var v = 0.0;
        if (gi < P.m && gk < P.k) {
            v = mm_a(a_base + gi * P.rs_a + gk * P.cs_a);
        }
        mm_set_a(kk, i, v);
    }
    let b_base = bt * P.stride_b;
    for (var e = tid; e < BN * BK; e += threads) {
        var j = e % BN;
        var kk = e / BN;
        if (P.cs_b != 1u) {
            j = e / BK;
            kk = e % BK;
        }
        let gj = col0 + j;
        let gk = k0 + kk;
        var v = 0.0;
        if (gj < P.n && gk < P.k) {
            v = mm_b(b_base + gk * P.rs_b + gj * P.cs_b);
        }
        mm_set_b(kk, j, v);
    }
}

fn mm_activate(x: f32) -> f32 {
    switch (P.epilogue) {
        case 2u: { return max(x, 0.0); }
        case 3u: {
            let u = clamp(0.7978845608 * (x + 0.044715 * x * x * x), -15.0, 15.0);
            let t = 1.0 - 2.0 / (exp(2.0 * u) + 1.0);
            return 0.5 * x * (1.0 + t);
        }
        case 4u: { return 1.0 / (1.0 + exp(-x)); }
        default: { return x; }
    }
}

// Write the 4 accumulated values `v` of C row `i`, columns j0..j0+3 (each bounds-checked),
// with alpha, beta and the epilogue.
fn mm_store(c_base: u32, i: u32, j0: u32, v: vec4<f32>) {
    if (i >= P.m) {
        return;
    }
    for (var q = 0u; q < 4u; q++) {
        let j = j0 + q;
        if (j >= P.n) {
            return;
        }
        let idx = c_base + i * P.n + j;
        var x = P.alpha * v[q];
        if (P.beta != 0.0) {
            x = fma(P.beta, c[idx], x);
        }
        if (P.epilogue != 0u) {
            x = mm_activate(x + bias[j]);
        }
        c[idx] = x;
    }
}

fn mm_main(lid: vec3<u32>, wid: vec3<u32>) {
    let lx = lid.x;
    let ly = lid.y;
    let tid = ly * WG_X + lx;
    let bt = wid.z + P.batch0;
    let row0 = wid.y * BM;
    let col0 = wid.x * BN;
    // Accumulators: row r of the block (r < 4: rows 4*ly + r; r >= 4: rows 4*WG_Y + 4*ly + r-4),
    // column half a (4*lx..) and b (4*WG_X + 4*lx..).
    var c0a = vec4<f32>(0.0);
    var c1a = vec4<f32>(0.0);
    var c2a = vec4<f32>(0.0);
    var c3a = vec4<f32>(0.0);
    var c4a = vec4<f32>(0.0);
    var c5a = vec4<f32>(0.0);
    var c6a = vec4<f32>(0.0);
    var c7a = vec4<f32>(0.0);
    var c0b = vec4<f32>(0.0);
    var c1b = vec4<f32>(0.0);
    var c2b = vec4<f32>(0.0);
    var c3b = vec4<f32>(0.0);
    var c4b = vec4<f32>(0.0);
    var c5b = vec4<f32>(0.0);
    var c6b = vec4<f32>(0.0);
    var c7b = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < P.k; k0 += BK) {
        mm_load(tid, k0, row0, col0, bt);
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let a_lo = As[kk * (BMP / 4u) + ly];
            let b_lo = Bs[kk * (BNP / 4u) + lx];
            var a_hi = vec4<f32>(0.0);
            var b_hi = vec4<f32>(0.0);
            if (TM == 8u) {
                a_hi = As[kk * (BMP / 4u) + WG_Y + ly];
            }
            if (TN == 8u) {
                b_hi = Bs[kk * (BNP / 4u) + WG_X + lx];
            }
            c0a = fma(vec4<f32>(a_lo.x), b_lo, c0a);
            c1a = fma(vec4<f32>(a_lo.y), b_lo, c1a);
            c2a = fma(vec4<f32>(a_lo.z), b_lo, c2a);
            c3a = fma(vec4<f32>(a_lo.w), b_lo, c3a);
            if (TN == 8u) {
                c0b = fma(vec4<f32>(a_lo.x), b_hi, c0b);
                c1b = fma(vec4<f32>(a_lo.y), b_hi, c1b);
                c2b = fma(vec4<f32>(a_lo.z), b_hi, c2b);
                c3b = fma(vec4<f32>(a_lo.w), b_hi, c3b);
            }
            if (TM == 8u) {
                c4a = fma(vec4<f32>(a_hi.x), b_lo, c4a);
                c5a = fma(vec4<f32>(a_hi.y), b_lo, c5a);
                c6a = fma(vec4<f32>(a_hi.z), b_lo, c6a);
                c7a = fma(vec4<f32>(a_hi.w), b_lo, c7a);
                if (TN == 8u) {
                    c4b = fma(vec4<f32>(a_hi.x), b_hi, c4b);
                    c5b = fma(vec4<f32>(a_hi.y), b_hi, c5b);
                    c6b = fma(vec4<f32>(a_hi.z), b_hi, c6b);
                    c7b = fma(vec4<f32>(a_hi.w), b_hi, c7b);
                }
            }
        }
        workgroupBarrier();
    }
    let c_base = bt * P.stride_c;
    let r_lo = row0 + 4u * ly;
    let r_hi = row0 + 4u * WG_Y + 4u * ly;
    let j_lo = col0 + 4u * lx;
    let j_hi = col0 + 4u * WG_X + 4u * lx;
    mm_store(c_base, r_lo, j_lo, c0a);
    mm_store(c_base, r_lo + 1u, j_lo, c1a);
    mm_store(c_base, r_lo + 2u, j_lo, c2a);
    mm_store(c_base, r_lo + 3u, j_lo, c3a);
    if (TN == 8u) {
        mm_store(c_base, r_lo, j_hi, c0b);
        mm_store(c_base, r_lo + 1u, j_hi, c1b);
        mm_store(c_base, r_lo + 2u, j_hi, c2b);
        mm_store(c_base, r_lo + 3u, j_hi, c3b);
    }
    if (TM == 8u) {
        mm_store(c_base, r_hi, j_lo, c4a);
        mm_store(c_base, r_hi + 1u, j_lo, c5a);
        mm_store(c_base, r_hi + 2u, j_lo, c6a);
        mm_store(c_base, r_hi + 3u, j_lo, c7a);
        if (TN == 8u) {
            mm_store(c_base, r_hi, j_hi, c4b);
            mm_store(c_base, r_hi + 1u, j_hi, c5b);
            mm_store(c_base, r_hi + 2u, j_hi, c6b);
            mm_store(c_base, r_hi + 3u, j_hi, c7b);
        }
    }
}
