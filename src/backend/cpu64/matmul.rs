//! The matmul reference: f64, three plain loops per output element, no blocking
//! ([`crate::num::gemm::dgemm_reference`]). Slow and obviously right; the bound every other
//! backend is tested against.

use crate::error::Result;
use crate::num::gemm::dgemm_reference;
use crate::ops::matmul::{Matmul, Storage, round_f16};

/// `C = act(α·op(A)·op(B) + β·C + bias)` in f64 (see [`crate::ops::matmul`]). With f16 storage the
/// inputs are first rounded to binary16, as the GPU kernels see them.
pub fn matmul(p: &Matmul, a: &[f64], b: &[f64], bias: Option<&[f64]>, c: &mut [f64]) -> Result<()> {
    p.validate(a.len(), b.len(), bias.map(<[f64]>::len), c.len())?;
    let store = |x: f64| match p.storage {
        Storage::F32 => x,
        Storage::F16 => round_f16(x),
    };
    dgemm_reference(&p.shape(), a, b, bias, store, |v| p.epilogue.activate(v), c);
    Ok(())
}
