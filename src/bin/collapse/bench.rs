//! `collapse bench`: time kernels and training steps per backend, print a table, write CSV and
//! JSON records; `bench compare` (or `--compare A B`) sets two record sets side by side.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use collapse_kernels::backend::BackendKind;
use collapse_kernels::gpu::{GpuContext, GpuOptions};
use collapse_kernels::io::write_csv;
use collapse_kernels::measure::bench::{self as measure, GMM_SHAPES, GmmShape, GmmTiming};
use collapse_kernels::measure::kernels::KernelTable;
use collapse_kernels::measure::matmul::{self as matmul_bench, MatmulRow};
use collapse_kernels::measure::records::{Stamp, adapter_of, gpu_names};
use collapse_kernels::measure::training::{self, LmTiming, VaeTiming};
use collapse_kernels::models::vae::VaeConfig;
use collapse_kernels::trainers::Engine;
use collapse_kernels::{Error, Result};

use crate::common::{LmShapeArgs, RecordArgs, gpu_for};

/// `collapse bench`: a bench subcommand, or `--compare A B`.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, arg_required_else_help = true)]
pub struct BenchArgs {
    /// Compare two record sets (see `collapse bench compare --help`).
    #[arg(long, num_args = 2, value_names = ["A", "B"])]
    pub compare: Option<Vec<PathBuf>>,
    #[command(subcommand)]
    pub cmd: Option<BenchCommand>,
}

/// `collapse bench`'s subcommands.
#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Seconds per EM iteration (E-step + two-pass M-step) for [N=100k, D=16, K=32] full and
    /// diag and [N=1M, D=8, K=16] full, per backend.
    Gmm(GmmArgs),
    /// GFLOP/s and GB/s of C = A·B (f32, row-major) per backend, each checked against a
    /// reference first (cpu64 up to 512³-sized products, cpu32 above), with the ratio to cpu32
    /// (the `gemm` crate) measured in the same run. Prints the WGSL tile shape and
    /// how it was chosen (autotune, cache or COLLAPSE_MATMUL_TILE). With a GPU backend it also
    /// measures the adapter's ceilings (probe.wgsl: f32 FMA GFLOP/s, copy GB/s) and prints each
    /// GPU row's fraction of them (the roofline).
    Matmul(MatmulArgs),
    /// Device-side GB/s: the adapter's copy bandwidth (probe kernel) and the bytes per second the
    /// WGSL GMM sampler writes, from GPU timestamps, and their ratio.
    Sample(SampleArgs),
    /// VAE training steps per second and images per second (forward, loss, backward, Adam;
    /// D = 784, H = 400, Z = 20) per backend and batch size, the loss read back every step.
    /// `scripts/bench-vae.sh` runs this and the PyTorch CPU peer back to back.
    Vae(VaeArgs),
    /// Language-model training tokens/s (forward, backward, AdamW) and sampling tokens/s (KV
    /// cache, categorical sampler) per backend; on WGSL the share of device time in matmul.
    Lm(LmArgs),
    /// Compare two record sets (record files or folders of them, e.g. two machines' or two
    /// revisions' results/bench/records): median seconds and the speedup of B over A for every
    /// kernel, backend and shape both hold (the latest record of each). Same as
    /// `collapse bench --compare A B`.
    Compare(CompareArgs),
}

/// `collapse bench gmm`'s flags.
#[derive(clap::Args, Debug)]
pub struct GmmArgs {
    /// Backends to time (comma-separated). A backend that cannot run a shape (Unsupported) is
    /// reported and skipped.
    #[arg(long, value_delimiter = ',', default_values_t = [BackendKind::Cpu64, BackendKind::Cpu32])]
    pub backends: Vec<BackendKind>,
    /// Timed iterations per backend and shape (after one warm-up iteration).
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// Also write the data sets as NPY files here (gmm-N-D-K.npy), for peer scripts.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Write the records as CSV here, one row as soon as each backend and shape is timed (a run
    /// cut short keeps the rows it finished). Columns include `waits_per_iter` and
    /// `dispatches_per_iter`: host waits and WGSL dispatches of one EM iteration.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the per-kernel device-time tables of the GPU backends (WGSL kernels, summed over
    /// the timed iterations: backend, shape, kernel, calls, seconds, share) as CSV here;
    /// defaults to the --out file with the extension `.kernels.csv`. The tables are printed
    /// either way.
    #[arg(long)]
    pub kernels: Option<PathBuf>,
    /// Replace the --out file when it exists (without it an existing file is refused before
    /// anything is timed).
    #[arg(long, requires = "out")]
    pub force: bool,
    /// Shapes to time instead of the default five, as NxDxK:TYPE with TYPE full, tied, diag or
    /// spherical (repeatable), e.g. --shape 1000000x64x64:diag.
    #[arg(long = "shape")]
    pub shapes: Vec<String>,
    #[command(flatten)]
    pub records: RecordArgs,
}

/// `collapse bench matmul`'s flags.
#[derive(clap::Args, Debug)]
pub struct MatmulArgs {
    /// Backends to time (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [BackendKind::Cpu32, BackendKind::Wgsl, BackendKind::Cube])]
    pub backends: Vec<BackendKind>,
    /// Square sizes N (N×N times N×N), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [128usize, 256, 512, 1024])]
    pub sizes: Vec<usize>,
    /// Extra shapes as MxNxK (repeatable), e.g. --shape 4096x1024x256. `--models` adds the
    /// transformer's and the VAE's shapes.
    #[arg(long = "shape")]
    pub shapes: Vec<String>,
    /// Add the models' shapes: lm_mlp_up 4096x1024x256, vae_enc1 128x400x784, then every
    /// product of one training step of the default LM (lm_*: fwd, dW, dx) and VAE (vae128_*,
    /// vae1024_*), with their transposes.
    #[arg(long)]
    pub models: bool,
    /// Timed repetitions per backend and shape (after one checked warm-up); the median counts.
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Write the records as CSV here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace the --out file when it exists (without it an existing file is refused before
    /// anything is timed).
    #[arg(long, requires = "out")]
    pub force: bool,
    #[command(flatten)]
    pub records: RecordArgs,
}

/// `collapse bench sample`'s flags.
#[derive(clap::Args, Debug)]
pub struct SampleArgs {
    /// Samples per sampler call (K = 16, D = 8, full).
    #[arg(long, default_value_t = 1 << 22)]
    pub samples: usize,
    /// Repetitions; the fastest counts.
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    #[command(flatten)]
    pub records: RecordArgs,
}

/// `collapse bench vae`'s flags.
#[derive(clap::Args, Debug)]
pub struct VaeArgs {
    /// Backends to time (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [BackendKind::Cpu32])]
    pub backends: Vec<BackendKind>,
    /// Batch sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [128usize, 1024])]
    pub batches: Vec<usize>,
    /// Timed steps per backend and batch (after one untimed step); the median counts.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Write the timings as CSV here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the per-kernel device times of the timed steps as CSV here (WGSL backends:
    /// `backend,shape,kernel,calls,seconds,share`, one row per kernel and case; the same
    /// tables, top 12 kernels, are printed after each WGSL row with the dispatches per step).
    #[arg(long, value_name = "FILE")]
    pub kernels: Option<PathBuf>,
    /// Replace the --out or --kernels file when it exists (without it an existing file is
    /// refused before anything is timed).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub records: RecordArgs,
}

/// `collapse bench lm`'s flags.
#[derive(clap::Args, Debug)]
pub struct LmArgs {
    /// Backends to time (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [BackendKind::Cpu32])]
    pub backends: Vec<BackendKind>,
    #[command(flatten)]
    pub shape: LmShapeArgs,
    /// Sequences per training step (and rows sampled at once).
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Timed steps per backend (after one untimed step); the median counts.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Write the timings as CSV here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the per-kernel device times of the timed steps as CSV here (WGSL backends:
    /// `backend,shape,kernel,calls,seconds,share`, one row per kernel and case; the same
    /// tables, top 12 kernels, are printed after each WGSL row with the dispatches per step).
    #[arg(long, value_name = "FILE")]
    pub kernels: Option<PathBuf>,
    /// Replace the --out or --kernels file when it exists (without it an existing file is
    /// refused before anything is timed).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub records: RecordArgs,
}

/// `collapse bench compare`'s arguments.
#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// The baseline records.
    pub a: PathBuf,
    /// The records compared with it.
    pub b: PathBuf,
}

/// Run a `collapse bench` subcommand (or `--compare A B`).
pub fn bench(options: &GpuOptions, a: &BenchArgs) -> Result<()> {
    match (&a.compare, &a.cmd) {
        (Some(ab), _) => compare(&ab[0], &ab[1]),
        (None, None) => Err(Error::InvalidArgument(
            "collapse bench: give a subcommand (gmm, matmul, sample, vae, lm, compare) or \
             --compare A B"
                .into(),
        )),
        (None, Some(c)) => match c {
            BenchCommand::Gmm(a) => out_free(&a.out, a.force)
                .and_then(|()| out_free(&a.kernels, a.force))
                .and_then(|()| gmm(options, a)),
            BenchCommand::Matmul(a) => out_free(&a.out, a.force).and_then(|()| matmul(options, a)),
            BenchCommand::Sample(a) => sample(options, a),
            BenchCommand::Vae(a) => out_free(&a.out, a.force)
                .and_then(|()| out_free(&a.kernels, a.force))
                .and_then(|()| vae(options, a)),
            BenchCommand::Lm(a) => out_free(&a.out, a.force)
                .and_then(|()| out_free(&a.kernels, a.force))
                .and_then(|()| lm(options, a)),
            BenchCommand::Compare(a) => compare(&a.a, &a.b),
        },
    }
}

/// Refuse an existing `--out` file unless `--force` (before any timing: nothing is lost).
fn out_free(out: &Option<PathBuf>, force: bool) -> Result<()> {
    match out {
        Some(p) => collapse_kernels::io::output::refuse_overwrite(
            std::slice::from_ref(p),
            force,
            &format!("--out {}", p.display()),
        ),
        None => Ok(()),
    }
}

/// What a bench table prints and records of one timing.
trait TableRow: serde::Serialize {
    /// The printed row (matching the bench's header).
    fn row(&self) -> String;
    /// Backend, shape, median and fastest seconds, and the throughput with its unit.
    fn record(&self) -> (&str, String, f64, f64, (f64, &'static str));
    /// WGSL dispatches per step, where the bench counts them.
    fn dispatches(&self) -> Option<u64> {
        None
    }
    /// The per-kernel device-time table of the timed steps, where the bench records kernel
    /// times.
    fn kernel_table(&self) -> Option<KernelTable> {
        None
    }
}

impl TableRow for GmmTiming {
    fn row(&self) -> String {
        format!(
            "{:<8} {:>9} {:>3} {:>3} {:<5} {:>12.2} {:>12.2} {:>14.3e} {:>6} {:>6}",
            self.backend,
            self.n,
            self.d,
            self.k,
            self.covariance_type,
            self.seconds_per_iter * 1e3,
            self.min_seconds * 1e3,
            self.point_components_per_s,
            self.waits_per_iter.map_or("-".into(), |w| w.to_string()),
            self.dispatches_per_iter
                .map_or("-".into(), |w| w.to_string()),
        )
    }
    fn record(&self) -> (&str, String, f64, f64, (f64, &'static str)) {
        (
            &self.backend,
            format!(
                "N={},D={},K={},{}",
                self.n, self.d, self.k, self.covariance_type
            ),
            self.seconds_per_iter,
            self.min_seconds,
            (self.point_components_per_s, "points·components/s"),
        )
    }
    fn kernel_table(&self) -> Option<KernelTable> {
        self.kernels.clone()
    }
}

impl TableRow for LmTiming {
    fn row(&self) -> String {
        format!(
            "{:<8} {:>14} {:>6} {:>10.2} {:>14.0} {:>15.0} {:>8} {:>10}",
            self.backend,
            self.shape,
            self.batch,
            self.seconds * 1e3,
            self.train_tokens_per_s,
            self.sample_tokens_per_s,
            self.matmul_share
                .map_or("-".into(), |s| format!("{:.0}%", 100.0 * s)),
            self.dispatches_per_step
                .map_or("-".into(), |d| d.to_string())
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
    fn dispatches(&self) -> Option<u64> {
        self.dispatches_per_step
    }
    fn kernel_table(&self) -> Option<KernelTable> {
        (!self.kernels.is_empty()).then(|| KernelTable::from_times(&self.kernels))
    }
}

impl TableRow for VaeTiming {
    fn row(&self) -> String {
        format!(
            "{:<8} {:>6} {:>12.3} {:>10.2} {:>12.0} {:>10}",
            self.backend,
            self.batch,
            self.seconds * 1e3,
            self.steps_per_s,
            self.images_per_s,
            self.dispatches_per_step
                .map_or("-".into(), |d| d.to_string())
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
    fn dispatches(&self) -> Option<u64> {
        self.dispatches_per_step
    }
    fn kernel_table(&self) -> Option<KernelTable> {
        (!self.kernels.is_empty()).then(|| KernelTable::from_times(&self.kernels))
    }
}

/// Times one case (prepared by the table's `prepare`) on a backend (`gpu`: its context when it
/// runs there).
type TimeCase<'a, P, T> = dyn Fn(&Engine, Option<&GpuContext>, &P) -> Result<T> + 'a;

/// A bench table: the program and kernel its records name, its printed header, and where its
/// timings (CSV) and records go.
struct Table<'a> {
    program: &'a str,
    kernel: &'a str,
    header: &'a str,
    out: Option<&'a Path>,
    /// Where the per-kernel device times go (CSV), for the benches that record them.
    kernels: Option<&'a Path>,
    records: &'a RecordArgs,
}

/// For every case: `prepare` it once, then `time` it on every backend of `kinds` (the GPU
/// backends on one shared context; `gpu` is given to GPU backends only), print each timing's
/// row under the header, skip backends that answer Unsupported; then write the timings as CSV
/// to `t.out` and their records.
fn table<C, P, T: TableRow>(
    options: &GpuOptions,
    kinds: &[BackendKind],
    cases: &[C],
    t: Table<'_>,
    prepare: &mut dyn FnMut(&C) -> Result<P>,
    time: &TimeCase<'_, P, T>,
) -> Result<()> {
    let gpu = gpu_for(options, kinds)?;
    let stamp = Stamp::new(t.program);
    let (mut recs, mut rows, mut kernel_rows) = (Vec::new(), Vec::new(), Vec::new());
    println!("{}", t.header);
    for case in cases {
        let prepared = prepare(case)?;
        for &kind in kinds {
            let b = Engine::create(kind, gpu.as_ref())?;
            let g = gpu.as_deref().filter(|_| kind.needs_gpu());
            match time(&b, g, &prepared) {
                Ok(timing) => {
                    println!("{}", timing.row());
                    let (adapter, driver) = adapter_of(&b, gpu.as_ref());
                    let (name, shape, med, min, throughput) = timing.record();
                    let mut rec = stamp.record(
                        t.kernel,
                        name,
                        (&adapter, &driver),
                        &shape,
                        med,
                        med - min,
                        throughput,
                    );
                    rec.dispatches_per_step = timing.dispatches();
                    if let Some(k) = timing.kernel_table() {
                        let title = format!("{} step kernels ({name}, {shape})", t.program);
                        println!("{}", k.render(&title, 12));
                        for r in &k.rows {
                            kernel_rows.push(KernelCsvRow {
                                backend: name.to_string(),
                                shape: shape.clone(),
                                kernel: r.kernel.clone(),
                                calls: r.calls,
                                seconds: r.seconds,
                                share: r.share,
                            });
                        }
                        if let Some(path) = t.kernels {
                            write_csv(path, &kernel_rows)?;
                        }
                    }
                    recs.push(rec);
                    rows.push(timing);
                    // Each row is written as soon as it is timed: a run cut short keeps them.
                    if let Some(path) = t.out {
                        write_csv(path, &rows)?;
                    }
                }
                Err(Error::Unsupported(why)) => println!("{:<8} skipped: {why}", kind.name()),
                Err(e) => return Err(e),
            }
        }
    }
    if let Some(path) = t.out {
        write_csv(path, &rows)?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = t.kernels {
        write_csv(path, &kernel_rows)?;
        println!("wrote {}", path.display());
    }
    t.records.write(&stamp, &recs)
}

/// One row of a `--kernels` CSV: one kernel's device time over the timed steps of one
/// backend and shape.
#[derive(serde::Serialize)]
struct KernelCsvRow {
    backend: String,
    shape: String,
    kernel: String,
    calls: usize,
    seconds: f64,
    share: f64,
}

/// `collapse bench gmm`.
fn gmm(options: &GpuOptions, a: &GmmArgs) -> Result<()> {
    if a.iters == 0 {
        return Err(Error::InvalidArgument("--iters must be at least 1".into()));
    }
    let shapes: Vec<GmmShape> = if a.shapes.is_empty() {
        GMM_SHAPES.to_vec()
    } else {
        a.shapes
            .iter()
            .map(|s| s.parse::<GmmShape>())
            .collect::<Result<_>>()?
    };
    // Every shape is checked before the first one is timed: nothing is written for a run that
    // cannot finish.
    for s in &shapes {
        s.check_memory()?;
    }
    let cpu = Engine::create(BackendKind::Cpu64, None)?;
    let header = format!(
        "{:<8} {:>9} {:>3} {:>3} {:<5} {:>12} {:>12} {:>14} {:>6} {:>6}",
        "backend", "N", "D", "K", "cov", "ms/iter", "min ms", "pts·comp/s", "waits", "disp"
    );
    let kernels = a
        .kernels
        .clone()
        .or_else(|| a.out.as_ref().map(|o| o.with_extension("kernels.csv")));
    table(
        options,
        &a.backends,
        &shapes,
        Table {
            program: "collapse bench gmm",
            kernel: "gmm_em_iteration",
            header: &header,
            out: a.out.as_deref(),
            kernels: kernels.as_deref(),
            records: &a.records,
        },
        &mut |&shape| {
            let (x, start) = measure::gmm_data(shape, &cpu)?;
            if let Some(dir) = &a.data_dir {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
                let name = format!("gmm-{}-{}-{}.npy", shape.n, shape.d, shape.k);
                collapse_kernels::io::write_npy(&dir.join(name), &x)?;
            }
            Ok((x, start))
        },
        &|b, g, (x, start)| measure::time_gmm(b, g, x, start, a.iters),
    )
}

/// `collapse bench lm`.
fn lm(options: &GpuOptions, a: &LmArgs) -> Result<()> {
    if a.batch == 0 || a.steps == 0 {
        return Err(Error::InvalidArgument(
            "--batch and --steps must be ≥ 1".into(),
        ));
    }
    let cfg = a.shape.config();
    cfg.validate()?;
    training::check_lm(&cfg, a.batch, None)?;
    let header = format!(
        "{:<8} {:>14} {:>6} {:>10} {:>14} {:>15} {:>8} {:>10}",
        "backend",
        "C-L-H-T",
        "batch",
        "ms/step",
        "train tok/s",
        "sample tok/s",
        "matmul",
        "disp/step"
    );
    table(
        options,
        &a.backends,
        &[a.batch],
        Table {
            program: "collapse bench lm",
            kernel: "lm_train_step",
            header: &header,
            out: a.out.as_deref(),
            kernels: a.kernels.as_deref(),
            records: &a.records,
        },
        &mut |&batch| Ok(batch),
        &|b, g, &batch| {
            if g.is_some() {
                training::check_lm(&cfg, batch, g)?;
            }
            training::time_lm(b, g, &cfg, batch, a.steps)
        },
    )
}

/// `collapse bench vae` (the network of `VaeConfig::default()`).
fn vae(options: &GpuOptions, a: &VaeArgs) -> Result<()> {
    if a.batches.contains(&0) || a.steps == 0 {
        return Err(Error::InvalidArgument(
            "--batches and --steps must be ≥ 1".into(),
        ));
    }
    let cfg = VaeConfig::default();
    for &b in &a.batches {
        training::check_vae(&cfg, b, None)?;
    }
    let header = format!(
        "{:<8} {:>6} {:>12} {:>10} {:>12} {:>10}",
        "backend", "batch", "ms/step", "steps/s", "images/s", "disp/step"
    );
    table(
        options,
        &a.backends,
        &a.batches,
        Table {
            program: "collapse bench vae",
            kernel: "vae_train_step",
            header: &header,
            out: a.out.as_deref(),
            kernels: a.kernels.as_deref(),
            records: &a.records,
        },
        &mut |&batch| Ok(batch),
        &|b, g, &batch| {
            if g.is_some() {
                training::check_vae(&cfg, batch, g)?;
            }
            training::time_vae(b, g, &cfg, batch, a.steps)
        },
    )
}

/// `collapse bench matmul`: the adapter, the WGSL tile and the ceilings, then one checked,
/// timed row per shape and backend.
fn matmul(options: &GpuOptions, a: &MatmulArgs) -> Result<()> {
    use collapse_kernels::backend::wgsl::Wgsl;
    let stamp = Stamp::new("collapse bench matmul");
    if a.reps == 0 {
        return Err(Error::InvalidArgument("--reps must be at least 1".into()));
    }
    let cases = matmul_bench::cases(&a.sizes, &a.shapes, a.models)?;
    let gpu = gpu_for(options, &a.backends)?;
    if let Some(g) = &gpu {
        matmul_bench::check_device_sizes(&cases, g)?;
        println!(
            "adapter: {} ({:?}, {:?})",
            g.info.name, g.info.backend, g.info.device_type
        );
        if a.backends.contains(&BackendKind::Wgsl) {
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
    // The roofline: the adapter's measured ceilings, for the GPU rows' fractions.
    let ceil = match &gpu {
        Some(g) => {
            let c = measure::ceilings(g, 5)?;
            println!(
                "ceilings (probe.wgsl, best of 5): f32 FMA {:.1} GFLOP/s, copy {:.1} GB/s",
                c.gflops, c.gb_per_s
            );
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
    let rows = matmul_bench::bench(
        &a.backends,
        gpu.as_ref(),
        &cases,
        a.reps,
        ceil,
        &mut print_matmul_row,
    )?;
    if let Some(path) = &a.out {
        let timings: Vec<_> = rows.iter().map(|r| r.timing.clone()).collect();
        write_csv(path, &timings)?;
        println!("wrote {}", path.display());
    }
    let recs = matmul_bench::records(&stamp, &rows, ceil, gpu.as_deref());
    a.records.write(&stamp, &recs)
}

/// One row of `collapse bench matmul`'s table.
fn print_matmul_row(r: &MatmulRow) {
    let t = &r.timing;
    let ratio = r
        .vs_cpu32
        .map(|x| format!("{x:.2}"))
        .unwrap_or_else(|| "-".into());
    let (fma, copy) = match r.roofline_percent {
        Some((f, c)) => (format!("{f:.1}"), format!("{c:.1}")),
        None => ("-".into(), "-".into()),
    };
    println!(
        "{:<18} {:<6} {:>10.3} {:>10.2} {:>9.2} {:>10} {:>10.2e} {:>6} {:>6} {:<12} {:<16}",
        t.shape,
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
}

/// `collapse bench sample`: the copy probe's and the WGSL sampler's device GB/s.
fn sample(options: &GpuOptions, a: &SampleArgs) -> Result<()> {
    use collapse_kernels::measure::bench::{copy_bandwidth, sampler_write_rate};
    if a.samples < 1024 {
        return Err(Error::InvalidArgument(
            "--samples must be at least 1024".into(),
        ));
    }
    // The host's f64 samples (D = 8) and component indices.
    collapse_kernels::io::budget::check(
        &format!("bench sample --samples {}", a.samples),
        &[a.samples],
        8 * 8 + 4,
        "lower --samples",
    )?;
    let gpu = GpuContext::new(options)?;
    println!("adapter: {} ({:?})", gpu.info.name, gpu.info.backend);
    let copy = copy_bandwidth(&gpu, a.reps)?;
    let samp = sampler_write_rate(&gpu, a.samples, a.reps)?;
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
    let stamp = Stamp::new("collapse bench sample");
    let (adapter, driver) = gpu_names(&gpu);
    let recs = [
        ("copy", "probe", &copy),
        ("sample_gmm_writes", "N=%,K=16,D=8,full", &samp),
    ]
    .into_iter()
    .map(|(kernel, shape, t)| {
        stamp.record(
            kernel,
            "wgsl",
            (&adapter, &driver),
            &shape.replace('%', &a.samples.to_string()),
            t.seconds,
            0.0,
            (t.gb_per_s, "GB/s"),
        )
    })
    .collect::<Vec<_>>();
    a.records.write(&stamp, &recs)
}

/// `collapse bench compare A B`: the speedup table of every (kernel, backend, shape) both
/// record sets hold.
fn compare(a: &Path, b: &Path) -> Result<()> {
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
