//! `collapse sample lm`: continue a prompt with a trained language model; `collapse sample
//! gmm`: draw points from a fitted mixture.

use std::path::PathBuf;

use clap::Subcommand;

use collapse_kernels::backend::BackendKind;
use collapse_kernels::gpu::GpuOptions;
use collapse_kernels::models::lm;
use collapse_kernels::models::lm::sample::{SampleConfig, generate};
use collapse_kernels::ops::Backend;
use collapse_kernels::rng::StreamKey;
use collapse_kernels::rng::streams::LM_SAMPLE;
use collapse_kernels::trainers::Engine;
use collapse_kernels::{Error, Result};

use crate::common::queued;

/// `collapse sample`'s subcommands.
#[derive(Subcommand, Debug)]
pub enum SampleCommand {
    /// Continue a prompt with a trained language model (KV cache; temperature and top-k through
    /// the categorical sampler) and print the samples.
    Lm(SampleLmArgs),
    /// Draw points from a fitted Gaussian mixture (FIT.json of `collapse fit gmm`) through the
    /// batched mixture sampler: point i is draw i of Philox stream (--seed, GMM_SAMPLE), the
    /// same points on every backend up to arithmetic. Writes NPY (float64) when --out ends in
    /// `.npy`, CSV (header x0 … x{D−1}) otherwise.
    Gmm(SampleGmmArgs),
}

/// The most values `collapse sample gmm` writes (N·D), so a mistyped --n is refused before
/// anything is allocated.
const MAX_GMM_SAMPLE_VALUES: usize = 1 << 30;

/// `collapse sample gmm`'s flags.
#[derive(clap::Args, Debug)]
pub struct SampleGmmArgs {
    /// The fit: FIT.json written by `collapse fit gmm`.
    #[arg(long)]
    pub fit: PathBuf,
    /// Points to draw (N·D at most 2³⁰ values).
    #[arg(long)]
    pub n: usize,
    /// Philox seed of the draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Backend drawing the points.
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu32)]
    pub backend: BackendKind,
    /// Where to write the points (`.npy`: NPY float64; otherwise CSV), atomically.
    #[arg(long)]
    pub out: PathBuf,
}

/// Draw `a.n` points from the fit and write them.
fn sample_gmm(options: &GpuOptions, a: &SampleGmmArgs) -> Result<()> {
    let p = crate::gmm::read_fit(&a.fit)?;
    if a.n == 0
        || a.n
            .checked_mul(p.d)
            .is_none_or(|v| v > MAX_GMM_SAMPLE_VALUES)
    {
        return Err(Error::InvalidArgument(format!(
            "--n {}: must be ≥ 1 with N·D ≤ 2^30 values (D = {})",
            a.n, p.d
        )));
    }
    let b = Engine::open(a.backend, options)?;
    let key = StreamKey::new(a.seed, collapse_kernels::rng::streams::GMM_SAMPLE);
    let x = collapse_kernels::models::gmm::sample(&b, &p, a.n, key)?;
    if a.out.extension().is_some_and(|e| e == "npy") {
        collapse_kernels::io::write_npy(&a.out, &x)?;
    } else {
        let csv = crate::common::matrix_csv("x", &x.data, x.cols);
        collapse_kernels::io::write_atomic(&a.out, csv.as_bytes())?;
    }
    eprintln!(
        "{} points in {} dimensions from {} on {}; wrote {}",
        x.rows,
        x.cols,
        a.fit.display(),
        b.name(),
        a.out.display()
    );
    Ok(())
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
    /// Bytes per sample (the prompt plus len − 1 bytes must fit the model's context). Default:
    /// 100, or fewer when the model's context does not hold that many after the prompt (then
    /// as many as it holds: context − prompt + 1).
    #[arg(long)]
    pub len: Option<usize>,
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
        SampleCommand::Gmm(a) => sample_gmm(options, a),
    }
}

/// Load the model, draw `a.rows` continuations of the prompt and print them.
fn sample_lm(options: &GpuOptions, a: &SampleLmArgs) -> Result<()> {
    let (cfg, params) = lm::load_model(&a.model)?;
    let prompt = unescape(&a.prompt);
    let len = sample_len(&prompt, a.len, cfg.context)?;
    let b = Engine::open(a.backend, &queued(options))?;
    let model = b.lm(&cfg, &params)?;
    let sc = SampleConfig {
        temperature: a.temperature,
        top_k: a.top_k,
    };
    let texts = generate(
        model.as_ref(),
        &b,
        &prompt,
        a.rows,
        len,
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

/// Default bytes per sample when `--len` is not given.
const DEFAULT_LEN: usize = 100;

/// Bytes per sample: `len` when given and the prompt plus `len − 1` bytes fit `context`
/// positions, else an error naming `--len` (or `--prompt`) and the largest that fits; without
/// `len`, [`DEFAULT_LEN`] capped to what fits.
fn sample_len(prompt: &[u8], len: Option<usize>, context: usize) -> Result<usize> {
    if prompt.is_empty() {
        return Err(Error::InvalidArgument(
            "--prompt must hold at least one byte".into(),
        ));
    }
    // Positions fed: the prompt, then every generated byte but the last.
    let fits = (context + 1).checked_sub(prompt.len()).filter(|&n| n > 0);
    let Some(fits) = fits else {
        return Err(Error::InvalidArgument(format!(
            "--prompt is {} bytes, longer than the model's context of {context}",
            prompt.len()
        )));
    };
    match len {
        None => Ok(DEFAULT_LEN.min(fits)),
        Some(0) => Err(Error::InvalidArgument("--len must be ≥ 1".into())),
        Some(n) if n > fits => Err(Error::InvalidArgument(format!(
            "--len {n}: the {}-byte prompt and {} more bytes exceed the context of the model \
             ({context} positions); use --len ≤ {fits}, or omit --len",
            prompt.len(),
            n - 1
        ))),
        Some(n) => Ok(n),
    }
}

/// The prompt with `\n` and `\t` (as typed on a command line) turned into the bytes.
fn unescape(s: &str) -> Vec<u8> {
    s.replace("\\n", "\n").replace("\\t", "\t").into_bytes()
}
