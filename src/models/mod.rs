//! Models fitted or trained through the [`crate::backend::Backend`] abstraction only: a model
//! never names a backend.

pub mod gmm;
