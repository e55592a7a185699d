//! Philox and Box–Muller over `LANES` blocks at once, written lane-by-lane so the compiler
//! vectorises them (SSE2 everywhere; AVX2 where [`with_best_isa`] finds it at run time). The
//! arithmetic per lane is exactly that of [`crate::rng`], so results do not depend on the
//! instruction set or on the batching.

use crate::rng::{
    PHILOX_M0, PHILOX_M1, PHILOX_W0, PHILOX_W1, StreamKey, ln_f32, open_unit_f32, sincos_turn_f32,
};

/// Blocks processed together.
pub const LANES: usize = 8;

/// Words `[w][lane]` of blocks `first_block .. first_block + LANES` of `key`.
#[inline(always)]
pub fn philox_lanes(key: StreamKey, first_block: u64) -> [[u32; LANES]; 4] {
    philox_lanes_at(key, std::array::from_fn(|l| first_block + l as u64))
}

/// Words `[w][lane]` of blocks `blocks[lane]` of `key`.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // lane-indexed loops are what the vectoriser needs
pub fn philox_lanes_at(key: StreamKey, blocks: [u64; LANES]) -> [[u32; LANES]; 4] {
    let mut x = [[0u32; LANES]; 4];
    for l in 0..LANES {
        let c = key.counter(blocks[l]);
        for w in 0..4 {
            x[w][l] = c[w];
        }
    }
    let mut k = key.key_words();
    for r in 0..10 {
        if r > 0 {
            k = [k[0].wrapping_add(PHILOX_W0), k[1].wrapping_add(PHILOX_W1)];
        }
        for l in 0..LANES {
            let p0 = PHILOX_M0 as u64 * x[0][l] as u64;
            let p1 = PHILOX_M1 as u64 * x[2][l] as u64;
            let y0 = (p1 >> 32) as u32 ^ x[1][l] ^ k[0];
            let y2 = (p0 >> 32) as u32 ^ x[3][l] ^ k[1];
            x[0][l] = y0;
            x[1][l] = p1 as u32;
            x[2][l] = y2;
            x[3][l] = p0 as u32;
        }
    }
    x
}

/// Box–Muller on lanes: `(r cos θ, r sin θ)` for draw pairs `(a[l], b[l])`, identical to
/// [`crate::rng::box_muller_f32`] per lane.
#[inline(always)]
pub fn box_muller_lanes(a: &[u32; LANES], b: &[u32; LANES]) -> ([f32; LANES], [f32; LANES]) {
    let mut zc = [0f32; LANES];
    let mut zs = [0f32; LANES];
    for l in 0..LANES {
        let r = (-2.0f32 * ln_f32(open_unit_f32(a[l]))).sqrt();
        let (s, c) = sincos_turn_f32(b[l]);
        zc[l] = r * c;
        zs[l] = r * s;
    }
    (zc, zs)
}

/// The `4·LANES` f32 normals of blocks `first_block ..`, in draw order.
#[inline(always)]
pub fn normals_lanes(key: StreamKey, first_block: u64, out: &mut [f32; 4 * LANES]) {
    let x = philox_lanes(key, first_block);
    let (z0, z1) = box_muller_lanes(&x[0], &x[1]);
    let (z2, z3) = box_muller_lanes(&x[2], &x[3]);
    for l in 0..LANES {
        out[4 * l] = z0[l];
        out[4 * l + 1] = z1[l];
        out[4 * l + 2] = z2[l];
        out[4 * l + 3] = z3[l];
    }
}

/// Run `f` compiled for AVX2 when the CPU has it (detected at run time), else as compiled for
/// the baseline. Both give identical results: no fused multiply-add is enabled.
#[inline(always)]
pub fn with_best_isa<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { avx2(f) };
        }
    }
    f()
}
