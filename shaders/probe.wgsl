// probe.wgsl — ceiling probes for roofline figures.
//   `copy` streams one buffer into another (memory bandwidth);
//   `fma_chains` runs 8 independent vec4 fma chains of FMA_ITERS steps per invocation
//          (arithmetic throughput, f32).
//
// Bindings (group 0), shared by both entry points:
//   0: storage, read        src: array<vec4<f32>>
//   1: storage, read_write  dst: array<vec4<f32>>
// Layout, copy: dst[i] = src[i] for i < arrayLength(&dst) (16 bytes read and 16 written each).
// Layout, fma_chains: chain j of invocation i starts at src[i] + j and steps a = fma(a, b, c) with
//   b = src[0], c = src[1] (host-chosen so values stay bounded); the sum of the chains goes to
//   dst[i]; the inputs come from memory and the result is stored, so no step can
//   be folded away. FLOPs per invocation = 8 chains * 4 lanes * 2 * FMA_ITERS = 16384.
// Workgroup: 256 x 1 x 1 on an (x, y) grid (x <= 65535); invocation i = gid.x + gid.y * 256 * nwg.x.
// Bytes moved by copy = 2 * arrayLength * 16: the host reports (read + written) bytes per second.

@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;

@compute @workgroup_size(256)
fn copy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * (nwg.x * 256u);
    if (i < arrayLength(&dst)) {
        dst[i] = src[i];
    }
}

const FMA_ITERS: u32 = 256u;

@compute @workgroup_size(256)
fn fma_chains(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * (nwg.x * 256u);
    if (i >= arrayLength(&dst)) {
        return;
    }
    let b = src[0];
    let c = src[1];
    let s = src[i];
    var a0 = s;
    var a1 = s + vec4<f32>(1.0);
    var a2 = s + vec4<f32>(2.0);
    var a3 = s + vec4<f32>(3.0);
    var a4 = s + vec4<f32>(4.0);
    var a5 = s + vec4<f32>(5.0);
    var a6 = s + vec4<f32>(6.0);
    var a7 = s + vec4<f32>(7.0);
    for (var t = 0u; t < FMA_ITERS; t = t + 1u) {
        a0 = fma(a0, b, c);
        a1 = fma(a1, b, c);
        a2 = fma(a2, b, c);
        a3 = fma(a3, b, c);
        a4 = fma(a4, b, c);
        a5 = fma(a5, b, c);
        a6 = fma(a6, b, c);
        a7 = fma(a7, b, c);
    }
    dst[i] = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
}
