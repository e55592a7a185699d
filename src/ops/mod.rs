//! The kernel contracts: what every layer above the backends may ask of them.
//!
//! [`Backend`] is the one abstraction the models and the experiment loop see. It is op-level
//! only (random numbers, sampling, matrix products, EM passes) and names no model. Four
//! implementations live in [`crate::backend`] (`cpu64`, `cpu32`, `wgsl`, `cube`). The device
//! trainers' extra kernels are contracts of their own ([`memory::DeviceMemory`], [`vae::VaeOps`],
//! [`lm::LmOps`]) that each GPU backend implements once.
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

pub mod gmm;
pub mod lm;
pub mod matmul;
pub mod memory;
pub mod sampling;
pub mod vae;

use crate::error::Result;
use crate::io::Matrix;
use crate::rng::StreamKey;
use gmm::GmmPass;
use matmul::Matmul;
use sampling::{Categorical, PreparedMixture};

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
    /// as [`crate::ops::sampling`] documents; values are computed at the backend's precision.
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

    /// `C = act(α·op(A)·op(B) + β·C + bias)`, batched, as [`crate::ops::matmul`] documents: `a`, `b`,
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
    /// Gaussian mixture (see [`crate::ops::gmm`]). GPU backends keep `x` and the responsibilities on
    /// the device between passes.
    fn gmm_pass<'a>(&'a self, x: &'a Matrix) -> Result<Box<dyn GmmPass + 'a>>;
}
