//! The checkpoint of models stored as flat f64 weights (the VAE and the LM): too large for
//! `state.json`, so each generation's are written atomically to `weights/r{R}-g{N}.f64` (flat
//! little-endian f64) before the state that names them; a resumed run reloads every earlier
//! generation and rebuilds its samples exactly.

use super::checkpoint::{Checkpoint, RunState, load_weights, save_weights};
use super::config::RunConfig;
use super::data::RealData;
use crate::error::{Error, Result};

/// A model checkpointed as flat f64 weights (the VAE and the LM): too large for `state.json`, so
/// each generation's are written to `weights/r{R}-g{N}.f64` before the state that names them.
pub trait Weights: Sized {
    /// The flat weights.
    fn weights(&self) -> &[f64];
    /// The model of this run with weights `params` (from a checkpoint).
    fn from_weights(cfg: &RunConfig, real: &RealData, params: Vec<f64>) -> Result<Self>;
}

/// Every completed generation's models of a weights-checkpointed run, per replicate, reloaded
/// from the files `state.model_files` names.
pub fn load_weight_history<M: Weights>(
    ck: &Checkpoint,
    state: &mut RunState,
    real: &RealData,
) -> Result<Vec<Vec<M>>> {
    let cfg = &state.config;
    let dir = ck.dir();
    std::fs::create_dir_all(dir.join("weights"))
        .map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
    if state.model_files.iter().all(|f| f.is_empty()) {
        state.model_files = vec![Vec::new(); cfg.replicates];
    }
    let done = state.model_files[0].len();
    if state.model_files.len() != cfg.replicates
        || state.model_files.iter().any(|f| f.len() != done)
    {
        return Err(Error::Data(format!(
            "{}: model_files does not hold the same number of generations for each of the \
             run's {} replicates",
            dir.join(super::checkpoint::STATE_FILE).display(),
            cfg.replicates
        )));
    }
    state
        .model_files
        .iter()
        .map(|files| {
            files
                .iter()
                .map(|f| {
                    let path = dir.join(f);
                    M::from_weights(cfg, real, load_weights(&path)?)
                        .map_err(|e| Error::Data(format!("{}: {e}", path.display())))
                })
                .collect()
        })
        .collect()
}

/// Write generation `n`'s weights (one file per replicate) and name them in `state`.
pub fn save_weight_generation<M: Weights>(
    ck: &Checkpoint,
    state: &mut RunState,
    n: usize,
    models: &[&M],
) -> Result<()> {
    for (r, m) in models.iter().enumerate() {
        let file = format!("weights/r{r}-g{n}.f64");
        save_weights(m.weights(), &ck.dir().join(&file))?;
        state.model_files[r].push(file);
    }
    Ok(())
}
