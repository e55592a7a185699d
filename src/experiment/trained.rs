//! The generational loop shared by the models trained by gradient descent (the VAE and the
//! language model): their weights are too large for `state.json`, so each generation's are
//! written atomically to `weights/r{R}-g{N}.f64` (flat little-endian f64) before the state that
//! names them; a resumed run reloads every earlier generation and rebuilds its samples exactly.

use std::path::Path;

use super::{
    Checkpoint, Generator, Policy, Pool, RealData, RunConfig, RunState, SynthCache, Verifier, pool,
    purpose, replicates, stream_id,
};
use crate::error::{Error, Result};
use crate::io::{Matrix, write_atomic};
use crate::trainers::Engine;

/// What one metrics row is measured with.
pub struct MetricContext<'a> {
    /// The run's backend.
    pub backend: &'a Engine,
    /// The f64 reference backend.
    pub cpu: &'a Engine,
    /// The run's configuration.
    pub cfg: &'a RunConfig,
    /// Real data.
    pub real: &'a RealData,
    /// The run directory (for per-generation pictures or texts).
    pub dir: &'a Path,
    /// Replicate.
    pub replicate: usize,
    /// Generation.
    pub generation: usize,
}

/// A model trained by gradient descent in the generational loop.
pub trait Trained: Generator + Sized + Send + Sync {
    /// Its metric columns in `metrics.csv` (after the pool's).
    fn columns() -> &'static [&'static str];

    /// Train on the rows of `pool` with Philox `seed`; `gen0` is the replicate's generation-0
    /// model when generations fine-tune from it.
    fn fit(
        backend: &Engine,
        cfg: &RunConfig,
        pool: &Matrix,
        seed: u64,
        gen0: Option<&Self>,
    ) -> Result<Self>;

    /// The flat weights.
    fn params(&self) -> &[f64];

    /// The model of this run with weights `params` (from a checkpoint).
    fn from_params(cfg: &RunConfig, real: &RealData, params: Vec<f64>) -> Result<Self>;

    /// The metric values, in [`Trained::columns`] order.
    fn metrics(&self, ctx: &MetricContext<'_>) -> Result<Vec<f64>>;

    /// Reference values of the real data for `summary.json`.
    fn reference(cfg: &RunConfig, real: &RealData) -> Result<Option<serde_json::Value>>;
}

fn save(params: &[f64], path: &Path) -> Result<()> {
    let bytes: Vec<u8> = params.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_atomic(path, &bytes)
}

fn load(path: &Path) -> Result<Vec<f64>> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    if !bytes.len().is_multiple_of(8) {
        return Err(Error::Data(format!(
            "{}: {} bytes is not a whole number of f64",
            path.display(),
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect())
}

/// Train the `verify:heldout` verifier once: on cpu64 (like the mixtures' verifier), on the
/// last `samples` held-out rows.
fn held_out_verifier<M: Trained>(
    cpu: &Engine,
    cfg: &RunConfig,
    real: &RealData,
) -> Result<Option<M>> {
    if !matches!(cfg.policy, Policy::Verify(Verifier::HeldOut, _)) {
        return Ok(None);
    }
    let ho = &real.held_out;
    let k = cfg.samples.min(ho.rows);
    let x = Matrix::new(k, ho.cols, ho.data[(ho.rows - k) * ho.cols..].to_vec())?;
    let seed = cfg.seed ^ stream_id(purpose::EM_INIT, 0xFF_FFFF, 0);
    M::fit(cpu, cfg, &x, seed, None).map(Some)
}

/// The generational loop: per generation and replicate (`jobs` replicates at once, see
/// [`replicates`]), pool, fit, checkpoint the weights, measure; then commit the generation.
pub(super) fn generations<M: Trained>(
    backend: &Engine,
    cpu: &Engine,
    real: &RealData,
    state: &mut RunState,
    ck: &mut Checkpoint,
    jobs: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<()> {
    let cfg: RunConfig = state.config.clone();
    let dir = ck.dir().to_path_buf();
    std::fs::create_dir_all(dir.join("weights"))
        .map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
    if state.model_files.len() != cfg.replicates {
        state.model_files = vec![Vec::new(); cfg.replicates];
    }
    let mut history: Vec<Vec<M>> = state
        .model_files
        .iter()
        .map(|files| {
            files
                .iter()
                .map(|f| {
                    let path = dir.join(f);
                    M::from_params(&cfg, real, load(&path)?)
                        .map_err(|e| Error::Data(format!("{}: {e}", path.display())))
                })
                .collect()
        })
        .collect::<Result<_>>()?;
    ck.reference = M::reference(&cfg, real)?;
    let judge = held_out_verifier::<M>(cpu, &cfg, real)?;
    let mut header = vec![
        "generation",
        "replicate",
        "pool_size",
        "pool_real_fraction",
        "pool_composition",
    ];
    header.extend(M::columns());
    let header = header.join(",");
    let total = cfg.generations + 1;
    let done = history[0].len();
    progress(done, total);
    let cache = SynthCache::new(cfg.replicates);
    for n in done..total {
        let fitted = replicates::for_each(cfg.replicates, jobs, |r| {
            let h = &history[r];
            let pool: Pool = pool(backend, &cfg, real, h, judge.as_ref(), &cache, r, n)?;
            let seed = cfg.seed ^ stream_id(purpose::EM_INIT, r, n);
            let m = M::fit(backend, &cfg, &pool.x, seed, h.first())?;
            let file = format!("weights/r{r}-g{n}.f64");
            save(m.params(), &dir.join(&file))?;
            let ctx = MetricContext {
                backend,
                cpu,
                cfg: &cfg,
                real,
                dir: &dir,
                replicate: r,
                generation: n,
            };
            let mut v = vec![
                n.to_string(),
                r.to_string(),
                pool.x.rows.to_string(),
                pool.real_fraction().to_string(),
                pool.composition_field(),
            ];
            v.extend(m.metrics(&ctx)?.iter().map(|x| x.to_string()));
            Ok((v.join(","), file, m))
        })?;
        let mut rows = Vec::with_capacity(fitted.len());
        for (r, (row, file, m)) in fitted.into_iter().enumerate() {
            rows.push(row);
            state.model_files[r].push(file);
            history[r].push(m);
        }
        ck.commit(state, n, &header, &rows)?;
        progress(n + 1, total);
    }
    Ok(())
}
