// common/philox_mulhi_u64.wgsl — the high half of a 32×32→64-bit product as one native u64
// multiply (needs the SHADER_INT64 feature; naga's WGSL u64 extension). A library file: no
// bindings, no entry points. The host substitutes it for common/philox_mulhi.wgsl where the
// device has SHADER_INT64 (src/gpu/shaders.rs NATIVE_INT64); the bits are the same.

// High 32 bits of the 64-bit product a*b.
fn philox_mulhi(a: u32, b: u32) -> u32 {
    return u32((u64(a) * u64(b)) >> 32u);
}
