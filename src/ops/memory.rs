//! What the device trainers (the VAE's and the language model's, `src/models/vae/device.rs` and
//! `src/models/lm/device.rs`) need from a GPU backend besides their own kernels: buffers and
//! matrix products. Each GPU backend implements it once (`backend::wgsl::memory`,
//! `backend::cube::memory`) and adds each model's kernels as an extension of it
//! ([`super::vae::VaeOps`], [`super::lm::LmOps`]).

use crate::error::Result;
use crate::ops::matmul::Matmul;

/// Buffers and matrix products on one device. Buffers hold f32 (or u32 where named); lengths
/// are elements.
pub trait DeviceMemory {
    /// A device buffer.
    type Buf: Clone;

    /// Bytes one storage binding may hold on this adapter (every kernel binds whole buffers).
    fn binding_bytes(&self) -> u64;
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

/// Error unless `per_unit` f32 values per unit (image, sequence) times `units` fit one storage
/// binding of `mem`: a batch too big for the adapter, said in the user's terms (`what`, e.g.
/// "a batch of 60000 images"; `unit`, e.g. "images") with the largest that fits.
pub fn check_batch_fits<M: DeviceMemory + ?Sized>(
    mem: &M,
    what: &str,
    units: usize,
    per_unit: usize,
    unit: &str,
) -> Result<()> {
    let max = mem.binding_bytes();
    let bytes = (units * per_unit) as u64 * 4;
    if bytes > max {
        return Err(crate::error::Error::InvalidArgument(format!(
            "{what} needs a buffer of {bytes} bytes, over this adapter's storage binding limit \
             of {max} bytes: use at most {} {unit} per batch",
            max / (per_unit as u64 * 4)
        )));
    }
    Ok(())
}
