//! Batched autoregressive sampling: a [`super::Decoder`] (KV cache) gives next-byte logits, the
//! backend's categorical sampler ([`crate::ops::sampling::Categorical`]: temperature, top-k, inverse
//! CDF) picks the byte.
//!
//! Randomness: the byte at generated position `s` of row `b` uses draw `s·rows + b` of the
//! stream, so a run is reproducible and every backend draws the same uniforms.

use super::{LmTrainer, VOCAB};
use crate::error::{Error, Result};
use crate::ops::Backend;
use crate::ops::sampling::Categorical;
use crate::rng::StreamKey;

/// How bytes are drawn from the logits.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SampleConfig {
    /// Temperature `T > 0` (`p ∝ exp(logit / T)`).
    pub temperature: f64,
    /// Keep only the `k` likeliest bytes (`None`: all 256).
    pub top_k: Option<usize>,
}

impl Default for SampleConfig {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: None,
        }
    }
}

impl SampleConfig {
    /// Errors unless `T` is finite and > 0 and `1 ≤ top_k ≤ 256`.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(Error::InvalidArgument(format!(
                "temperature must be finite and > 0, got {}",
                self.temperature
            )));
        }
        if self.top_k.is_some_and(|k| k == 0 || k > VOCAB) {
            return Err(Error::InvalidArgument(format!(
                "top-k must be in 1..={VOCAB}"
            )));
        }
        Ok(())
    }
}

/// `rows` continuations of `len` bytes after `prompt` (non-empty; `prompt.len() + len − 1`
/// positions must fit the context). Returns `[rows]` byte vectors (the prompt excluded).
pub fn generate(
    lm: &dyn LmTrainer,
    sampler: &dyn Backend,
    prompt: &[u8],
    rows: usize,
    len: usize,
    cfg: &SampleConfig,
    key: StreamKey,
) -> Result<Vec<Vec<u8>>> {
    cfg.validate()?;
    let ctx = lm.config().context;
    if prompt.is_empty() {
        return Err(Error::InvalidArgument(
            "the prompt must hold at least one byte".into(),
        ));
    }
    if rows == 0 || len == 0 {
        return Err(Error::InvalidArgument(
            "sampling needs ≥ 1 row and ≥ 1 byte".into(),
        ));
    }
    if prompt.len() + len - 1 > ctx {
        return Err(Error::InvalidArgument(format!(
            "prompt ({} bytes) + {len} new bytes exceed the context of {ctx} (+1)",
            prompt.len()
        )));
    }
    let mut dec = lm.decoder(rows)?;
    let mut logits = Vec::new();
    for &b in prompt {
        logits = dec.feed(&vec![b; rows])?;
    }
    let mut out = vec![Vec::with_capacity(len); rows];
    let mut picked = vec![0u32; rows];
    for s in 0..len {
        let cat = Categorical {
            rows,
            classes: VOCAB,
            logits: std::mem::take(&mut logits),
            temperature: cfg.temperature,
            top_k: cfg.top_k,
        };
        sampler.sample_categorical(&cat, 1, key, (s * rows) as u64, &mut picked)?;
        let bytes: Vec<u8> = picked.iter().map(|&v| v as u8).collect();
        for (o, &b) in out.iter_mut().zip(&bytes) {
            o.push(b);
        }
        if s + 1 < len {
            logits = dec.feed(&bytes)?;
        }
    }
    Ok(out)
}
