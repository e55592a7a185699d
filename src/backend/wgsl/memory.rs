//! Buffers, not kernels: [`WgslKernels`], the handle the device trainers run on, and its
//! [`DeviceMemory`] — storage buffers of the shared context (allocate, upload, read back) and the
//! matrix products of `matmul.rs`. The VAE's and the language model's kernels are added to the
//! same handle in `vae.rs` and `lm.rs` (`VaeOps`, `LmOps`); the GMM's passes use their own
//! buffers (`gmm.rs`).

use std::sync::{Arc, Mutex};

use super::matmul::{DeviceOperands, TileConfig, launch};
use crate::error::Result;
use crate::gpu::{BufferRange, GpuContext};
use crate::ops::matmul::Matmul;
use crate::ops::memory::DeviceMemory;

/// The WGSL kernels on one device, matrix products with one tile.
pub struct WgslKernels {
    pub(super) gpu: Arc<GpuContext>,
    tile: TileConfig,
    dummy: BufferRange,
    /// Partial sums of the two-level reductions (`col_sum`, `pos_grad`, `mean`,
    /// `batch_loss`), grown on demand and reused: each reduction's two passes run in queue
    /// order, so one buffer serves them all.
    scratch: Mutex<Option<(BufferRange, usize)>>,
}

impl WgslKernels {
    /// Kernels on `gpu`, matrix products with `tile`.
    pub fn new(gpu: Arc<GpuContext>, tile: TileConfig) -> Result<Self> {
        Ok(Self {
            dummy: gpu.input_buffer("no bias", &[0u8; 4])?.into(),
            gpu,
            tile,
            scratch: Mutex::new(None),
        })
    }

    /// A buffer of at least `len` f32 for a reduction's partial sums (see `scratch`).
    pub(super) fn scratch(&self, len: usize) -> Result<BufferRange> {
        let mut s = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((b, n)) = s.as_ref()
            && *n >= len
        {
            return Ok(b.clone());
        }
        let n = len.max(1024).next_power_of_two();
        let b = BufferRange::from(
            self.gpu
                .output_buffer("reduction partials", (n * 4) as u64)?,
        );
        *s = Some((b.clone(), n));
        Ok(b)
    }
}

impl DeviceMemory for WgslKernels {
    type Buf = BufferRange;

    fn view(&self, buf: &BufferRange, offset: usize, len: usize) -> Result<BufferRange> {
        buf.view((offset * 4) as u64, (len * 4) as u64)
    }

    fn binding_bytes(&self) -> u64 {
        self.gpu.max_binding_elements(1)
    }

    fn alloc(&self, label: &str, len: usize) -> Result<BufferRange> {
        Ok(self.gpu.output_buffer(label, (len * 4) as u64)?.into())
    }

    fn upload(&self, label: &str, data: &[f32]) -> Result<BufferRange> {
        Ok(self
            .gpu
            .input_buffer(label, bytemuck::cast_slice(data))?
            .into())
    }

    fn upload_u32(&self, label: &str, data: &[u32]) -> Result<BufferRange> {
        Ok(self
            .gpu
            .input_buffer(label, bytemuck::cast_slice(data))?
            .into())
    }

    fn read(&self, buf: &BufferRange, len: usize) -> Result<Vec<f32>> {
        self.gpu.read_buffer(buf, len)
    }

    fn gemm(
        &self,
        p: &Matmul,
        a: &BufferRange,
        b: &BufferRange,
        c: &BufferRange,
        bias: Option<&BufferRange>,
    ) -> Result<()> {
        let ops = DeviceOperands {
            a: a.clone(),
            b: b.clone(),
            bias: bias.unwrap_or(&self.dummy).clone(),
            c: c.clone(),
        };
        launch(&self.gpu, p, &self.tile, &ops, true)?;
        Ok(())
    }
}
