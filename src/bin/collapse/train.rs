//! `collapse train vae` (the MLP VAE on IDX images) and `collapse train lm` (the byte-level
//! transformer on text): train on a backend, print the learning curve, write the model and
//! its samples.

use std::path::PathBuf;
use std::time::Instant;

use clap::Subcommand;

use collapse_kernels::backend::BackendKind;
use collapse_kernels::gpu::GpuOptions;
use collapse_kernels::io::idx::write_png_grid;
use collapse_kernels::io::output::{in_dir, refuse_overwrite};
use collapse_kernels::io::{write_atomic, write_csv};
use collapse_kernels::models::lm::{self, sample as lm_sample, train as lm_train};
use collapse_kernels::models::vae::{Adam, VaeConfig, train as vae_train};
use collapse_kernels::ops::Backend;
use collapse_kernels::rng::StreamKey;
use collapse_kernels::trainers::Engine;
use collapse_kernels::{Error, Result};

use crate::common::{LmShapeArgs, progress_bar, queued};

/// `collapse train`'s subcommands.
#[derive(Subcommand, Debug)]
pub enum TrainCommand {
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

/// `collapse train vae`'s flags; the network's and Adam's defaults are `VaeConfig::default()`.
#[derive(clap::Args, Debug)]
pub struct TrainVaeArgs {
    /// Training images: an IDX image file, raw or gzip (MNIST, Fashion-MNIST, …), or a
    /// directory holding one (e.g. /usr/share/datasets/fashion-mnist: its train-images file is
    /// read, and the t10k-images file beside it is the default test set).
    #[arg(long, default_value = vae_train::DEFAULT_TRAIN_IMAGES)]
    pub data: PathBuf,
    /// Test images (IDX). Default: the `t10k-` file beside a `train-` --data file; otherwise
    /// the last 10% of --data is held out.
    #[arg(long)]
    pub test_data: Option<PathBuf>,
    /// Use only the first N training images (quick runs).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Passes over the training images.
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// Images per training step.
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Hidden width H.
    #[arg(long, default_value_t = VaeConfig::default().h)]
    pub hidden: usize,
    /// Latent dimensions Z.
    #[arg(long, default_value_t = VaeConfig::default().z)]
    pub latent: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = Adam::default().lr)]
    pub lr: f64,
    /// Adam L2 weight decay.
    #[arg(long, default_value_t = Adam::default().weight_decay)]
    pub weight_decay: f64,
    /// Adam first-moment decay β₁.
    #[arg(long, default_value_t = Adam::default().beta1)]
    pub adam_beta1: f64,
    /// Adam second-moment decay β₂.
    #[arg(long, default_value_t = Adam::default().beta2)]
    pub adam_beta2: f64,
    /// Adam ε (added to √v̂).
    #[arg(long, default_value_t = Adam::default().eps)]
    pub adam_eps: f64,
    /// Weight of the KL term (1 = the ELBO).
    #[arg(long, default_value_t = VaeConfig::default().beta)]
    pub beta: f64,
    /// Philox seed of the weights, shuffles and noise (the same start on every backend).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Backend running the training steps.
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu32)]
    pub backend: BackendKind,
    /// Read the loss back every this many steps.
    #[arg(long, default_value_t = 10)]
    pub loss_every: usize,
    /// Output directory (created if missing). A directory that already holds this command's
    /// files (a trained model) is refused unless --force.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace the files of an earlier training in --out.
    #[arg(long)]
    pub force: bool,
}

/// `collapse train lm`'s flags.
#[derive(clap::Args, Debug)]
pub struct TrainLmArgs {
    /// UTF-8 text files (records split at `%` lines, else blank lines; 10% of records held out
    /// for validation). Default: every fortune file in /usr/share/games/fortunes except art and
    /// ascii-art (`apt-get install fortunes`).
    #[arg(long, num_args = 1..)]
    pub data: Vec<PathBuf>,
    #[command(flatten)]
    pub shape: LmShapeArgs,
    /// AdamW steps.
    #[arg(long, default_value_t = 1000)]
    pub steps: usize,
    /// Sequences per step.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Measure the validation loss every this many steps.
    #[arg(long, default_value_t = 100)]
    pub eval_every: usize,
    /// Validation windows (of context + 1 bytes) per measurement.
    #[arg(long, default_value_t = 64)]
    pub eval_windows: usize,
    /// Philox seed of the weights, batches and samples.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Backend running the training steps (cpu64, cpu32, or wgsl and cube on the GPU).
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu32)]
    pub backend: BackendKind,
    /// Output directory (created if missing). A directory that already holds this command's
    /// files (a trained model) is refused unless --force.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace the files of an earlier training in --out.
    #[arg(long)]
    pub force: bool,
}

/// Run a `collapse train` subcommand.
pub fn train(options: &GpuOptions, c: &TrainCommand) -> Result<()> {
    match c {
        TrainCommand::Vae(a) => train_vae(options, a),
        TrainCommand::Lm(a) => train_lm(options, a),
    }
}

/// Train the VAE, print its epochs, and write epochs.csv, the model, 64 samples and 16 test
/// reconstructions into `a.out`.
fn train_vae(options: &GpuOptions, a: &TrainVaeArgs) -> Result<()> {
    let written = [
        "epochs.csv",
        "model.json",
        "weights.npy",
        "samples.png",
        "reconstructions.png",
    ];
    refuse_overwrite(
        &in_dir(&a.out, &written),
        a.force,
        &format!("--out {}", a.out.display()),
    )?;
    std::fs::create_dir_all(&a.out).map_err(|e| Error::Io(format!("{}: {e}", a.out.display())))?;
    let (data, test) =
        vae_train::load_images(&a.data, a.test_data.as_deref(), a.limit, &mut |m| {
            eprintln!("{m}")
        })?;
    let cfg = vae_train::TrainConfig {
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
    collapse_kernels::measure::training::check_vae_as(
        "train vae",
        "lower --hidden, --latent or --batch",
        &cfg.vae,
        cfg.batch,
        None,
    )?;
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
    let bar = progress_bar(
        0,
        "epoch {prefix} {bar:30} {pos}/{len} steps, {elapsed} (eta {eta}) {msg}",
    );
    let t = Instant::now();
    let result = vae_train::train(&b, &cfg, &data, &test, &mut |epoch, s, steps, loss| {
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
    write_csv(&a.out.join("epochs.csv"), &rows)?;
    vae_train::save_model(
        &a.out,
        &cfg,
        &model.params()?,
        serde_json::json!({
            "backend": b.name(),
            "device": b.device(),
            "data": a.data,
            "train_images": data.count,
            "test_images": test.count,
            "epochs": rows,
        }),
    )?;
    let shape = (data.rows, data.cols);
    let samples = vae_train::sample_images(model.as_mut(), 64, a.seed)?;
    write_png_grid(&a.out.join("samples.png"), &samples, shape, 8)?;
    let n = test.count.min(16);
    let originals = vae_train::gather(&test, &(0..n).collect::<Vec<_>>());
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

/// Train the language model, print its learning curve, and write log.csv, the model and 8
/// samples into `a.out`.
fn train_lm(options: &GpuOptions, a: &TrainLmArgs) -> Result<()> {
    let written = ["log.csv", "model.json", "weights.npy", "samples.txt"];
    refuse_overwrite(
        &in_dir(&a.out, &written),
        a.force,
        &format!("--out {}", a.out.display()),
    )?;
    let files = if a.data.is_empty() {
        lm_train::fortune_files()?
    } else {
        a.data.clone()
    };
    let corpus = lm_train::load_corpus(&files)?;
    let cfg = lm_train::TrainConfig {
        lm: a.shape.config(),
        steps: a.steps,
        batch: a.batch,
        seed: a.seed,
        eval_every: a.eval_every,
        eval_windows: a.eval_windows,
    };
    cfg.lm.validate()?;
    collapse_kernels::measure::training::check_lm_as("train lm", &cfg.lm, cfg.batch, None)?;
    let b = Engine::open(a.backend, &queued(options))?;
    let unigram = lm_train::unigram_cross_entropy(&corpus.train, &corpus.val);
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
    let bar = progress_bar(
        cfg.steps as u64,
        "{bar:30} {pos}/{len} steps, {elapsed} (eta {eta}) {msg}",
    );
    let t = Instant::now();
    let result = lm_train::train(&b, &cfg, &corpus, &mut |s, l| {
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
    write_csv(&a.out.join("log.csv"), &rows)?;
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
    let sc = lm_sample::SampleConfig::default();
    let n = cfg.lm.context.min(200);
    let texts = lm_sample::generate(
        model.as_ref(),
        &b,
        b"\n",
        8,
        n,
        &sc,
        StreamKey::new(a.seed, collapse_kernels::rng::streams::LM_SAMPLE),
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
