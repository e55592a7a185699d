//! The float types of the CPU trainers (the VAE and the language model): `f64` with plain loops
//! (the cpu64 reference) and `f32` with `matrixmultiply` through [`crate::num::gemm`] (what the
//! cpu32 backend runs). One trait, so each trainer is written once, generic over its precision.

use num_traits::Float;

use crate::num::summation::{pairwise_sum, pairwise_sum_f32};
use crate::ops::matmul::Matmul;
use crate::rng::{StreamKey, fill_blocks, normals_f32, normals_f64};

/// The arithmetic the CPU trainers need from their float type.
pub trait HostFloat: Float + Send + Sync + std::fmt::Debug + 'static {
    /// Round from f64.
    fn of(v: f64) -> Self;
    /// Widen to f64.
    fn wide(self) -> f64;
    /// `C[m][n] = op(A)·op(B)` (`+ C` when `acc`); `op(A)` is `A` (`[m][k]`) or, with `ta`,
    /// `Aᵀ` of `A` stored `[k][m]`; likewise `B` (`[k][n]`, or `[n][k]` with `tb`).
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
    /// Standard normals `0..n` of `key` at this precision (the Box–Muller of [`crate::rng`] at this
    /// precision: the same values the cpu64 / cpu32 backends draw).
    fn normals(key: StreamKey, n: usize) -> Vec<Self>;
    /// Pairwise sum.
    fn psum(v: &[Self]) -> Self;
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
        // Plain loops: the reference. i–p–j order walks C and B rows contiguously.
        if !acc {
            c[..m * n].iter_mut().for_each(|v| *v = 0.0);
        }
        for i in 0..m {
            for p in 0..k {
                let av = if ta { a[p * m + i] } else { a[i * k + p] };
                let row = &mut c[i * n..(i + 1) * n];
                for (j, cv) in row.iter_mut().enumerate() {
                    let bv = if tb { b[j * k + p] } else { b[p * n + j] };
                    *cv += av * bv;
                }
            }
        }
    }
    fn normals(key: StreamKey, n: usize) -> Vec<f64> {
        let mut v = vec![0.0; n];
        fill_blocks(key, 0, &mut v, normals_f64);
        v
    }
    fn psum(v: &[f64]) -> f64 {
        pairwise_sum(v)
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
        let mut p = Matmul::new(m, n, k);
        p.trans_a = ta;
        p.trans_b = tb;
        p.beta = if acc { 1.0 } else { 0.0 };
        crate::num::gemm::sgemm(&p, a, b, None, c);
    }
    fn normals(key: StreamKey, n: usize) -> Vec<f32> {
        let mut v = vec![0.0; n];
        fill_blocks(key, 0, &mut v, normals_f32);
        v
    }
    fn psum(v: &[f32]) -> f32 {
        pairwise_sum_f32(v)
    }
}
