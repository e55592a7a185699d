//! What the device-side trainers (the VAE's and the language model's, `src/vae/device.rs` and
//! `src/lm/device.rs`) need from a GPU backend besides their own kernels: buffers and matrix
//! products. Each GPU backend implements it once (`backend::wgsl::kernels`,
//! `backend::cube::kernels`) and adds each model's kernels as an extension of it.

use crate::error::Result;
use crate::matmul::Matmul;

/// Buffers and matrix products on one device. Buffers hold f32 (or u32 where named); lengths
/// are elements.
pub trait DeviceMemory {
    /// A device buffer.
    type Buf: Clone;

    /// A buffer of `len` f32 (contents undefined; poisoned when poisoning is on).
    fn alloc(&self, label: &str, len: usize) -> Result<Self::Buf>;
    /// A buffer holding `data`.
    fn upload(&self, label: &str, data: &[f32]) -> Result<Self::Buf>;
    /// A buffer holding `data` (u32).
    fn upload_u32(&self, label: &str, data: &[u32]) -> Result<Self::Buf>;
    /// Read `len` f32.
    fn read(&self, buf: &Self::Buf, len: usize) -> Result<Vec<f32>>;
    /// `C = act(α·op(A)·op(B) + β·C + bias)` as `p` describes (`bias` given exactly when the
    /// epilogue adds one).
    fn gemm(
        &self,
        p: &Matmul,
        a: &Self::Buf,
        b: &Self::Buf,
        c: &Self::Buf,
        bias: Option<&Self::Buf>,
    ) -> Result<()>;
}
