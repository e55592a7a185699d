//! `cube`: the same operations as `#[cube]` kernels, launched by cubecl on the shared wgpu
//! device (registered through [`GpuContext::cube_device`]).

mod categorical;
pub mod gmm;
pub mod lm;
pub mod matmul;
pub mod memory;
mod reduce;
mod rng;
mod sampling;
pub mod vae;

use std::sync::Arc;

use crate::backend::device_gmm::DeviceGmm;
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::ops::sampling::{
    Categorical, PreparedMixture, check_categorical_outputs, check_mixture_outputs,
};
use crate::ops::{Backend, Precision};
use crate::rng::StreamKey;

/// The cubecl backend.
pub struct Cube {
    gpu: Arc<GpuContext>,
    client: cubecl::prelude::Client,
}

impl Cube {
    /// A cubecl backend on the shared GPU context.
    pub fn new(gpu: Arc<GpuContext>) -> Result<Self> {
        let client = gpu.cube_client()?;
        Ok(Self { gpu, client })
    }

    /// The buffers and matrix products the device trainers run on (`ops::memory`).
    pub fn memory(&self) -> memory::CubeKernels<'_> {
        memory::CubeKernels::new(&self.client, &self.gpu)
    }
}

impl Backend for Cube {
    fn name(&self) -> &'static str {
        "cube"
    }
    fn precision(&self) -> Precision {
        Precision::F32
    }
    fn device(&self) -> String {
        format!(
            "{} ({:?}) via cubecl",
            self.gpu.info.name, self.gpu.info.backend
        )
    }
    fn uniform_u32(&self, key: StreamKey, start: u64, out: &mut [u32]) -> Result<()> {
        rng::fill(&self.client, &self.gpu, rng::Fill::U32, key, start, out)
    }
    fn uniform(&self, key: StreamKey, start: u64, out: &mut [f64]) -> Result<()> {
        rng::fill_f32_widened(
            &self.client,
            &self.gpu,
            rng::Fill::UniformF32,
            key,
            start,
            out,
        )
    }
    fn normal(&self, key: StreamKey, start: u64, out: &mut [f64]) -> Result<()> {
        rng::fill_f32_widened(
            &self.client,
            &self.gpu,
            rng::Fill::NormalF32,
            key,
            start,
            out,
        )
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
        sampling::sample_mixture(&self.client, &self.gpu, mix, m, key, first, out, comps)
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
        categorical::sample_categorical(&self.client, &self.gpu, cat, s, key, first, out)
    }

    fn matmul(
        &self,
        p: &crate::ops::matmul::Matmul,
        a: &[f64],
        b: &[f64],
        bias: Option<&[f64]>,
        c: &mut [f64],
    ) -> Result<()> {
        matmul::matmul(&self.gpu, &self.client, p, a, b, bias, c)
    }

    fn gmm_pass<'a>(
        &'a self,
        x: &'a crate::io::Matrix,
    ) -> Result<Box<dyn crate::ops::gmm::GmmPass + 'a>> {
        Ok(Box::new(DeviceGmm::new(
            gmm::CubeGmmOps::new(&self.client, &self.gpu),
            x,
        )?))
    }
}
