//! The one abstraction the models and the driver see: a [`Backend`] runs each model operation.
//!
//! Four implementations, selected by name ([`BackendKind`]):
//! - `cpu64` — the reference: f64, single-threaded, plain loops, obviously right;
//! - `cpu32` — f32 arithmetic, multi-threaded with rayon, meant to be fast;
//! - `wgsl`  — hand-written WGSL kernels from `shaders/`, run through wgpu;
//! - `cube`  — the same operations as `#[cube]` kernels, run by cubecl on the same wgpu device.
//!
//! **Why a trait object and not an enum.** The backend is picked at run time (`--backend`), each
//! one carries state of its own (a GPU context and pipeline cache, a cubecl client, nothing at
//! all), and each family of operations lives beside its kernels in that backend's folder
//! (`backend/wgsl/rng.rs`, `backend/cube/rng.rs`, …). With `&dyn Backend` a model is written once
//! and cannot name a backend; a new backend is one new folder, not a new arm in every `match`.
//! The cost, one virtual call per operation, is nothing beside a kernel launch or a pass over
//! the data.
//!
//! **Data at the boundary.** Host slices. Real-valued outputs are `f64`: a backend computes at
//! its own precision and widens exactly (every f32 is an f64), so the values a model sees are
//! exactly the backend's arithmetic, and comparing two backends measures floating-point drift.
//!
//! **Randomness.** Every random draw comes from Philox4x32-10 through a [`StreamKey`] and a
//! position in the stream (see [`crate::rng`]): the same key and position give the same draws on
//! every backend.

pub mod cpu32;
pub mod cpu64;
pub mod cube;
pub mod device;
pub mod real;
pub mod variants;
pub mod wgsl;

use std::str::FromStr;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gmm::GmmPass;
use crate::gpu::{GpuContext, GpuOptions};
use crate::io::Matrix;
use crate::matmul::Matmul;
use crate::rng::StreamKey;
use crate::sampling::{Categorical, PreparedMixture};

/// The arithmetic precision a backend computes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Precision {
    /// IEEE binary32.
    F32,
    /// IEEE binary64.
    F64,
}

/// Operations every backend provides. Models and the driver only ever see this trait.
pub trait Backend: Send + Sync {
    /// The backend's name: `cpu64`, `cpu32`, `wgsl` or `cube`.
    fn name(&self) -> &'static str;

    /// The precision of its arithmetic.
    fn precision(&self) -> Precision;

    /// Where it runs, in words (the adapter for GPU backends, the thread count for CPU ones).
    fn device(&self) -> String;

    /// Raw Philox draws `start .. start + out.len()` of stream `key`. Bit-identical on every
    /// backend.
    fn uniform_u32(&self, key: StreamKey, start: u64, out: &mut [u32]) -> Result<()>;

    /// Uniforms in `[0, 1)` from draws `start ..` of `key`, converted as [`crate::rng`] documents
    /// (`unit_f64` on f64 backends, `unit_f32` widened on f32 ones).
    fn uniform(&self, key: StreamKey, start: u64, out: &mut [f64]) -> Result<()>;

    /// Standard normals `start ..` of `key` by Box–Muller on draw pairs (see [`crate::rng`]),
    /// computed at the backend's precision and widened to f64.
    fn normal(&self, key: StreamKey, start: u64, out: &mut [f64]) -> Result<()>;

    /// Draw `m` samples from each of the `R` mixtures (Gaussians when `K = 1`) of `mix`:
    /// `out` is `[R][m][D]`, `comps` `[R][m]` (component indices, bit-identical on every
    /// backend). Sample `i = r·m + j` of the call is sample `first + i` of stream `key`, laid out
    /// as [`crate::sampling`] documents; values are computed at the backend's precision.
    fn sample_mixture(
        &self,
        mix: &PreparedMixture,
        m: usize,
        key: StreamKey,
        first: u64,
        out: &mut [f64],
        comps: &mut [u32],
    ) -> Result<()>;

    /// Draw `s` classes per row from `cat` (temperature, optional top-k) by the inverse-CDF
    /// method documented on [`Categorical`]: `out` is `[B][s]`. Sample `i = b·s + j` uses draw
    /// `first + i` of stream `key`.
    fn sample_categorical(
        &self,
        cat: &Categorical,
        s: usize,
        key: StreamKey,
        first: u64,
        out: &mut [u32],
    ) -> Result<()>;

    /// `C = act(α·op(A)·op(B) + β·C + bias)`, batched, as [`crate::matmul`] documents: `a`, `b`,
    /// `c` hold `p.len_a()`, `p.len_b()`, `p.len_c()` values, `bias` `N` when the epilogue adds
    /// one. f32 backends round the inputs to f32 (A and B to f16 with f16 storage) and compute
    /// in f32; C comes back widened to f64.
    fn matmul(
        &self,
        p: &Matmul,
        a: &[f64],
        b: &[f64],
        bias: Option<&[f64]>,
        c: &mut [f64],
    ) -> Result<()>;

    /// Start repeated EM passes over `x` (`[N][D]`): the E-step and the two-pass M-step of a
    /// Gaussian mixture (see [`crate::gmm`]). GPU backends keep `x` and the responsibilities on
    /// the device between passes.
    fn gmm_pass<'a>(&'a self, x: &'a Matrix) -> Result<Box<dyn GmmPass + 'a>>;

    /// A VAE (see [`crate::vae`]) with parameters `params` (flat, f64, rounded to the
    /// backend's precision) and fresh Adam state, trained and evaluated on this backend.
    fn vae<'a>(
        &'a self,
        cfg: &crate::vae::VaeConfig,
        params: &[f64],
    ) -> Result<Box<dyn crate::vae::VaeTrainer + 'a>>;

    /// A byte-level language model (see [`crate::lm`]) with parameters `params` (flat, f64,
    /// rounded to the backend's precision) and fresh AdamW state.
    fn lm<'a>(
        &'a self,
        cfg: &crate::lm::LmConfig,
        params: &[f64],
    ) -> Result<Box<dyn crate::lm::LmTrainer + 'a>>;
}

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

/// Create backend `kind`; GPU backends use `gpu` (create one with [`GpuContext::new`] and share
/// it between `wgsl` and `cube`, so both run on one device).
pub fn create(kind: BackendKind, gpu: Option<&Arc<GpuContext>>) -> Result<Box<dyn Backend>> {
    let need = |gpu: Option<&Arc<GpuContext>>| {
        gpu.cloned()
            .ok_or_else(|| Error::InvalidArgument(format!("backend {kind} needs a GPU context")))
    };
    Ok(match kind {
        BackendKind::Cpu64 => Box::new(cpu64::Cpu64),
        BackendKind::Cpu32 => Box::new(cpu32::Cpu32),
        BackendKind::Wgsl => Box::new(wgsl::Wgsl::new(need(gpu)?)),
        BackendKind::Cube => Box::new(cube::Cube::new(need(gpu)?)?),
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
