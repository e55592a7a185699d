// matmul_vec4.wgsl — the matmul of matmul.wgsl with 16-byte (vec4<f32>) tile loads. The host
// picks it only when every vec4 lies wholly inside or wholly outside the matrices: the
// contiguous dimension of A (K, or M when transposed) and of B (N, or K when transposed) and the
// batch strides are multiples of 4 (and so are BM, BN, BK of every tile shape).
//
// Bindings (group 0): 0 uniform MatmulParams; 1 storage read a: array<vec4<f32>>;
//   2 storage read b: array<vec4<f32>>; 3 storage read bias: array<f32>; 4 storage read_write c.
// Layout, workgroup shape (WG_X x WG_Y x 1, overridable), tiles and what one invocation computes:
// see common/matmul_core.wgsl. Element e of a flat operand is component e % 4 of vec4 e / 4.

//!include common/matmul_core.wgsl

@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;

fn mm_a(i: u32) -> f32 {
    return a[i / 4u][i % 4u];
}

fn mm_b(i: u32) -> f32 {
    return b[i / 4u][i % 4u];
}

fn mm_load(tid: u32, k0: u32, row0: u32, col0: u32, bt: u32) {
    let threads = WG_X * WG_Y;
    let a_base = bt * P.stride_a;
    if (P.cs_a == 1u) {
        // A untransposed: vec4 = 4 consecutive k of one row.
        let per_row = BK / 4u;
        for (var e = tid; e < BM * per_row; e += threads) {
            let i = e / per_row;
            let kk = 4u * (e % per_row);
            let gi = row0 + i;
            let gk = k0 + kk;
            var v = vec4<f32>(0.0);
            if (gi < P.m && gk < P.k) {
                v = a[(a_base + gi * P.rs_a + gk) / 4u];
            }
            mm_set_a(kk, i, v.x);
            mm_set_a(kk + 1u, i, v.y);
            mm_set_a(kk + 2u, i, v.z);
            mm_set_a(kk + 3u, i, v.w);
        }
    } else {
        // A transposed (stored [K][M]): vec4 = 4 consecutive m of one k.
        let per_k = BM / 4u;
        for (var e = tid; e < BK * per_k; e += threads) {
            let kk = e / per_k;
            let i = 4u * (e % per_k);
            let gi = row0 + i;
            let gk = k0 + kk;
            var v = vec4<f32>(0.0);
            if (gi < P.m && gk < P.k) {
                v = a[(a_base + gk * P.cs_a + gi) / 4u];
            }
            // 4 consecutive rows of one k: one aligned vec4 of the padded tile.
            As[(kk * BMP + i) / 4u] = v;
        }
    }
    let b_base = bt * P.stride_b;
    if (P.cs_b == 1u) {
        // B untransposed (stored [K][N]): vec4 = 4 consecutive n of one k.
        let per_k = BN / 4u;
        for (var e = tid; e < BK * per_k; e += threads) {
            let kk = e / per_k;
            let j = 4u * (e % per_k);
            let gj = col0 + j;
            let gk = k0 + kk;
            var v = vec4<f32>(0.0);
            if (gj < P.n && gk < P.k) {
                v = b[(b_base + gk * P.rs_b + gj) / 4u];
            }
            // 4 consecutive columns of one k: one aligned vec4 of the padded tile.
            Bs[(kk * BNP + j) / 4u] = v;
        }
    } else {
        // B transposed (stored [N][K]): vec4 = 4 consecutive k of one column.
        let per_col = BK / 4u;
        for (var e = tid; e < BN * per_col; e += threads) {
            let j = e / per_col;
            let kk = 4u * (e % per_col);
            let gj = col0 + j;
            let gk = k0 + kk;
            var v = vec4<f32>(0.0);
            if (gj < P.n && gk < P.k) {
                v = b[(b_base + gj * P.cs_b + gk) / 4u];
            }
            mm_set_b(kk, j, v.x);
            mm_set_b(kk + 1u, j, v.y);
            mm_set_b(kk + 2u, j, v.z);
            mm_set_b(kk + 3u, j, v.w);
        }
    }
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn matmul(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    mm_main(lid, wid);
}
