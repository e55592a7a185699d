//! What a kernel binds: a whole storage buffer or a range of one. Ranges let a trainer keep all
//! of a model's parameters (and gradients, and optimiser moments) in one flat buffer, each
//! tensor a view at an aligned offset, so an optimiser step over every tensor is one dispatch
//! ([`crate::ops::memory::FlatLayout`]) while each matrix product still binds its own tensor.

use std::num::NonZeroU64;

use crate::error::{Error, Result};

/// Bytes a view's offset must be a multiple of: 256 ([`crate::ops::memory::VIEW_ALIGN`] f32),
/// the largest storage-buffer offset alignment WebGPU lets an adapter ask for, so a view at a
/// multiple of it binds on every adapter.
pub const VIEW_ALIGN_BYTES: u64 = (crate::ops::memory::VIEW_ALIGN * 4) as u64;

/// Something a bind group entry can hold: a buffer, from `offset` bytes, `size` bytes long
/// (`None`: to the buffer's end).
pub trait Bindable {
    /// The buffer.
    fn buffer(&self) -> &wgpu::Buffer;
    /// First byte bound.
    fn offset(&self) -> u64;
    /// Bytes bound (`None`: the rest of the buffer).
    fn size(&self) -> Option<NonZeroU64>;
    /// The bind group resource.
    fn resource(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: self.buffer(),
            offset: self.offset(),
            size: self.size(),
        })
    }
}

impl Bindable for wgpu::Buffer {
    fn buffer(&self) -> &wgpu::Buffer {
        self
    }
    fn offset(&self) -> u64 {
        0
    }
    fn size(&self) -> Option<NonZeroU64> {
        None
    }
}

/// A range of a storage buffer: `size` bytes from `offset` (both in bytes; `offset` a
/// multiple of [`VIEW_ALIGN_BYTES`] unless it is 0). Cloning shares the buffer.
#[derive(Clone, Debug)]
pub struct BufferRange {
    buffer: wgpu::Buffer,
    offset: u64,
    size: u64,
}

impl BufferRange {
    /// All of `buffer`.
    pub fn whole(buffer: wgpu::Buffer) -> Self {
        let size = buffer.size();
        Self {
            buffer,
            offset: 0,
            size,
        }
    }

    /// `size` bytes of this range from its byte `offset`: an error unless the view lies inside
    /// the range and starts at a multiple of [`VIEW_ALIGN_BYTES`] of the buffer.
    pub fn view(&self, offset: u64, size: u64) -> Result<Self> {
        let start = self.offset + offset;
        if !start.is_multiple_of(VIEW_ALIGN_BYTES) || offset + size > self.size || size == 0 {
            return Err(Error::InvalidArgument(format!(
                "a view of {size} bytes at byte {offset} of a {}-byte range: views start at \
                 multiples of {VIEW_ALIGN_BYTES} bytes, hold at least one byte and end inside it",
                self.size
            )));
        }
        Ok(Self {
            buffer: self.buffer.clone(),
            offset: start,
            size,
        })
    }

    /// Bytes in the range.
    pub fn len_bytes(&self) -> u64 {
        self.size
    }
}

impl From<wgpu::Buffer> for BufferRange {
    fn from(b: wgpu::Buffer) -> Self {
        Self::whole(b)
    }
}

impl Bindable for BufferRange {
    fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }
    fn offset(&self) -> u64 {
        self.offset
    }
    fn size(&self) -> Option<NonZeroU64> {
        NonZeroU64::new(self.size)
    }
}
