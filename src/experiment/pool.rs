//! A generation's training pool: what a [`Policy`] mixes from real data and the earlier
//! generations' samples, and where every point came from.

use super::config::{Policy, RunConfig, Truth, Verifier};
use super::data::{RealData, draw_rows};
use super::verifier::VerifyStats;
use crate::error::{Error, Result};
use crate::io::Matrix;
use crate::rng::StreamKey;
use crate::rng::streams::{purpose, stream_id};
use crate::trainers::Engine;

/// What a training pool needs of a fitted model: samples, and a plausibility score per point for
/// the `verify` policies.
pub trait Generator {
    /// `count` samples (rows) from Philox stream `key`, computed on `backend`.
    fn generate(&self, backend: &Engine, count: usize, key: StreamKey) -> Result<Matrix>;
    /// A score per row of `x`, higher = more plausible (a log-likelihood or a bound on it).
    fn score(&self, backend: &Engine, x: &Matrix) -> Result<Vec<f64>>;

    /// [`Generator::generate`] with the verification counts of a model whose sets are judged
    /// as they are drawn (the task model: its verifier keeps some answers; it may return fewer
    /// than `count` rows). Default: `generate`, no counts.
    fn generate_verified(
        &self,
        backend: &Engine,
        count: usize,
        key: StreamKey,
    ) -> Result<(Matrix, Option<VerifyStats>)> {
        Ok((self.generate(backend, count, key)?, None))
    }

    /// `count` rows of new real data from Philox stream `key`, for a model that can make its
    /// own (the task model poses fresh problems with their true answers); `None`: `fresh:F`
    /// draws from the real data instead.
    fn fresh_real(&self, _count: usize, _key: StreamKey) -> Option<Result<Matrix>> {
        None
    }
}

/// A training pool and its provenance.
pub struct Pool {
    /// The points.
    pub x: Matrix,
    /// `(origin, count)` in pool order: `real` (the real training data), `fresh` (new real
    /// data), `gJ` (sampled from generation J's model).
    pub composition: Vec<(String, usize)>,
    /// How the verifier judged the newest synthetic set (generation `n − 1`'s answers), for a
    /// model that verifies as it generates ([`Generator::generate_verified`]).
    pub verify: Option<VerifyStats>,
}

impl Pool {
    /// Fraction of real (`real` or `fresh`) points.
    pub fn real_fraction(&self) -> f64 {
        let real: usize = self
            .composition
            .iter()
            .filter(|(o, _)| o == "real" || o == "fresh")
            .map(|(_, c)| c)
            .sum();
        real as f64 / self.x.rows as f64
    }

    /// The composition as `origin:count|origin:count…` (one CSV field), with every run of two
    /// or more consecutive generations written as one entry `gA..gB:total`, so the field stays
    /// constant-size however many generations `accumulate` pools (`real:100|g0..g998:99900`).
    /// The full composition is derivable: under `accumulate` generation J's share is the
    /// difference of consecutive rows' totals (its count in the row of generation J + 1).
    pub fn composition_field(&self) -> String {
        let generation = |o: &str| o.strip_prefix('g').and_then(|j| j.parse::<usize>().ok());
        let mut parts: Vec<String> = Vec::new();
        let mut i = 0;
        while i < self.composition.len() {
            let (origin, count) = &self.composition[i];
            let mut end = i;
            let mut total = *count;
            if let Some(first) = generation(origin) {
                while end + 1 < self.composition.len()
                    && generation(&self.composition[end + 1].0) == Some(first + (end + 1 - i))
                {
                    end += 1;
                    total += self.composition[end].1;
                }
                if end > i {
                    parts.push(format!("g{first}..g{}:{total}", first + (end - i)));
                    i = end + 1;
                    continue;
                }
            }
            parts.push(format!("{origin}:{count}"));
            i += 1;
        }
        parts.join("|")
    }
}

/// Each replicate's synthetic sets drawn so far (`[r][j − 1]`: the samples generation `j` drew
/// from generation `j − 1`'s model), kept so `accumulate` does not draw every earlier set again
/// each generation. A set is a pure function of its model and Philox stream, so a resumed run,
/// whose cache starts empty, draws exactly the same.
pub(crate) struct SynthCache(Vec<std::sync::Mutex<Vec<Matrix>>>);

impl SynthCache {
    /// An empty cache for `replicates` chains.
    pub(crate) fn new(replicates: usize) -> Self {
        Self((0..replicates).map(|_| Default::default()).collect())
    }

    /// Set `j` of replicate `r` from the cache, or drawn by `draw` (and kept when it is the
    /// next one in order).
    pub(super) fn get(
        &self,
        r: usize,
        j: usize,
        draw: impl FnOnce() -> Result<Matrix>,
    ) -> Result<Matrix> {
        let mut sets = self.0[r].lock().unwrap_or_else(|e| e.into_inner());
        if let Some(x) = sets.get(j - 1) {
            return Ok(x.clone());
        }
        let x = draw()?;
        if sets.len() == j - 1 {
            sets.push(x.clone());
        }
        Ok(x)
    }
}

/// The training pool of generation `n` of replicate `r`, given the models of its earlier
/// generations (`history`), the `verify:heldout` verifier and the synthetic sets drawn so far.
#[allow(clippy::too_many_arguments)]
pub(super) fn pool<G: Generator>(
    backend: &Engine,
    cfg: &RunConfig,
    real: &RealData,
    history: &[G],
    held_out_judge: Option<&G>,
    cache: &SynthCache,
    r: usize,
    n: usize,
) -> Result<Pool> {
    let train = &real.train[r];
    let d = train.cols;
    if n == 0 {
        return Ok(Pool {
            x: train.clone(),
            composition: vec![("real".into(), train.rows)],
            verify: None,
        });
    }
    let g = |j: usize| format!("g{}", j - 1);
    let m = cfg.samples;
    let key = |j: usize| {
        StreamKey::new(
            cfg.seed,
            stream_id(purpose::SYNTHETIC, cfg.replicate_index(r), j),
        )
    };
    let synth = |j: usize, count: usize| history[j - 1].generate(backend, count, key(j));
    // The newest set, with its verification counts.
    let newest = |count: usize| history[n - 1].generate_verified(backend, count, key(n));
    let concat = |parts: Vec<Matrix>| -> Result<Matrix> {
        let rows = parts.iter().map(|p| p.rows).sum();
        Matrix::new(rows, d, parts.into_iter().flat_map(|p| p.data).collect())
    };
    match cfg.policy {
        Policy::Replace => {
            let (x, verify) = newest(m)?;
            Ok(Pool {
                composition: vec![(g(n), x.rows)],
                x,
                verify,
            })
        }
        Policy::Accumulate => {
            let mut parts = vec![train.clone()];
            let mut composition = vec![("real".to_string(), train.rows)];
            let mut verify = None;
            for j in 1..=n {
                let set = if j == n {
                    // The newest set is drawn now (with its counts); the earlier ones come
                    // from the cache, or are drawn again identically after a resume.
                    cache.get(r, j, || {
                        let (x, v) = newest(m)?;
                        verify = v;
                        Ok(x)
                    })?
                } else {
                    cache.get(r, j, || synth(j, m))?
                };
                composition.push((g(j), set.rows));
                parts.push(set);
            }
            Ok(Pool {
                x: concat(parts)?,
                composition,
                verify,
            })
        }
        Policy::Mix(f) => {
            let nr = (f * m as f64).round() as usize;
            let key = StreamKey::new(cfg.seed, stream_id(purpose::MIX, cfg.replicate_index(r), n));
            let (s, verify) = newest(m - nr)?;
            let ns = s.rows;
            let x = concat(vec![draw_rows(train, nr, key)?, s])?;
            Ok(Pool {
                x,
                composition: vec![("real".into(), nr), (g(n), ns)],
                verify,
            })
        }
        Policy::Verify(verifier, _) => {
            let candidates = synth(n, cfg.policy.verify_candidates(m)?)?;
            let judge = match verifier {
                Verifier::Gen0 => &history[0],
                Verifier::HeldOut => held_out_judge.ok_or_else(|| {
                    Error::InvalidArgument("verify:heldout needs the held-out model".into())
                })?,
            };
            let score = judge.score(backend, &candidates)?;
            let mut order: Vec<usize> = (0..candidates.rows).collect();
            order.sort_by(|&a, &b| score[b].total_cmp(&score[a]).then(a.cmp(&b)));
            order.truncate(m);
            order.sort_unstable();
            let data = order
                .iter()
                .flat_map(|&i| candidates.row(i).to_vec())
                .collect();
            Ok(Pool {
                x: Matrix::new(m, d, data)?,
                composition: vec![(g(n), m)],
                verify: None,
            })
        }
        Policy::Fresh(f) => {
            let nr = (f * m as f64).round() as usize;
            let fresh_key = StreamKey::new(
                cfg.seed,
                stream_id(purpose::REAL, cfg.replicate_index(r), n),
            );
            let fresh = match (
                history[n - 1].fresh_real(nr, fresh_key),
                &cfg.truth,
                &real.truth,
            ) {
                // A model that makes its own real data (the task model's new real pairs).
                (Some(own), _, _) => own?,
                (None, Truth::Builtin(_), Some(t)) => {
                    crate::models::gmm::sample(backend, t, nr, fresh_key)?
                }
                // A file has no generator: draw rows (with replacement) as new real data.
                _ => draw_rows(real.all_train.as_ref().unwrap_or(train), nr, fresh_key)?,
            };
            let (s, verify) = newest(m - nr)?;
            let ns = s.rows;
            let x = concat(vec![fresh, s])?;
            Ok(Pool {
                x,
                composition: vec![("fresh".into(), nr), (g(n), ns)],
                verify,
            })
        }
    }
}
