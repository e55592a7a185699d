//! `collapse`: the command-line front end. It parses flags, calls the library, prints.

use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};

use std::path::PathBuf;

use collapse_kernels::backend::BackendKind;
use collapse_kernels::experiment::ModelKind;
use collapse_kernels::gpu::{self, AdapterSummary, GpuContext, GpuOptions};
use collapse_kernels::io::{read_table, write_atomic};
use collapse_kernels::models::gmm::{GmmConfig, Init, fit};
use collapse_kernels::ops::Backend;
use collapse_kernels::ops::gmm::CovarianceType;
use collapse_kernels::rng::StreamKey;
use collapse_kernels::trainers::Engine;
use collapse_kernels::{Error, Result};

/// GPU kernels for studying model collapse, with f64 CPU references.
#[derive(Parser, Debug)]
#[command(name = "collapse", version, about, long_about = None)]
struct Cli {
    /// Use the first GPU adapter whose name contains this text (case-insensitive), instead of the
    /// automatic choice (discrete GPU, then integrated, then a CPU adapter such as lavapipe).
    #[arg(long, global = true, env = "COLLAPSE_ADAPTER")]
    adapter: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List every adapter wgpu finds, which one is chosen and why, and its limits and features.
    Info {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Draw random numbers from one Philox stream on a backend, print the first few, the time
    /// taken, and the largest difference from the cpu64 reference.
    Rng {
        /// Backend to run on: cpu64 (f64 reference), cpu32 (f32, all cores), wgsl, cube.
        #[arg(long, value_enum, default_value_t = BackendKind::Cpu32)]
        backend: BackendKind,
        /// What to draw: raw u32 words, uniforms in [0, 1), or standard normals.
        #[arg(long, value_enum, default_value_t = Kind::Normal)]
        kind: Kind,
        /// Experiment seed (the Philox key).
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Stream number (e.g. one per replicate chain).
        #[arg(long, default_value_t = 0)]
        stream: u64,
        /// Index of the first draw in the stream.
        #[arg(long, default_value_t = 0)]
        start: u64,
        /// How many draws.
        #[arg(long, default_value_t = 1 << 20)]
        count: usize,
        /// How many values to print.
        #[arg(long, default_value_t = 8)]
        show: usize,
    },
    /// Fit a model to a data file.
    #[command(subcommand)]
    Fit(FitCommand),
    /// Train a model (the VAE on images, the language model on text).
    #[command(subcommand)]
    Train(TrainCommand),
    /// Sample from a trained model.
    #[command(subcommand)]
    Sample(SampleCommand),
    /// Run a generational model-collapse experiment: generation 0 fits real data, generation n
    /// fits samples of generation n−1 (mixed with real data by --policy). Writes metrics.csv,
    /// summary.json and state.json (a checkpoint after every generation) into --out.
    Run(RunArgs),
    /// Overlay the collapse curves of several runs: one SVG per metric shared by all of them
    /// (mean over replicates, band ± 1 sd), e.g. one run per policy.
    Plot {
        /// Run directories (each with a summary.json).
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Directory for the SVG files.
        #[arg(long)]
        out: PathBuf,
    },
    /// Numeric regression check: run every kernel on fixed seeded inputs and compare with the
    /// golden fingerprints (reference summary + each kernel's promised tolerance vs cpu64).
    /// Exits non-zero on drift.
    Check {
        /// Rewrite the golden file from the current cpu64 reference and say what changed.
        #[arg(long)]
        bless: bool,
        /// The golden file.
        #[arg(long, default_value = "results/golden/fingerprints.json")]
        golden: PathBuf,
        /// Backends to check against cpu64 (default: cpu32, and wgsl + cube when an adapter
        /// exists).
        #[arg(long, value_delimiter = ',')]
        backends: Vec<BackendKind>,
    },
    /// Time kernels and print a table (criterion benches under benches/ measure the same).
    Bench(BenchArgs),
    /// Computational error as a collapse source: the same experiment on several backends and
    /// precisions (`drift run`), and each kernel's error vs size and input scale
    /// (`drift kernels`).
    #[command(subcommand)]
    Drift(DriftCommand),
}

#[derive(Subcommand, Debug)]
enum DriftCommand {
    /// Run one generational experiment (same seed, same Philox streams) on every --backends
    /// entry and compare: per generation the distance between each pair's trajectories and the
    /// first generation each pair passes 1e-6, 1e-4, 1e-2; per backend when replicates reach
    /// the absorbing state (σ exactly 0; σ on the rounding floor, ≤ 16·u·|μ|). Writes pairs.csv,
    /// crossings.csv, absorption.csv, absorption_per_replicate.csv, spread.csv, summary.json and
    /// plots/ into --out, and prints the crossing and absorption tables.
    Run(Box<DriftRunArgs>),
    /// Error of each kernel family vs the f64 reference as a function of problem size and input
    /// scale: sums (naive, pairwise, Kahan), the Gaussian fit, the E-step log-likelihood,
    /// matmul and sampling. Writes --out (CSV) and an SVG per family beside it.
    Kernels(DriftKernelArgs),
}

#[derive(clap::Args, Debug)]
struct DriftRunArgs {
    #[command(flatten)]
    exp: ExperimentArgs,
    /// Backends and precisions to compare, comma-separated; the first is the reference of the
    /// plots. Known: cpu64, cpu32, wgsl, cube, cpu32-naive, cpu32-pairwise, cpu32-kahan (EM
    /// reductions in that summation order, single-threaded), cpu32-f16 (samples stored as
    /// binary16).
    #[arg(long, default_value = "cpu64,cpu32,cpu32-naive,cpu32-kahan,cpu32-f16")]
    backends: String,
    /// Also write params.csv: every fitted parameter of every backend, generation and replicate
    /// (large for long runs).
    #[arg(long)]
    params: bool,
    /// Replicates each generation runs at once, as for `collapse run` (0 = one per CPU core; the
    /// numbers do not depend on it; the backends still run one after another).
    #[arg(long, default_value_t = 0)]
    replicate_jobs: usize,
    /// Output directory (created; existing report files are replaced).
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args, Debug)]
struct DriftKernelArgs {
    /// Backends for the fit, log-likelihood, matmul and sample families (comma-separated;
    /// cpu64 is the reference and always runs). wgsl and cube also run matmul with f16 storage
    /// where the adapter has f16.
    #[arg(long, default_value = "cpu32,cpu32-naive,cpu32-kahan")]
    backends: String,
    /// Problem sizes n (points or terms), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000usize, 10_000, 100_000, 1_000_000])]
    sizes: Vec<usize>,
    /// Inner dimensions of the matmul family, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [64usize, 256, 1024, 4096, 16384])]
    matmul_k: Vec<usize>,
    /// Input scales s (inputs are s + N(0, 1)), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [0.0f64, 1.0, 100.0, 10000.0])]
    scales: Vec<f64>,
    /// Philox seed of the inputs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where to write the table (CSV); plots go to PLOTS beside it (drift-kernels-FAMILY.svg).
    #[arg(long, default_value = "results/drift/kernels.csv")]
    out: PathBuf,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    exp: ExperimentArgs,
    /// Backend running sampling and fitting; auto = wgsl on a GPU adapter, else cpu32.
    #[arg(long, default_value = "auto")]
    backend: String,
    /// Output directory (must not hold a run already).
    #[arg(long, required_unless_present = "resume")]
    out: Option<PathBuf>,
    /// Continue the run in this directory from its last checkpoint (its stored configuration is
    /// used; the other flags but --replicate-jobs are ignored).
    #[arg(long, conflicts_with = "out")]
    resume: Option<PathBuf>,
    /// Replicates each generation runs at once (threads; on a GPU backend their launches are in
    /// flight on the device together). 0 = one per CPU core; at most --replicates and 256. The numbers
    /// do not depend on it, only the time; 1 runs the replicates one after another.
    #[arg(long, default_value_t = 0)]
    replicate_jobs: usize,
}

/// The experiment flags shared by `collapse run` and `collapse drift run`.
#[derive(clap::Args, Debug)]
struct ExperimentArgs {
    /// Model each generation fits: gaussian (MLE mean and per-dimension variance, no
    /// regularisation), gmm (EM), vae (a VAE trained from scratch each generation on images;
    /// its samples are decoder means; real data defaults to Fashion-MNIST) or lm (a byte-level
    /// transformer on text; real data defaults to Debian's fortunes; --data takes a text file).
    #[arg(long, value_enum, default_value_t = ModelKind::Gaussian)]
    model: ModelKind,
    /// Built-in ground truth: normal, normal:D (N(0, I) in D dims), shumailov-gmm (two 2-D
    /// Gaussians), fortunes (text, for lm). Default: normal for gaussian, shumailov-gmm for gmm,
    /// fortunes for lm.
    #[arg(long, conflicts_with = "data")]
    truth: Option<String>,
    /// Real data from a file (CSV, NPY, or IDX images named *-ubyte[.gz]) instead of a
    /// built-in truth; 20% of the rows (a Philox choice) is held out. Default for vae:
    /// /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz.
    #[arg(long)]
    data: Option<PathBuf>,
    /// With --data (gaussian, gmm, vae): real rows per replicate for generation 0 and mix:F, a
    /// Philox choice from the training split (default: every training row); fresh:F draws from
    /// the whole split.
    #[arg(long)]
    real_rows: Option<usize>,
    /// Generations after generation 0.
    #[arg(long, default_value_t = 100)]
    generations: usize,
    /// Samples drawn per generation (and real points at generation 0).
    #[arg(long, default_value_t = 100)]
    samples: usize,
    /// Independent replicate chains (seeds derived from --seed).
    #[arg(long, default_value_t = 8)]
    replicates: usize,
    /// Training pool: replace (last generation's samples), accumulate (all real and synthetic
    /// data so far), mix:F (fraction F real, drawn from the real set), fresh:F (fraction F new
    /// real data each generation).
    #[arg(long, default_value = "replace")]
    policy: String,
    /// Philox seed of the whole experiment.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// GMM: components.
    #[arg(long, default_value_t = 2)]
    k: usize,
    /// GMM: covariance type.
    #[arg(long, value_enum, default_value_t = CovarianceType::Full)]
    covariance: CovarianceType,
    /// GMM: EM tolerance on the mean log-likelihood change.
    #[arg(long, default_value_t = 1e-3)]
    tol: f64,
    /// GMM: EM iteration cap per generation.
    #[arg(long, default_value_t = 100)]
    max_iter: usize,
    /// GMM: added to covariance diagonals.
    #[arg(long, default_value_t = 1e-6)]
    reg_covar: f64,
    /// VAE: hidden width.
    #[arg(long, default_value_t = 200)]
    vae_hidden: usize,
    /// VAE: latent dimensions.
    #[arg(long, default_value_t = 10)]
    vae_latent: usize,
    /// VAE: passes over each generation's pool.
    #[arg(long, default_value_t = 5)]
    vae_epochs: usize,
    /// VAE: images per Adam step.
    #[arg(long, default_value_t = 64)]
    vae_batch: usize,
    /// VAE: Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    vae_lr: f64,
    /// VAE: weight of the KL term (1 = the ELBO).
    #[arg(long, default_value_t = 1.0)]
    vae_beta: f64,
    /// LM: width C.
    #[arg(long, default_value_t = 64)]
    lm_width: usize,
    /// LM: transformer blocks.
    #[arg(long, default_value_t = 2)]
    lm_layers: usize,
    /// LM: attention heads.
    #[arg(long, default_value_t = 4)]
    lm_heads: usize,
    /// LM: context; a sample (and a training row) is `\n` plus this many bytes.
    #[arg(long, default_value_t = 64)]
    lm_context: usize,
    /// LM: AdamW steps per generation.
    #[arg(long, default_value_t = 300)]
    lm_steps: usize,
    /// LM: rows per step.
    #[arg(long, default_value_t = 16)]
    lm_batch: usize,
    /// LM: AdamW learning rate.
    #[arg(long, default_value_t = 2e-3)]
    lm_lr: f64,
    /// LM: where each generation's training starts: scratch (fresh weights) or gen0
    /// (fine-tune the replicate's generation-0 model, as Shumailov et al.).
    #[arg(long, value_enum, default_value_t = collapse_kernels::experiment::lm::LmInit::Scratch)]
    lm_init: collapse_kernels::experiment::lm::LmInit,
    /// LM: sampling temperature.
    #[arg(long, default_value_t = 1.0)]
    lm_temperature: f64,
    /// LM: sample only among the k likeliest bytes.
    #[arg(long)]
    lm_top_k: Option<usize>,
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Seconds per EM iteration (E-step + two-pass M-step) for [N=100k, D=16, K=32] full and
    /// diag and [N=1M, D=8, K=16] full, per backend.
    Gmm {
        /// Backends to time (comma-separated). Backends without EM kernels are reported and
        /// skipped.
        #[arg(long, value_delimiter = ',', default_values_t = [BackendKind::Cpu64, BackendKind::Cpu32])]
        backends: Vec<BackendKind>,
        /// Timed iterations per backend and shape (after one warm-up iteration).
        #[arg(long, default_value_t = 5)]
        iters: usize,
        /// Also write the data sets as NPY files here (gmm-N-D-K.npy), for peer scripts.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Write the records as CSV here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Shapes to time instead of the default three, as NxDxK:full or NxDxK:diag
        /// (repeatable), e.g. --shape 1000000x64x64:diag.
        #[arg(long = "shape")]
        shapes: Vec<String>,
        #[command(flatten)]
        records: RecordArgs,
    },
    /// GFLOP/s and GB/s of C = A·B (f32, row-major) per backend, each checked against a
    /// reference first (cpu64 up to 512³-sized products, cpu32 above), with the ratio to cpu32
    /// (the `matrixmultiply` crate) measured in the same run. Prints the WGSL tile shape and
    /// how it was chosen (autotune, cache or COLLAPSE_MATMUL_TILE). With a GPU backend it also
    /// measures the adapter's ceilings (probe.wgsl: f32 FMA GFLOP/s, copy GB/s) and prints each
    /// GPU row's fraction of them (the roofline).
    Matmul {
        /// Backends to time (comma-separated).
        #[arg(long, value_delimiter = ',', default_values_t = [BackendKind::Cpu32, BackendKind::Wgsl, BackendKind::Cube])]
        backends: Vec<BackendKind>,
        /// Square sizes N (N×N times N×N), comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = [128usize, 256, 512, 1024])]
        sizes: Vec<usize>,
        /// Extra shapes as MxNxK (repeatable), e.g. --shape 4096x1024x256. `--models` adds the
        /// transformer's and the VAE's shapes.
        #[arg(long = "shape")]
        shapes: Vec<String>,
        /// Add the models' shapes: lm_mlp_up 4096x1024x256 and vae_enc1 128x400x784.
        #[arg(long)]
        models: bool,
        /// Timed repetitions per backend and shape (after one checked warm-up); the median counts.
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Write the records as CSV here.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        records: RecordArgs,
    },
    /// Device-side GB/s: the adapter's copy bandwidth (probe kernel) and the bytes per second the
    /// WGSL GMM sampler writes, from GPU timestamps, and their ratio.
    Sample {
        /// Samples per sampler call (K = 16, D = 8, full).
        #[arg(long, default_value_t = 1 << 22)]
        samples: usize,
        /// Repetitions; the fastest counts.
        #[arg(long, default_value_t = 5)]
        reps: usize,
        #[command(flatten)]
        records: RecordArgs,
    },
    /// VAE training steps per second and images per second (forward, loss, backward, Adam;
    /// D = 784, H = 400, Z = 20) per backend and batch size, the loss read back every step.
    /// `scripts/bench-vae.sh` runs this and the PyTorch CPU peer back to back.
    Vae {
        /// Backends to time (comma-separated).
        #[arg(long, value_delimiter = ',', default_values_t = [BackendKind::Cpu32])]
        backends: Vec<BackendKind>,
        /// Batch sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = [128usize, 1024])]
        batches: Vec<usize>,
        /// Timed steps per backend and batch (after one untimed step); the median counts.
        #[arg(long, default_value_t = 20)]
        steps: usize,
        /// Write the timings as CSV here.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        records: RecordArgs,
    },
    /// Language-model training tokens/s (forward, backward, AdamW) and sampling tokens/s (KV
    /// cache, categorical sampler) per backend; on WGSL the share of device time in matmul.
    Lm {
        /// Backends to time (comma-separated).
        #[arg(long, value_delimiter = ',', default_values_t = [BackendKind::Cpu32])]
        backends: Vec<BackendKind>,
        #[command(flatten)]
        shape: LmShapeArgs,
        /// Sequences per training step (and rows sampled at once).
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// Timed steps per backend (after one untimed step); the median counts.
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// Write the timings as CSV here.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        records: RecordArgs,
    },
    /// Compare two record sets (record files or folders of them, e.g. two machines' or two
    /// revisions' results/bench/records): median seconds and the speedup of B over A for every
    /// kernel, backend and shape both hold (the latest record of each). Same as
    /// `collapse bench --compare A B`.
    Compare {
        /// The baseline records.
        a: PathBuf,
        /// The records compared with it.
        b: PathBuf,
    },
}

/// `collapse bench`: a bench subcommand, or `--compare A B`.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, arg_required_else_help = true)]
struct BenchArgs {
    /// Compare two record sets (see `collapse bench compare --help`).
    #[arg(long, num_args = 2, value_names = ["A", "B"])]
    compare: Option<Vec<PathBuf>>,
    #[command(subcommand)]
    cmd: Option<BenchCommand>,
}

/// Where a bench run writes its JSON records (see `collapse_kernels::measure::records`).
#[derive(clap::Args, Debug)]
struct RecordArgs {
    /// Folder for this run's JSON records (kernel, backend, adapter, driver, shape, median,
    /// spread, throughput, git revision, date); one file per run.
    #[arg(long, default_value = "results/bench/records")]
    records: PathBuf,
    /// Write no records.
    #[arg(long)]
    no_records: bool,
}

impl RecordArgs {
    /// Write `records` unless disabled; prints where.
    fn write(
        &self,
        stamp: &collapse_kernels::measure::records::Stamp,
        records: &[collapse_kernels::measure::records::Record],
    ) -> Result<()> {
        if self.no_records || records.is_empty() {
            return Ok(());
        }
        let p = collapse_kernels::measure::records::write(&self.records, stamp, records)?;
        println!("records: {}", p.display());
        Ok(())
    }
}

#[derive(Subcommand, Debug)]
enum TrainCommand {
    /// Train the MLP VAE (D → H → 2Z → H → D, Bernoulli likelihood, Adam) on IDX images and
    /// write epochs.csv (epoch, train loss, test negative ELBO in nats per image, seconds,
    /// images/s), model.json, weights.npy, samples.png and reconstructions.png into --out.
    Vae(TrainVaeArgs),
    /// Train the byte-level transformer language model (pre-norm GPT blocks, AdamW) on text
    /// (default: Debian's fortunes) and write log.csv (step, train loss, validation loss in
    /// nats per byte, perplexity, seconds, tokens/s), model.json, weights.npy and samples.txt
    /// into --out.
    Lm(TrainLmArgs),
}

#[derive(Subcommand, Debug)]
enum SampleCommand {
    /// Continue a prompt with a trained language model (KV cache; temperature and top-k through
    /// the categorical sampler) and print the samples.
    Lm(SampleLmArgs),
}

/// The language model's shape and optimiser flags.
#[derive(clap::Args, Debug, Clone)]
struct LmShapeArgs {
    /// Width C (d_model).
    #[arg(long, default_value_t = 128)]
    width: usize,
    /// Transformer blocks.
    #[arg(long, default_value_t = 4)]
    layers: usize,
    /// Attention heads (must divide --width).
    #[arg(long, default_value_t = 4)]
    heads: usize,
    /// Context (bytes per training sequence, positions with an embedding).
    #[arg(long, default_value_t = 128)]
    context: usize,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// AdamW decoupled weight decay (weights and embeddings only).
    #[arg(long, default_value_t = 0.1)]
    weight_decay: f64,
    /// Clip the gradient to this global L2 norm (0: no clipping).
    #[arg(long, default_value_t = 1.0)]
    clip: f64,
}

impl LmShapeArgs {
    fn config(&self) -> collapse_kernels::models::lm::LmConfig {
        use collapse_kernels::models::lm::{AdamW, LmConfig};
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

#[derive(clap::Args, Debug)]
struct TrainLmArgs {
    /// UTF-8 text files (records split at `%` lines, else blank lines; 10% of records held out
    /// for validation). Default: every fortune file in /usr/share/games/fortunes except art and
    /// ascii-art (`apt-get install fortunes`).
    #[arg(long, num_args = 1..)]
    data: Vec<PathBuf>,
    #[command(flatten)]
    shape: LmShapeArgs,
    /// AdamW steps.
    #[arg(long, default_value_t = 1000)]
    steps: usize,
    /// Sequences per step.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Measure the validation loss every this many steps.
    #[arg(long, default_value_t = 100)]
    eval_every: usize,
    /// Validation windows (of context + 1 bytes) per measurement.
    #[arg(long, default_value_t = 64)]
    eval_windows: usize,
    /// Philox seed of the weights, batches and samples.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Backend running the training steps (the GPU backends have no LM kernels yet).
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu32)]
    backend: BackendKind,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args, Debug)]
struct SampleLmArgs {
    /// A directory written by `collapse train lm` (model.json, weights.npy).
    #[arg(long)]
    model: PathBuf,
    /// Text to continue (at least one byte); `\n` and `\t` are read as newline and tab.
    #[arg(long, default_value = "\n")]
    prompt: String,
    /// Samples.
    #[arg(long, default_value_t = 4)]
    rows: usize,
    /// Bytes per sample (prompt + bytes − 1 must fit the context).
    #[arg(long, default_value_t = 100)]
    len: usize,
    /// Temperature (> 0).
    #[arg(long, default_value_t = 1.0)]
    temperature: f64,
    /// Keep only the k likeliest bytes.
    #[arg(long)]
    top_k: Option<usize>,
    /// Philox seed of the draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Backend computing the logits and drawing the bytes.
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu32)]
    backend: BackendKind,
}

#[derive(clap::Args, Debug)]
struct TrainVaeArgs {
    /// Training images: an IDX image file, raw or gzip (MNIST, Fashion-MNIST, …).
    #[arg(
        long,
        default_value = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
    )]
    data: PathBuf,
    /// Test images (IDX). Default: the `t10k-` file beside a `train-` --data file; otherwise
    /// the last 10% of --data is held out.
    #[arg(long)]
    test_data: Option<PathBuf>,
    /// Use only the first N training images (quick runs).
    #[arg(long)]
    limit: Option<usize>,
    /// Passes over the training images.
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Images per training step.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Hidden width H.
    #[arg(long, default_value_t = 400)]
    hidden: usize,
    /// Latent dimensions Z.
    #[arg(long, default_value_t = 20)]
    latent: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Adam L2 weight decay.
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    /// Adam first-moment decay β₁.
    #[arg(long, default_value_t = 0.9)]
    adam_beta1: f64,
    /// Adam second-moment decay β₂.
    #[arg(long, default_value_t = 0.999)]
    adam_beta2: f64,
    /// Adam ε (added to √v̂).
    #[arg(long, default_value_t = 1e-8)]
    adam_eps: f64,
    /// Weight of the KL term (1 = the ELBO).
    #[arg(long, default_value_t = 1.0)]
    beta: f64,
    /// Philox seed of the weights, shuffles and noise (the same start on every backend).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Backend running the training steps.
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu32)]
    backend: BackendKind,
    /// Read the loss back every this many steps.
    #[arg(long, default_value_t = 10)]
    loss_every: usize,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Subcommand, Debug)]
enum FitCommand {
    /// Fit a Gaussian mixture by EM (scikit-learn's options) and write FIT.json.
    Gmm(FitGmmArgs),
}

#[derive(clap::Args, Debug)]
struct FitGmmArgs {
    /// Data: CSV (numeric columns, optional header line) or NPY (2-D float32/float64), one row per
    /// point. Non-finite values are an error naming the row.
    #[arg(long)]
    data: PathBuf,
    /// Number of mixture components K (1 ≤ K ≤ N).
    #[arg(long)]
    k: usize,
    /// Covariance type: a full D×D matrix or a diagonal per component.
    #[arg(long, value_enum, default_value_t = CovarianceType::Full)]
    covariance: CovarianceType,
    /// Stop when the mean log-likelihood per sample changes by less than this (nats).
    #[arg(long, default_value_t = 1e-3)]
    tol: f64,
    /// Maximum EM iterations per initialisation.
    #[arg(long, default_value_t = 100)]
    max_iter: usize,
    /// Added to every covariance diagonal (keeps covariances positive definite).
    #[arg(long, default_value_t = 1e-6)]
    reg_covar: f64,
    /// Number of initialisations; the best final log-likelihood is kept.
    #[arg(long, default_value_t = 1)]
    n_init: usize,
    /// Initialisation: k-means++ seeding with hard assignment, or random responsibilities.
    #[arg(long, value_enum, default_value_t = Init::KMeansPP)]
    init: Init,
    /// Philox seed of the initialisation: the same seed gives the same start on every backend.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Backend running the E- and M-step passes.
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu32)]
    backend: BackendKind,
    /// Where to write the fit (JSON, written atomically).
    #[arg(long)]
    out: PathBuf,
}

/// What `collapse rng` draws.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Kind {
    /// Raw 32-bit Philox words (bit-identical on every backend).
    U32,
    /// Uniforms in [0, 1).
    Uniform,
    /// Standard normals (Box–Muller).
    Normal,
}

fn main() -> ExitCode {
    quiet_mesa();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Mesa's Vulkan drivers print "XDG_RUNTIME_DIR is invalid" when it is unset; give them a
/// private directory instead (set before any thread starts).
fn quiet_mesa() {
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

fn gpu_options(cli: &Cli) -> GpuOptions {
    GpuOptions {
        adapter: cli.adapter.clone(),
        poison: std::env::var("COLLAPSE_POISON").is_ok_and(|v| v == "1"),
        binding_limit: None,
        queued: false,
    }
}

/// `o` for training and generational runs: kernels queued without per-kernel waits or times
/// (they read results back only when needed).
fn queued(o: &GpuOptions) -> GpuOptions {
    GpuOptions {
        queued: true,
        ..o.clone()
    }
}

fn run(cli: Cli) -> Result<()> {
    let options = gpu_options(&cli);
    match cli.command {
        Command::Info { json } => info(&options, json),
        Command::Rng {
            backend,
            kind,
            seed,
            stream,
            start,
            count,
            show,
        } => rng_demo(
            &options,
            backend,
            kind,
            StreamKey::new(seed, stream),
            start,
            count,
            show,
        ),
        Command::Fit(FitCommand::Gmm(args)) => fit_gmm(&options, &args),
        Command::Train(TrainCommand::Vae(args)) => train_vae(&options, &args),
        Command::Train(TrainCommand::Lm(args)) => train_lm(&options, &args),
        Command::Sample(SampleCommand::Lm(args)) => sample_lm(&options, &args),
        Command::Run(args) => run_generations(&options, &args),
        Command::Check {
            bless,
            golden,
            backends,
        } => check(&options, bless, &golden, &backends),
        Command::Drift(DriftCommand::Run(args)) => drift_run(&options, &args),
        Command::Drift(DriftCommand::Kernels(args)) => drift_kernels(&options, &args),
        Command::Plot { runs, out } => {
            for f in collapse_kernels::report::plot_runs(&runs, &out)? {
                println!("wrote {}", f.display());
            }
            Ok(())
        }
        Command::Bench(BenchArgs {
            compare: Some(ab), ..
        }) => bench_compare(&ab[0], &ab[1]),
        Command::Bench(BenchArgs { cmd: None, .. }) => Err(Error::InvalidArgument(
            "collapse bench: give a subcommand (gmm, matmul, sample, compare) or --compare A B"
                .into(),
        )),
        Command::Bench(BenchArgs {
            cmd: Some(BenchCommand::Compare { a, b }),
            ..
        }) => bench_compare(&a, &b),
        Command::Bench(BenchArgs {
            cmd:
                Some(BenchCommand::Lm {
                    backends,
                    shape,
                    batch,
                    steps,
                    out,
                    records,
                }),
            ..
        }) => bench_lm(
            &options,
            &backends,
            &shape,
            batch,
            steps,
            out.as_deref(),
            &records,
        ),
        Command::Bench(BenchArgs {
            cmd:
                Some(BenchCommand::Vae {
                    backends,
                    batches,
                    steps,
                    out,
                    records,
                }),
            ..
        }) => bench_vae(
            &options,
            &backends,
            &batches,
            steps,
            out.as_deref(),
            &records,
        ),
        Command::Bench(BenchArgs {
            cmd:
                Some(BenchCommand::Gmm {
                    backends,
                    iters,
                    data_dir,
                    out,
                    shapes,
                    records,
                }),
            ..
        }) => bench_gmm(
            &options,
            &backends,
            iters,
            data_dir.as_deref(),
            out.as_deref(),
            &shapes,
            &records,
        ),
        Command::Bench(BenchArgs {
            cmd:
                Some(BenchCommand::Matmul {
                    backends,
                    sizes,
                    shapes,
                    models,
                    reps,
                    out,
                    records,
                }),
            ..
        }) => bench_matmul(
            &options,
            &backends,
            &sizes,
            &shapes,
            models,
            reps,
            out.as_deref(),
            &records,
        ),
        Command::Bench(BenchArgs {
            cmd:
                Some(BenchCommand::Sample {
                    samples,
                    reps,
                    records,
                }),
            ..
        }) => bench_sample(&options, samples, reps, &records),
    }
}

fn run_generations(options: &GpuOptions, a: &RunArgs) -> Result<()> {
    use collapse_kernels::experiment;
    let (config, dir) = match &a.resume {
        Some(dir) => {
            let text = std::fs::read_to_string(dir.join("state.json")).map_err(|e| {
                Error::Io(format!(
                    "{}: {e} (nothing to resume)",
                    dir.join("state.json").display()
                ))
            })?;
            let st: experiment::RunState = serde_json::from_str(&text)
                .map_err(|e| Error::Data(format!("{}: {e}", dir.display())))?;
            (st.config, dir.clone())
        }
        None => {
            let backend = if a.backend == "auto" {
                auto_backend(options)
            } else {
                a.backend.parse::<BackendKind>()?
            };
            (
                a.exp.config(backend.name().into())?,
                a.out.clone().expect("clap requires --out without --resume"),
            )
        }
    };
    run_with(options, config, dir, a.resume.is_some(), a.replicate_jobs)
}

impl ExperimentArgs {
    /// The run configuration these flags describe, recording `backend`.
    fn config(&self, backend: String) -> Result<collapse_kernels::experiment::RunConfig> {
        use collapse_kernels::experiment::{RunConfig, Truth};
        let a = self;
        {
            let truth = match (&a.data, &a.truth) {
                (Some(p), _) => Truth::File(p.clone()),
                (None, Some(t)) => Truth::Builtin(t.clone()),
                (None, None) if a.model == ModelKind::Lm => Truth::Builtin("fortunes".into()),
                (None, None) if a.model == ModelKind::Vae => Truth::File(
                    "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz".into(),
                ),
                (None, None) => Truth::Builtin(
                    match a.model {
                        ModelKind::Gaussian => "normal",
                        _ => "shumailov-gmm",
                    }
                    .into(),
                ),
            };
            Ok(RunConfig {
                model: a.model,
                truth,
                generations: a.generations,
                samples: a.samples,
                replicates: a.replicates,
                policy: a.policy.parse()?,
                seed: a.seed,
                k: a.k,
                covariance_type: a.covariance,
                tol: a.tol,
                max_iter: a.max_iter,
                reg_covar: a.reg_covar,
                backend,
                real_rows: a.real_rows,
                vae: collapse_kernels::experiment::vae::VaeRunConfig {
                    hidden: a.vae_hidden,
                    latent: a.vae_latent,
                    epochs: a.vae_epochs,
                    batch: a.vae_batch,
                    lr: a.vae_lr,
                    beta: a.vae_beta,
                },
                lm: collapse_kernels::experiment::lm::LmRunConfig {
                    width: a.lm_width,
                    layers: a.lm_layers,
                    heads: a.lm_heads,
                    context: a.lm_context,
                    steps: a.lm_steps,
                    batch: a.lm_batch,
                    lr: a.lm_lr,
                    init: a.lm_init,
                    temperature: a.lm_temperature,
                    top_k: a.lm_top_k,
                },
            })
        }
    }
}

/// Run (or resume) the generational experiment `config` into `dir`, with a progress bar.
fn run_with(
    options: &GpuOptions,
    config: collapse_kernels::experiment::RunConfig,
    dir: PathBuf,
    resume: bool,
    replicate_jobs: usize,
) -> Result<()> {
    use collapse_kernels::experiment;
    let kind: BackendKind = config.backend.parse()?;
    let b = Engine::open(kind, &queued(options))?;
    let cpu = Engine::create(BackendKind::Cpu64, None)?;
    eprintln!(
        "{:?} model, {} generations × {} replicates ({} at once), {} samples each, policy {}, on {} ({}) → {}",
        config.model,
        config.generations,
        config.replicates,
        experiment::replicates::jobs(replicate_jobs, config.replicates),
        config.samples,
        config.policy,
        b.name(),
        b.device(),
        dir.display()
    );
    let bar = indicatif::ProgressBar::new(config.generations as u64 + 1);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} generations, {elapsed} (eta {eta})",
        )
        .expect("static template"),
    );
    let t = Instant::now();
    let r = experiment::run(
        &b,
        &cpu,
        (!resume).then_some(config),
        &dir,
        replicate_jobs,
        &mut |done, _| bar.set_position(done as u64),
    );
    bar.finish_and_clear();
    r?;
    let plots =
        collapse_kernels::report::plot_runs(std::slice::from_ref(&dir), &dir.join("plots"))?;
    print_first_and_last(&dir)?;
    println!(
        "done in {:.1} s: {}/metrics.csv, summary.json, state.json, plots/ ({} SVG)",
        t.elapsed().as_secs_f64(),
        dir.display(),
        plots.len()
    );
    Ok(())
}

/// Print each metric's mean ± sd over replicates at the first and the last generation of the
/// run in `dir` (from its summary.json), so the collapse shows at a glance.
fn print_first_and_last(dir: &std::path::Path) -> Result<()> {
    let path = dir.join("summary.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
    let gens = v["generations"].as_array().cloned().unwrap_or_default();
    let (Some(first), Some(last)) = (gens.first(), gens.last()) else {
        return Ok(());
    };
    let cell = |g: &serde_json::Value, m: &str| {
        let x = &g["metrics"][m];
        match (x["mean"].as_f64(), x["std"].as_f64()) {
            (Some(mean), Some(sd)) => format!("{:>25}", format!("{mean:.5} ± {sd:.4}")),
            _ => format!("{:>25}", "-"),
        }
    };
    let label = |g: &serde_json::Value| format!("generation {}", g["generation"]);
    println!(
        "{:<20} {:>25} {:>25}   (mean ± sd over replicates)",
        "metric",
        label(first),
        label(last)
    );
    if let Some(metrics) = last["metrics"].as_object() {
        for m in metrics.keys() {
            println!("{m:<20} {} {}", cell(first, m), cell(last, m));
        }
    }
    Ok(())
}

/// wgsl when the chosen adapter is a real GPU, else cpu32 (lavapipe is correct but far too
/// slow for generational runs).
fn auto_backend(options: &GpuOptions) -> BackendKind {
    let found = adapter_summaries();
    match gpu::choose_adapter(&found, options.adapter.as_deref()) {
        Ok(c) if !found[c.index].is_cpu() => BackendKind::Wgsl,
        _ => BackendKind::Cpu32,
    }
}

fn bench_gmm(
    options: &GpuOptions,
    kinds: &[BackendKind],
    iters: usize,
    data_dir: Option<&std::path::Path>,
    out: Option<&std::path::Path>,
    shape_args: &[String],
    record_args: &RecordArgs,
) -> Result<()> {
    use collapse_kernels::io::write_csv;
    use collapse_kernels::measure::bench::{GMM_SHAPES, GmmShape, gmm_data, time_gmm};
    let stamp = collapse_kernels::measure::records::Stamp::new("collapse bench gmm");
    let mut recs = Vec::new();
    if iters == 0 {
        return Err(Error::InvalidArgument("--iters must be at least 1".into()));
    }
    let shapes: Vec<GmmShape> = if shape_args.is_empty() {
        GMM_SHAPES.to_vec()
    } else {
        shape_args
            .iter()
            .map(|s| s.parse::<GmmShape>())
            .collect::<Result<_>>()?
    };
    let gpu = if kinds.iter().any(|k| k.needs_gpu()) {
        Some(GpuContext::new(options)?)
    } else {
        None
    };
    let cpu = Engine::create(BackendKind::Cpu64, None)?;
    let mut records = Vec::new();
    println!(
        "{:<8} {:>9} {:>3} {:>3} {:<5} {:>12} {:>12} {:>14}",
        "backend", "N", "D", "K", "cov", "ms/iter", "min ms", "pts·comp/s"
    );
    for shape in shapes {
        let (x, start) = gmm_data(shape, &cpu)?;
        if let Some(dir) = data_dir {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
            let name = format!("gmm-{}-{}-{}.npy", shape.n, shape.d, shape.k);
            collapse_kernels::io::write_npy(&dir.join(name), &x)?;
        }
        for &kind in kinds {
            let b = Engine::create(kind, gpu.as_ref())?;
            match time_gmm(&b, &x, &start, iters) {
                Ok(t) => {
                    println!(
                        "{:<8} {:>9} {:>3} {:>3} {:<5} {:>12.2} {:>12.2} {:>14.3e}",
                        t.backend,
                        t.n,
                        t.d,
                        t.k,
                        t.covariance_type,
                        t.seconds_per_iter * 1e3,
                        t.min_seconds * 1e3,
                        t.point_components_per_s
                    );
                    let (adapter, driver) = adapter_of(&b, gpu.as_ref());
                    recs.push(stamp.record(
                        "gmm_em_iteration",
                        &t.backend,
                        (&adapter, &driver),
                        &format!("N={},D={},K={},{}", t.n, t.d, t.k, t.covariance_type),
                        t.seconds_per_iter,
                        t.seconds_per_iter - t.min_seconds,
                        (t.point_components_per_s, "points·components/s"),
                    ));
                    records.push(t);
                }
                Err(Error::Unsupported(why)) => println!("{:<8} skipped: {why}", kind.name()),
                Err(e) => return Err(e),
            }
        }
    }
    if let Some(path) = out {
        write_csv(path, &records)?;
        println!("wrote {}", path.display());
    }
    record_args.write(&stamp, &recs)
}

/// Adapter and driver of a backend for its records: the GPU's for wgsl/cube, the host's
/// description otherwise.
fn adapter_of(
    b: &dyn collapse_kernels::ops::Backend,
    gpu: Option<&std::sync::Arc<GpuContext>>,
) -> (String, String) {
    match gpu {
        Some(g) if b.name() == "wgsl" || b.name() == "cube" => (
            g.info.name.clone(),
            format!("{} {}", g.info.driver, g.info.driver_info)
                .trim()
                .to_string(),
        ),
        _ => (b.device(), String::new()),
    }
}

fn bench_compare(a: &std::path::Path, b: &std::path::Path) -> Result<()> {
    use collapse_kernels::measure::records::{compare, load};
    let (ra, rb) = (load(a)?, load(b)?);
    let rows = compare(&ra, &rb);
    println!(
        "A = {} ({} records), B = {} ({} records)",
        a.display(),
        ra.len(),
        b.display(),
        rb.len()
    );
    if rows.is_empty() {
        return Err(Error::InvalidArgument(
            "no (kernel, backend, shape) is in both record sets".into(),
        ));
    }
    println!(
        "{:<20} {:<12} {:<28} {:>12} {:>12} {:>9}",
        "kernel", "backend", "shape", "A ms", "B ms", "A/B"
    );
    for r in &rows {
        println!(
            "{:<20} {:<12} {:<28} {:>12.4} {:>12.4} {:>9.3}",
            r.kernel,
            r.backend,
            r.shape,
            r.a_s * 1e3,
            r.b_s * 1e3,
            r.speedup
        );
    }
    println!("A/B above 1: B is faster.");
    Ok(())
}

fn fit_gmm(options: &GpuOptions, a: &FitGmmArgs) -> Result<()> {
    // Make sure the result can be written before spending the time to fit.
    if let Some(parent) = a.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::Io(format!("{}: {e}", parent.display())))?;
    }
    let x = read_table(&a.data)?;
    let b = Engine::open(a.backend, options)?;
    let cfg = GmmConfig {
        k: a.k,
        covariance_type: a.covariance,
        tol: a.tol,
        max_iter: a.max_iter,
        reg_covar: a.reg_covar,
        n_init: a.n_init,
        init: a.init,
        seed: a.seed,
    };
    eprintln!(
        "fitting a {}-component {:?} GMM to {} points in {} dimensions on {} ({})",
        a.k,
        a.covariance,
        x.rows,
        x.cols,
        b.name(),
        b.device()
    );
    let bar = indicatif::ProgressBar::new((a.max_iter * a.n_init) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} EM iterations, {elapsed} {msg}",
        )
        .expect("static template"),
    );
    let t = Instant::now();
    let result = fit(&b, &x, &cfg, &mut |init, it, ll| {
        bar.set_position((init * a.max_iter + it) as u64);
        bar.set_message(format!("init {init}: mean log-likelihood {ll:.6}"));
    });
    bar.finish_and_clear();
    let f = result?;
    let secs = t.elapsed().as_secs_f64();
    let json = serde_json::to_string_pretty(&f.to_json()).expect("JSON of plain data");
    write_atomic(&a.out, json.as_bytes())?;
    println!(
        "mean log-likelihood {:.6} after {} iterations ({}), {:.3} s ({:.1} ms/iteration); wrote {}",
        f.mean_log_likelihood,
        f.n_iter,
        if f.converged {
            "converged"
        } else {
            "not converged"
        },
        secs,
        secs * 1e3 / f.n_iter.max(1) as f64,
        a.out.display()
    );
    if !f.converged {
        eprintln!(
            "warning: EM did not converge within --max-iter {} (tol {}); raise --max-iter \
             or --tol",
            a.max_iter, a.tol
        );
    }
    if f.reseeded > 0 {
        eprintln!(
            "note: {} empty component(s) were re-seeded during the fit",
            f.reseeded
        );
    }
    Ok(())
}

fn check(
    options: &GpuOptions,
    bless: bool,
    path: &std::path::Path,
    kinds: &[BackendKind],
) -> Result<()> {
    use collapse_kernels::measure::goldens;
    let reference = Engine::create(BackendKind::Cpu64, None)?;
    if bless {
        let new = goldens::bless(&reference)?;
        match goldens::load(path) {
            Ok(old) => {
                for f in &new.kernels {
                    match old.kernels.iter().find(|o| o.kernel == f.kernel) {
                        Some(o) if o == f => println!("unchanged  {}", f.kernel),
                        Some(o) => println!(
                            "CHANGED    {}: {:?} ≤ {:e}, {:?}  →  {:?} ≤ {:e}, {:?}",
                            f.kernel,
                            o.measure,
                            o.tolerance,
                            o.reference,
                            f.measure,
                            f.tolerance,
                            f.reference
                        ),
                        None => println!("new        {}", f.kernel),
                    }
                }
            }
            Err(_) => println!("no previous golden file; writing {}", path.display()),
        }
        goldens::save(path, &new)?;
        println!("wrote {}", path.display());
        return Ok(());
    }
    let golden = goldens::load(path)?;
    let kinds: Vec<BackendKind> = if kinds.is_empty() {
        let mut k = vec![BackendKind::Cpu32];
        if gpu::choose_adapter(&adapter_summaries(), options.adapter.as_deref()).is_ok() {
            k.extend([BackendKind::Wgsl, BackendKind::Cube]);
        } else {
            eprintln!("no GPU adapter: checking cpu32 only");
        }
        k
    } else {
        kinds.to_vec()
    };
    let gpu = if kinds.iter().any(|k| k.needs_gpu()) {
        Some(GpuContext::new(options)?)
    } else {
        None
    };
    let backends: Vec<Engine> = kinds
        .iter()
        .map(|&k| Engine::create(k, gpu.as_ref()))
        .collect::<Result<_>>()?;
    let refs: Vec<&Engine> = backends.iter().collect();
    let outcomes = goldens::check(&golden, &reference, &refs)?;
    println!(
        "{:<28} {:<6} {:<6} {:<22} {:<12}",
        "kernel", "backend", "result", "expected", "got"
    );
    for o in &outcomes {
        let expected = if o.backend == "cpu64" {
            "golden summary".to_string()
        } else {
            o.expected.clone()
        };
        let got = if o.backend == "cpu64" && o.pass {
            "matches".to_string()
        } else {
            o.got.clone()
        };
        println!(
            "{:<28} {:<6} {:<6} {:<22} {}",
            o.kernel,
            o.backend,
            if o.pass { "ok" } else { "DRIFT" },
            expected,
            got
        );
    }
    let failed: Vec<&goldens::Outcome> = outcomes.iter().filter(|o| !o.pass).collect();
    if let Some(o) = failed.first() {
        return Err(Error::Numerical(format!(
            "{} of {} checks drifted (first: {} on {} / {}: expected {}, got {}, tolerance {:e})",
            failed.len(),
            outcomes.len(),
            o.kernel,
            o.backend,
            o.adapter,
            o.expected,
            o.got,
            o.tolerance
        )));
    }
    println!(
        "all {} checks passed against {}",
        outcomes.len(),
        path.display()
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn bench_matmul(
    options: &GpuOptions,
    kinds: &[BackendKind],
    sizes: &[usize],
    shape_args: &[String],
    models: bool,
    reps: usize,
    out: Option<&std::path::Path>,
    record_args: &RecordArgs,
) -> Result<()> {
    use collapse_kernels::backend::wgsl::Wgsl;
    let stamp = collapse_kernels::measure::records::Stamp::new("collapse bench matmul");
    let mut recs = Vec::new();
    use collapse_kernels::io::write_csv;
    use collapse_kernels::measure::bench::{MATMUL_MODEL_SHAPES, matmul_runner, time_matmul};
    use collapse_kernels::ops::matmul::Matmul;
    if reps == 0 {
        return Err(Error::InvalidArgument("--reps must be at least 1".into()));
    }
    let mut shapes: Vec<(String, Matmul)> = Vec::new();
    for &n in sizes {
        if n == 0 {
            return Err(Error::InvalidArgument("--sizes must be at least 1".into()));
        }
        shapes.push((format!("{n}x{n}x{n}"), Matmul::new(n, n, n)));
    }
    for s in shape_args {
        let bad = || Error::InvalidArgument(format!("shape {s:?}: use MxNxK, e.g. 4096x1024x256"));
        let v: Vec<usize> = s
            .split('x')
            .map(|t| t.parse().map_err(|_| bad()))
            .collect::<Result<_>>()?;
        match v[..] {
            [m, n, k] if m > 0 && n > 0 && k > 0 => shapes.push((s.clone(), Matmul::new(m, n, k))),
            _ => return Err(bad()),
        }
    }
    if models {
        for (label, m, n, k) in MATMUL_MODEL_SHAPES {
            shapes.push((label.to_string(), Matmul::new(m, n, k)));
        }
    }
    let gpu = if kinds.iter().any(|k| k.needs_gpu()) {
        Some(GpuContext::new(options)?)
    } else {
        None
    };
    if let Some(g) = &gpu {
        println!(
            "adapter: {} ({:?}, {:?})",
            g.info.name, g.info.backend, g.info.device_type
        );
        if kinds.contains(&BackendKind::Wgsl) {
            let t = Wgsl::new(g.clone()).matmul_tile()?;
            println!("wgsl tile: {} — {}", t.tile.name, t.source);
            for (name, gflops) in &t.tuned {
                println!(
                    "  autotune {}³: {name:<16} {gflops:>9.2} GFLOP/s",
                    t.tune_size
                );
            }
        }
        if g.info.device_type == wgpu::DeviceType::Cpu {
            println!("(a software adapter: GPU rows are not GPU figures)");
        }
    }
    let (adapter, driver) = gpu
        .as_ref()
        .map(|g| {
            (
                g.info.name.clone(),
                format!("{} {}", g.info.driver, g.info.driver_info)
                    .trim()
                    .to_string(),
            )
        })
        .unwrap_or_default();
    // The roofline: the adapter's measured ceilings, for the GPU rows' fractions.
    let ceil = match &gpu {
        Some(g) => {
            let c = collapse_kernels::measure::bench::ceilings(g, 5)?;
            println!(
                "ceilings (probe.wgsl, best of 5): f32 FMA {:.1} GFLOP/s, copy {:.1} GB/s",
                c.gflops, c.gb_per_s
            );
            recs.push(stamp.record(
                "fma",
                "wgsl",
                (&adapter, &driver),
                "probe",
                0.0,
                0.0,
                (c.gflops, "GFLOP/s"),
            ));
            recs.push(stamp.record(
                "copy",
                "wgsl",
                (&adapter, &driver),
                "probe",
                0.0,
                0.0,
                (c.gb_per_s, "GB/s"),
            ));
            Some(c)
        }
        None => None,
    };
    println!(
        "{:<18} {:<6} {:>10} {:>10} {:>9} {:>10} {:>10} {:>6} {:>6} {:<12} {:<16}",
        "shape",
        "backend",
        "ms",
        "GFLOP/s",
        "GB/s",
        "×cpu32",
        "rel.err",
        "%fma",
        "%copy",
        "timing",
        "tile"
    );
    let mut records = Vec::new();
    for (label, p) in &shapes {
        // The check reference: cpu64 where it takes seconds at most, else cpu32.
        let small = p.flops() <= 2.0 * 512f64.powi(3);
        let ref_kind = if small {
            BackendKind::Cpu64
        } else {
            BackendKind::Cpu32
        };
        let mut r = matmul_runner(ref_kind, None, p)?;
        r.run()?;
        let want = r.result()?;
        let mut cpu32_gflops = None;
        for &kind in kinds {
            let t = time_matmul(kind, gpu.as_ref(), label, p, reps, (ref_kind.name(), &want))?;
            if kind == BackendKind::Cpu32 {
                cpu32_gflops = Some(t.gflops);
            }
            let ratio = cpu32_gflops
                .map(|c| format!("{:.2}", t.gflops / c))
                .unwrap_or_else(|| "-".into());
            let (fma, copy) = match ceil {
                Some(c) if kind.needs_gpu() => (
                    format!("{:.1}", 100.0 * t.gflops / c.gflops),
                    format!("{:.1}", 100.0 * t.gb_per_s / c.gb_per_s),
                ),
                _ => ("-".into(), "-".into()),
            };
            println!(
                "{:<18} {:<6} {:>10.3} {:>10.2} {:>9.2} {:>10} {:>10.2e} {:>6} {:>6} {:<12} {:<16}",
                label,
                t.backend,
                t.seconds * 1e3,
                t.gflops,
                t.gb_per_s,
                ratio,
                t.rel_error,
                fma,
                copy,
                t.timing,
                t.tile
            );
            let host = t.device.clone();
            let (ad, dr) = if kind.needs_gpu() {
                (adapter.as_str(), driver.as_str())
            } else {
                (host.as_str(), "")
            };
            recs.push(stamp.record(
                "matmul",
                &t.backend,
                (ad, dr),
                label,
                t.seconds,
                t.seconds - t.min_seconds,
                (t.gflops, "GFLOP/s"),
            ));
            if t.rel_error.is_nan() || t.rel_error > 1e-4 {
                return Err(Error::Numerical(format!(
                    "{} {label}: relative error {:.3e} vs {} exceeds 1e-4",
                    t.backend, t.rel_error, t.reference
                )));
            }
            records.push(t);
        }
    }
    if let Some(path) = out {
        write_csv(path, &records)?;
        println!("wrote {}", path.display());
    }
    record_args.write(&stamp, &recs)
}

fn bench_sample(
    options: &GpuOptions,
    samples: usize,
    reps: usize,
    record_args: &RecordArgs,
) -> Result<()> {
    use collapse_kernels::measure::bench::{copy_bandwidth, sampler_write_rate};
    if samples < 1024 {
        return Err(Error::InvalidArgument(
            "--samples must be at least 1024".into(),
        ));
    }
    let gpu = GpuContext::new(options)?;
    println!("adapter: {} ({:?})", gpu.info.name, gpu.info.backend);
    let copy = copy_bandwidth(&gpu, reps)?;
    let samp = sampler_write_rate(&gpu, samples, reps)?;
    for t in [&copy, &samp] {
        println!(
            "{:<52} {:>12} bytes {:>10.3} ms {:>9.2} GB/s ({})",
            t.what,
            t.bytes,
            t.seconds * 1e3,
            t.gb_per_s,
            t.timing
        );
    }
    println!(
        "sampler writes at {:.1}% of the copy bandwidth",
        100.0 * samp.gb_per_s / copy.gb_per_s
    );
    if gpu.info.device_type == wgpu::DeviceType::Cpu {
        println!("(a software adapter: these are not GPU figures)");
    }
    let stamp = collapse_kernels::measure::records::Stamp::new("collapse bench sample");
    let driver = format!("{} {}", gpu.info.driver, gpu.info.driver_info)
        .trim()
        .to_string();
    let recs = [
        ("copy", "probe", &copy),
        ("sample_gmm_writes", "N=%,K=16,D=8,full", &samp),
    ]
    .into_iter()
    .map(|(kernel, shape, t)| {
        stamp.record(
            kernel,
            "wgsl",
            (&gpu.info.name, &driver),
            &shape.replace('%', &samples.to_string()),
            t.seconds,
            0.0,
            (t.gb_per_s, "GB/s"),
        )
    })
    .collect::<Vec<_>>();
    record_args.write(&stamp, &recs)
}

/// Summaries of every adapter wgpu finds.
fn adapter_summaries() -> Vec<AdapterSummary> {
    gpu::list_adapters(&gpu::new_instance())
        .into_iter()
        .map(|(_, s)| s)
        .collect()
}

fn info(options: &GpuOptions, json: bool) -> Result<()> {
    let found = adapter_summaries();
    let choice = gpu::choose_adapter(&found, options.adapter.as_deref());
    if json {
        let v = serde_json::json!({
            "adapters": found,
            "chosen": choice.as_ref().ok(),
            "error": choice.as_ref().err().map(|e| e.to_string()),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&v).expect("JSON of plain data")
        );
        return choice.map(|_| ());
    }
    println!("adapters found by wgpu: {}", found.len());
    for (i, a) in found.iter().enumerate() {
        println!(
            "  [{i}] {} | backend {} | type {} | driver {}",
            a.name, a.backend, a.device_type, a.driver
        );
    }
    let choice = choice?;
    let a = &found[choice.index];
    println!(
        "\nchosen: [{}] {} — {}",
        choice.index, a.name, choice.reason
    );
    println!("limits:");
    println!(
        "  max storage binding    {:>14} bytes ({} MiB)",
        a.max_storage_binding_bytes,
        a.max_storage_binding_bytes >> 20
    );
    println!("  max buffer             {:>14} bytes", a.max_buffer_bytes);
    println!(
        "  workgroup storage      {:>14} bytes",
        a.max_workgroup_storage_bytes
    );
    println!(
        "  max workgroup size     {:>14} invocations",
        a.max_workgroup_invocations
    );
    println!(
        "  subgroup size          {:>14}",
        format!("{}..{}", a.subgroup_size.0, a.subgroup_size.1)
    );
    let yn = |b: bool| if b { "yes" } else { "no" };
    println!("features:");
    println!("  f16 (SHADER_F16)       {}", yn(a.f16));
    println!("  f64 (SHADER_F64)       {}", yn(a.f64));
    println!("  subgroups (SUBGROUP)   {}", yn(a.subgroups));
    println!("  timestamp queries      {}", yn(a.timestamp_queries));
    if a.is_cpu() {
        println!(
            "\nnote: this is a software adapter; it is correct but roughly 300x slower than the \
             cpu32 backend. Use it for checks at small sizes; use --backend cpu32 for big runs."
        );
    }
    Ok(())
}

fn rng_demo(
    options: &GpuOptions,
    kind_backend: BackendKind,
    kind: Kind,
    key: StreamKey,
    start: u64,
    count: usize,
    show: usize,
) -> Result<()> {
    if count == 0 {
        return Err(Error::InvalidArgument("--count must be at least 1".into()));
    }
    let gpu = if kind_backend.needs_gpu() {
        Some(GpuContext::new(options)?)
    } else {
        None
    };
    let b = Engine::create(kind_backend, gpu.as_ref())?;
    let reference = Engine::create(BackendKind::Cpu64, None)?;
    println!(
        "backend {} on {}; stream (seed {}, stream {}), draws {}..{}",
        b.name(),
        b.device(),
        key.seed,
        key.stream,
        start,
        start + count as u64
    );
    // Warm-up on a small range so pipeline compilation is not in the timing.
    let (mut warm, mut warm_u32) = ([0f64; 4], [0u32; 4]);
    b.uniform_u32(key, start, &mut warm_u32)?;
    b.uniform(key, start, &mut warm)?;
    b.normal(key, start, &mut warm)?;
    if let Some(g) = &gpu {
        g.take_timings();
    }
    let t = Instant::now();
    let (shown, max_diff): (Vec<String>, f64) = match kind {
        Kind::U32 => {
            let mut v = vec![0u32; count];
            b.uniform_u32(key, start, &mut v)?;
            let secs = t.elapsed().as_secs_f64();
            report_rate(count, secs);
            let mut r = vec![0u32; count];
            reference.uniform_u32(key, start, &mut r)?;
            let mismatches = v.iter().zip(&r).filter(|(a, b)| a != b).count();
            (
                v.iter().take(show).map(|x| format!("{x:#010x}")).collect(),
                mismatches as f64,
            )
        }
        Kind::Uniform | Kind::Normal => {
            let mut v = vec![0f64; count];
            let mut r = vec![0f64; count];
            if matches!(kind, Kind::Uniform) {
                b.uniform(key, start, &mut v)?;
                report_rate(count, t.elapsed().as_secs_f64());
                reference.uniform(key, start, &mut r)?;
            } else {
                b.normal(key, start, &mut v)?;
                report_rate(count, t.elapsed().as_secs_f64());
                reference.normal(key, start, &mut r)?;
            }
            let d = v
                .iter()
                .zip(&r)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            (v.iter().take(show).map(|x| format!("{x:.7}")).collect(), d)
        }
    };
    println!("first {}: {}", shown.len(), shown.join(" "));
    match kind {
        Kind::U32 => println!("words differing from cpu64: {max_diff}"),
        _ => println!(
            "max |value - cpu64 value|: {max_diff:.3e} (f32 uniforms carry 24 bits, f64 ones 32: \
             f32 normals differ most in the far tails, where u1 is smallest)"
        ),
    }
    if let Some(g) = gpu {
        for t in g.take_timings() {
            println!(
                "  kernel {} {:.3} ms ({:?})",
                t.kernel,
                t.seconds * 1e3,
                t.source
            );
        }
    }
    Ok(())
}

fn report_rate(count: usize, secs: f64) {
    println!(
        "drew {count} values in {:.3} ms: {:.1} M values/s (host wall clock; GPU figures include readback)",
        secs * 1e3,
        count as f64 / secs / 1e6
    );
}

fn drift_run(options: &GpuOptions, a: &DriftRunArgs) -> Result<()> {
    use collapse_kernels::drift::{self, chain};
    let names = drift::parse_backends(&a.backends)?;
    let cfg = a.exp.config(names.join(","))?;
    eprintln!(
        "{:?} model, {} generations × {} replicates, {} samples each, policy {}, seed {}, on {}",
        cfg.model,
        cfg.generations,
        cfg.replicates,
        cfg.samples,
        cfg.policy,
        cfg.seed,
        names.join(", ")
    );
    let bar = indicatif::ProgressBar::new(((cfg.generations + 1) * names.len()) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} backend·generations, {elapsed} (eta {eta}) {msg}",
        )
        .expect("static template"),
    );
    let t = Instant::now();
    let mut base = 0u64;
    let mut current = String::new();
    let runs = chain::run_all(
        &cfg,
        &names,
        options,
        a.replicate_jobs,
        &mut |name, done, total| {
            if name != current {
                if !current.is_empty() {
                    base += total as u64;
                }
                current = name.to_string();
                bar.set_message(name.to_string());
            }
            bar.set_position(base + done as u64);
        },
    );
    bar.finish_and_clear();
    let runs = runs?;
    let report = chain::analyse(&cfg, &runs)?;
    let files = drift::output::write(&a.out, &cfg, &runs, &report, a.params)?;
    for t in &runs {
        println!("{:<15} {:>8.1} s  {}", t.name, t.seconds, t.device);
    }
    let show = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.0}"));
    println!(
        "\nfirst generation a pair's distance exceeds a threshold (median [10%, 90%] over replicates; - = fewer than that fraction crossed)"
    );
    println!(
        "{:<15} {:<15} {:<11} {:>9} {:>8} {:>17}",
        "a", "b", "measure", "threshold", "crossed", "generation"
    );
    for c in report
        .crossings
        .iter()
        .filter(|c| c.a == names[0] && c.measure != "metric_diff")
    {
        println!(
            "{:<15} {:<15} {:<11} {:>9.0e} {:>4}/{:<3} {:>5} [{}, {}]",
            c.a,
            c.b,
            c.measure,
            c.threshold,
            c.crossed,
            c.replicates,
            show(c.median),
            show(c.p10),
            show(c.p90)
        );
    }
    println!(
        "\nfirst generation in the absorbing state (median ± bootstrap SE [10%, 90%]; theory: \
         the rounding-free prediction of the floor, gaussian + replace only)"
    );
    println!(
        "{:<15} {:<11} {:>8} {:>15} {:>12} {:>8}",
        "backend", "state", "reached", "generation", "[10%, 90%]", "theory"
    );
    for r in &report.absorption {
        let se = r.median_se.map_or("?".to_string(), |x| format!("{x:.1}"));
        println!(
            "{:<15} {:<11} {:>4}/{:<3} {:>6} ± {:<6} {:>12} {:>8}",
            r.backend,
            r.state,
            r.reached,
            r.replicates,
            show(r.median),
            se,
            format!("[{}, {}]", show(r.p10), show(r.p90)),
            r.theory_median.map_or(String::new(), |x| format!("{x:.1}"))
        );
    }
    println!(
        "\ndone in {:.1} s: {} files in {}",
        t.elapsed().as_secs_f64(),
        files.len(),
        a.out.display()
    );
    Ok(())
}

fn drift_kernels(options: &GpuOptions, a: &DriftKernelArgs) -> Result<()> {
    use collapse_kernels::drift::{self, kernels, plot};
    if a.sizes.contains(&0) || a.matmul_k.contains(&0) {
        return Err(Error::InvalidArgument(
            "--sizes and --matmul-k must be ≥ 1".into(),
        ));
    }
    if let Some(s) = a.scales.iter().find(|s| !s.is_finite()) {
        return Err(Error::InvalidArgument(format!(
            "--scales: {s} is not finite"
        )));
    }
    let names: Vec<String> = a
        .backends
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty() && *s != "cpu64")
        .map(String::from)
        .collect();
    let mut gpu = None;
    let subjects = names
        .iter()
        .map(|n| drift::open_subject(n, &mut gpu, options))
        .collect::<Result<Vec<_>>>()?;
    let backends: Vec<(String, &dyn collapse_kernels::ops::Backend)> = names
        .iter()
        .cloned()
        .zip(
            subjects
                .iter()
                .map(|s| &s.backend as &dyn collapse_kernels::ops::Backend),
        )
        .collect();
    let f16: Vec<String> = match &gpu {
        Some(g) if g.features().contains(wgpu::Features::SHADER_F16) => names
            .iter()
            .filter(|n| *n == "wgsl" || *n == "cube")
            .cloned()
            .collect(),
        _ => Vec::new(),
    };
    for (n, s) in &backends {
        eprintln!("{n}: {}", s.device());
    }
    let sweep = kernels::KernelSweep {
        sizes: a.sizes.clone(),
        matmul_k: a.matmul_k.clone(),
        scales: a.scales.clone(),
        seed: a.seed,
    };
    let t = Instant::now();
    let mut rows = Vec::new();
    let mut say = |m: &str| eprintln!("  {m} ({:.0} s)", t.elapsed().as_secs_f64());
    kernels::sums(&sweep, &mut rows)?;
    kernels::backend_families(&sweep, &backends, &mut rows, &mut say)?;
    kernels::matmuls(&sweep, &backends, &f16, &mut rows, &mut say)?;
    collapse_kernels::io::write_csv(&a.out, &rows)?;
    let dir = a.out.parent().unwrap_or(std::path::Path::new("."));
    let stem = a
        .out
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "kernels".into());
    let families = ["sum", "fit_mean", "fit_var", "loglik", "matmul", "sample"];
    for fam in families {
        let fr: Vec<&kernels::KernelRow> = rows.iter().filter(|r| r.family == fam).collect();
        if fr.is_empty() {
            continue;
        }
        let mut series = Vec::new();
        let mut methods: Vec<&str> = fr.iter().map(|r| r.method.as_str()).collect();
        methods.dedup();
        methods.sort();
        methods.dedup();
        for m in methods {
            for &s in &a.scales {
                let points: Vec<(f64, f64)> = fr
                    .iter()
                    .filter(|r| r.method == m && r.scale == s)
                    .map(|r| (r.n as f64, r.error.max(1e-17)))
                    .collect();
                if points.len() > 1 || fam == "sample" {
                    series.push(plot::Series {
                        label: format!("{m}, s = {s}"),
                        points,
                        band: Vec::new(),
                        dashed: s != a.scales[0],
                        color: None,
                    });
                }
            }
        }
        let path = dir.join(format!("{stem}-{fam}.svg"));
        plot::lines(
            &path,
            &format!("{fam}: error vs f64 reference (errors of 0 drawn at 1e-17)"),
            (
                if fam == "matmul" {
                    "inner dimension k"
                } else {
                    "n"
                },
                plot::Scale::Log,
            ),
            ("error", plot::Scale::Log),
            &series,
        )?;
        println!("wrote {}", path.display());
    }
    println!(
        "{:<9} {:<15} {:>9} {:>9} {:>11}",
        "family", "method", "n", "scale", "error"
    );
    for r in &rows {
        println!(
            "{:<9} {:<15} {:>9} {:>9} {:>11.3e}",
            r.family, r.method, r.n, r.scale, r.error
        );
    }
    println!(
        "wrote {} ({} rows) in {:.1} s",
        a.out.display(),
        rows.len(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

fn train_vae(options: &GpuOptions, a: &TrainVaeArgs) -> Result<()> {
    use collapse_kernels::io::idx::{IdxImages, read_idx_images, write_png_grid};
    use collapse_kernels::models::vae::{self, Adam, VaeConfig, train};
    std::fs::create_dir_all(&a.out).map_err(|e| Error::Io(format!("{}: {e}", a.out.display())))?;
    let mut data = read_idx_images(&a.data)?;
    let sibling = a.data.file_name().and_then(|n| n.to_str()).and_then(|n| {
        n.strip_prefix("train-")
            .map(|rest| a.data.with_file_name(format!("t10k-{rest}")))
            .filter(|p| p.exists())
    });
    let test = match a.test_data.clone().or(sibling) {
        Some(p) => read_idx_images(&p)?,
        None => {
            let keep = data.count - data.count / 10;
            if keep == 0 || keep == data.count {
                return Err(Error::Data(format!(
                    "{}: {} images are too few to hold out a test set; give --test-data",
                    a.data.display(),
                    data.count
                )));
            }
            let d = data.dim();
            let t = IdxImages {
                count: data.count - keep,
                rows: data.rows,
                cols: data.cols,
                pixels: data.pixels[keep * d..].to_vec(),
            };
            data.pixels.truncate(keep * d);
            data.count = keep;
            eprintln!("no test file: holding out the last {} images", t.count);
            t
        }
    };
    if let Some(n) = a.limit {
        if n == 0 {
            return Err(Error::InvalidArgument("--limit must be ≥ 1".into()));
        }
        data.count = data.count.min(n);
        data.pixels.truncate(data.count * data.dim());
    }
    if (test.rows, test.cols) != (data.rows, data.cols) {
        return Err(Error::Data(format!(
            "test images are {}×{}, training images {}×{}",
            test.rows, test.cols, data.rows, data.cols
        )));
    }
    let cfg = train::TrainConfig {
        vae: VaeConfig {
            d: data.dim(),
            h: a.hidden,
            z: a.latent,
            beta: a.beta,
            adam: Adam {
                lr: a.lr,
                beta1: a.adam_beta1,
                beta2: a.adam_beta2,
                eps: a.adam_eps,
                weight_decay: a.weight_decay,
            },
        },
        epochs: a.epochs,
        batch: a.batch,
        seed: a.seed,
        loss_every: a.loss_every,
    };
    let b = Engine::open(a.backend, &queued(options))?;
    eprintln!(
        "VAE {}→{}→{}: {} training and {} test images of {}×{}, {} epochs of batch {}, on {} ({})",
        cfg.vae.d,
        cfg.vae.h,
        cfg.vae.z,
        data.count,
        test.count,
        data.rows,
        data.cols,
        cfg.epochs,
        cfg.batch,
        b.name(),
        b.device()
    );
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "epoch {prefix} {bar:30} {pos}/{len} steps, {elapsed} (eta {eta}) {msg}",
        )
        .expect("static template"),
    );
    let t = Instant::now();
    let result = train::train(&b, &cfg, &data, &test, &mut |epoch, s, steps, loss| {
        if s == 1 {
            bar.set_length(steps as u64);
            bar.set_prefix(format!("{epoch}/{}", cfg.epochs));
        }
        bar.set_position(s as u64);
        if let Some(l) = loss {
            bar.set_message(format!("loss {l:.2}"));
        }
    });
    bar.finish_and_clear();
    let (mut model, rows) = result?;
    println!(
        "{:>5} {:>12} {:>14} {:>9} {:>10}",
        "epoch", "train loss", "test −ELBO", "seconds", "images/s"
    );
    for r in &rows {
        println!(
            "{:>5} {:>12} {:>14.3} {:>9.2} {:>10.0}",
            r.epoch,
            r.train_loss.map_or("-".into(), |l| format!("{l:.3}")),
            r.test_neg_elbo,
            r.seconds,
            r.images_per_s
        );
    }
    collapse_kernels::io::write_csv(&a.out.join("epochs.csv"), &rows)?;
    let params = model.params()?;
    collapse_kernels::io::write_npy(
        &a.out.join("weights.npy"),
        &collapse_kernels::io::Matrix::new(1, params.len(), params)?,
    )?;
    let layout: Vec<serde_json::Value> = vae::layout(&cfg.vae)
        .iter()
        .map(|t| serde_json::json!({"name": t.name, "rows": t.rows, "cols": t.cols, "offset": t.offset}))
        .collect();
    let meta = serde_json::json!({
        "config": cfg,
        "backend": b.name(),
        "device": b.device(),
        "data": a.data,
        "train_images": data.count,
        "test_images": test.count,
        "layout": layout,
        "weights": "weights.npy (shape [1, P], float64, the layout's order)",
        "epochs": rows,
    });
    write_atomic(
        &a.out.join("model.json"),
        serde_json::to_string_pretty(&meta)
            .expect("JSON of plain data")
            .as_bytes(),
    )?;
    let shape = (data.rows, data.cols);
    let samples = train::sample_images(model.as_mut(), 64, a.seed)?;
    write_png_grid(&a.out.join("samples.png"), &samples, shape, 8)?;
    let n = test.count.min(16);
    let originals = train::gather(&test, &(0..n).collect::<Vec<_>>());
    let recon = model.reconstruct(&originals)?;
    let both: Vec<f64> = originals.iter().chain(&recon).copied().collect();
    write_png_grid(&a.out.join("reconstructions.png"), &both, shape, n)?;
    println!(
        "done in {:.1} s: {}/epochs.csv, model.json, weights.npy, samples.png, reconstructions.png \
         (top row: test images, bottom: reconstructions)",
        t.elapsed().as_secs_f64(),
        a.out.display()
    );
    Ok(())
}

/// The prompt with `\n` and `\t` (as typed on a command line) turned into the bytes.
fn unescape(s: &str) -> Vec<u8> {
    s.replace("\\n", "\n").replace("\\t", "\t").into_bytes()
}

fn train_lm(options: &GpuOptions, a: &TrainLmArgs) -> Result<()> {
    use collapse_kernels::models::lm::{self, sample, train};
    let files = if a.data.is_empty() {
        train::fortune_files()?
    } else {
        a.data.clone()
    };
    let corpus = train::load_corpus(&files)?;
    let cfg = train::TrainConfig {
        lm: a.shape.config(),
        steps: a.steps,
        batch: a.batch,
        seed: a.seed,
        eval_every: a.eval_every,
        eval_windows: a.eval_windows,
    };
    cfg.lm.validate()?;
    let b = Engine::open(a.backend, &queued(options))?;
    let unigram = train::unigram_cross_entropy(&corpus.train, &corpus.val);
    eprintln!(
        "LM C={} L={} H={} T={} ({} parameters): {} files, {} train / {} validation records \
         ({} / {} bytes), {} steps of {} sequences, on {} ({}); unigram baseline {:.3} nats/byte \
         (perplexity {:.2})",
        cfg.lm.width,
        cfg.lm.layers,
        cfg.lm.heads,
        cfg.lm.context,
        lm::param_count(&cfg.lm),
        files.len(),
        corpus.records.0,
        corpus.records.1,
        corpus.train.len(),
        corpus.val.len(),
        cfg.steps,
        cfg.batch,
        b.name(),
        b.device(),
        unigram,
        unigram.exp()
    );
    let bar = indicatif::ProgressBar::new(cfg.steps as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps, {elapsed} (eta {eta}) {msg}",
        )
        .expect("static template"),
    );
    let t = Instant::now();
    let result = train::train(&b, &cfg, &corpus, &mut |s, l| {
        bar.set_position(s as u64);
        bar.set_message(format!("loss {l:.3}"));
    });
    bar.finish_and_clear();
    let (model, rows) = result?;
    println!(
        "{:>6} {:>11} {:>9} {:>8} {:>9} {:>10}",
        "step", "train loss", "val loss", "val ppl", "seconds", "tokens/s"
    );
    for r in &rows {
        println!(
            "{:>6} {:>11} {:>9.4} {:>8.3} {:>9.2} {:>10.0}",
            r.step,
            r.train_loss.map_or("-".into(), |l| format!("{l:.4}")),
            r.val_loss,
            r.val_ppl,
            r.seconds,
            r.tokens_per_s
        );
    }
    std::fs::create_dir_all(&a.out).map_err(|e| Error::Io(format!("{}: {e}", a.out.display())))?;
    collapse_kernels::io::write_csv(&a.out.join("log.csv"), &rows)?;
    lm::save_model(
        &a.out,
        &cfg.lm,
        &model.params()?,
        serde_json::json!({
            "train": cfg,
            "backend": b.name(),
            "device": b.device(),
            "data": files,
            "records": {"train": corpus.records.0, "validation": corpus.records.1},
            "bytes": {"train": corpus.train.len(), "validation": corpus.val.len()},
            "unigram_val_loss": unigram,
            "log": rows,
        }),
    )?;
    let sc = sample::SampleConfig::default();
    let n = cfg.lm.context.min(200);
    let texts = sample::generate(
        model.as_ref(),
        &b,
        b"\n",
        8,
        n,
        &sc,
        StreamKey::new(a.seed, 0x5A),
    )?;
    let mut out = String::new();
    for (i, t) in texts.iter().enumerate() {
        out.push_str(&format!("--- sample {i} (T = 1, prompt \"\\n\")\n"));
        out.push_str(&String::from_utf8_lossy(t));
        out.push('\n');
    }
    write_atomic(&a.out.join("samples.txt"), out.as_bytes())?;
    let last = rows.last().expect("the first row is always there");
    println!(
        "done in {:.1} s: validation perplexity {:.3} (unigram baseline {:.3}); {}/log.csv, \
         model.json, weights.npy, samples.txt",
        t.elapsed().as_secs_f64(),
        last.val_ppl,
        unigram.exp(),
        a.out.display()
    );
    Ok(())
}

fn sample_lm(options: &GpuOptions, a: &SampleLmArgs) -> Result<()> {
    use collapse_kernels::models::lm::{self, sample};
    let (cfg, params) = lm::load_model(&a.model)?;
    let b = Engine::open(a.backend, &queued(options))?;
    let model = b.lm(&cfg, &params)?;
    let prompt = unescape(&a.prompt);
    let sc = sample::SampleConfig {
        temperature: a.temperature,
        top_k: a.top_k,
    };
    let texts = sample::generate(
        model.as_ref(),
        &b,
        &prompt,
        a.rows,
        a.len,
        &sc,
        StreamKey::new(a.seed, 0x5A),
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

/// What a training-step bench prints and records of one timing.
trait StepTiming: serde::Serialize {
    /// The printed row (matching the bench's header).
    fn row(&self) -> String;
    /// Backend, shape, median and fastest seconds, and the throughput with its unit.
    fn record(&self) -> (&str, String, f64, f64, (f64, &'static str));
}

impl StepTiming for collapse_kernels::measure::bench::LmTiming {
    fn row(&self) -> String {
        format!(
            "{:<8} {:>14} {:>6} {:>10.2} {:>14.0} {:>15.0} {:>8}",
            self.backend,
            self.shape,
            self.batch,
            self.seconds * 1e3,
            self.train_tokens_per_s,
            self.sample_tokens_per_s,
            self.matmul_share
                .map_or("-".into(), |s| format!("{:.0}%", 100.0 * s))
        )
    }
    fn record(&self) -> (&str, String, f64, f64, (f64, &'static str)) {
        (
            &self.backend,
            format!("{},B={}", self.shape, self.batch),
            self.seconds,
            self.min_seconds,
            (self.train_tokens_per_s, "tokens/s"),
        )
    }
}

impl StepTiming for collapse_kernels::measure::bench::VaeTiming {
    fn row(&self) -> String {
        format!(
            "{:<8} {:>6} {:>12.3} {:>10.2} {:>12.0}",
            self.backend,
            self.batch,
            self.seconds * 1e3,
            self.steps_per_s,
            self.images_per_s
        )
    }
    fn record(&self) -> (&str, String, f64, f64, (f64, &'static str)) {
        (
            &self.backend,
            format!("{},B={}", self.shape, self.batch),
            self.seconds,
            self.min_seconds,
            (self.images_per_s, "images/s"),
        )
    }
}

/// Times one training step of a backend (`gpu`: its context when it runs there) for one case.
type TimeStep<'a, C, T> = dyn Fn(&Engine, Option<&GpuContext>, &C) -> Result<T> + 'a;

/// Run `time(backend, gpu, case)` for every case and backend of `kinds` (the GPU backends on
/// one shared context; `gpu` is given to GPU backends only), print each timing's row under
/// `header`, skip backends that answer Unsupported, and write the timings as CSV to `out` and
/// their records (kernel `kernel`, program `program`).
#[allow(clippy::too_many_arguments)]
fn bench_steps<C, T: StepTiming>(
    options: &GpuOptions,
    kinds: &[BackendKind],
    cases: &[C],
    (program, kernel, header): (&str, &str, &str),
    time: &TimeStep<'_, C, T>,
    out: Option<&std::path::Path>,
    record_args: &RecordArgs,
) -> Result<()> {
    let gpu = if kinds.iter().any(|k| k.needs_gpu()) {
        Some(GpuContext::new(options)?)
    } else {
        None
    };
    let stamp = collapse_kernels::measure::records::Stamp::new(program);
    let (mut recs, mut rows) = (Vec::new(), Vec::new());
    println!("{header}");
    for case in cases {
        for &kind in kinds {
            let b = Engine::create(kind, gpu.as_ref())?;
            let g = gpu.as_deref().filter(|_| kind.needs_gpu());
            match time(&b, g, case) {
                Ok(t) => {
                    println!("{}", t.row());
                    let (adapter, driver) = adapter_of(&b, gpu.as_ref());
                    let (name, shape, med, min, throughput) = t.record();
                    recs.push(stamp.record(
                        kernel,
                        name,
                        (&adapter, &driver),
                        &shape,
                        med,
                        med - min,
                        throughput,
                    ));
                    rows.push(t);
                }
                Err(Error::Unsupported(why)) => println!("{:<8} skipped: {why}", kind.name()),
                Err(e) => return Err(e),
            }
        }
    }
    if let Some(path) = out {
        collapse_kernels::io::write_csv(path, &rows)?;
        println!("wrote {}", path.display());
    }
    record_args.write(&stamp, &recs)
}

fn bench_lm(
    options: &GpuOptions,
    kinds: &[BackendKind],
    shape: &LmShapeArgs,
    batch: usize,
    steps: usize,
    out: Option<&std::path::Path>,
    record_args: &RecordArgs,
) -> Result<()> {
    if batch == 0 || steps == 0 {
        return Err(Error::InvalidArgument(
            "--batch and --steps must be ≥ 1".into(),
        ));
    }
    let cfg = shape.config();
    cfg.validate()?;
    let header = format!(
        "{:<8} {:>14} {:>6} {:>10} {:>14} {:>15} {:>8}",
        "backend", "C-L-H-T", "batch", "ms/step", "train tok/s", "sample tok/s", "matmul"
    );
    bench_steps(
        options,
        kinds,
        &[batch],
        ("collapse bench lm", "lm_train_step", &header),
        &|b, g, &batch| collapse_kernels::measure::bench::time_lm(b, g, &cfg, batch, steps),
        out,
        record_args,
    )
}

fn bench_vae(
    options: &GpuOptions,
    kinds: &[BackendKind],
    batches: &[usize],
    steps: usize,
    out: Option<&std::path::Path>,
    record_args: &RecordArgs,
) -> Result<()> {
    if batches.contains(&0) || steps == 0 {
        return Err(Error::InvalidArgument(
            "--batches and --steps must be ≥ 1".into(),
        ));
    }
    let cfg = collapse_kernels::models::vae::VaeConfig::default();
    let header = format!(
        "{:<8} {:>6} {:>12} {:>10} {:>12}",
        "backend", "batch", "ms/step", "steps/s", "images/s"
    );
    bench_steps(
        options,
        kinds,
        batches,
        ("collapse bench vae", "vae_train_step", &header),
        &|b, _, &batch| collapse_kernels::measure::bench::time_vae(b, &cfg, batch, steps),
        out,
        record_args,
    )
}
