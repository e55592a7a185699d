// common/philox.wgsl — Philox4x32-10 and its conversions, shared by every kernel that draws
// random numbers. A library file: no bindings, no entry points. Include it with
//     //!include common/philox.wgsl
//
// Must match src/rng/mod.rs bit for bit (tests/rng.rs checks ≥ 10^6 draws):
//   key     = (seed_lo, seed_hi)
//   counter = (block_lo, block_hi, stream_lo, stream_hi), block = draw_index / 4
//   u32 -> f32 [0,1):  f32(x >> 8) * 2^-24        u32 -> f32 (0,1]:  f32((x >> 8) + 1) * 2^-24
//   Box–Muller on draws (2j, 2j+1): r = sqrt(-2 ln u1), theta = 2*pi*(u2 - 0.5) in [-pi, pi),
//   (r cos theta, r sin theta); WGSL bounds sin/cos error (2^-11 absolute) only on [-pi, pi].
// WGSL has no high-half multiply. philox_mulhi comes from common/philox_mulhi.wgsl (16-bit
// halves, portable) or, on adapters with SHADER_INT64, common/philox_mulhi_u64.wgsl (one native
// u64 product), which the host substitutes at composition (src/gpu/shaders.rs NATIVE_INT64).

const PHILOX_M0: u32 = 0xD2511F53u;
const PHILOX_M1: u32 = 0xCD9E8D57u;
const PHILOX_W0: u32 = 0x9E3779B9u;
const PHILOX_W1: u32 = 0xBB67AE85u;
const PHILOX_INV_2POW24: f32 = 5.9604644775390625e-8;
const PHILOX_TAU: f32 = 6.2831853071795864769;

//!include common/philox_mulhi.wgsl

fn philox_round(x: vec4<u32>, k: vec2<u32>) -> vec4<u32> {
    let hi0 = philox_mulhi(PHILOX_M0, x.x);
    let lo0 = PHILOX_M0 * x.x;
    let hi1 = philox_mulhi(PHILOX_M1, x.z);
    let lo1 = PHILOX_M1 * x.z;
    return vec4<u32>(hi1 ^ x.y ^ k.x, lo1, hi0 ^ x.w ^ k.y, lo0);
}

// Philox4x32-10 of one counter under one key.
fn philox4x32_10(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var x = counter;
    var k = key;
    x = philox_round(x, k);
    for (var r = 1u; r < 10u; r = r + 1u) {
        k = k + vec2<u32>(PHILOX_W0, PHILOX_W1);
        x = philox_round(x, k);
    }
    return x;
}

// Counter of block `block` (lo, hi) in stream (lo, hi).
fn philox_counter(block: vec2<u32>, stream: vec2<u32>) -> vec4<u32> {
    return vec4<u32>(block.x, block.y, stream.x, stream.y);
}

// 64-bit (lo, hi) + 32-bit addition with carry.
fn philox_add64(a: vec2<u32>, b: u32) -> vec2<u32> {
    let lo = a.x + b;
    return vec2<u32>(lo, a.y + select(0u, 1u, lo < a.x));
}

// 64-bit (lo, hi) + 64-bit (lo, hi) addition with carry.
fn philox_add64v(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    let lo = a.x + b.x;
    return vec2<u32>(lo, a.y + b.y + select(0u, 1u, lo < a.x));
}

// The full 64-bit product a*b as (lo, hi).
fn philox_mul64(a: u32, b: u32) -> vec2<u32> {
    return vec2<u32>(a * b, philox_mulhi(a, b));
}

fn philox_unit_f32(x: u32) -> f32 {
    return f32(x >> 8u) * PHILOX_INV_2POW24;
}

fn philox_open_unit_f32(x: u32) -> f32 {
    return f32((x >> 8u) + 1u) * PHILOX_INV_2POW24;
}

fn philox_box_muller(x0: u32, x1: u32) -> vec2<f32> {
    let u1 = philox_open_unit_f32(x0);
    let u2 = philox_unit_f32(x1);
    let r = sqrt(-2.0 * log(u1));
    let theta = PHILOX_TAU * (u2 - 0.5);
    return vec2<f32>(r * cos(theta), r * sin(theta));
}

// The four normals of one block of draws.
fn philox_normals(x: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(philox_box_muller(x.x, x.y), philox_box_muller(x.z, x.w));
}
