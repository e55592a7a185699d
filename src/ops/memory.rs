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
    /// `len` elements of `buf` from element `offset` (a multiple of [`VIEW_ALIGN`]), as a buffer
    /// of its own that kernels bind like any other: how a trainer keeps every tensor of a model
    /// in one flat buffer ([`FlatLayout`]).
    fn view(&self, buf: &Self::Buf, offset: usize, len: usize) -> Result<Self::Buf>;
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

/// Elements (f32 or u32) a [`DeviceMemory::view`]'s offset is a multiple of: 64, i.e. 256
/// bytes, the largest storage-buffer offset alignment WebGPU lets an adapter ask for
/// (`min_storage_buffer_offset_alignment` ≤ 256), so a view binds on every adapter.
pub const VIEW_ALIGN: usize = 64;

/// Elements per block of a [`FlatLayout`]: the unit of the flat optimiser kernels (one
/// workgroup each) and of the language model's partial sums of squares (one per block).
pub const FLAT_BLOCK: usize = 4096;

/// Where each tensor of a model lives in one flat device buffer: tensor `i`'s `counts[i]`
/// elements from `offsets[i]`, each offset a multiple of [`VIEW_ALIGN`] (the gaps are never read
/// by a kernel). Parameters, gradients and optimiser moments share one layout, so an optimiser
/// step over every tensor is one dispatch over the layout's [`FlatLayout::blocks`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlatLayout {
    offsets: Vec<usize>,
    counts: Vec<usize>,
    len: usize,
}

impl FlatLayout {
    /// Tensors of `counts` elements, in order.
    pub fn new(counts: &[usize]) -> Self {
        let mut offsets = Vec::with_capacity(counts.len());
        let mut at = 0;
        for &c in counts {
            offsets.push(at);
            at = (at + c).next_multiple_of(VIEW_ALIGN);
        }
        Self {
            offsets,
            counts: counts.to_vec(),
            len: at.max(1),
        }
    }

    /// Elements of the flat buffer (gaps included; at least 1).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the layout has no tensors.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Tensors.
    pub fn tensors(&self) -> usize {
        self.counts.len()
    }

    /// `(offset, count)` of tensor `i`.
    pub fn range(&self, i: usize) -> (usize, usize) {
        (self.offsets[i], self.counts[i])
    }

    /// Blocks of the layout, tensor by tensor: tensor `i` of `c` elements gives
    /// `max(1, ⌈c / FLAT_BLOCK⌉)` blocks. Block `k` of tensor `i` is the block
    /// `Σ_{j < i} blocks(j) + k`.
    pub fn n_blocks(&self) -> usize {
        self.counts
            .iter()
            .map(|&c| c.div_ceil(FLAT_BLOCK).max(1))
            .sum()
    }

    /// The block table the flat kernels read, four u32 per block: `[start, count, flag, 0]`
    /// with `count ≤` [`FLAT_BLOCK`] elements from element `start`, and `flag` 1 where
    /// `flagged(tensor)` (the language model's decayed tensors), else 0.
    pub fn blocks(&self, flagged: impl Fn(usize) -> bool) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.n_blocks() * 4);
        for (i, (&off, &c)) in self.offsets.iter().zip(&self.counts).enumerate() {
            let flag = u32::from(flagged(i));
            for k in 0..c.div_ceil(FLAT_BLOCK).max(1) {
                let start = off + k * FLAT_BLOCK;
                let n = (c - k * FLAT_BLOCK).min(FLAT_BLOCK);
                out.extend([start as u32, n as u32, flag, 0]);
            }
        }
        out
    }

    /// One host vector in this layout from the tensors' values in order (`values` holds
    /// `Σ counts` elements; gaps 0).
    pub fn pack(&self, values: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; self.len];
        let mut at = 0;
        for (&off, &c) in self.offsets.iter().zip(&self.counts) {
            out[off..off + c].copy_from_slice(&values[at..at + c]);
            at += c;
        }
        out
    }

    /// Views of every tensor of `buf` (a buffer of [`FlatLayout::len`] elements) on `mem`.
    pub fn views<M: DeviceMemory + ?Sized>(&self, mem: &M, buf: &M::Buf) -> Result<Vec<M::Buf>> {
        (self.offsets.iter().zip(&self.counts))
            .map(|(&off, &c)| mem.view(buf, off, c.max(1)))
            .collect()
    }

    /// Every tensor of the flat buffer `buf` (weights or gradients) in order, widened to f64,
    /// read back in one transfer (the gaps left out).
    pub fn read_tensors<M: DeviceMemory + ?Sized>(
        &self,
        mem: &M,
        buf: &M::Buf,
    ) -> Result<Vec<f64>> {
        let all = mem.read(buf, self.len)?;
        let mut out = Vec::with_capacity(self.counts.iter().sum());
        for (&off, &c) in self.offsets.iter().zip(&self.counts) {
            out.extend(all[off..off + c].iter().map(|&x| x as f64));
        }
        Ok(out)
    }

    /// Error unless the flat buffer fits one storage binding of `mem` (`what`: the model, in
    /// the user's terms) and its offsets fit the kernels' u32 indices.
    pub fn check_fits<M: DeviceMemory + ?Sized>(&self, mem: &M, what: &str) -> Result<()> {
        let bytes = self.len as u64 * 4;
        let max = mem.binding_bytes().min(u32::MAX as u64);
        if bytes > max {
            return Err(crate::error::Error::InvalidArgument(format!(
                "{what} has {} parameters ({bytes} bytes in one flat buffer), over this \
                 adapter's storage binding limit of {max} bytes: use a smaller model on the GPU \
                 backends, or cpu32",
                self.counts.iter().sum::<usize>()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_layout_aligns_tensors_and_splits_blocks_in_order() {
        let l = FlatLayout::new(&[10, 4096 + 70, 64, 1]);
        assert_eq!(l.range(0), (0, 10));
        assert_eq!(l.range(1), (64, 4166));
        // 64 + 4166 = 4230, rounded up to 4288.
        assert_eq!(l.range(2), (4288, 64));
        assert_eq!(l.range(3), (4352, 1));
        assert_eq!(l.len(), 4416);
        assert_eq!(l.n_blocks(), 5);
        let b = l.blocks(|i| i == 1);
        assert_eq!(
            b,
            vec![
                0, 10, 0, 0, //
                64, 4096, 1, 0, //
                4160, 70, 1, 0, //
                4288, 64, 0, 0, //
                4352, 1, 0, 0
            ]
        );
        let packed = l.pack(
            &(0..10 + 4166 + 64 + 1)
                .map(|i| i as f32 + 1.0)
                .collect::<Vec<_>>(),
        );
        assert_eq!(packed[9], 10.0);
        assert_eq!(packed[10], 0.0);
        assert_eq!(packed[64], 11.0);
        assert_eq!(packed[4352], (10 + 4166 + 64 + 1) as f32);
    }
}
