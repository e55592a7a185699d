//! The language model in the generational loop (`collapse run --model lm`): Shumailov et al.'s
//! OPT-125m / WikiText-2 experiment in miniature.
//!
//! # Data as rows
//!
//! A pool is a matrix whose rows are byte sequences of `context + 1` bytes (values 0–255 as
//! f64), so the policies of [`super::pool`] apply unchanged. Real rows: each replicate's
//! generation 0 trains on `samples` windows of the training text at Philox offsets (stream
//! `REAL` of the replicate); `fresh:F` draws from every non-overlapping window of the training
//! text; held-out rows are up to 64 windows evenly spaced over the validation text (see
//! [`crate::models::lm::train`] for the corpus and its fixed split).
//!
//! # Fitting and sampling
//!
//! Each generation trains for `steps` AdamW steps of `batch` pool rows (rows drawn by Philox
//! stream `(seed', LM_BATCH + step)`), from the Philox initialisation (`init = scratch`) or
//! from the replicate's generation-0 weights (`init = gen0`, fine-tuning as Shumailov et al.
//! do). A synthetic row is the prompt `\n` followed by `context` sampled bytes (temperature,
//! top-k), generated in chunks of 256 rows, chunk `c` from stream `key.stream ^ (c << 40)`.
//! `verify` scores a row by its log-likelihood under the verifier (nats).
//!
//! # Metrics (columns after the pool's), on the run's backend
//!
//! `val_loss` (nats per byte on the held-out rows), `val_ppl = exp(val_loss)`, and `distinct_1`,
//! `distinct_2` (unique word uni-/bigrams over all, [`crate::models::lm::train::distinct_n`]) of 32
//! samples drawn from the same stream every generation. `samples/gNNNN.txt` holds 8 of
//! replicate 0's. `summary.json` gives under `reference` the unigram baseline and the
//! distinct-n of 32 held-out windows.

use super::checkpoint::{Checkpoint, RunState};
use super::config::{LmInit, RunConfig, Truth};
use super::data::{RealData, pick_row};
use super::model::{MetricContext, Model};
use super::pool::Generator;
use super::weights::{self, Weights};
use crate::error::{Error, Result};
use crate::io::{Matrix, write_atomic};
use crate::models::lm::sample::{SampleConfig, generate};
use crate::models::lm::train::{distinct_n, eval_windows, fortune_files, load_corpus};
use crate::models::lm::{LmConfig, LmTrainer, init_params};
use crate::rng::StreamKey;
use crate::rng::streams::{LM_BATCH, chunk_stream, purpose, stream_id};
use crate::trainers::Engine;

/// The LM columns of `metrics.csv`.
pub const METRIC_COLUMNS: [&str; 4] = ["val_loss", "val_ppl", "distinct_1", "distinct_2"];

/// Held-out windows.
const HELDOUT_WINDOWS: usize = 64;
/// Samples in the distinct-n metrics.
const DIVERSITY_SAMPLES: usize = 32;
/// Rows generated per decoder.
const CHUNK: usize = 256;

/// Rows of `width` bytes as a matrix.
fn rows_matrix(bytes: &[u8], width: usize) -> Result<Matrix> {
    Matrix::new(
        bytes.len() / width,
        width,
        bytes.iter().map(|&b| b as f64).collect(),
    )
}

/// The bytes of matrix rows (values 0–255).
fn row_bytes(x: &[f64]) -> Vec<u8> {
    x.iter().map(|&v| v.clamp(0.0, 255.0) as u8).collect()
}

/// Real data of an LM run: the corpus as rows (see the module documentation).
fn load_text(cfg: &RunConfig) -> Result<RealData> {
    let files = match &cfg.truth {
        Truth::Builtin(name) if name == "fortunes" => fortune_files()?,
        Truth::File(p) => vec![p.clone()],
        Truth::Builtin(name) => {
            return Err(Error::InvalidArgument(format!(
                "the language model learns text: --truth fortunes or --data FILE, not {name:?}"
            )));
        }
    };
    let corpus = load_corpus(&files)?;
    let len = cfg.lm.context;
    let w = len + 1;
    let train = (0..cfg.replicates)
        .map(|r| {
            let key = StreamKey::new(
                cfg.seed,
                stream_id(purpose::REAL, cfg.replicate_index(r), 0),
            );
            rows_matrix(
                &crate::models::lm::train::batch(&corpus.train, cfg.samples, len, key)?,
                w,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let whole = corpus.train.len() / w * w;
    Ok(RealData {
        train,
        all_train: Some(rows_matrix(&corpus.train[..whole], w)?),
        held_out: rows_matrix(&eval_windows(&corpus.val, len, HELDOUT_WINDOWS)?, w)?,
        truth: None,
        held_out_model: None,
    })
}

/// One generation's trained language model.
#[derive(Clone, Debug)]
pub struct LmModel {
    /// The network.
    pub cfg: LmConfig,
    /// Its weights, flat, f64.
    pub params: Vec<f64>,
    /// Sampling settings.
    pub sampling: SampleConfig,
}

impl LmModel {
    pub(super) fn on<'a>(&self, backend: &'a Engine) -> Result<Box<dyn LmTrainer + 'a>> {
        backend.lm(&self.cfg, &self.params)
    }
}

impl Generator for LmModel {
    fn generate(&self, backend: &Engine, count: usize, key: StreamKey) -> Result<Matrix> {
        let len = self.cfg.context;
        let lm = self.on(backend)?;
        let mut bytes = Vec::with_capacity(count * (len + 1));
        let mut left = count;
        let mut ci = 0u64;
        while left > 0 {
            let rows = left.min(CHUNK);
            let sub = StreamKey::new(key.seed, chunk_stream(key.stream, ci));
            for t in generate(lm.as_ref(), backend, b"\n", rows, len, &self.sampling, sub)? {
                bytes.push(b'\n');
                bytes.extend(t);
            }
            left -= rows;
            ci += 1;
        }
        rows_matrix(&bytes, len + 1)
    }

    /// Log-likelihood of each row (nats): `−len ×` its mean cross-entropy.
    fn score(&self, backend: &Engine, x: &Matrix) -> Result<Vec<f64>> {
        let mut lm = self.on(backend)?;
        let len = x.cols - 1;
        (0..x.rows)
            .map(|i| Ok(-lm.loss(&row_bytes(x.row(i)), len)? * len as f64))
            .collect()
    }
}

impl Weights for LmModel {
    fn weights(&self) -> &[f64] {
        &self.params
    }

    fn from_weights(cfg: &RunConfig, _real: &RealData, params: Vec<f64>) -> Result<Self> {
        let net = cfg.lm.network();
        crate::models::lm::check_params(&net, &params)?;
        Ok(Self {
            cfg: net,
            params,
            sampling: cfg.lm.sampling(),
        })
    }
}

impl Model for LmModel {
    type Setup = ();

    fn check(cfg: &RunConfig) -> Result<()> {
        if cfg.real_rows.is_some() {
            return Err(Error::InvalidArgument(
                "--real-rows applies to --data files of the gaussian, gmm and vae models (the LM's \
                 generation 0 trains on --samples windows of its text)"
                    .into(),
            ));
        }
        cfg.lm.check()?;
        if matches!(&cfg.truth, Truth::Builtin(n) if n != "fortunes") {
            return Err(Error::InvalidArgument(
                "the language model learns text: --truth fortunes or --data FILE".into(),
            ));
        }
        Ok(())
    }

    fn load_real(cfg: &RunConfig, _cpu: &Engine) -> Result<RealData> {
        load_text(cfg)
    }

    fn columns(_cfg: &RunConfig, _d: usize) -> Vec<String> {
        METRIC_COLUMNS.iter().map(|c| c.to_string()).collect()
    }

    fn fit(
        backend: &Engine,
        cfg: &RunConfig,
        pool: &Matrix,
        seed: u64,
        gen0: Option<&Self>,
    ) -> Result<Self> {
        let rc = &cfg.lm;
        let net = rc.network();
        let start = match (rc.init, gen0) {
            (LmInit::Gen0, Some(g)) => g.params.clone(),
            _ => init_params(&net, seed),
        };
        let mut lm = backend.lm(&net, &start)?;
        let len = pool.cols - 1;
        let mut tokens = Vec::with_capacity(rc.batch * pool.cols);
        for s in 0..rc.steps {
            let key = StreamKey::new(seed, LM_BATCH + s as u64);
            tokens.clear();
            for b in 0..rc.batch {
                tokens.extend(row_bytes(pool.row(pick_row(key, b, pool.rows))));
            }
            lm.step(&tokens, len)?;
        }
        lm.last_loss()?;
        Ok(Self {
            cfg: net,
            params: lm.params()?,
            sampling: rc.sampling(),
        })
    }

    /// Trained on cpu64 on the last `samples` held-out windows.
    fn held_out_verifier(
        cpu: &Engine,
        cfg: &RunConfig,
        real: &RealData,
        seed: u64,
    ) -> Result<Self> {
        Self::fit(cpu, cfg, &real.held_out_tail(cfg.samples)?, seed, None)
    }

    fn setup(_cfg: &RunConfig, _real: &RealData, _cpu: &Engine) -> Result<()> {
        Ok(())
    }

    fn metrics(&self, ctx: &MetricContext<'_>, _setup: &()) -> Result<Vec<String>> {
        Ok(self
            .metric_values(ctx)?
            .iter()
            .map(|x| x.to_string())
            .collect())
    }

    fn reference(_cfg: &RunConfig, real: &RealData) -> Result<Option<serde_json::Value>> {
        let ho = &real.held_out;
        let all = real
            .all_train
            .as_ref()
            .expect("LM runs keep the training rows");
        let unigram = crate::models::lm::train::unigram_cross_entropy(
            &row_bytes(&all.data),
            &row_bytes(&ho.data),
        );
        let texts: Vec<Vec<u8>> = (0..ho.rows.min(DIVERSITY_SAMPLES))
            .map(|i| row_bytes(ho.row(i)))
            .collect();
        Ok(Some(serde_json::json!({
            "source": "held-out real text",
            "unigram_val_loss": unigram,
            "unigram_val_ppl": unigram.exp(),
            "distinct_1": distinct_n(&texts, 1),
            "distinct_2": distinct_n(&texts, 2),
        })))
    }

    fn load_history(
        ck: &mut Checkpoint,
        state: &mut RunState,
        real: &RealData,
    ) -> Result<Vec<Vec<Self>>> {
        weights::load_weight_history(ck, state, real)
    }

    fn save_generation(
        ck: &mut Checkpoint,
        state: &mut RunState,
        n: usize,
        models: &[&Self],
    ) -> Result<()> {
        weights::save_weight_generation(ck, state, n, models)
    }
}

impl LmModel {
    /// `val_loss`, `val_ppl`, `distinct_1`, `distinct_2` (see the module documentation), and
    /// replicate 0's sample texts.
    fn metric_values(&self, ctx: &MetricContext<'_>) -> Result<Vec<f64>> {
        let ho = &ctx.real.held_out;
        let val_loss = self
            .on(ctx.backend)?
            .loss(&row_bytes(&ho.data), ho.cols - 1)?;
        let key = StreamKey::new(
            ctx.cfg.seed,
            stream_id(purpose::TAIL, ctx.cfg.replicate_index(ctx.replicate), 0),
        );
        let samples = self.generate(ctx.backend, DIVERSITY_SAMPLES, key)?;
        let texts: Vec<Vec<u8>> = (0..samples.rows)
            .map(|i| row_bytes(samples.row(i)))
            .collect();
        if ctx.replicate == 0 {
            let dir = ctx.dir.join("samples");
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
            let mut out = String::new();
            for (i, t) in texts.iter().take(8).enumerate() {
                out.push_str(&format!("--- sample {i}\n{}\n", String::from_utf8_lossy(t)));
            }
            write_atomic(
                &dir.join(format!("g{:04}.txt", ctx.generation)),
                out.as_bytes(),
            )?;
        }
        Ok(vec![
            val_loss,
            val_loss.exp(),
            distinct_n(&texts, 1),
            distinct_n(&texts, 2),
        ])
    }
}
