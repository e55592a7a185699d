//! Fast f32 transcendental functions for the cpu32 trainers' element-wise work, and the slice
//! kernels that run them with the widest vector instructions the CPU has.
//!
//! The platform's `tanhf`, `expf` and `log1pf` (libm) are accurate but scalar: 4–15 ns an
//! element, a quarter of the language model's training time in GELU and a fifth of the VAE's in
//! its BCE. These are branch-free polynomial and rational forms that the compiler vectorises:
//!
//! - [`tanh_f32`]: the odd/even rational approximation of degree 13/6 that Eigen uses
//!   (`generic_fast_tanh_float`), inputs clamped to ±7.90531 (where it reaches ±1 in f32) and
//!   `tanh(x) = x` below 4·10⁻⁴; NaN stays NaN.
//! - [`exp_f32`]: Cephes' `expf`: `x = n·ln 2 + r` (ln 2 split in two), a degree-6 polynomial in
//!   `r`, then `2ⁿ` by building the exponent bits; inputs clamped to `[−87.3, 88.7]` (also the
//!   cpu32 GMM's E-step exponential).
//! - [`ln_1p_f32`] on `[0, 1]` (what BCE needs: `ln(1 + e^{−|l|})`): Cephes' `logf` polynomial
//!   on `u = 1 + x` and the correction `(x − (u − 1))/u` for the rounding of `u`.
//!
//! Measured errors against f64 (the tests): `tanh_f32` ≤ 5·10⁻⁷ absolute, `exp_f32` and
//! `ln_1p_f32` ≤ 3·10⁻⁷ relative — a few f32 ulps, within every cpu32-vs-cpu64 bound.
//!
//! Each slice kernel ([`tanh_slice_f32`], [`exp_slice_f32`], [`ln_1p_slice_f32`]) is one loop
//! compiled three times, for AVX-512, for AVX2 and for the baseline, and chosen at run time. Rust never fuses a
//! multiply and an add unless told (no FMA contraction), so all three give the same bits: a
//! result does not depend on which machine ran it.

/// `tanh(x)` in f32 by a rational approximation (see the module documentation): ≤ 5·10⁻⁷ from
/// the true value, `tanh(±∞) = ±1`, NaN in, NaN out.
#[inline(always)]
#[allow(clippy::excessive_precision)] // Eigen's coefficients, as published
pub fn tanh_f32(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    // `clamp` (not max/min) so a NaN passes through.
    let xc = x.clamp(-CLAMP, CLAMP);
    let x2 = xc * xc;
    let mut p = x2 * -2.760_768_5e-16 + 2.000_187_9e-13;
    p = x2 * p + -8.604_671_5e-11;
    p = x2 * p + 5.122_297e-8;
    p = x2 * p + 1.485_722_4e-5;
    p = x2 * p + 6.372_619_3e-4;
    p = x2 * p + 4.893_524_6e-3;
    p *= xc;
    let mut q = x2 * 1.198_258_4e-6 + 1.185_347_1e-4;
    q = x2 * q + 2.268_434_6e-3;
    q = x2 * q + 4.893_525e-3;
    if x.abs() < 4e-4 { x } else { p / q }
}

/// e^x in f32, branch-free (Cephes `expf`: x = n ln 2 + r, degree-6 polynomial, scaled by 2ⁿ
/// through the exponent bits), ≤ 2 ulp for x in [−87.3, 88.7] (tested); inputs below are
/// clamped to −87.3 (giving ~1e-38 instead of an underflow to 0); NaN in, NaN out. The cpu32
/// GMM's E-step and the cpu32 trainers' [`exp_slice_f32`] run it.
#[inline(always)]
#[allow(clippy::excessive_precision)] // Cephes' coefficients, as published
pub fn exp_f32(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.7);
    let t = x * std::f32::consts::LOG2_E + 0.5;
    let mut n = t as i32;
    if (n as f32) > t {
        n -= 1; // floor for negative t
    }
    let nf = n as f32;
    let r = x - nf * 0.693_359_375 - nf * -2.121_944_4e-4;
    let z = r * r;
    let mut y = 1.987_569_1e-4 * r + 1.398_199_9e-3;
    y = y * r + 8.333_452e-3;
    y = y * r + 4.166_579_6e-2;
    y = y * r + 1.666_666_5e-1;
    y = y * r + 5.000_000_1e-1;
    y = y * z + r + 1.0;
    y * f32::from_bits(((n + 127) as u32) << 23)
}

/// `ln(1 + x)` in f32 for `x` in `[0, 1]` (see the module documentation): ≤ 3·10⁻⁷ relative.
#[inline(always)]
#[allow(clippy::excessive_precision)] // Cephes' coefficients, as published
pub fn ln_1p_f32(x: f32) -> f32 {
    let u = 1.0 + x;
    // u in [1, 2]: m in [√½, √2), u = m·2ᵏ, k ∈ {0, 1}.
    let big = u > std::f32::consts::SQRT_2;
    let (m, k) = if big { (u * 0.5, 1.0) } else { (u, 0.0) };
    let f = m - 1.0;
    let z = f * f;
    let mut y = f * 7.037_683_6e-2 + -1.151_461e-1;
    y = y * f + 1.167_699_9e-1;
    y = y * f + -1.242_014_1e-1;
    y = y * f + 1.424_932_3e-1;
    y = y * f + -1.666_805_8e-1;
    y = y * f + 2.000_071_4e-1;
    y = y * f + -2.499_999_4e-1;
    y = y * f + 3.333_333_1e-1;
    y = y * f * z;
    y += k * -2.121_944_4e-4;
    y += -0.5 * z;
    let ln_u = f + y + k * 0.693_359_4;
    // u rounded: ln(1 + x) = ln(u) + (x − (u − 1))/u to first order.
    ln_u + (x - (u - 1.0)) / u
}

/// Defines a function whose body is compiled three times — for AVX-512F, for AVX2 and for the
/// baseline — and run in the widest form the CPU has (checked at run time). The body must be
/// plain loops the compiler can vectorise; every copy computes the same bits (Rust contracts no
/// multiply–add into an FMA unless asked). The slice kernels here and the cpu32 GMM's block
/// kernels use it.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                #[allow(clippy::too_many_arguments)]
                fn avx512($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                #[allow(clippy::too_many_arguments)]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F (checked just above).
                    return unsafe { avx512($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2 (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use multiversion;

multiversion! {
    /// [`tanh_f32`] of every element, in place, vectorised.
    pub fn tanh_slice_f32(v: &mut [f32]) {
        for x in v.iter_mut() {
            *x = tanh_f32(*x);
        }
    }
}

multiversion! {
    /// [`exp_f32`] of every element, in place, vectorised.
    pub fn exp_slice_f32(v: &mut [f32]) {
        for x in v.iter_mut() {
            *x = exp_f32(*x);
        }
    }
}

multiversion! {
    /// [`ln_1p_f32`] of every element (each in `[0, 1]`), in place, vectorised.
    pub fn ln_1p_slice_f32(v: &mut [f32]) {
        for x in v.iter_mut() {
            *x = ln_1p_f32(*x);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dense grid over `[lo, hi]` plus the special points.
    fn grid(lo: f64, hi: f64, n: usize) -> Vec<f32> {
        (0..=n)
            .map(|i| (lo + (hi - lo) * i as f64 / n as f64) as f32)
            .collect()
    }

    #[test]
    fn tanh_is_within_5e7_of_f64() {
        let mut worst = 0.0f64;
        for x in grid(-12.0, 12.0, 200_000)
            .into_iter()
            .chain(grid(-1e-3, 1e-3, 10_000))
        {
            let want = (x as f64).tanh();
            let err = (tanh_f32(x) as f64 - want).abs();
            // Relative near 0 (tanh x ≈ x), absolute elsewhere.
            let err = if want.abs() < 1e-2 {
                err / want.abs().max(1e-30) * 1e-2
            } else {
                err
            };
            worst = worst.max(err);
        }
        assert!(worst < 5e-7, "worst {worst:e}");
        assert_eq!(tanh_f32(f32::INFINITY), 1.0);
        assert_eq!(tanh_f32(f32::NEG_INFINITY), -1.0);
        assert_eq!(tanh_f32(0.0), 0.0);
        assert!(tanh_f32(f32::NAN).is_nan());
    }

    #[test]
    fn exp_and_ln_1p_are_within_3e7_relative_of_f64() {
        let mut worst = 0.0f64;
        for x in grid(-87.0, 88.0, 400_000) {
            let want = (x as f64).exp();
            worst = worst.max((exp_f32(x) as f64 - want).abs() / want);
        }
        assert!(worst < 3e-7, "exp: worst {worst:e}");
        assert!(exp_f32(f32::NAN).is_nan());
        assert!(exp_f32(-1e30) >= 0.0 && exp_f32(-1e30) < 1e-37);
        let mut worst = 0.0f64;
        for x in grid(0.0, 1.0, 400_000)
            .into_iter()
            .chain(grid(0.0, 1e-6, 1000))
        {
            let want = (x as f64).ln_1p();
            let err = (ln_1p_f32(x) as f64 - want).abs();
            worst = worst.max(if want == 0.0 { err } else { err / want });
        }
        assert!(worst < 3e-7, "ln_1p: worst {worst:e}");
    }

    /// The slice kernels equal their scalar functions bit for bit (whichever instruction set
    /// ran them) and write every element; a length no vector width divides.
    #[test]
    fn slice_kernels_equal_the_scalar_functions() {
        let x: Vec<f32> = grid(-9.0, 9.0, 1001);
        let same = |a: &[f32], f: fn(f32) -> f32| {
            a.iter()
                .zip(&x)
                .all(|(got, &xi)| got.to_bits() == f(xi).to_bits())
        };
        let mut v = x.clone();
        tanh_slice_f32(&mut v);
        assert!(same(&v, tanh_f32));
        let mut v = x.clone();
        exp_slice_f32(&mut v);
        assert!(same(&v, exp_f32));
        let u: Vec<f32> = grid(0.0, 1.0, 1001);
        let mut v = u.clone();
        ln_1p_slice_f32(&mut v);
        assert!(
            v.iter()
                .zip(&u)
                .all(|(a, &b)| a.to_bits() == ln_1p_f32(b).to_bits())
        );
    }
}
