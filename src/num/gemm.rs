//! The host f32 matrix product: `matrixmultiply`'s sgemm over row blocks of C split across
//! rayon's threads, with the bias and activation epilogue. The cpu32 backend's matmul and the
//! f32 CPU trainers both run it.

use rayon::prelude::*;

use crate::ops::matmul::Matmul;

/// Rows of C per rayon task when one product is split (a multiple of the SGEMM kernel's 8-row
/// micro-tile, large enough that packing B per task stays cheap).
const ROW_BLOCK: usize = 128;

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
