//! Run-time choice of the instruction set for host loops written to vectorise.
//!
//! The crate is built for the x86-64 baseline (SSE2: two f64 lanes). [`with_best_isa`] runs a
//! closure compiled for AVX2 (four f64 lanes) when the CPU has it. No fused multiply-add is
//! enabled and Rust never contracts `a * b + c` on its own, so every operation rounds exactly as
//! in the baseline build: the results are bit-identical whatever the CPU, only the time differs.
//! Only code inlined into the closure is compiled for AVX2, so the hot functions it calls are
//! `#[inline(always)]`.

/// Run `f` compiled for AVX2 when the CPU has it (detected at run time), else as compiled for
/// the baseline. Both give identical results: no fused multiply-add is enabled.
#[inline(always)]
pub fn with_best_isa<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { avx2(f) };
        }
    }
    f()
}
