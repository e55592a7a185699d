// rng.wgsl — fill a buffer with a range of one Philox stream: raw u32 draws, f32 uniforms in
// [0, 1), or f32 Box–Muller normals (entry points fill_u32, fill_uniform_f32, fill_normal_f32).
//
// Bindings (group 0):
//   0: uniform  RngParams { key: vec2<u32>, stream: vec2<u32>, first_block: vec2<u32>,
//                           count: u32, lane0: u32 }
//   1: storage, read_write  out: array<u32>   (f32 results are stored as bitcast<u32>(f32))
//   2: storage, read_write  out4: array<vec4<u32>>  the same output seen as 16-byte words, for
//      the *_x4 entry points, which the host uses when lane0 == 0 and count % 4 == 0: each
//      invocation then writes its block with one vec4 store (no per-lane checks)
// Layout: out[j] = value of draw (4 * first_block + lane0 + j), j < count; lane0 in 0..4 lets a
//   range start anywhere inside a block.
// Workgroup: 64 x 1 x 1; dispatch (x, y) workgroups with x <= 65535; invocation
//   g = gid.x + gid.y * (64 * num_workgroups.x) computes block first_block + g and writes its up to
//   four values (out indices 4g - lane0 .. 4g - lane0 + 4 that fall in 0..count).
//!include common/philox.wgsl

struct RngParams {
    key: vec2<u32>,
    stream: vec2<u32>,
    first_block: vec2<u32>,
    count: u32,
    lane0: u32,
}

@group(0) @binding(0) var<uniform> params: RngParams;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<storage, read_write> out4: array<vec4<u32>>;

fn block_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * (nwg.x * 64u);
}

fn store_block(g: u32, v: vec4<u32>) {
    // Value lane l of block g goes to out[4g + l - lane0].
    for (var l = 0u; l < 4u; l = l + 1u) {
        let j = 4u * g + l;
        if (j >= params.lane0 && j - params.lane0 < params.count) {
            out[j - params.lane0] = v[l];
        }
    }
}

@compute @workgroup_size(64)
fn fill_u32(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = block_index(gid, nwg);
    if (4u * g >= params.count + params.lane0) {
        return;
    }
    let ctr = philox_counter(philox_add64(params.first_block, g), params.stream);
    store_block(g, philox4x32_10(ctr, params.key));
}

@compute @workgroup_size(64)
fn fill_normal_f32(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = block_index(gid, nwg);
    if (4u * g >= params.count + params.lane0) {
        return;
    }
    let ctr = philox_counter(philox_add64(params.first_block, g), params.stream);
    store_block(g, bitcast<vec4<u32>>(philox_normals(philox4x32_10(ctr, params.key))));
}

@compute @workgroup_size(64)
fn fill_uniform_f32(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = block_index(gid, nwg);
    if (4u * g >= params.count + params.lane0) {
        return;
    }
    let ctr = philox_counter(philox_add64(params.first_block, g), params.stream);
    store_block(g, bitcast<vec4<u32>>(uniforms(philox4x32_10(ctr, params.key))));
}

// The aligned entry points: lane0 == 0, count % 4 == 0, so block g is exactly out4[g].
fn uniforms(x: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(philox_unit_f32(x.x), philox_unit_f32(x.y), philox_unit_f32(x.z), philox_unit_f32(x.w));
}

@compute @workgroup_size(64)
fn fill_u32_x4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = block_index(gid, nwg);
    if (4u * g >= params.count) {
        return;
    }
    let ctr = philox_counter(philox_add64(params.first_block, g), params.stream);
    out4[g] = philox4x32_10(ctr, params.key);
}

@compute @workgroup_size(64)
fn fill_normal_f32_x4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = block_index(gid, nwg);
    if (4u * g >= params.count) {
        return;
    }
    let ctr = philox_counter(philox_add64(params.first_block, g), params.stream);
    out4[g] = bitcast<vec4<u32>>(philox_normals(philox4x32_10(ctr, params.key)));
}

@compute @workgroup_size(64)
fn fill_uniform_f32_x4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = block_index(gid, nwg);
    if (4u * g >= params.count) {
        return;
    }
    let ctr = philox_counter(philox_add64(params.first_block, g), params.stream);
    out4[g] = bitcast<vec4<u32>>(uniforms(philox4x32_10(ctr, params.key)));
}
