//! `cpu32`: f32 arithmetic on every core (rayon), meant to be the fast CPU path.

pub mod gmm;
pub mod lanes;
pub mod matmul;
mod rng;
mod sampling;

use crate::error::Result;
use crate::ops::sampling::{
    Categorical, PreparedMixture, check_categorical_outputs, check_mixture_outputs,
};
use crate::ops::{Backend, Precision};
use crate::rng::StreamKey;
use rayon::prelude::*;

use crate::backend::cpu64::sampling::{Params, categorical_rows};

/// The multi-threaded f32 CPU backend.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu32;

impl Backend for Cpu32 {
    fn name(&self) -> &'static str {
        "cpu32"
    }
    fn precision(&self) -> Precision {
        Precision::F32
    }
    fn device(&self) -> String {
        format!("host CPU, {} threads, f32", rayon::current_num_threads())
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
        let params = Params::<f32>::of(mix);
        let d = mix.batch.d;
        const CHUNK: usize = 4096;
        out.par_chunks_mut(CHUNK * d)
            .zip(comps.par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(c, (o, cs))| {
                lanes::with_best_isa(|| {
                    sampling::sample_range_lanes(mix, &params, m, key, first, c * CHUNK, o, cs)
                });
            });
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
        out.par_chunks_mut(s.max(1))
            .enumerate()
            .for_each(|(row, o)| categorical_rows::<f32>(cat, s, key, first, row, o));
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
        Ok(Box::new(gmm::Cpu32Gmm::new(x)))
    }
}
