//! `wgsl`: the hand-written WGSL kernels of `shaders/`, run through wgpu on the shared context.

pub mod categorical;
mod colsum;
pub mod gmm;
pub mod lm;
pub mod matmul;
pub mod memory;
mod rng;
pub mod sampling;
pub mod vae;

use std::sync::{Arc, Mutex};

use crate::backend::device_gmm::DeviceGmm;
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::ops::sampling::{
    Categorical, PreparedMixture, check_categorical_outputs, check_mixture_outputs,
};
use crate::ops::{Backend, Precision};
use crate::rng::StreamKey;

/// The WGSL backend.
pub struct Wgsl {
    gpu: Arc<GpuContext>,
    tile: Mutex<Option<matmul::TileChoice>>,
}

impl Wgsl {
    /// A WGSL backend on the shared GPU context.
    pub fn new(gpu: Arc<GpuContext>) -> Self {
        Self {
            gpu,
            tile: Mutex::new(None),
        }
    }

    /// The buffers and matrix products the device trainers run on (`ops::memory`), with this
    /// backend's matmul tile.
    pub fn memory(&self) -> Result<memory::WgslKernels> {
        memory::WgslKernels::new(self.gpu.clone(), self.matmul_tile()?.tile)
    }

    /// The matmul tile shape for this adapter: chosen on first use (env, disk cache or
    /// autotune, see [`matmul::choose_tile`]) and kept for the backend's life.
    pub fn matmul_tile(&self) -> Result<matmul::TileChoice> {
        let mut guard = self.tile.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = guard.as_ref() {
            return Ok(t.clone());
        }
        let file = matmul::cache_dir().map(|d| d.join("matmul-tiles.json"));
        let t = matmul::choose_tile(&self.gpu, file.as_deref())?;
        *guard = Some(t.clone());
        Ok(t)
    }
}

impl Backend for Wgsl {
    fn name(&self) -> &'static str {
        "wgsl"
    }
    fn precision(&self) -> Precision {
        Precision::F32
    }
    fn device(&self) -> String {
        format!("{} ({:?})", self.gpu.info.name, self.gpu.info.backend)
    }
    fn uniform_u32(&self, key: StreamKey, start: u64, out: &mut [u32]) -> Result<()> {
        rng::fill(&self.gpu, rng::Fill::U32, key, start, out)
    }
    fn uniform(&self, key: StreamKey, start: u64, out: &mut [f64]) -> Result<()> {
        rng::fill_f32_widened(&self.gpu, rng::Fill::UniformF32, key, start, out)
    }
    fn normal(&self, key: StreamKey, start: u64, out: &mut [f64]) -> Result<()> {
        rng::fill_f32_widened(&self.gpu, rng::Fill::NormalF32, key, start, out)
    }
    fn sample_mixture(
        &self,
        mix: &PreparedMixture,
        m: usize,
        key: StreamKey,
        first: u64,
        out: &mut [f64],
        comps: &mut [u32],
    ) -> Result<()> {
        check_mixture_outputs(mix, m, out, comps)?;
        sampling::sample_mixture(&self.gpu, mix, m, key, first, out, comps)
    }

    fn sample_categorical(
        &self,
        cat: &Categorical,
        s: usize,
        key: StreamKey,
        first: u64,
        out: &mut [u32],
    ) -> Result<()> {
        check_categorical_outputs(cat, s, out)?;
        categorical::sample_categorical(&self.gpu, cat, s, key, first, out)
    }

    fn matmul(
        &self,
        p: &crate::ops::matmul::Matmul,
        a: &[f64],
        b: &[f64],
        bias: Option<&[f64]>,
        c: &mut [f64],
    ) -> Result<()> {
        p.validate(a.len(), b.len(), bias.map(<[f64]>::len), c.len())?;
        let tile = self.matmul_tile()?.tile;
        let max = crate::gpu::MAX_WORKGROUPS_PER_DIM as usize;
        let lim = crate::ops::matmul::LaunchLimits {
            binding_bytes: self.gpu.max_binding_elements(1),
            max_rows: max * tile.bm() as usize,
            max_cols: max * tile.bn() as usize,
        };
        crate::ops::matmul::split_launches(p, a, b, bias, c, &lim, &mut |q, a, b, bias, c| {
            matmul::matmul_with(&self.gpu, &tile, true, q, a, b, bias, c)
        })
    }

    fn gmm_pass<'a>(
        &'a self,
        x: &'a crate::io::Matrix,
    ) -> Result<Box<dyn crate::ops::gmm::GmmPass + 'a>> {
        Ok(Box::new(DeviceGmm::new(
            gmm::WgslGmmOps::new(&self.gpu),
            x,
        )?))
    }
}
