//! The real data of a run: what generation 0 fits, what `mix`/`fresh` draw from, what metrics
//! compare with.

use std::path::Path;

use super::config::{RunConfig, Truth, builtin_truth};
use crate::error::{Error, Result};
use crate::io::Matrix;
use crate::ops::gmm::GmmParams;
use crate::rng::streams::{purpose, stream_id};
use crate::rng::{StreamKey, unit_f64};
use crate::trainers::Engine;

/// What the driver needs besides the backend: the real data and what metrics compare to.
pub struct RealData {
    /// Real points available to generation 0 and to mixing, per replicate: `samples` draws of a
    /// built-in truth from each replicate's own stream (independent chains), or the training
    /// rows of a file (shared).
    pub train: Vec<Matrix>,
    /// Held-out real points for the held-out log-likelihood.
    pub held_out: Matrix,
    /// The reference density: the built-in truth, or for a file the generation-0 fit.
    pub truth: Option<GmmParams>,
    /// The `verify:heldout` verifier: the model fitted (cpu64) to `held_out`.
    pub held_out_model: Option<GmmParams>,
    /// A data-file truth: every training row, where `fresh:F` draws new real data from (with
    /// `real_rows` the replicates' own real sets are subsets of it).
    pub all_train: Option<Matrix>,
}

impl RealData {
    /// The last `count` held-out rows (all of them when there are fewer): what a trained
    /// model's `verify:heldout` verifier learns from.
    pub fn held_out_tail(&self, count: usize) -> Result<Matrix> {
        let ho = &self.held_out;
        let k = count.min(ho.rows);
        Matrix::new(k, ho.cols, ho.data[(ho.rows - k) * ho.cols..].to_vec())
    }
}

/// The real data of a run whose truth is a built-in mixture or a table file (every model but the
/// LM, which reads text): per replicate `samples` draws of the truth from its own `REAL` stream,
/// or a Philox 80/20 split of the file's rows (`validate` rejects values the model cannot take
/// before anything else is done with them).
pub fn load_rows(
    cfg: &RunConfig,
    cpu: &Engine,
    validate: &dyn Fn(&Path, &Matrix) -> Result<()>,
) -> Result<RealData> {
    match &cfg.truth {
        Truth::Builtin(name) => {
            let t = builtin_truth(name)?;
            let train = (0..cfg.replicates)
                .map(|r| {
                    crate::models::gmm::sample(
                        cpu,
                        &t,
                        cfg.samples,
                        StreamKey::new(
                            cfg.seed,
                            stream_id(purpose::REAL, cfg.replicate_index(r), 0),
                        ),
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(RealData {
                train,
                all_train: None,
                held_out_model: None,
                held_out: crate::models::gmm::sample(
                    cpu,
                    &t,
                    10_000,
                    StreamKey::new(cfg.seed, stream_id(purpose::HELD_OUT, 0, 0)),
                )?,
                truth: Some(t),
            })
        }
        Truth::File(path) => {
            let m = crate::io::read_table(path)?;
            validate(path, &m)?;
            let shape = super::config::DataShape {
                rows: cfg.real_rows.unwrap_or(m.rows - m.rows / 5),
                shared_rows: m.rows,
                d: m.cols,
            };
            super::config::check_memory(cfg, Some(shape))?;
            // Deterministic 80/20 split by a Philox uniform per row.
            let key = StreamKey::new(cfg.seed, stream_id(purpose::HELD_OUT, 0, 0));
            let (mut tr, mut ho) = (Vec::new(), Vec::new());
            for i in 0..m.rows {
                if unit_f64(key.u32_at(i as u64)) < 0.2 {
                    &mut ho
                } else {
                    &mut tr
                }
                .extend_from_slice(m.row(i));
            }
            let d = m.cols;
            if tr.len() < d || ho.len() < d {
                return Err(Error::Data(format!(
                    "{}: too few rows to split 80/20",
                    path.display()
                )));
            }
            let all = Matrix::new(tr.len() / d, d, tr)?;
            let train = match cfg.real_rows {
                None => vec![all.clone(); cfg.replicates],
                Some(k) if k == 0 || k > all.rows => {
                    return Err(Error::InvalidArgument(format!(
                        "--real-rows {k}: the training split of {} has {} rows",
                        path.display(),
                        all.rows
                    )));
                }
                Some(k) => (0..cfg.replicates)
                    .map(|r| {
                        let key = StreamKey::new(
                            cfg.seed,
                            stream_id(purpose::REAL, cfg.replicate_index(r), 0),
                        );
                        let mut idx = crate::models::vae::train::permutation(all.rows, key);
                        idx.truncate(k);
                        idx.sort_unstable();
                        let data = idx.iter().flat_map(|&i| all.row(i).to_vec()).collect();
                        Matrix::new(k, d, data)
                    })
                    .collect::<Result<Vec<_>>>()?,
            };
            Ok(RealData {
                held_out_model: None,
                train,
                all_train: Some(all),
                held_out: Matrix::new(ho.len() / d, d, ho)?,
                truth: None,
            })
        }
    }
}

/// Row `⌊u·rows⌋` of `rows` (at most `rows − 1`) for the uniform `u` of word `i` of stream
/// `key`: how [`draw_rows`] and the LM trainers' batches pick rows (with replacement).
pub(super) fn pick_row(key: StreamKey, i: usize, rows: usize) -> usize {
    ((unit_f64(key.u32_at(i as u64)) * rows as f64) as usize).min(rows - 1)
}

/// `count` rows of `x` drawn uniformly with replacement by Philox stream `key`.
pub(super) fn draw_rows(x: &Matrix, count: usize, key: StreamKey) -> Result<Matrix> {
    let mut pick = Vec::with_capacity(count * x.cols);
    for i in 0..count {
        pick.extend_from_slice(x.row(pick_row(key, i, x.rows)));
    }
    Matrix::new(count, x.cols, pick)
}
