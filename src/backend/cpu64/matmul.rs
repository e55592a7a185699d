//! The matmul reference: f64, three plain loops per output element, no blocking. Slow and
//! obviously right; the bound every other backend is tested against.

use crate::error::Result;
use crate::ops::matmul::{Matmul, Storage, round_f16};

/// `C = act(α·op(A)·op(B) + β·C + bias)` in f64 (see [`crate::ops::matmul`]). With f16 storage the
/// inputs are first rounded to binary16, as the GPU kernels see them.
pub fn matmul(p: &Matmul, a: &[f64], b: &[f64], bias: Option<&[f64]>, c: &mut [f64]) -> Result<()> {
    p.validate(a.len(), b.len(), bias.map(<[f64]>::len), c.len())?;
    let store = |x: f64| match p.storage {
        Storage::F32 => x,
        Storage::F16 => round_f16(x),
    };
    let (ra, ca) = p.strides_a();
    let (rb, cb) = p.strides_b();
    for bt in 0..p.batch {
        let (oa, ob, oc) = (bt * p.stride_a, bt * p.stride_b, bt * p.stride_c);
        for i in 0..p.m {
            for j in 0..p.n {
                let mut s = 0.0;
                for q in 0..p.k {
                    s += store(a[oa + i * ra + q * ca]) * store(b[ob + q * rb + j * cb]);
                }
                let mut v = p.alpha * s;
                if p.beta != 0.0 {
                    v += p.beta * c[oc + i * p.n + j];
                }
                if let Some(bias) = bias {
                    v += bias[j];
                }
                c[oc + i * p.n + j] = p.epilogue.activate(v);
            }
        }
    }
    Ok(())
}
