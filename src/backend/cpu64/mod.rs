//! `cpu64`: the f64 reference backend. Single-threaded, plain loops, no tricks: the truth that
//! the tests and the drift study compare every other backend against.

pub mod gmm;
pub mod matmul;
mod rng;
pub mod sampling;

use crate::error::Result;
use crate::ops::sampling::{
    Categorical, PreparedMixture, check_categorical_outputs, check_mixture_outputs,
};
use crate::ops::{Backend, Precision};
use crate::rng::StreamKey;

/// The f64 CPU reference backend.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu64;

impl Backend for Cpu64 {
    fn name(&self) -> &'static str {
        "cpu64"
    }
    fn precision(&self) -> Precision {
        Precision::F64
    }
    fn device(&self) -> String {
        "host CPU, 1 thread, f64".into()
    }
    fn uniform_u32(&self, key: StreamKey, start: u64, out: &mut [u32]) -> Result<()> {
        rng::uniform_u32(key, start, out);
        Ok(())
    }
    fn uniform(&self, key: StreamKey, start: u64, out: &mut [f64]) -> Result<()> {
        rng::uniform(key, start, out);
        Ok(())
    }
    fn normal(&self, key: StreamKey, start: u64, out: &mut [f64]) -> Result<()> {
        rng::normal(key, start, out);
        Ok(())
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
        check_mixture_outputs(mix, m, out, comps)?;
        let params = sampling::Params::<f64>::of(mix);
        sampling::sample_range(mix, &params, m, key, first, 0, out, comps);
        Ok(())
    }

    fn sample_categorical(
        &self,
        cat: &Categorical,
        s: usize,
        key: StreamKey,
        first: u64,
        out: &mut [u32],
    ) -> Result<()> {
        check_categorical_outputs(cat, s, out)?;
        sampling::categorical_rows::<f64>(cat, s, key, first, 0, out);
        Ok(())
    }

    fn matmul(
        &self,
        p: &crate::ops::matmul::Matmul,
        a: &[f64],
        b: &[f64],
        bias: Option<&[f64]>,
        c: &mut [f64],
    ) -> Result<()> {
        matmul::matmul(p, a, b, bias, c)
    }

    fn gmm_pass<'a>(
        &'a self,
        x: &'a crate::io::Matrix,
    ) -> Result<Box<dyn crate::ops::gmm::GmmPass + 'a>> {
        Ok(Box::new(gmm::Cpu64Gmm::new(x)))
    }
}
