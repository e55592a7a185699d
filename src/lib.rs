//! collapse-kernels: GPU compute kernels (hand-written WGSL on wgpu, and cubecl) with f64 CPU
//! references, for measuring how much of model collapse is floating-point error.
//!
//! Layers import downward only (see the README's "Architecture"):
//!
//! ```text
//! foundations   error, rng, num, io
//!      ↓
//! ops, tasks    kernel contracts: the Backend trait, matmul, sampling, gmm, memory, vae, lm;
//!      ↓        checkable tasks (add:N, eigen:N: problems, encodings, the oracle)
//!      ↓                ↑ implemented by
//! gpu  →  backend       cpu64, cpu32, wgsl, cube (+ the drift variants); know no model
//!      ↓
//! models        gmm, vae, lm: reference trainers and device trainers written over ops
//!      ↓
//! trainers      composition root: (backend kind, GPU context) → trainer of a model
//!      ↓
//! experiment, drift, measure, report   the generational loop; cross-backend study; benches,
//!                                      records, goldens; plots
//!      ↓
//! sweep         grids of runs: plan, job states, Slurm scripts, tidy collection
//!      ↓
//! the `collapse` binary (src/bin/collapse/)
//! ```

#![warn(missing_docs)]

pub mod backend;
pub mod drift;
pub mod error;
pub mod experiment;
pub mod gpu;
pub mod io;
pub mod measure;
pub mod models;
pub mod num;
pub mod ops;
pub mod report;
pub mod rng;
pub mod sweep;
pub mod tasks;
pub mod trainers;

pub use error::{Error, Result};
