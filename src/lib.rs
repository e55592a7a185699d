//! collapse-kernels: GPU compute kernels (hand-written WGSL on wgpu, and cubecl) with f64 CPU
//! references, for measuring how much of model collapse is floating-point error.
//!
//! Data flows one way: data → [`backend`] operations → models → driver → results. The pieces:
//! - [`rng`]: Philox4x32-10, the definition every backend's random numbers must match;
//! - [`gpu`]: the one shared wgpu device, buffers, pipelines, timing, WGSL composition;
//! - [`backend`]: the abstraction the models see, with `cpu64`, `cpu32`, `wgsl` and `cube`;
//! - [`sampling`], [`gmm`], [`matmul`]: what the sampling, EM and matmul kernels exchange with
//!   the host;
//! - [`models`]: fitting loops written against the backend abstraction;
//! - [`driver`], [`drift`]: the generational runs, and the same run compared across backends;
//! - [`vae`]: the variational autoencoder (model, parameters, the CPU trainer);
//! - [`lm`]: the byte-level transformer language model (model, CPU trainer, sampling, data);
//! - [`float`]: the float trait the CPU trainers are generic over (f64 reference, f32);
//! - [`summation`]: summation orders (naive, pairwise, Kahan) for the drift study;
//! - [`io`]: CSV / NPY tables and atomic writes;
//! - [`error`]: the error type.

#![warn(missing_docs)]

pub mod backend;
pub mod bench;
pub mod check;
pub mod drift;
pub mod driver;
pub mod error;
pub mod float;
pub mod gmm;
pub mod gpu;
pub mod io;
pub mod lm;
pub mod matmul;
pub mod models;
pub mod records;
pub mod report;
pub mod rng;
pub mod sampling;
pub mod summation;
pub mod vae;

pub use error::{Error, Result};
