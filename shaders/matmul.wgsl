// matmul.wgsl — batched C = act(alpha op(A) op(B) + beta C + bias) in f32, any shape and strides.
//
// Bindings (group 0): 0 uniform MatmulParams; 1 storage read a: array<f32>;
//   2 storage read b: array<f32>; 3 storage read bias: array<f32>; 4 storage read_write c.
// Layout, workgroup shape (WG_X x WG_Y x 1, overridable), tiles and what one invocation computes
// (a strided TM x TN block of C): see common/matmul_core.wgsl. Tile loads are scalar, so this
// entry takes every shape; matmul_vec4.wgsl is the faster one when the contiguous dimensions
// are multiples of 4.

//!include common/matmul_core.wgsl

@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;

fn mm_a(i: u32) -> f32 {
    return a[i];
}

fn mm_b(i: u32) -> f32 {
    return b[i];
}

fn mm_load(tid: u32, k0: u32, row0: u32, col0: u32, bt: u32) {
    mm_load_scalar(tid, k0, row0, col0, bt);
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn matmul(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    mm_main(lid, wid);
}
