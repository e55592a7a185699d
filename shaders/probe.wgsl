// probe.wgsl — ceiling probes for roofline figures: `copy` streams one buffer into another.
//
// Bindings (group 0):
//   0: storage, read        src: array<vec4<f32>>
//   1: storage, read_write  dst: array<vec4<f32>>
// Layout: dst[i] = src[i] for i < arrayLength(&dst) (16 bytes read and 16 written per element).
// Workgroup: 256 x 1 x 1 on an (x, y) grid (x <= 65535); invocation i = gid.x + gid.y * 256 * nwg.x.
// Bytes moved = 2 * arrayLength * 16: the host reports (read + written) bytes per second.

@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;

@compute @workgroup_size(256)
fn copy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * (nwg.x * 256u);
    if (i < arrayLength(&dst)) {
        dst[i] = src[i];
    }
}
