//! The activations on the host: GELU (tanh form, as GPT-2 and BERT use) and the logistic
//! sigmoid, each defined once per distinct formula.
//!
//! There are two GELUs because they compute different bits:
//! - [`gelu`] (with [`gelu_tanh`], [`gelu_of`], [`gelu_grad`]) uses the platform's `tanh`
//!   (`f64::tanh` / `f32::tanh`): the cpu64 matmul epilogue ([`gelu`] at f64) and the f64 CPU
//!   language-model trainer. The cpu32 trainer forms the same `½x(1 + t)` with `t` from the
//!   vectorised [`crate::num::fastmath::tanh_f32`] (`HostFloat::tanh_slice`).
//! - [`gelu_f32_exp`] writes `tanh(u) = 1 − 2/(e^{2u} + 1)` from one exponential, with `u`
//!   clamped to ±15, as the GPU matmul kernels compute it (WGSL's `tanh` is not required to
//!   be accurate, and overflows to NaN on some drivers): the cpu32 matmul epilogue, so cpu32
//!   matches the kernels it is compared with.
//!
//! The GPU kernels (`shaders/`, `backend::cube`) hold their own copies of these formulas in
//! their languages; these are the host's.

use crate::num::float::HostFloat;

/// GELU's cubic coefficient, `0.044715`.
pub const GELU_A: f64 = 0.044_715;
/// √(2/π), GELU's tanh-form scale.
pub const GELU_S: f64 = 0.797_884_560_802_865_4;

/// `tanh(√(2/π)·(x + 0.044715·x³))`, GELU's inner term, with the platform's `tanh`.
#[inline]
pub fn gelu_tanh<T: HostFloat>(x: T) -> T {
    (T::of(GELU_S) * (x + T::of(GELU_A) * x * x * x)).tanh()
}

/// GELU of `x` given its [`gelu_tanh`] `t`: `½·x·(1 + t)`.
#[inline]
pub fn gelu_of<T: HostFloat>(x: T, t: T) -> T {
    T::of(0.5) * x * (T::one() + t)
}

/// GELU′ of `x` given its [`gelu_tanh`] `t`:
/// `½(1 + t) + ½·x·(1 − t²)·√(2/π)·(1 + 3·0.044715·x²)`.
#[inline]
pub fn gelu_grad<T: HostFloat>(x: T, t: T) -> T {
    let (a, s, half) = (T::of(GELU_A), T::of(GELU_S), T::of(0.5));
    half * (T::one() + t) + half * x * (T::one() - t * t) * s * (T::one() + T::of(3.0) * a * x * x)
}

/// GELU, tanh form, `½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`, with the platform's `tanh`.
#[inline]
pub fn gelu<T: HostFloat>(x: T) -> T {
    gelu_of(x, gelu_tanh(x))
}

/// GELU (tanh form) in f32 as the GPU matmul kernels compute it: `tanh(u) = 1 − 2/(e^{2u} + 1)`
/// with `u` clamped to ±15 (where tanh is ±1 in f32), so no overflow reaches a NaN.
#[inline]
pub fn gelu_f32_exp(x: f32) -> f32 {
    let u = (GELU_S as f32 * (x + 0.044715 * x * x * x)).clamp(-15.0, 15.0);
    let t = 1.0 - 2.0 / ((2.0 * u).exp() + 1.0);
    0.5 * x * (1.0 + t)
}

/// The logistic sigmoid `1 / (1 + e^(−x))`. (The VAE's loss computes its probabilities together
/// with the BCE from one exponential instead; see `models::vae::cpu`.)
#[inline]
pub fn sigmoid<T: HostFloat>(x: T) -> T {
    T::one() / (T::one() + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_gelus_agree_within_f32_rounding() {
        for i in -400..=400 {
            let x = i as f64 * 0.02;
            let (a, b) = (gelu(x), gelu_f32_exp(x as f32) as f64);
            assert!((a - b).abs() < 1e-6 * (1.0 + a.abs()), "{x}: {a} vs {b}");
            assert!((gelu(x as f32) as f64 - a).abs() < 1e-6 * (1.0 + a.abs()));
        }
        assert_eq!(gelu_f32_exp(1e30), 1e30);
        assert_eq!(gelu_f32_exp(-1e30), 0.0);
    }

    #[test]
    fn gelu_grad_matches_central_differences() {
        for i in -50..=50 {
            let x = i as f64 * 0.1;
            let h = 1e-6;
            let fd = (gelu(x + h) - gelu(x - h)) / (2.0 * h);
            assert!((gelu_grad(x, gelu_tanh(x)) - fd).abs() < 1e-8, "{x}");
        }
        assert_eq!(sigmoid(0.0f64), 0.5);
    }
}
