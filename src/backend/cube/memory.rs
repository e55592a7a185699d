//! Buffers, not kernels: [`CubeKernels`], the handle the device trainers run on, and its
//! [`DeviceMemory`] — cubecl handles on the shared device (allocate, upload, read back) and the
//! cubecl matmul of `matmul.rs` — plus the launch helpers (`grid`, `dim`, `arg`) the `#[cube]`
//! kernels of `vae.rs` and `lm/` use when they are added to the same handle (`VaeOps`, `LmOps`);
//! the GMM's passes use their own buffers (`gmm.rs`).

use super::matmul::{CubeOperands, check_device, launch};
use crate::backend::launch::{WORKGROUP, groups};
use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::ops::matmul::Matmul;
use crate::ops::memory::DeviceMemory;

type Handle = cubecl::server::Handle;

/// Enough cubes of [`WORKGROUP`] units for `units`, on an `(x, y)` grid ([`groups`]).
pub(super) fn grid(units: usize) -> cubecl::prelude::CubeCount {
    let (gx, gy) = groups(units);
    cubecl::prelude::CubeCount::Static(gx, gy, 1)
}

/// A one-dimensional cube of [`WORKGROUP`] units.
pub(super) fn dim() -> cubecl::prelude::CubeDim {
    cubecl::prelude::CubeDim::new_1d(WORKGROUP)
}

/// `h` as a kernel argument of `len` elements.
pub(super) fn arg(h: &Handle, len: usize) -> cubecl::prelude::BufferArg {
    // SAFETY: every handle the trainers pass was created with at least `len` elements of 4
    // bytes (f32 or u32).
    unsafe { cubecl::prelude::BufferArg::from_raw_parts(h.clone(), len.max(1)) }
}

/// `h` as a kernel argument of all its elements (a view's: [`DeviceMemory::view`]).
pub(super) fn arg_whole(h: &Handle) -> cubecl::prelude::BufferArg {
    arg(h, (h.size_in_used() / 4) as usize)
}

/// The cubecl kernels on the shared device.
pub struct CubeKernels<'a> {
    pub(super) client: &'a cubecl::prelude::Client,
    gpu: &'a GpuContext,
    /// A one-element buffer bound where a kernel's argument is unused.
    pub(super) dummy: Handle,
}

impl<'a> CubeKernels<'a> {
    /// Kernels launched through `client` on `gpu`'s device.
    pub fn new(client: &'a cubecl::prelude::Client, gpu: &'a GpuContext) -> Self {
        Self {
            dummy: client.create_from_slice(bytemuck::cast_slice(&[0.0f32])),
            client,
            gpu,
        }
    }
}

impl DeviceMemory for CubeKernels<'_> {
    type Buf = Handle;

    fn view(&self, buf: &Handle, offset: usize, len: usize) -> Result<Handle> {
        let (start, bytes) = ((offset * 4) as u64, (len * 4) as u64);
        let total = buf.size_in_used();
        let base = buf.offset_start.unwrap_or(0);
        if !(base + start).is_multiple_of(crate::gpu::VIEW_ALIGN_BYTES)
            || start + bytes > total
            || len == 0
        {
            return Err(Error::InvalidArgument(format!(
                "a view of {len} elements at element {offset} of a {}-element buffer: views \
                 start at multiples of {} elements, hold at least one and end inside it",
                total / 4,
                crate::ops::memory::VIEW_ALIGN
            )));
        }
        Ok(buf
            .clone()
            .offset_start(start)
            .offset_end(total - start - bytes))
    }

    fn binding_bytes(&self) -> u64 {
        self.gpu.max_binding_elements(1)
    }

    fn alloc(&self, _label: &str, len: usize) -> Result<Handle> {
        let fill = if self.gpu.poisoning() {
            f32::from_bits(crate::gpu::POISON_WORD)
        } else {
            0.0
        };
        Ok(self
            .client
            .create_from_slice(bytemuck::cast_slice(&vec![fill; len.max(1)])))
    }

    fn upload(&self, _label: &str, data: &[f32]) -> Result<Handle> {
        let v = if data.is_empty() { &[0.0f32][..] } else { data };
        Ok(self.client.create_from_slice(bytemuck::cast_slice(v)))
    }

    fn upload_u32(&self, _label: &str, data: &[u32]) -> Result<Handle> {
        let v = if data.is_empty() { &[0u32][..] } else { data };
        Ok(self.client.create_from_slice(bytemuck::cast_slice(v)))
    }

    fn read(&self, h: &Handle, len: usize) -> Result<Vec<f32>> {
        let bytes = self
            .client
            .read_one(h.clone())
            .map_err(|e| Error::Cubecl(format!("{e:?}")))?;
        Ok(bytemuck::cast_slice::<u8, f32>(&bytes[..len * 4]).to_vec())
    }

    fn gemm(
        &self,
        p: &Matmul,
        a: &Handle,
        b: &Handle,
        c: &Handle,
        bias: Option<&Handle>,
    ) -> Result<()> {
        check_device(self.gpu, p)?;
        let (bias_h, bias_len) = match bias {
            Some(h) => (h.clone(), p.n),
            None => (self.dummy.clone(), 1),
        };
        let ops = CubeOperands::from_handles(a.clone(), b.clone(), bias_h, bias_len, c.clone());
        launch(self.gpu, self.client, p, &ops);
        Ok(())
    }
}
