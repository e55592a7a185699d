//! [`GmmOps`] over `shaders/gmm.wgsl`: the E-step, the tiled register-blocked M-step sums and
//! the one-pass reduction of a table of partial sums, launched on wgpu. The EM passes that drive them (chunks, trees, host-side combination) are
//! [`crate::backend::device_gmm::DeviceGmm`]'s, shared with the cubecl backend.

use crate::backend::launch::{WORKGROUP, groups};
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::ops::gmm::{EStepShape, GmmOps, MSumShape, reduce_lanes};

/// `GmmParams` of `gmm.wgsl` (uniform, 48 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    d: u32,
    k: u32,
    cov: u32,
    tile: u32,
    cols: u32,
    row0: u32,
    mode: u32,
    rows: u32,
    lanes: u32,
    pad: [u32; 2],
}

/// The `gmm.wgsl` kernels on one GPU context; buffers are wgpu storage buffers.
pub struct WgslGmmOps<'a> {
    gpu: &'a GpuContext,
}

impl<'a> WgslGmmOps<'a> {
    /// The kernels on `gpu`.
    pub fn new(gpu: &'a GpuContext) -> Self {
        Self { gpu }
    }

    fn uniform(&self, p: Params) -> Result<wgpu::Buffer> {
        self.gpu
            .uniform_buffer("gmm params", bytemuck::bytes_of(&p))
    }
}

impl GmmOps for WgslGmmOps<'_> {
    type Buf = wgpu::Buffer;

    fn label(&self) -> &'static str {
        "WGSL"
    }

    fn binding_elements(&self) -> usize {
        self.gpu.max_binding_elements(4) as usize
    }

    fn upload(&self, label: &str, data: &[f32]) -> Result<wgpu::Buffer> {
        self.gpu.input_buffer(label, bytemuck::cast_slice(data))
    }

    fn alloc(&self, label: &str, len: usize) -> Result<wgpu::Buffer> {
        self.gpu.output_buffer(label, (len * 4) as u64)
    }

    fn read(&self, buf: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
        self.gpu.read_buffer(buf, len)
    }

    fn estep(
        &self,
        s: &EStepShape,
        x: &wgpu::Buffer,
        means: &wgpu::Buffer,
        prec: &wgpu::Buffer,
        cst: &wgpu::Buffer,
        resp: &wgpu::Buffer,
        lse_part: &wgpu::Buffer,
    ) -> Result<()> {
        let pipe = self.gpu.pipeline("gmm.wgsl", "estep")?;
        let u = self.uniform(Params {
            n: s.n as u32,
            d: s.d as u32,
            k: s.k as u32,
            cov: s.cov.code(),
            row0: s.row0 as u32,
            ..Default::default()
        })?;
        let bg = self.gpu.bind_at(
            &pipe,
            &[
                (0, &u),
                (1, x),
                (2, means),
                (3, prec),
                (4, cst),
                (5, resp),
                (6, lse_part),
            ],
        )?;
        // One workgroup per 64 points (ESTEP_POINTS = WORKGROUP).
        self.gpu
            .dispatch("gmm.wgsl:estep", &pipe, &bg, groups(s.n))?;
        Ok(())
    }

    fn msum(
        &self,
        s: &MSumShape,
        x: &wgpu::Buffer,
        means: &wgpu::Buffer,
        resp: &wgpu::Buffer,
        partial: &wgpu::Buffer,
    ) -> Result<()> {
        let pipe = self.gpu.pipeline("gmm.wgsl", "msum")?;
        let u = self.uniform(Params {
            n: s.n as u32,
            d: s.d as u32,
            k: s.k as u32,
            cov: s.cov.code(),
            tile: s.tile as u32,
            cols: s.cols as u32,
            row0: s.row0 as u32,
            mode: s.mode(),
            ..Default::default()
        })?;
        let bg = self.gpu.bind_at(
            &pipe,
            &[(0, &u), (1, x), (2, means), (5, resp), (7, partial)],
        )?;
        // Output blocks along x, tiles of points along y.
        self.gpu.dispatch(
            "gmm.wgsl:msum",
            &pipe,
            &bg,
            (s.blocks() as u32, s.tiles as u32),
        )?;
        Ok(())
    }

    fn reduce(
        &self,
        src: &wgpu::Buffer,
        dst: &wgpu::Buffer,
        cols: usize,
        rows: usize,
    ) -> Result<()> {
        let pipe = self.gpu.pipeline("gmm.wgsl", "reduce")?;
        let lanes = reduce_lanes(rows);
        let u = self.uniform(Params {
            cols: cols as u32,
            rows: rows as u32,
            lanes: lanes as u32,
            ..Default::default()
        })?;
        let bg = self.gpu.bind_at(&pipe, &[(0, &u), (8, src), (9, dst)])?;
        let per = WORKGROUP as usize / lanes;
        self.gpu.dispatch(
            "gmm.wgsl:reduce",
            &pipe,
            &bg,
            GpuContext::grid(cols.div_ceil(per) as u32),
        )?;
        Ok(())
    }
}
