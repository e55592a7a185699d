//! The generational loop, written once over [`Model`]: per generation, every replicate's pool
//! and fit (`jobs` replicates at once, see [`super::replicates`]); then, when the run keeps a
//! directory, its metrics rows, the models' checkpoint and the state that names them.
//! [`super::simulate`] is the same loop without a directory.

use super::checkpoint::{Checkpoint, RunState};
use super::config::{Policy, RunConfig, Verifier};
use super::data::RealData;
use super::model::{MetricContext, Model};
use super::pool::{Pool, SynthCache, pool};
use super::replicates;
use crate::error::Result;
use crate::rng::streams::{RUN_WIDE_REPLICATE, purpose, stream_id};
use crate::trainers::Engine;

/// The columns every row starts with, before the model's.
pub const POOL_COLUMNS: [&str; 5] = [
    "generation",
    "replicate",
    "pool_size",
    "pool_real_fraction",
    "pool_composition",
];

/// Where a run keeps its results: its checkpoint and state, or nowhere (in memory).
pub(super) enum Keep<'a> {
    /// A run directory.
    Dir(&'a mut Checkpoint, &'a mut RunState),
    /// Nothing but the returned models.
    Memory,
}

/// Run generations `done ..= cfg.generations` of model `M` (`done` from the checkpoint, 0 in
/// memory) and return every generation's models per replicate (`[R][generations + 1]`).
/// `progress(generations_done, total)` after each generation.
pub(super) fn generations<M: Model>(
    backend: &Engine,
    cpu: &Engine,
    cfg: &RunConfig,
    real: &mut RealData,
    mut keep: Keep<'_>,
    jobs: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Vec<M>>> {
    let judge = if matches!(cfg.policy, Policy::Verify(Verifier::HeldOut, _)) {
        let seed = cfg.seed ^ stream_id(purpose::EM_INIT, RUN_WIDE_REPLICATE, 0);
        Some(M::held_out_verifier(cpu, cfg, real, seed)?)
    } else {
        None
    };
    let mut history: Vec<Vec<M>> = match &mut keep {
        Keep::Dir(ck, state) => M::load_history(ck, state, real)?,
        Keep::Memory => vec![Vec::new(); cfg.replicates],
    };
    let total = cfg.generations + 1;
    let done = history[0].len();
    if let Keep::Dir(ck, _) = &keep {
        ck.verify_rows(done, cfg.replicates)?;
    }
    if done > 0 {
        M::first_fit(real, &history[0][0]);
    }
    let mut header: Vec<String> = POOL_COLUMNS.iter().map(|c| c.to_string()).collect();
    header.extend(M::columns(cfg, real.train[0].cols));
    let header = header.join(",");
    if let Keep::Dir(ck, _) = &mut keep {
        ck.reference = M::reference(cfg, real)?;
    }
    progress(done, total);
    let cache = SynthCache::new(cfg.replicates);
    let mut setup: Option<M::Setup> = None;
    for n in done..total {
        let t_fit = std::time::Instant::now();
        let fits: Vec<(Pool, M)> = replicates::for_each(cfg.replicates, jobs, |r| {
            let h = &history[r];
            let pool = pool(backend, cfg, real, h, judge.as_ref(), &cache, r, n)?;
            let seed = cfg.seed ^ stream_id(purpose::EM_INIT, cfg.replicate_index(r), n);
            let m = M::fit(backend, cfg, &pool.x, seed, h.first())?;
            Ok((pool, m))
        })?;
        if n == 0 {
            M::first_fit(real, &fits[0].1);
        }
        if let Keep::Dir(ck, state) = &mut keep {
            ck.seconds.fit += t_fit.elapsed().as_secs_f64();
            let t_metrics = std::time::Instant::now();
            if setup.is_none() {
                setup = Some(M::setup(cfg, real, cpu)?);
            }
            let setup = setup.as_ref().expect("built above");
            let dir = ck.dir().to_path_buf();
            let real = &*real;
            let rows = replicates::for_each(cfg.replicates, jobs, |r| {
                let (pool, m) = &fits[r];
                let ctx = MetricContext {
                    backend,
                    cpu,
                    cfg,
                    real,
                    dir: &dir,
                    replicate: r,
                    generation: n,
                    pool,
                };
                let mut v = vec![
                    n.to_string(),
                    cfg.replicate_index(r).to_string(),
                    pool.x.rows.to_string(),
                    pool.real_fraction().to_string(),
                    pool.composition_field(),
                ];
                v.extend(m.metrics(&ctx, setup)?);
                Ok(v.join(","))
            })?;
            ck.seconds.metrics += t_metrics.elapsed().as_secs_f64();
            let t_save = std::time::Instant::now();
            let models: Vec<&M> = fits.iter().map(|(_, m)| m).collect();
            M::save_generation(ck, state, n, &models)?;
            ck.end_generation(state, n, &header, &rows, n + 1 == total)?;
            ck.seconds.checkpoint += t_save.elapsed().as_secs_f64();
        }
        for (h, (_, m)) in history.iter_mut().zip(fits) {
            h.push(m);
        }
        progress(n + 1, total);
    }
    Ok(history)
}
