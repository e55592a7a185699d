// common/philox_mulhi.wgsl — the portable high half of a 32×32→64-bit product, from 32-bit
// operations only (four 16-bit partial products). A library file: no bindings, no entry points;
// included by common/philox.wgsl. Adapters with SHADER_INT64 get common/philox_mulhi_u64.wgsl
// in its place (same bits).

// High 32 bits of the 64-bit product a*b.
fn philox_mulhi(a: u32, b: u32) -> u32 {
    let a_lo = a & 0xFFFFu;
    let a_hi = a >> 16u;
    let b_lo = b & 0xFFFFu;
    let b_hi = b >> 16u;
    let lo_lo = a_lo * b_lo;
    let hi_lo = a_hi * b_lo;
    let lo_hi = a_lo * b_hi;
    let hi_hi = a_hi * b_hi;
    let cross = (lo_lo >> 16u) + (hi_lo & 0xFFFFu) + (lo_hi & 0xFFFFu);
    return hi_hi + (hi_lo >> 16u) + (lo_hi >> 16u) + (cross >> 16u);
}
