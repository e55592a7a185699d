//! Philox4x32-10 in Rust: the definition every other backend must match bit for bit.
//!
//! # Stream layout
//!
//! A random stream is named by a [`StreamKey`] `(seed: u64, stream: u64)`. Its `i`-th 32-bit draw is
//! a pure function of `(seed, stream, i)`:
//!
//! ```text
//! block   b = i / 4,            lane l = i % 4
//! key     = [seed as u32, (seed >> 32) as u32]
//! counter = [b as u32, (b >> 32) as u32, stream as u32, (stream >> 32) as u32]
//! draw i  = philox4x32_10(counter, key)[l]
//! ```
//!
//! So any backend produces draw `i` without producing draws `0..i`, and one launch can cover any
//! range `[start, start + n)` of a stream. Streams with different `stream` numbers never share a
//! counter, so replicate chains and model steps that take separate streams are independent.
//! Every stream number the crate uses is named in [`streams`], whose tests check that no two
//! purposes share one.
//!
//! # Conversions (identical on every backend)
//!
//! - u32 → f32 in `[0, 1)`: `(x >> 8) as f32 * 2⁻²⁴` — exact, 2²⁴ equally spaced values.
//! - u32 → f64 in `[0, 1)`: `x as f64 * 2⁻³²` — exact, 2³² equally spaced values.
//! - Box–Muller: draws `2j` and `2j+1` (`j` = 0, 1 within a block) give normals `2j` and `2j+1`:
//!   `u₁ = open(x_{2j})` in `(0, 1]`, `u₂ = unit(x_{2j+1})` in `[0, 1)`, `r = √(−2 ln u₁)`,
//!   `θ = 2π·(u₂ − ½)` in `[−π, π)`, `z_{2j} = r cos θ`, `z_{2j+1} = r sin θ`. The open
//!   conversions are `((x >> 8) + 1) * 2⁻²⁴` (f32) and `(x + 1) * 2⁻³²` (f64), so `ln` never
//!   sees 0. `u₂ − ½` is exact in both precisions; centring θ keeps it inside `[−π, π]`, the
//!   only range where WGSL (and Vulkan) bound the error of `sin`/`cos` (absolute 2⁻¹¹).
//!
//! The f32 and f64 normals therefore use the same draws; they differ only by the precision of
//! the arithmetic (and of the uniform), which is what the drift study wants to isolate.

pub mod streams;

/// First Philox multiplier (applied to counter word 0).
pub const PHILOX_M0: u32 = 0xD251_1F53;
/// Second Philox multiplier (applied to counter word 2).
pub const PHILOX_M1: u32 = 0xCD9E_8D57;
/// Weyl increment of key word 0 between rounds (golden ratio).
pub const PHILOX_W0: u32 = 0x9E37_79B9;
/// Weyl increment of key word 1 between rounds (√3 − 1).
pub const PHILOX_W1: u32 = 0xBB67_AE85;

/// 2⁻²⁴: the spacing of f32 uniforms.
pub const INV_2POW24_F32: f32 = 1.0 / 16_777_216.0;
/// 2⁻³²: the spacing of f64 uniforms.
pub const INV_2POW32_F64: f64 = 1.0 / 4_294_967_296.0;

/// Names one random stream: `seed` is the Philox key, `stream` the upper half of the counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct StreamKey {
    /// Experiment seed (the 64-bit Philox key).
    pub seed: u64,
    /// Stream number (counter words 2 and 3), e.g. one per replicate chain and model step.
    pub stream: u64,
}

impl StreamKey {
    /// A stream key from a seed and a stream number.
    pub const fn new(seed: u64, stream: u64) -> Self {
        Self { seed, stream }
    }

    /// The Philox key words `[lo, hi]` of the seed.
    pub const fn key_words(&self) -> [u32; 2] {
        [self.seed as u32, (self.seed >> 32) as u32]
    }

    /// The Philox counter of block `block` of this stream.
    pub const fn counter(&self, block: u64) -> [u32; 4] {
        [
            block as u32,
            (block >> 32) as u32,
            self.stream as u32,
            (self.stream >> 32) as u32,
        ]
    }

    /// The four draws of block `block` (draws `4·block .. 4·block + 4`).
    #[inline]
    pub fn block(&self, block: u64) -> [u32; 4] {
        philox4x32_10(self.counter(block), self.key_words())
    }

    /// Draw `i` of this stream.
    #[inline]
    pub fn u32_at(&self, i: u64) -> u32 {
        self.block(i / 4)[(i % 4) as usize]
    }
}

/// High and low 32-bit halves of the 64-bit product `a·b`, using the native u64 multiply.
#[inline(always)]
pub const fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = (a as u64) * (b as u64);
    ((p >> 32) as u32, p as u32)
}

/// High half of `a·b` using only 32-bit operations, split into 16-bit halves.
///
/// This is exactly the algorithm `shaders/common/philox.wgsl` and the cubecl kernel use (WGSL
/// has neither u64 nor a high-half multiply); a test checks it against [`mulhilo`].
#[inline(always)]
pub const fn mulhi_emulated(a: u32, b: u32) -> u32 {
    let a_lo = a & 0xFFFF;
    let a_hi = a >> 16;
    let b_lo = b & 0xFFFF;
    let b_hi = b >> 16;
    let lo_lo = a_lo * b_lo;
    let hi_lo = a_hi * b_lo;
    let lo_hi = a_lo * b_hi;
    let hi_hi = a_hi * b_hi;
    // Bits 16..31 of the product plus their carry into bit 32; each term < 2^16, the sum < 2^18.
    let cross = (lo_lo >> 16) + (hi_lo & 0xFFFF) + (lo_hi & 0xFFFF);
    hi_hi + (hi_lo >> 16) + (lo_hi >> 16) + (cross >> 16)
}

/// One Philox4x32 round.
#[inline(always)]
fn round(x: [u32; 4], k: [u32; 2]) -> [u32; 4] {
    let (hi0, lo0) = mulhilo(PHILOX_M0, x[0]);
    let (hi1, lo1) = mulhilo(PHILOX_M1, x[2]);
    [hi1 ^ x[1] ^ k[0], lo1, hi0 ^ x[3] ^ k[1], lo0]
}

/// Philox4x32-10 (Salmon et al., SC'11; Random123): ten rounds, key bumped between rounds.
#[inline]
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut x = counter;
    let mut k = key;
    for r in 0..10 {
        if r > 0 {
            k = [k[0].wrapping_add(PHILOX_W0), k[1].wrapping_add(PHILOX_W1)];
        }
        x = round(x, k);
    }
    x
}

/// u32 → f32 uniform in `[0, 1)`: the top 24 bits times 2⁻²⁴ (exact).
#[inline(always)]
pub fn unit_f32(x: u32) -> f32 {
    (x >> 8) as f32 * INV_2POW24_F32
}

/// u32 → f32 uniform in `(0, 1]`: `((x >> 8) + 1)·2⁻²⁴` (exact), safe for `ln`.
#[inline(always)]
pub fn open_unit_f32(x: u32) -> f32 {
    ((x >> 8) + 1) as f32 * INV_2POW24_F32
}

/// u32 → f64 uniform in `[0, 1)`: `x·2⁻³²` (exact).
#[inline(always)]
pub fn unit_f64(x: u32) -> f64 {
    x as f64 * INV_2POW32_F64
}

/// u32 → f64 uniform in `(0, 1]`: `(x + 1)·2⁻³²` (exact), safe for `ln`.
#[inline(always)]
pub fn open_unit_f64(x: u32) -> f64 {
    (x as f64 + 1.0) * INV_2POW32_F64
}

/// Natural log of a positive, normal f32 (Cephes `logf`: mantissa in [√½, √2), degree-8
/// polynomial). Branch-free, ≤ 2 ulp against the correctly rounded result (tested); the f32
/// Box–Muller uses it because libm's `logf` costs several times more.
#[inline(always)]
#[allow(clippy::excessive_precision)] // Cephes' coefficients, as published
pub fn ln_f32(x: f32) -> f32 {
    let bits = x.to_bits();
    // Mantissa in [0.5, 1) and exponent; then fold the mantissa into [√½ − 1, √2 − 1).
    let m0 = f32::from_bits((bits & 0x007F_FFFF) | 0x3F00_0000);
    let small = m0 < std::f32::consts::FRAC_1_SQRT_2;
    let ef = (((bits >> 23) & 0xFF) as i32 - 126 - small as i32) as f32;
    let m = if small { m0 + m0 - 1.0 } else { m0 - 1.0 };
    let z = m * m;
    let mut y = 7.037_683_6e-2 * m - 1.151_461e-1;
    y = y * m + 1.167_699_9e-1;
    y = y * m - 1.242_014_1e-1;
    y = y * m + 1.424_932_3e-1;
    y = y * m - 1.666_805_8e-1;
    y = y * m + 2.000_071_5e-1;
    y = y * m - 2.499_999_4e-1;
    y = y * m + 3.333_333_1e-1;
    y = y * m * z;
    y += -2.121_944_4e-4 * ef;
    y += -0.5 * z;
    m + y + 0.693_359_4 * ef
}

/// `(sin θ, cos θ)` in f32 for `θ = 2π·(unit_f32(x) − ½)`, the Box–Muller angle of draw `x`.
///
/// The reduction is exact integer arithmetic on the 24-bit uniform: `θ = q·π/2 + 2π·r` with
/// quadrant `q ∈ {−2..2}` and `|r| ≤ ⅛`, then Cephes' `sinf`/`cosf` polynomials on
/// `|2π·r| ≤ π/4` and a quadrant rotation. ≤ 2 ulp absolute against f64 (tested). It evaluates
/// the same function as `sin(2π(u − ½))` on the GPU, more accurately than forming θ in f32.
#[inline(always)]
pub fn sincos_turn_f32(x: u32) -> (f32, f32) {
    let m = (x >> 8) as i32; // u = m·2⁻²⁴
    let q = ((m + (1 << 21)) >> 22) - 2; // nearest quarter turn of u − ½
    let r = ((m - (1 << 23)) - q * (1 << 22)) as f32 * INV_2POW24_F32; // |r| ≤ 1/8, exact
    let a = std::f32::consts::TAU * r;
    let z = a * a;
    let sin_a = a + a * z * ((-1.951_529_6e-4 * z + 8.332_161e-3) * z - 1.666_665_5e-1);
    let cos_a =
        1.0 - 0.5 * z + z * z * ((2.443_315_7e-5 * z - 1.388_731_6e-3) * z + 4.166_664_6e-2);
    // Rotate by q quarter turns, branch-free: odd q swaps sin and cos; q ≡ 2, 3 (mod 4) negates
    // sin, q ≡ 1, 2 negates cos.
    let q = q as u32;
    let swap = q & 1 != 0;
    let (s, c) = if swap { (cos_a, sin_a) } else { (sin_a, cos_a) };
    let s_flip = (q & 2) << 30;
    let c_flip = (q.wrapping_add(1) & 2) << 30;
    (
        f32::from_bits(s.to_bits() ^ s_flip),
        f32::from_bits(c.to_bits() ^ c_flip),
    )
}

/// Box–Muller in f32 on two raw draws: returns `(r cos θ, r sin θ)`, with [`ln_f32`] and
/// [`sincos_turn_f32`] (the GPU kernels use their own `log`, `sin`, `cos` on the same formula).
#[inline(always)]
pub fn box_muller_f32(x0: u32, x1: u32) -> (f32, f32) {
    let u1 = open_unit_f32(x0);
    let r = (-2.0f32 * ln_f32(u1)).sqrt();
    let (s, c) = sincos_turn_f32(x1);
    (r * c, r * s)
}

/// Box–Muller in f64 on two raw draws: returns `(r cos θ, r sin θ)`.
#[inline(always)]
pub fn box_muller_f64(x0: u32, x1: u32) -> (f64, f64) {
    let u1 = open_unit_f64(x0);
    let u2 = unit_f64(x1);
    let r = (-2.0f64 * u1.ln()).sqrt();
    let theta = std::f64::consts::TAU * (u2 - 0.5);
    (r * theta.cos(), r * theta.sin())
}

/// The four f32 normals of one block (normals `4·block .. 4·block + 4`).
#[inline]
pub fn normals_f32(x: [u32; 4]) -> [f32; 4] {
    let (a, b) = box_muller_f32(x[0], x[1]);
    let (c, d) = box_muller_f32(x[2], x[3]);
    [a, b, c, d]
}

/// The four f64 normals of one block (normals `4·block .. 4·block + 4`).
#[inline]
pub fn normals_f64(x: [u32; 4]) -> [f64; 4] {
    let (a, b) = box_muller_f64(x[0], x[1]);
    let (c, d) = box_muller_f64(x[2], x[3]);
    [a, b, c, d]
}

/// Fill `out` with draws `start .. start + out.len()` of a stream, one block at a time, calling
/// `per_block(block_words, first_lane)` to turn a block into up to four values.
///
/// The shared driver of the CPU backends: it handles a `start` that is not a multiple of 4 and a
/// ragged end, so each backend only says how a block becomes values.
pub fn fill_blocks<T: Copy>(
    key: StreamKey,
    start: u64,
    out: &mut [T],
    mut per_block: impl FnMut([u32; 4]) -> [T; 4],
) {
    let mut i = 0usize;
    while i < out.len() {
        let idx = start + i as u64;
        let lane = (idx % 4) as usize;
        let vals = per_block(key.block(idx / 4));
        let take = (4 - lane).min(out.len() - i);
        out[i..i + take].copy_from_slice(&vals[lane..lane + take]);
        i += take;
    }
}

/// f64 Box–Muller normals `start .. start + out.len()` of `key`, on the host: the definition
/// (what the cpu64 backend returns), for weights' initialisation and fixed latents.
pub fn host_normals_f64(key: StreamKey, start: u64, out: &mut [f64]) {
    fill_blocks(key, start, out, normals_f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer_vectors() {
        assert_eq!(
            philox4x32_10([0; 4], [0; 2]),
            [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
        );
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
                [0xa4093822, 0x299f31d0]
            ),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    #[test]
    fn emulated_mulhi_matches_u64_product() {
        // Edge values plus a Philox-driven sweep of 2^20 random pairs.
        let edges = [
            0u32,
            1,
            2,
            0xFFFF,
            0x10000,
            0x7FFF_FFFF,
            0x8000_0000,
            u32::MAX - 1,
            u32::MAX,
        ];
        for &a in &edges {
            for &b in &edges {
                assert_eq!(mulhi_emulated(a, b), mulhilo(a, b).0, "a={a:#x} b={b:#x}");
            }
        }
        let key = StreamKey::new(0xDEAD_BEEF, 7);
        for blk in 0..(1u64 << 19) {
            let w = key.block(blk);
            for (a, b) in [(w[0], w[1]), (w[2], w[3])] {
                assert_eq!(mulhi_emulated(a, b), mulhilo(a, b).0, "a={a:#x} b={b:#x}");
            }
        }
    }

    #[test]
    fn conversions_hit_their_ends_exactly() {
        assert_eq!(unit_f32(0), 0.0);
        assert_eq!(unit_f32(u32::MAX), 1.0 - INV_2POW24_F32);
        assert_eq!(open_unit_f32(0), INV_2POW24_F32);
        assert_eq!(open_unit_f32(u32::MAX), 1.0);
        assert_eq!(unit_f64(u32::MAX), 1.0 - INV_2POW32_F64);
        assert_eq!(open_unit_f64(u32::MAX), 1.0);
        assert!(box_muller_f32(u32::MAX, 0).0 == 0.0);
        let (z, _) = box_muller_f64(0, 0);
        assert!(z.is_finite() && z.abs() > 6.0);
    }

    /// Units in the last place of the f32 nearest `v`.
    fn ulp(v: f64) -> f64 {
        let f = (v as f32).abs();
        (f32::from_bits(f.to_bits() + 1) - f) as f64
    }

    #[test]
    fn fast_ln_is_within_two_ulp() {
        // Every open uniform u1 = n·2⁻²⁴ for n on a sweep that includes both ends.
        let mut worst = 0.0f64;
        let mut n = 1u32;
        while n <= 1 << 24 {
            let x = n as f32 * INV_2POW24_F32;
            let want = (x as f64).ln();
            let got = ln_f32(x) as f64;
            let e = (got - want).abs() / ulp(want).max(f32::MIN_POSITIVE as f64);
            worst = worst.max(e);
            assert!(e <= 2.0, "ln({x}) = {got}, want {want} ({e} ulp)");
            n += if n < 4096 { 1 } else { 97 };
        }
        assert!(worst > 0.0);
    }

    #[test]
    fn fast_sincos_is_within_two_ulp() {
        for m in (0u32..1 << 24)
            .step_by(61)
            .chain([0, (1 << 24) - 1, 1 << 23, 1 << 22, 3 << 22])
        {
            let x = m << 8;
            let theta = std::f64::consts::TAU * ((m as f64) * INV_2POW32_F64 * 256.0 - 0.5);
            let (s, c) = sincos_turn_f32(x);
            let tol = 2.0 * f32::EPSILON as f64 / 2.0;
            assert!(
                (s as f64 - theta.sin()).abs() <= tol,
                "sin at m={m}: {s} vs {}",
                theta.sin()
            );
            assert!(
                (c as f64 - theta.cos()).abs() <= tol,
                "cos at m={m}: {c} vs {}",
                theta.cos()
            );
        }
    }

    #[test]
    fn fill_blocks_handles_unaligned_ranges() {
        let key = StreamKey::new(3, 9);
        for start in 0..6u64 {
            for n in 0..11usize {
                let mut out = vec![0u32; n];
                fill_blocks(key, start, &mut out, |w| w);
                for (j, v) in out.iter().enumerate() {
                    assert_eq!(*v, key.u32_at(start + j as u64));
                }
            }
        }
    }
}
