// common/matmul_core.wgsl — library: the shared body of the matmul kernels (matmul.wgsl,
// matmul_vec4.wgsl, matmul_f16.wgsl): parameters, bindings 0/3/4, workgroup tiles,
// register-blocked inner product, epilogue. It calls functions its includer defines, so it is
// validated through the kernels that include it. An including file declares bindings 1 (a) and
// 2 (b), defines
//   fn mm_load(tid, k0, row0, col0, bt)  fill As/Bs for the K step starting at k0,
// and (for the scalar loader mm_load_scalar below) fn mm_a(i) -> f32, fn mm_b(i) -> f32.
//
// Operation, per batch bt: C = act(alpha * op(A) op(B) + beta * C + bias), row-major.
//   op(A)[i][p] = a[bt*stride_a + i*rs_a + p*cs_a]   (rs_a, cs_a = K, 1 or 1, M when transposed)
//   op(B)[p][j] = b[bt*stride_b + p*rs_b + j*cs_b]
//   C[i][j]     = c[bt*stride_c + i*n + j]; bias [n]. beta == 0: C is not read.
//   epilogue 0 none, 1 +bias, 2 +bias relu, 3 +bias gelu (tanh form), 4 +bias sigmoid.
// Bindings (group 0): 0 uniform MatmulParams; 1 a; 2 b (declared by the including file);
//   3 storage read bias: array<f32> (a dummy 1-element buffer when epilogue == 0);
//   4 storage read_write c: array<f32>.
// Tile shape: pipeline-overridable constants chosen per adapter by the host's autotune.
//   Workgroup WG_X x WG_Y x 1; workgroup (x, y, z) owns the C block rows y*BM.., columns x*BN..
//   of batch z + batch0, with BM = WG_Y*TM, BN = WG_X*TN. Invocation (lx, ly) computes TM x TN
//   outputs, strided: rows ly + WG_Y*r (r < TM), columns lx + WG_X*s (s < TN), so neighbouring
//   invocations read neighbouring workgroup words and write neighbouring C elements.
// Workgroup memory: As [BK][BM], Bs [BK][BN] (k-major); per K step every invocation loads its
//   share of both tiles (zero outside the matrices), then accumulates BK rank-1 updates from
//   registers (TM values of A times TN values of B) with fma.

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

// Register block capacity: TM, TN <= MAX_T.
const MAX_T: u32 = 8u;

var<workgroup> As: array<f32, BM * BK>;
var<workgroup> Bs: array<f32, BN * BK>;

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
        As[kk * BM + i] = v;
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
        Bs[kk * BN + j] = v;
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

fn mm_main(lid: vec3<u32>, wid: vec3<u32>) {
    let lx = lid.x;
    let ly = lid.y;
    let tid = ly * WG_X + lx;
    let bt = wid.z + P.batch0;
    let row0 = wid.y * BM;
    let col0 = wid.x * BN;
    var acc: array<f32, 64>;
    for (var q = 0u; q < MAX_T * MAX_T; q++) {
        acc[q] = 0.0;
    }
    var ar: array<f32, MAX_T>;
    var br: array<f32, MAX_T>;
    for (var k0 = 0u; k0 < P.k; k0 += BK) {
        mm_load(tid, k0, row0, col0, bt);
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            for (var r = 0u; r < TM; r++) {
                ar[r] = As[kk * BM + ly + WG_Y * r];
            }
            for (var s = 0u; s < TN; s++) {
                br[s] = Bs[kk * BN + lx + WG_X * s];
            }
            for (var r = 0u; r < TM; r++) {
                for (var s = 0u; s < TN; s++) {
                    acc[r * MAX_T + s] = fma(ar[r], br[s], acc[r * MAX_T + s]);
                }
            }
        }
        workgroupBarrier();
    }
    let c_base = bt * P.stride_c;
    for (var r = 0u; r < TM; r++) {
        let i = row0 + ly + WG_Y * r;
        if (i >= P.m) {
            break;
        }
        for (var s = 0u; s < TN; s++) {
            let j = col0 + lx + WG_X * s;
            if (j >= P.n) {
                break;
            }
            let idx = c_base + i * P.n + j;
            var v = P.alpha * acc[r * MAX_T + s];
            if (P.beta != 0.0) {
                v = fma(P.beta, c[idx], v);
            }
            if (P.epilogue != 0u) {
                v = mm_activate(v + bias[j]);
            }
            c[idx] = v;
        }
    }
}
