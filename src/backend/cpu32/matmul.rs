//! The fast CPU matmul: f32 through the `matrixmultiply` crate's packed, register-blocked SGEMM
//! (it takes arbitrary row/column strides, so transposes cost nothing), batches and row blocks
//! spread over rayon's threads, then the epilogue in f32.

use rayon::prelude::*;

use crate::error::Result;
use crate::matmul::{Matmul, Storage};

/// Rows of C per rayon task when one product is split (a multiple of the SGEMM kernel's 8-row
/// micro-tile, large enough that packing B per task stays cheap).
const ROW_BLOCK: usize = 128;

/// `C = act(α·op(A)·op(B) + β·C + bias)` in f32 (see [`crate::matmul`]); inputs and C are
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

/// The f32 kernel on f32 slices (already validated): what the bench times.
pub fn sgemm(p: &Matmul, a: &[f32], b: &[f32], bias: Option<&[f32]>, c: &mut [f32]) {
    let (ra, ca) = p.strides_a();
    let (rb, cb) = p.strides_b();
    let (alpha, beta) = (p.alpha as f32, p.beta as f32);
    let mn = p.m * p.n;
    // Tasks: (batch, first row, rows) over disjoint row blocks of C.
    let blocks = p.m.div_ceil(ROW_BLOCK);
    let mut tasks: Vec<(usize, usize, &mut [f32])> = Vec::with_capacity(p.batch * blocks);
    let mut rest = &mut c[..];
    for bt in 0..p.batch {
        let skip = if bt == 0 { 0 } else { p.stride_c - mn };
        let (_, tail) = rest.split_at_mut(skip);
        let (mine, tail) = tail.split_at_mut(mn);
        rest = tail;
        for (blk, rows) in mine.chunks_mut(ROW_BLOCK * p.n).enumerate() {
            tasks.push((bt, blk * ROW_BLOCK, rows));
        }
    }
    tasks.into_par_iter().for_each(|(bt, i0, out)| {
        let rows = out.len() / p.n;
        let a0 = &a[bt * p.stride_a + i0 * ra..];
        let b0 = &b[bt * p.stride_b..];
        // SAFETY: the pointers cover `rows × K` of A and `K × N` of B at the given strides
        // (checked by `Matmul::validate`), and `out` is exactly `rows × N` of C.
        unsafe {
            matrixmultiply::sgemm(
                rows,
                p.k,
                p.n,
                alpha,
                a0.as_ptr(),
                ra as isize,
                ca as isize,
                b0.as_ptr(),
                rb as isize,
                cb as isize,
                beta,
                out.as_mut_ptr(),
                p.n as isize,
                1,
            );
        }
        if let Some(bias) = bias {
            for row in out.chunks_mut(p.n) {
                for (v, bv) in row.iter_mut().zip(bias) {
                    *v = p.epilogue.activate_f32(*v + bv);
                }
            }
        }
    });
}
