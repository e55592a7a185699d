//! Measurement: timed benchmarks ([`bench`]), their flat JSON records ([`records`]) and the
//! golden fingerprints `collapse check` compares every kernel with ([`goldens`]); training-step
//! timings of the VAE and the LM ([`training`]); the matmul
//! bench's shapes, checks and roofline as library calls ([`matmul`]).

pub mod bench;
pub mod goldens;
pub mod kernels;
pub mod matmul;
pub mod records;
pub mod training;
