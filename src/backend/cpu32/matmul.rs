//! The fast CPU matmul: f32 through the `gemm` crate's packed, register-blocked SGEMM
//! (it takes arbitrary row/column strides, so transposes cost nothing), batches and row blocks
//! spread over rayon's threads ([`crate::num::gemm::sgemm`]), then the epilogue in f32.

use crate::error::Result;
use crate::ops::matmul::{Matmul, Storage};

/// The f32 kernel on f32 slices (already validated): what the bench times.
pub fn sgemm(p: &Matmul, a: &[f32], b: &[f32], bias: Option<&[f32]>, c: &mut [f32]) {
    crate::num::gemm::sgemm(&p.shape(), a, b, bias, |v| p.epilogue.activate_f32(v), c);
}

/// `C = act(α·op(A)·op(B) + β·C + bias)` in f32 (see [`crate::ops::matmul`]); inputs and C are
/// rounded to f32 (to binary16 first for A and B with f16 storage), the result widened back.
pub fn matmul(p: &Matmul, a: &[f64], b: &[f64], bias: Option<&[f64]>, c: &mut [f64]) -> Result<()> {
    p.validate(a.len(), b.len(), bias.map(<[f64]>::len), c.len())?;
    let narrow = |x: &[f64]| -> Vec<f32> {
        match p.storage {
            Storage::F32 => x.iter().map(|&v| v as f32).collect(),
            Storage::F16 => x.iter().map(|&v| half::f16::from_f64(v).to_f32()).collect(),
        }
    };
    let (a32, b32) = (narrow(a), narrow(b));
    let bias32: Option<Vec<f32>> = bias.map(|v| v.iter().map(|&x| x as f32).collect());
    let mut c32: Vec<f32> = if p.beta != 0.0 {
        c.iter().map(|&v| v as f32).collect()
    } else {
        vec![0.0; c.len()]
    };
    sgemm(p, &a32, &b32, bias32.as_deref(), &mut c32);
    for (o, v) in c.iter_mut().zip(&c32) {
        *o = *v as f64;
    }
    Ok(())
}
