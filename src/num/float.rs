//! The one host float trait: `f64` (the cpu64 reference: plain loops) and `f32` (what the cpu32
//! backend runs: the `gemm` crate through [`crate::num::gemm`]). Everything on the host that is
//! written once for both precisions is generic over [`HostFloat`]: the CPU trainers (the VAE and
//! the language model) and the CPU backends' shared kernels (mixture and categorical sampling),
//! so the two precisions differ only in the rounding of their arithmetic, never in algorithm or
//! order.
//!
//! Arithmetic, comparisons, `exp`, `ln`, `tanh`, `sqrt` … come from [`num_traits::Float`]
//! (which calls the standard library's `f64::exp`, `f32::tanh` …); what it adds is the crate's
//! own definitions at each precision: the conversions, the matrix product, the Philox
//! conversions of [`crate::rng`] and the pairwise sum.

use num_traits::Float;

use crate::num::fastmath;
use crate::num::gemm::{GemmShape, dgemm_accumulate, sgemm};
use crate::num::summation::{pairwise_sum, pairwise_sum_f32};
use crate::rng::{StreamKey, fill_blocks, normals_f32, normals_f64, unit_f32, unit_f64};

/// f32 or f64 as the host code needs them (see the module documentation).
pub trait HostFloat: Float + Send + Sync + std::fmt::Debug + 'static {
    /// Round from f64 (`v as f32`; the identity for f64).
    fn of(v: f64) -> Self;
    /// Widen to f64 (exact).
    fn wide(self) -> f64;
    /// `C[m][n] = op(A)·op(B)` (`+ C` when `acc`); `op(A)` is `A` (`[m][k]`) or, with `ta`,
    /// `Aᵀ` of `A` stored `[k][m]`; likewise `B` (`[k][n]`, or `[n][k]` with `tb`). f64: plain
    /// loops accumulating into C ([`dgemm_accumulate`]); f32: the `gemm` crate ([`sgemm`]).
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        m: usize,
        n: usize,
        k: usize,
        a: &[Self],
        ta: bool,
        b: &[Self],
        tb: bool,
        c: &mut [Self],
        acc: bool,
    );
    /// The four Box–Muller normals of one Philox block at this precision
    /// ([`crate::rng::normals_f64`] / [`crate::rng::normals_f32`]).
    fn block_normals(block: [u32; 4]) -> [Self; 4];
    /// The uniform in `[0, 1)` of a raw draw, as [`crate::rng`] defines it at this precision
    /// ([`crate::rng::unit_f64`] / [`crate::rng::unit_f32`]).
    fn unit(x: u32) -> Self;
    /// Pairwise sum ([`pairwise_sum`] / [`pairwise_sum_f32`]).
    fn psum(v: &[Self]) -> Self;
    /// `tanh` of every element, in place: f64 the standard library's (the reference); f32
    /// [`crate::num::fastmath::tanh_f32`], vectorised (≤ 5·10⁻⁷ from the true value).
    fn tanh_slice(v: &mut [Self]);
    /// `eˣ` of every element, in place: f64 the standard library's; f32
    /// [`crate::num::fastmath::exp_f32`], vectorised (≤ 3·10⁻⁷ relative).
    fn exp_slice(v: &mut [Self]);
    /// `ln(1 + x)` of every element (each in `[0, 1]`), in place: f64 the standard library's;
    /// f32 [`crate::num::fastmath::ln_1p_f32`], vectorised (≤ 3·10⁻⁷ relative).
    fn ln_1p_slice(v: &mut [Self]);

    /// Standard normals `0..n` of `key` at this precision: the same values the cpu64 / cpu32
    /// backends draw.
    fn normals(key: StreamKey, n: usize) -> Vec<Self> {
        let mut v = vec![Self::zero(); n];
        fill_blocks(key, 0, &mut v, Self::block_normals);
        v
    }
}

impl HostFloat for f64 {
    fn of(v: f64) -> Self {
        v
    }
    fn wide(self) -> f64 {
        self
    }
    fn gemm(
        m: usize,
        n: usize,
        k: usize,
        a: &[f64],
        ta: bool,
        b: &[f64],
        tb: bool,
        c: &mut [f64],
        acc: bool,
    ) {
        dgemm_accumulate(m, n, k, a, ta, b, tb, c, acc);
    }
    fn block_normals(block: [u32; 4]) -> [Self; 4] {
        normals_f64(block)
    }
    fn unit(x: u32) -> Self {
        unit_f64(x)
    }
    fn psum(v: &[f64]) -> f64 {
        pairwise_sum(v)
    }
    fn tanh_slice(v: &mut [f64]) {
        v.iter_mut().for_each(|x| *x = x.tanh());
    }
    fn exp_slice(v: &mut [f64]) {
        v.iter_mut().for_each(|x| *x = x.exp());
    }
    fn ln_1p_slice(v: &mut [f64]) {
        v.iter_mut().for_each(|x| *x = x.ln_1p());
    }
}

impl HostFloat for f32 {
    fn of(v: f64) -> Self {
        v as f32
    }
    fn wide(self) -> f64 {
        self as f64
    }
    fn gemm(
        m: usize,
        n: usize,
        k: usize,
        a: &[f32],
        ta: bool,
        b: &[f32],
        tb: bool,
        c: &mut [f32],
        acc: bool,
    ) {
        let g = GemmShape::single(m, n, k, ta, tb, if acc { 1.0 } else { 0.0 });
        sgemm(&g, a, b, None, |v| v, c);
    }
    fn block_normals(block: [u32; 4]) -> [Self; 4] {
        normals_f32(block)
    }
    fn unit(x: u32) -> Self {
        unit_f32(x)
    }
    fn psum(v: &[f32]) -> f32 {
        pairwise_sum_f32(v)
    }
    fn tanh_slice(v: &mut [f32]) {
        fastmath::tanh_slice_f32(v);
    }
    fn exp_slice(v: &mut [f32]) {
        fastmath::exp_slice_f32(v);
    }
    fn ln_1p_slice(v: &mut [f32]) {
        fastmath::ln_1p_slice_f32(v);
    }
}
