//! The models, each fitted or trained through the kernel contracts of [`crate::ops`] only (a
//! model never names a backend): the Gaussian mixture's EM ([`gmm`]), the VAE ([`vae`]) and the
//! byte-level language model ([`lm`]), each with its f64 reference trainer and its device
//! trainer. [`size`] computes what they hold from their shapes, with checked arithmetic.

pub mod gmm;
pub mod lm;
pub mod size;
pub mod vae;
