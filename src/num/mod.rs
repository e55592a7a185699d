//! Host numerics every layer above shares, each written once: the host float trait
//! ([`float::HostFloat`]), summation orders ([`summation`]), the host matrix products
//! ([`gemm`]), small dense linear algebra (Cholesky, column sums: [`linalg`]), Gaussian and
//! mixture log-densities ([`density`]), activations ([`activation`]) and the Adam updates
//! ([`adam`]).

pub mod activation;
pub mod adam;
pub mod density;
pub mod fastmath;
pub mod float;
pub mod gemm;
pub mod linalg;
pub mod stats;
pub mod summation;

/// Elements per parallel task of the host's element-wise passes (activations, bias and residual
/// adds, Adam): large enough that a task outweighs rayon's hand-off, so small inputs (a decoded
/// position's few rows) run on the calling thread. Element-wise work gives the same bits
/// however it is split.
pub const PAR_ELEMENTS: usize = 16 * 1024;

use crate::error::{Error, Result};

/// Check a model's flat parameter vector: exactly `expected` values, all finite. `owner` names
/// the model in the length error (e.g. `"the VAE"`: "… parameters given, the VAE has N").
pub fn check_flat_params(params: &[f64], expected: usize, owner: &str) -> Result<()> {
    if params.len() != expected {
        return Err(Error::InvalidArgument(format!(
            "{} parameters given, {owner} has {expected}",
            params.len()
        )));
    }
    if let Some(i) = params.iter().position(|v| !v.is_finite()) {
        return Err(Error::InvalidArgument(format!(
            "parameter {i} is {}",
            params[i]
        )));
    }
    Ok(())
}
