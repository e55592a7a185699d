//! `collapse bench vae` / `bench lm`: training steps (and the LM's sampling) timed on any
//! engine, from the Philox initialisation on Philox inputs.

use std::time::Instant;

use crate::error::Result;
use crate::io::budget::{self, Tally};
use crate::models::lm::{LmConfig, VOCAB};
use crate::models::size;
use crate::models::vae::VaeConfig;
use crate::ops::Backend;
use crate::rng::{StreamKey, streams};

/// The flags that size `bench lm`, for its refusals.
const LM_FLAGS: &str = "lower --width, --layers, --context or --batch";

/// Refuse, before anything is allocated, a `bench lm` of `cfg` at `batch` sequences that the
/// machine's memory cannot hold (the training step of [`size::lm_step_tally`], the tokens and
/// the sampler's KV cache), and on a GPU (`gpu`) one whose largest device buffer (the MLP's
/// `batch·T × 4C` activations, the attention scores `batch·H·T²`, the logits `batch·T × 256` or
/// the MLP weights `C × 4C`, f32) exceeds the adapter's storage binding limit (see
/// `binding_limit`). The message says
/// the bytes and the flags to lower.
pub fn check_lm(cfg: &LmConfig, batch: usize, gpu: Option<&crate::gpu::GpuContext>) -> Result<()> {
    check_lm_as("bench lm", cfg, batch, gpu)
}

/// [`check_lm`] for `command` (`bench lm`, `train lm`: the same shape flags), named in the
/// message.
pub fn check_lm_as(
    command: &str,
    cfg: &LmConfig,
    batch: usize,
    gpu: Option<&crate::gpu::GpuContext>,
) -> Result<()> {
    let mut t = Tally::new(
        format!(
            "{command} (width {}, {} layers, context {}, batch {batch})",
            cfg.width, cfg.layers, cfg.context
        ),
        LM_FLAGS,
    );
    size::lm_step_tally(&mut t, cfg, batch);
    t.add(&[batch, cfg.context.saturating_add(1), 4], 1);
    t.add(&[batch, cfg.layers, cfg.context, 2, cfg.width], 8);
    t.check()?;
    if let Some(g) = gpu {
        let n = batch.checked_mul(cfg.context);
        let largest = [
            n.and_then(|n| budget::product(&[n, 4, cfg.width], 4)),
            budget::product(&[batch, cfg.heads, cfg.context, cfg.context], 4),
            n.and_then(|n| budget::product(&[n, VOCAB], 4)),
            budget::product(&[cfg.width, 4, cfg.width], 4),
        ]
        .into_iter()
        .try_fold(0u64, |m, b| b.map(|b| m.max(b)));
        budget::check_device(
            command,
            largest,
            binding_limit(g),
            "storage binding limit",
            LM_FLAGS,
        )?;
    }
    Ok(())
}

/// Refuse, before anything is allocated, a `bench vae` of `cfg` at `batch` images that the
/// machine's memory cannot hold ([`size::vae_step_tally`]), and on a GPU (`gpu`) one whose
/// images (`batch × D`, f32) exceed the adapter's storage binding limit.
pub fn check_vae(
    cfg: &VaeConfig,
    batch: usize,
    gpu: Option<&crate::gpu::GpuContext>,
) -> Result<()> {
    check_vae_as("bench vae", "lower --batches", cfg, batch, gpu)
}

/// [`check_vae`] for `command` with `hint` (the flags to lower) in the message.
pub fn check_vae_as(
    command: &str,
    hint: &str,
    cfg: &VaeConfig,
    batch: usize,
    gpu: Option<&crate::gpu::GpuContext>,
) -> Result<()> {
    let mut t = Tally::new(format!("{command} at batch {batch}"), hint);
    size::vae_step_tally(&mut t, cfg, batch);
    t.check()?;
    if let Some(g) = gpu {
        let largest = budget::product(&[batch, cfg.d.max(cfg.h)], 4);
        budget::check_device(
            &format!("{command} at batch {batch}"),
            largest,
            binding_limit(g),
            "storage binding limit",
            hint,
        )?;
    }
    Ok(())
}

/// The adapter's largest storage binding of f32 values, in bytes (wgpu's
/// `max_storage_buffer_binding_size`, at most `max_buffer_size` and 2²⁸ values: see
/// [`crate::gpu::GpuContext::max_binding_elements`]).
fn binding_limit(g: &crate::gpu::GpuContext) -> u64 {
    g.max_binding_elements(4) * 4
}

/// Training-step throughput of the VAE on one backend.
#[derive(Clone, Debug, serde::Serialize)]
pub struct VaeTiming {
    /// Backend.
    pub backend: String,
    /// Where it ran.
    pub device: String,
    /// Images per step.
    pub batch: usize,
    /// `D-H-Z`.
    pub shape: String,
    /// Median seconds per training step (forward, backward, Adam).
    pub seconds: f64,
    /// Fastest step.
    pub min_seconds: f64,
    /// `1 / seconds`.
    pub steps_per_s: f64,
    /// `batch / seconds`.
    pub images_per_s: f64,
    /// WGSL dispatches per timed training step ([`crate::gpu::GpuContext::counts`]; `None`
    /// off the GPU, and for cubecl, whose launches the counter does not see).
    pub dispatches_per_step: Option<u64>,
    /// The recorded per-dispatch times of the timed steps (WGSL; empty elsewhere), for the
    /// per-kernel table ([`crate::measure::kernels::KernelTable`]). Not a CSV column.
    #[serde(skip)]
    pub kernels: Vec<crate::gpu::KernelTime>,
}

/// Time `steps` VAE training steps (after one untimed step) on `backend` at `batch`, on Philox
/// uniform pixels (the arithmetic does not depend on the pixel values). `gpu` (when the
/// backend runs there) gives the dispatch count and the per-kernel times of the timed steps.
pub fn time_vae(
    backend: &crate::trainers::Engine,
    gpu: Option<&crate::gpu::GpuContext>,
    cfg: &crate::models::vae::VaeConfig,
    batch: usize,
    steps: usize,
) -> Result<VaeTiming> {
    let mut x = vec![0.0; batch * cfg.d];
    crate::backend::cpu64::Cpu64.uniform(streams::bench::VAE_PIXELS, 0, &mut x)?;
    let mut vae = backend.vae(cfg, &crate::models::vae::init_params(cfg, 0))?;
    vae.step(&x, StreamKey::new(streams::bench::VAE_NOISE_SEED, 0))?;
    vae.last_loss()?;
    let before = start_counting(gpu);
    let mut times = Vec::with_capacity(steps);
    for s in 0..steps.max(1) {
        let t = std::time::Instant::now();
        vae.step(
            &x,
            StreamKey::new(streams::bench::VAE_NOISE_SEED, 1 + s as u64),
        )?;
        vae.last_loss()?;
        times.push(t.elapsed().as_secs_f64());
    }
    let (dispatches_per_step, kernels) = stop_counting(gpu, before, times.len());
    times.sort_by(f64::total_cmp);
    let med = times[times.len() / 2];
    Ok(VaeTiming {
        backend: backend.name().into(),
        device: backend.device(),
        batch,
        shape: format!("{}-{}-{}", cfg.d, cfg.h, cfg.z),
        seconds: med,
        min_seconds: times[0],
        steps_per_s: 1.0 / med,
        images_per_s: batch as f64 / med,
        dispatches_per_step,
        kernels,
    })
}

/// Training and sampling throughput of the language model on one backend.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LmTiming {
    /// Backend.
    pub backend: String,
    /// Where it ran.
    pub device: String,
    /// `C-L-H-T` (width, blocks, heads, context).
    pub shape: String,
    /// Sequences per step (and rows sampled at once).
    pub batch: usize,
    /// Median seconds per training step (forward, backward, AdamW; loss read back).
    pub seconds: f64,
    /// Fastest step.
    pub min_seconds: f64,
    /// Predicted tokens per second in training (`batch·T / seconds`).
    pub train_tokens_per_s: f64,
    /// Sampled tokens per second (`batch` rows of `T − 1` bytes after a 1-byte prompt, KV
    /// cache, categorical sampler; logits read back every position).
    pub sample_tokens_per_s: f64,
    /// Share of the device time of the timed training steps spent in matmul kernels (WGSL
    /// backends, which record per-dispatch times; empty elsewhere).
    pub matmul_share: Option<f64>,
    /// WGSL dispatches per timed training step ([`crate::gpu::GpuContext::counts`]; `None`
    /// off the GPU, and for cubecl, whose launches the counter does not see).
    pub dispatches_per_step: Option<u64>,
    /// The recorded per-dispatch times of the timed training steps (WGSL; empty elsewhere),
    /// for the per-kernel table ([`crate::measure::kernels::KernelTable`]). Not a CSV column.
    #[serde(skip)]
    pub kernels: Vec<crate::gpu::KernelTime>,
}

/// The dispatch count before the timed steps (and the recorded times cleared), on `gpu`.
fn start_counting(gpu: Option<&crate::gpu::GpuContext>) -> u64 {
    gpu.map_or(0, |g| {
        g.take_timings();
        g.counts().dispatches
    })
}

/// Dispatches per step over the `steps` timed steps since [`start_counting`] returned
/// `before` (`None` without a GPU or when nothing was dispatched through the counter, as on
/// cubecl), and the recorded kernel times of those steps.
fn stop_counting(
    gpu: Option<&crate::gpu::GpuContext>,
    before: u64,
    steps: usize,
) -> (Option<u64>, Vec<crate::gpu::KernelTime>) {
    match gpu {
        None => (None, Vec::new()),
        Some(g) => {
            let d = g.counts().dispatches - before;
            ((d > 0).then(|| d / steps.max(1) as u64), g.take_timings())
        }
    }
}

/// Time `steps` training steps of `cfg` (after one untimed step) at `batch` sequences of Philox
/// bytes (the arithmetic does not depend on the values), then one batched sampling run.
/// `gpu` (when the backend runs there) gives the per-kernel device times for the matmul share.
pub fn time_lm(
    backend: &crate::trainers::Engine,
    gpu: Option<&crate::gpu::GpuContext>,
    cfg: &crate::models::lm::LmConfig,
    batch: usize,
    steps: usize,
) -> Result<LmTiming> {
    let len = cfg.context;
    let mut words = vec![0u32; batch * (len + 1)];
    crate::backend::cpu64::Cpu64.uniform_u32(streams::bench::LM_BYTES, 0, &mut words)?;
    let tokens: Vec<u8> = words.iter().map(|w| (w >> 24) as u8).collect();
    let mut lm = backend.lm(cfg, &crate::models::lm::init_params(cfg, 0))?;
    lm.step(&tokens, len)?;
    lm.last_loss()?;
    let before = start_counting(gpu);
    let mut times = Vec::with_capacity(steps);
    for _ in 0..steps.max(1) {
        let t = Instant::now();
        lm.step(&tokens, len)?;
        lm.last_loss()?;
        times.push(t.elapsed().as_secs_f64());
    }
    let (dispatches_per_step, kernels) = stop_counting(gpu, before, times.len());
    let matmul_share = {
        let total: f64 = kernels.iter().map(|t| t.seconds).sum();
        let mm: f64 = kernels
            .iter()
            .filter(|t| t.kernel.starts_with("matmul"))
            .map(|t| t.seconds)
            .sum();
        (total > 0.0).then_some(mm / total)
    };
    times.sort_by(f64::total_cmp);
    let med = times[times.len() / 2];
    let sample_len = len.saturating_sub(1).max(1);
    let t = Instant::now();
    crate::models::lm::sample::generate(
        lm.as_ref(),
        backend,
        b"\n",
        batch,
        sample_len,
        &crate::models::lm::sample::SampleConfig::default(),
        streams::bench::LM_SAMPLE,
    )?;
    let sample_s = t.elapsed().as_secs_f64();
    Ok(LmTiming {
        backend: backend.name().into(),
        device: backend.device(),
        shape: format!("{}-{}-{}-{}", cfg.width, cfg.layers, cfg.heads, cfg.context),
        batch,
        seconds: med,
        min_seconds: times[0],
        train_tokens_per_s: (batch * len) as f64 / med,
        sample_tokens_per_s: (batch * sample_len) as f64 / sample_s,
        matmul_share,
        dispatches_per_step,
        kernels,
    })
}
