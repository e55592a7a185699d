//! `wgsl`: the hand-written WGSL kernels of `shaders/`, run through wgpu on the shared context.

pub mod categorical;
pub mod gmm;
mod rng;
pub mod sampling;

use std::sync::Arc;

use super::{Backend, Precision};
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::rng::StreamKey;
use crate::sampling::{
    Categorical, PreparedMixture, check_categorical_outputs, check_mixture_outputs,
};

/// The WGSL backend.
pub struct Wgsl {
    gpu: Arc<GpuContext>,
}

impl Wgsl {
    /// A WGSL backend on the shared GPU context.
    pub fn new(gpu: Arc<GpuContext>) -> Self {
        Self { gpu }
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

    fn gmm_pass<'a>(
        &'a self,
        x: &'a crate::io::Matrix,
    ) -> Result<Box<dyn crate::gmm::GmmPass + 'a>> {
        Ok(Box::new(gmm::WgslGmm::new(&self.gpu, x)?))
    }
}
