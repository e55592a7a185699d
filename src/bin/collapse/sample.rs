//! `collapse sample lm`: continue a prompt with a trained language model.

use std::path::PathBuf;

use clap::Subcommand;

use collapse_kernels::Result;
use collapse_kernels::backend::BackendKind;
use collapse_kernels::gpu::GpuOptions;
use collapse_kernels::models::lm;
use collapse_kernels::models::lm::sample::{SampleConfig, generate};
use collapse_kernels::rng::StreamKey;
use collapse_kernels::rng::streams::LM_SAMPLE;
use collapse_kernels::trainers::Engine;

use crate::common::queued;

/// `collapse sample`'s subcommands.
#[derive(Subcommand, Debug)]
pub enum SampleCommand {
    /// Continue a prompt with a trained language model (KV cache; temperature and top-k through
    /// the categorical sampler) and print the samples.
    Lm(SampleLmArgs),
}

/// `collapse sample lm`'s flags.
#[derive(clap::Args, Debug)]
pub struct SampleLmArgs {
    /// A directory written by `collapse train lm` (model.json, weights.npy).
    #[arg(long)]
    pub model: PathBuf,
    /// Text to continue (at least one byte); `\n` and `\t` are read as newline and tab.
    #[arg(long, default_value = "\n")]
    pub prompt: String,
    /// Samples.
    #[arg(long, default_value_t = 4)]
    pub rows: usize,
    /// Bytes per sample (prompt + bytes − 1 must fit the context).
    #[arg(long, default_value_t = 100)]
    pub len: usize,
    /// Temperature (> 0).
    #[arg(long, default_value_t = SampleConfig::default().temperature)]
    pub temperature: f64,
    /// Keep only the k likeliest bytes.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Philox seed of the draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Backend computing the logits and drawing the bytes.
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu32)]
    pub backend: BackendKind,
}

/// Run a `collapse sample` subcommand.
pub fn sample(options: &GpuOptions, c: &SampleCommand) -> Result<()> {
    match c {
        SampleCommand::Lm(a) => sample_lm(options, a),
    }
}

/// Load the model, draw `a.rows` continuations of the prompt and print them.
fn sample_lm(options: &GpuOptions, a: &SampleLmArgs) -> Result<()> {
    let (cfg, params) = lm::load_model(&a.model)?;
    let b = Engine::open(a.backend, &queued(options))?;
    let model = b.lm(&cfg, &params)?;
    let prompt = unescape(&a.prompt);
    let sc = SampleConfig {
        temperature: a.temperature,
        top_k: a.top_k,
    };
    let texts = generate(
        model.as_ref(),
        &b,
        &prompt,
        a.rows,
        a.len,
        &sc,
        StreamKey::new(a.seed, LM_SAMPLE),
    )?;
    for (i, t) in texts.iter().enumerate() {
        println!("--- sample {i}");
        println!(
            "{}{}",
            String::from_utf8_lossy(&prompt),
            String::from_utf8_lossy(t)
        );
    }
    Ok(())
}

/// The prompt with `\n` and `\t` (as typed on a command line) turned into the bytes.
fn unescape(s: &str) -> Vec<u8> {
    s.replace("\\n", "\n").replace("\\t", "\t").into_bytes()
}
