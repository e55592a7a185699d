//! Host numerics every layer above shares: the float traits, summation orders, and the small
//! dense math (Cholesky, mixture log-densities, activations) written once.

pub mod float;
pub mod gemm;
pub mod real;
pub mod summation;
