// matmul_f16.wgsl — the matmul of matmul.wgsl with A and B stored as f16 (IEEE binary16); products
// are accumulated in f32 and C, bias stay f32. Needs the adapter's SHADER_F16.
//
// Bindings (group 0): 0 uniform MatmulParams; 1 storage read a: array<f16>;
//   2 storage read b: array<f16>; 3 storage read bias: array<f32>; 4 storage read_write c: f32.
// Layout, workgroup shape (WG_X x WG_Y x 1, overridable), tiles and what one invocation computes:
// see common/matmul_core.wgsl (scalar tile loads, widened to f32 on load).

enable f16;

//!include common/matmul_core.wgsl

@group(0) @binding(1) var<storage, read> a: array<f16>;
@group(0) @binding(2) var<storage, read> b: array<f16>;

fn mm_a(i: u32) -> f32 {
    return f32(a[i]);
}

fn mm_b(i: u32) -> f32 {
    return f32(b[i]);
}

fn mm_load(tid: u32, k0: u32, row0: u32, col0: u32, bt: u32) {
    mm_load_scalar(tid, k0, row0, col0, bt);
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn matmul(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    mm_main(lid, wid);
}
