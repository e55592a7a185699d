//! Checkpoint and resume. After every generation the loop appends that generation's rows to
//! `metrics.csv` and its models to their store (the mixtures' parameters as one line of
//! `params.jsonl`; the VAE's and the LM's weights as `weights/r{R}-g{N}.f64` files), each synced
//! to disk, then writes `state.json` atomically: the configuration and what the files held at that
//! point. `collapse run --resume DIR` truncates the files to the recorded lengths (dropping a
//! generation whose checkpoint never landed) and continues; the finished `metrics.csv` is
//! byte-identical to an uninterrupted run's.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::config::RunConfig;
use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::ops::gmm::GmmParams;

/// Persistent run state (`state.json`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct RunState {
    /// The configuration.
    pub config: RunConfig,
    /// Fitted parameters per replicate, per completed generation. Saved one generation per
    /// line in `params.jsonl`, not in `state.json` (rewriting the whole history at every
    /// checkpoint made long runs quadratic); a `state.json` that still holds it (written before
    /// `params.jsonl` existed) resumes and is migrated.
    #[serde(default, skip_serializing)]
    pub history: Vec<Vec<GmmParams>>,
    /// Bytes of `metrics.csv` written when this state was saved.
    pub metrics_bytes: u64,
    /// Bytes of `params.jsonl` written when this state was saved (gaussian and gmm runs).
    #[serde(default)]
    pub params_bytes: u64,
    /// VAE and LM runs: the weight files (relative to the run directory) per replicate, per
    /// completed generation; `history` stays empty.
    #[serde(default, alias = "vae_weights")]
    pub model_files: Vec<Vec<String>>,
}

/// The mixtures' fitted parameters, one generation per line (see [`RunState::history`]).
pub const PARAMS_FILE: &str = "params.jsonl";

/// `metrics.csv` and `state.json` of a run directory: rows are appended and synced, then the
/// state naming the file's new length is written atomically.
pub struct Checkpoint {
    dir: PathBuf,
    metrics: std::io::BufWriter<std::fs::File>,
    /// Reference values of the real data for `summary.json` (e.g. the VAE's diversity of real
    /// images), set by the model's loop.
    pub reference: Option<serde_json::Value>,
}

impl Checkpoint {
    /// Open `dir/metrics.csv`, truncated to `bytes` (drops rows of a generation whose checkpoint
    /// never landed).
    pub(super) fn open(dir: &Path, bytes: u64) -> Result<Self> {
        let io = |e: std::io::Error| Error::Io(format!("{}: {e}", dir.display()));
        let mf = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("metrics.csv"))
            .map_err(io)?;
        mf.set_len(bytes).map_err(io)?;
        let mut metrics = std::io::BufWriter::new(mf);
        use std::io::Seek;
        metrics.seek(std::io::SeekFrom::End(0)).map_err(io)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            metrics,
            reference: None,
        })
    }

    /// The run directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reload the mixtures' fitted parameters from `params.jsonl` (one line per generation: the
    /// replicates' parameters as a JSON array) into `state.history`, dropping bytes past
    /// `state.params_bytes` (a generation whose checkpoint never landed). A state that still
    /// holds its history (the format before `params.jsonl`) writes the file from it instead.
    pub(super) fn load_params(&mut self, state: &mut RunState) -> Result<()> {
        let path = self.dir.join(PARAMS_FILE);
        let io = |e: std::io::Error| Error::Io(format!("{}: {e}", path.display()));
        let replicates = state.config.replicates;
        if state.history.len() != replicates {
            state.history.resize(replicates, Vec::new());
        }
        if state.history.iter().any(|h| !h.is_empty()) {
            if state.params_bytes == 0 {
                let f = std::fs::File::create(&path).map_err(io)?;
                let mut w = std::io::BufWriter::new(f);
                for n in 0..state.history[0].len() {
                    let generation: Vec<&GmmParams> = state.history.iter().map(|h| &h[n]).collect();
                    let line =
                        serde_json::to_string(&generation).map_err(|e| Error::Io(e.to_string()))?;
                    writeln!(w, "{line}").map_err(io)?;
                }
                w.flush().map_err(io)?;
                w.get_ref().sync_all().map_err(io)?;
                state.params_bytes = w.get_ref().metadata().map_err(io)?.len();
            }
            return Ok(());
        }
        if state.params_bytes == 0 {
            return Ok(());
        }
        let bytes = std::fs::read(&path).map_err(io)?;
        let len = state.params_bytes as usize;
        if bytes.len() < len {
            return Err(Error::Data(format!(
                "{}: {} bytes, the checkpoint names {len}",
                path.display(),
                bytes.len()
            )));
        }
        let text = std::str::from_utf8(&bytes[..len])
            .map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
        for (i, line) in text.lines().enumerate() {
            let generation: Vec<GmmParams> = serde_json::from_str(line)
                .map_err(|e| Error::Data(format!("{} line {}: {e}", path.display(), i + 1)))?;
            if generation.len() != replicates {
                return Err(Error::Data(format!(
                    "{} line {}: {} replicates, the run has {replicates}",
                    path.display(),
                    i + 1,
                    generation.len()
                )));
            }
            for (h, p) in state.history.iter_mut().zip(generation) {
                h.push(p);
            }
        }
        Ok(())
    }

    /// Append one generation's fitted parameters (one per replicate) to `params.jsonl`,
    /// truncated first to `state.params_bytes`, sync, and record the new length in `state`.
    pub(super) fn append_params(
        &mut self,
        state: &mut RunState,
        fits: &[&GmmParams],
    ) -> Result<()> {
        let path = self.dir.join(PARAMS_FILE);
        let io = |e: std::io::Error| Error::Io(format!("{}: {e}", path.display()));
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        f.set_len(state.params_bytes).map_err(io)?;
        use std::io::Seek;
        f.seek(std::io::SeekFrom::End(0)).map_err(io)?;
        let line = serde_json::to_string(fits).map_err(|e| Error::Io(e.to_string()))?;
        writeln!(f, "{line}").map_err(io)?;
        f.sync_all().map_err(io)?;
        state.params_bytes = f.metadata().map_err(io)?.len();
        Ok(())
    }

    /// Append generation `n`'s rows (after `header` when the file is empty), sync, and save
    /// `state` (which already holds generation `n`) atomically.
    pub(super) fn commit(
        &mut self,
        state: &mut RunState,
        n: usize,
        header: &str,
        rows: &[String],
    ) -> Result<()> {
        let io = |e: std::io::Error| Error::Io(format!("{}: {e}", self.dir.display()));
        let mf = &mut self.metrics;
        if state.metrics_bytes == 0 {
            writeln!(mf, "{header}").map_err(io)?;
        }
        for row in rows {
            writeln!(mf, "{row}").map_err(io)?;
        }
        mf.flush().map_err(io)?;
        mf.get_ref().sync_all().map_err(io)?;
        state.metrics_bytes = mf.get_ref().metadata().map_err(io)?.len();
        if std::env::var("COLLAPSE_TEST_ABORT_BEFORE_CHECKPOINT").is_ok_and(|v| v == n.to_string())
        {
            // Test hook: die like SIGKILL after writing metrics rows but before the checkpoint.
            std::process::abort();
        }
        let json = serde_json::to_vec(state).map_err(|e| Error::Io(e.to_string()))?;
        write_atomic(&self.dir.join("state.json"), &json)
    }
}

/// Write flat weights to `path` atomically (little-endian f64).
pub(super) fn save_weights(params: &[f64], path: &Path) -> Result<()> {
    let bytes: Vec<u8> = params.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_atomic(path, &bytes)
}

/// Read flat weights written by [`save_weights`].
pub(super) fn load_weights(path: &Path) -> Result<Vec<f64>> {
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
