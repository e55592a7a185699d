//! The four backends ([`BackendKind`]) that implement the kernel contracts of [`crate::ops`]:
//! - `cpu64` — the reference: f64, single-threaded, plain loops, obviously right;
//! - `cpu32` — f32 arithmetic, multi-threaded with rayon, meant to be fast;
//! - `wgsl`  — hand-written WGSL kernels from `shaders/`, run through wgpu;
//! - `cube`  — the same operations as `#[cube]` kernels, run by cubecl on the same wgpu device;
//!
//! and [`variants`], the `cpu32` variants the drift study compares. What the two GPU backends
//! share lives beside them: [`launch`] (workgroup sizes, grids, chunking and the GPU samplers'
//! limits) and [`device_gmm`] (the EM passes written once over [`crate::ops::gmm::GmmOps`]).
//! A backend knows no model.

pub mod cpu32;
pub mod cpu64;
pub mod cube;
pub mod device_gmm;
pub mod launch;
pub mod variants;
pub mod wgsl;

use std::str::FromStr;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::{GpuContext, GpuOptions};
use crate::ops::Backend;

/// The four backends by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, clap::ValueEnum)]
pub enum BackendKind {
    /// f64 CPU reference.
    Cpu64,
    /// f32 multi-threaded CPU.
    Cpu32,
    /// WGSL kernels on wgpu.
    Wgsl,
    /// cubecl kernels on wgpu.
    Cube,
}

impl BackendKind {
    /// All four, reference first.
    pub const ALL: [BackendKind; 4] = [Self::Cpu64, Self::Cpu32, Self::Wgsl, Self::Cube];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu64 => "cpu64",
            Self::Cpu32 => "cpu32",
            Self::Wgsl => "wgsl",
            Self::Cube => "cube",
        }
    }

    /// Whether it needs a GPU context.
    pub fn needs_gpu(self) -> bool {
        matches!(self, Self::Wgsl | Self::Cube)
    }
}

impl FromStr for BackendKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| Error::UnknownBackend(s.to_string()))
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The GPU context backend `kind` needs, or an error saying it needs one.
pub fn require_gpu(kind: BackendKind, gpu: Option<&Arc<GpuContext>>) -> Result<Arc<GpuContext>> {
    gpu.cloned()
        .ok_or_else(|| Error::InvalidArgument(format!("backend {kind} needs a GPU context")))
}

/// Create backend `kind`; GPU backends use `gpu` (create one with [`GpuContext::new`] and share
/// it between `wgsl` and `cube`, so both run on one device).
pub fn create(kind: BackendKind, gpu: Option<&Arc<GpuContext>>) -> Result<Box<dyn Backend>> {
    Ok(match kind {
        BackendKind::Cpu64 => Box::new(cpu64::Cpu64),
        BackendKind::Cpu32 => Box::new(cpu32::Cpu32),
        BackendKind::Wgsl => Box::new(wgsl::Wgsl::new(require_gpu(kind, gpu)?)),
        BackendKind::Cube => Box::new(cube::Cube::new(require_gpu(kind, gpu)?)?),
    })
}

/// Create backend `kind`, opening a GPU context with `options` when it needs one.
pub fn open(kind: BackendKind, options: &GpuOptions) -> Result<Box<dyn Backend>> {
    let gpu = if kind.needs_gpu() {
        Some(GpuContext::new(options)?)
    } else {
        None
    };
    create(kind, gpu.as_ref())
}
