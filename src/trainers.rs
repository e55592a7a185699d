//! The composition root: turns a backend kind (and the shared GPU context) into an [`Engine`],
//! which runs the kernel contracts ([`Backend`]) and builds each model's trainer on them.
//!
//! This is the one place that names both the backends and the models: a backend never names a
//! model and a model never names a backend, so something above both must pair them. Adding a
//! model means one method here (which trainer each backend kind gets); adding a backend means one
//! variant.

use std::sync::Arc;

use crate::backend::cpu32::Cpu32;
use crate::backend::cpu64::Cpu64;
use crate::backend::cube::Cube;
use crate::backend::variants::Cpu32Variant;
use crate::backend::wgsl::Wgsl;
use crate::backend::{self, BackendKind};
use crate::error::Result;
use crate::gpu::{GpuContext, GpuOptions};
use crate::io::Matrix;
use crate::models::lm::{LmConfig, LmTrainer, MakeLm, cpu::CpuLm, device::DeviceLm};
use crate::models::vae::{MakeVae, VaeConfig, VaeTrainer, cpu::CpuVae, device::DeviceVae};
use crate::ops::gmm::GmmPass;
use crate::ops::matmul::Matmul;
use crate::ops::sampling::{Categorical, PreparedMixture};
use crate::ops::{Backend, Precision};
use crate::rng::StreamKey;

/// A backend, and the trainers of every model on it.
pub enum Engine {
    /// The f64 reference: CPU trainers in f64 with plain loops.
    Cpu64(Cpu64),
    /// f32 on the CPU: CPU trainers in f32.
    Cpu32(Cpu32),
    /// WGSL kernels: the device trainers over its [`crate::backend::wgsl::memory::WgslKernels`].
    Wgsl(Wgsl),
    /// cubecl kernels: the device trainers over its [`crate::backend::cube::memory::CubeKernels`].
    Cube(Cube),
    /// A cpu32 variant of the drift study; its trainers are cpu32's.
    Variant(Cpu32Variant),
}

impl Engine {
    /// Engine `kind`; GPU kinds run on `gpu` (create one with [`GpuContext::new`] and share it
    /// between `wgsl` and `cube`, so both run on one device).
    pub fn create(kind: BackendKind, gpu: Option<&Arc<GpuContext>>) -> Result<Self> {
        let need = || backend::require_gpu(kind, gpu);
        Ok(match kind {
            BackendKind::Cpu64 => Self::Cpu64(Cpu64),
            BackendKind::Cpu32 => Self::Cpu32(Cpu32),
            BackendKind::Wgsl => Self::Wgsl(Wgsl::new(need()?)),
            BackendKind::Cube => Self::Cube(Cube::new(need()?)?),
        })
    }

    /// Engine `kind`, opening a GPU context with `options` when it needs one.
    pub fn open(kind: BackendKind, options: &GpuOptions) -> Result<Self> {
        let gpu = if kind.needs_gpu() {
            Some(GpuContext::new(options)?)
        } else {
            None
        };
        Self::create(kind, gpu.as_ref())
    }

    /// The kernel contracts, as a trait object.
    pub fn ops(&self) -> &dyn Backend {
        match self {
            Self::Cpu64(b) => b,
            Self::Cpu32(b) => b,
            Self::Wgsl(b) => b,
            Self::Cube(b) => b,
            Self::Variant(b) => b,
        }
    }

    /// A VAE (see [`crate::models::vae`]) with parameters `params` (flat, f64, rounded to the
    /// backend's precision) and fresh Adam state, trained and evaluated on this backend.
    pub fn vae(&self, cfg: &VaeConfig, params: &[f64]) -> Result<Box<dyn VaeTrainer + '_>> {
        Ok(match self {
            Self::Cpu64(_) => Box::new(CpuVae::<f64>::new(cfg, params)?),
            Self::Cpu32(_) | Self::Variant(_) => Box::new(CpuVae::<f32>::new(cfg, params)?),
            Self::Wgsl(w) => Box::new(DeviceVae::new(w.memory()?, cfg, params)?),
            Self::Cube(c) => Box::new(DeviceVae::new(c.memory(), cfg, params)?),
        })
    }

    /// A byte-level language model (see [`crate::models::lm`]) with parameters `params` (flat,
    /// f64, rounded to the backend's precision) and fresh AdamW state.
    pub fn lm(&self, cfg: &LmConfig, params: &[f64]) -> Result<Box<dyn LmTrainer + '_>> {
        Ok(match self {
            Self::Cpu64(_) => Box::new(CpuLm::<f64>::new(cfg, params)?),
            Self::Cpu32(_) | Self::Variant(_) => Box::new(CpuLm::<f32>::new(cfg, params)?),
            Self::Wgsl(w) => Box::new(DeviceLm::new(w.memory()?, cfg, params)?),
            Self::Cube(c) => Box::new(DeviceLm::new(c.memory(), cfg, params)?),
        })
    }
}

impl MakeVae for Engine {
    fn vae<'a>(&'a self, cfg: &VaeConfig, params: &[f64]) -> Result<Box<dyn VaeTrainer + 'a>> {
        Engine::vae(self, cfg, params)
    }
}

impl MakeLm for Engine {
    fn lm<'a>(&'a self, cfg: &LmConfig, params: &[f64]) -> Result<Box<dyn LmTrainer + 'a>> {
        Engine::lm(self, cfg, params)
    }
}

impl From<Cpu32Variant> for Engine {
    fn from(v: Cpu32Variant) -> Self {
        Self::Variant(v)
    }
}

/// An engine is a backend: every kernel contract runs on the backend it holds.
impl Backend for Engine {
    fn name(&self) -> &'static str {
        self.ops().name()
    }
    fn precision(&self) -> Precision {
        self.ops().precision()
    }
    fn device(&self) -> String {
        self.ops().device()
    }
    fn uniform_u32(&self, key: StreamKey, start: u64, out: &mut [u32]) -> Result<()> {
        self.ops().uniform_u32(key, start, out)
    }
    fn uniform(&self, key: StreamKey, start: u64, out: &mut [f64]) -> Result<()> {
        self.ops().uniform(key, start, out)
    }
    fn normal(&self, key: StreamKey, start: u64, out: &mut [f64]) -> Result<()> {
        self.ops().normal(key, start, out)
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
        self.ops().sample_mixture(mix, m, key, first, out, comps)
    }
    fn sample_categorical(
        &self,
        cat: &Categorical,
        s: usize,
        key: StreamKey,
        first: u64,
        out: &mut [u32],
    ) -> Result<()> {
        self.ops().sample_categorical(cat, s, key, first, out)
    }
    fn matmul(
        &self,
        p: &Matmul,
        a: &[f64],
        b: &[f64],
        bias: Option<&[f64]>,
        c: &mut [f64],
    ) -> Result<()> {
        self.ops().matmul(p, a, b, bias, c)
    }
    fn gmm_pass<'a>(&'a self, x: &'a Matrix) -> Result<Box<dyn GmmPass + 'a>> {
        self.ops().gmm_pass(x)
    }
}
