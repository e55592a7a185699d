//! What several commands share: the GPU options and context, the progress bar, the records
//! flags, the GMM's EM flags and the language model's shape flags.

use std::path::PathBuf;
use std::sync::Arc;

use collapse_kernels::Result;
use collapse_kernels::backend::BackendKind;
use collapse_kernels::gpu::{self, AdapterSummary, GpuContext, GpuOptions};
use collapse_kernels::measure::records::{Record, Stamp};
use collapse_kernels::models::gmm::{GmmConfig, Init};
use collapse_kernels::models::lm::{AdamW, LmConfig};
use collapse_kernels::ops::gmm::CovarianceType;

/// Mesa's Vulkan drivers print "XDG_RUNTIME_DIR is invalid" when it is unset; give them a
/// private directory instead (set before any thread starts).
pub fn quiet_mesa() {
    let ok = std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| std::path::Path::new(&d).is_dir());
    if !ok {
        let user = std::env::var("USER").unwrap_or_else(|_| "user".into());
        let dir = std::env::temp_dir().join(format!("collapse-xdg-{user}"));
        if std::fs::create_dir_all(&dir).is_ok() {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
            // SAFETY: called first thing in main, before any other thread exists.
            unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
        }
    }
}

/// Whether environment variable `name` is set to `1`.
fn env_on(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1")
}

/// The GPU options of every command: the `--adapter` choice, `COLLAPSE_POISON=1` (fill fresh
/// device buffers with NaN, to catch reads of unwritten memory), `COLLAPSE_CHECKED_SHADERS=1`
/// (compile shaders with naga's runtime bounds and loop checks instead of as trusted modules),
/// and `COLLAPSE_PHILOX_EMULATED=1` (Philox's multiply in 16-bit halves even where the adapter
/// has native 64-bit integers).
pub fn gpu_options(adapter: Option<String>) -> GpuOptions {
    GpuOptions {
        adapter,
        poison: env_on("COLLAPSE_POISON"),
        binding_limit: None,
        queued: false,
        checked_shaders: env_on("COLLAPSE_CHECKED_SHADERS"),
        emulated_int64: env_on("COLLAPSE_PHILOX_EMULATED"),
    }
}

/// `o` for training and generational runs: kernels queued without per-kernel waits or times
/// (they read results back only when needed).
pub fn queued(o: &GpuOptions) -> GpuOptions {
    GpuOptions {
        queued: true,
        ..o.clone()
    }
}

/// One GPU context shared by every backend of `kinds` that runs on the GPU (wgsl, cube), or
/// `None` when none does (no adapter is opened then).
pub fn gpu_for(options: &GpuOptions, kinds: &[BackendKind]) -> Result<Option<Arc<GpuContext>>> {
    if kinds.iter().any(|k| k.needs_gpu()) {
        Ok(Some(GpuContext::new(options)?))
    } else {
        Ok(None)
    }
}

/// Summaries of every adapter wgpu finds.
pub fn adapter_summaries() -> Vec<AdapterSummary> {
    gpu::list_adapters(&gpu::new_instance())
        .into_iter()
        .map(|(_, s)| s)
        .collect()
}

/// A progress bar of `len` steps drawn with the indicatif `template` (every command's bar is
/// 30 cells wide: `{bar:30}`), on stderr; `finish_and_clear` it when done.
pub fn progress_bar(len: u64, template: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(indicatif::ProgressStyle::with_template(template).expect("static template"));
    bar
}

/// Where a bench run writes its JSON records (see `collapse_kernels::measure::records`).
#[derive(clap::Args, Debug)]
pub struct RecordArgs {
    /// Folder for this run's JSON records (kernel, backend, adapter, driver, shape, median,
    /// spread, throughput, git revision, date); one file per run.
    #[arg(long, default_value = "results/bench/records")]
    pub records: PathBuf,
    /// Write no records.
    #[arg(long)]
    pub no_records: bool,
}

impl RecordArgs {
    /// Write `records` unless disabled; prints where.
    pub fn write(&self, stamp: &Stamp, records: &[Record]) -> Result<()> {
        if self.no_records || records.is_empty() {
            return Ok(());
        }
        let p = collapse_kernels::measure::records::write(&self.records, stamp, records)?;
        println!("records: {}", p.display());
        Ok(())
    }
}

/// The library's EM defaults (scikit-learn's), read by the EM flags' clap defaults.
fn em() -> GmmConfig {
    GmmConfig::new(1)
}

/// The EM flags shared by `collapse fit gmm` and the GMM of `collapse run` / `drift run`.
#[derive(clap::Args, Debug, Clone)]
pub struct EmArgs {
    /// GMM: covariance type, as scikit-learn's: `full` (a D×D matrix per component), `tied` (one
    /// D×D matrix shared by all), `diag` (a diagonal per component) or `spherical` (one variance
    /// per component).
    #[arg(long, value_enum, default_value_t = em().covariance_type)]
    pub covariance: CovarianceType,
    /// GMM: EM's start, as scikit-learn's `init_params`: `kmeans` (Lloyd's k-means from
    /// k-means++ seeds, hard responsibilities), `k-means++` (the K seeds alone), `random`
    /// (uniform random responsibilities) or `random_from_data` (K distinct data points); drawn
    /// by Philox from --seed, the same on every backend.
    #[arg(long, value_enum, default_value_t = em().init)]
    pub init: Init,
    /// GMM: EM stops when the mean log-likelihood per sample changes by less than this (nats).
    #[arg(long, default_value_t = em().tol)]
    pub tol: f64,
    /// GMM: EM iteration cap per fit (`fit gmm`: per initialisation; `run`: per generation and
    /// replicate).
    #[arg(long, default_value_t = em().max_iter)]
    pub max_iter: usize,
    /// GMM: added to every covariance diagonal (keeps covariances positive definite).
    #[arg(long, default_value_t = em().reg_covar)]
    pub reg_covar: f64,
}

/// The language model's shape and optimiser flags (`train lm`, `bench lm`); defaults from
/// `LmConfig::default()`.
#[derive(clap::Args, Debug, Clone)]
pub struct LmShapeArgs {
    /// Width C (d_model).
    #[arg(long, default_value_t = LmConfig::default().width)]
    pub width: usize,
    /// Transformer blocks.
    #[arg(long, default_value_t = LmConfig::default().layers)]
    pub layers: usize,
    /// Attention heads (must divide --width).
    #[arg(long, default_value_t = LmConfig::default().heads)]
    pub heads: usize,
    /// Context (bytes per training sequence, positions with an embedding).
    #[arg(long, default_value_t = LmConfig::default().context)]
    pub context: usize,
    /// AdamW learning rate.
    #[arg(long, default_value_t = AdamW::default().lr)]
    pub lr: f64,
    /// AdamW decoupled weight decay (weights and embeddings only).
    #[arg(long, default_value_t = AdamW::default().weight_decay)]
    pub weight_decay: f64,
    /// Clip the gradient to this global L2 norm (0: no clipping).
    #[arg(long, default_value_t = AdamW::default().clip.unwrap_or(0.0))]
    pub clip: f64,
}

impl LmShapeArgs {
    /// The model these flags describe (AdamW's other settings at their defaults).
    pub fn config(&self) -> LmConfig {
        LmConfig {
            width: self.width,
            layers: self.layers,
            heads: self.heads,
            context: self.context,
            adam: AdamW {
                lr: self.lr,
                weight_decay: self.weight_decay,
                clip: (self.clip > 0.0).then_some(self.clip),
                ..AdamW::default()
            },
        }
    }
}

/// CSV text of `values` (`[rows][cols]`, row-major; Rust's shortest round-trip decimals) under
/// the header `{prefix}0,…,{prefix}{cols−1}` (`gmm predict-proba`'s `p…`, `sample gmm`'s `x…`).
pub fn matrix_csv(prefix: &str, values: &[f64], cols: usize) -> String {
    let head: Vec<String> = (0..cols).map(|j| format!("{prefix}{j}")).collect();
    let mut csv = head.join(",");
    csv.push('\n');
    for r in values.chunks(cols) {
        let row: Vec<String> = r.iter().map(|v| v.to_string()).collect();
        csv.push_str(&row.join(","));
        csv.push('\n');
    }
    csv
}
