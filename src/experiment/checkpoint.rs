//! Checkpoint and resume.
//!
//! A run directory holds `metrics.csv` (rows appended per generation), the models' store (the
//! mixtures' parameters as one line per generation of `params.jsonl`; the VAE's and the LM's
//! weights as `weights/r{R}-g{N}.f64` files) and `state.json`, the checkpoint: the configuration
//! and what the files held when it was written (length and CRC-32 of `metrics.csv` and
//! `params.jsonl`, the weight files).
//!
//! **Cadence.** Rows and parameters of finished generations wait in memory and are written in
//! one commit (append, sync, then `state.json` atomically) after generation 0, whenever
//! [`RunOptions::checkpoint_every`](super::RunOptions) has passed since the last commit, and at
//! the end: a fast run pays a few syncs instead of three per generation, and a killed run loses
//! at most that interval of work, which the resume recomputes (every generation is a pure
//! function of the seed and the earlier generations, so the bytes are the same).
//!
//! **Resume** (`collapse run --resume DIR`) verifies every file it appends to against the
//! checkpoint before any work: it must exist, be at least as long as recorded, and its recorded
//! prefix must have the recorded CRC-32 and row count. Bytes past the recorded length (the torn
//! tail of a commit the kill interrupted) are cut; anything else is refused with the file's name,
//! and nothing is ever padded.

use std::io::{Read, Seek, Write};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use super::config::RunConfig;
use super::lock::RunLock;
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
    /// CRC-32 (IEEE) of those bytes; absent in states written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_crc32: Option<u32>,
    /// Bytes of `params.jsonl` written when this state was saved (gaussian and gmm runs).
    #[serde(default)]
    pub params_bytes: u64,
    /// CRC-32 (IEEE) of those bytes; absent in states written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params_crc32: Option<u32>,
    /// VAE and LM runs: the weight files (relative to the run directory) per replicate, per
    /// completed generation; `history` stays empty.
    #[serde(default, alias = "vae_weights")]
    pub model_files: Vec<Vec<String>>,
}

/// The mixtures' fitted parameters, one generation per line (see [`RunState::history`]).
pub const PARAMS_FILE: &str = "params.jsonl";
/// The checkpoint's file name.
pub const STATE_FILE: &str = "state.json";
/// The metrics' file name.
pub const METRICS_FILE: &str = "metrics.csv";

impl RunState {
    /// Read `dir/state.json`; errors name the file.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(STATE_FILE);
        let bytes = std::fs::read(&path).map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                " (nothing to resume: not a run directory)"
            } else {
                ""
            };
            Error::Io(format!("{}: {e}{hint}", path.display()))
        })?;
        let state: Self = serde_json::from_slice(&bytes).map_err(|e| {
            Error::Data(format!(
                "{}: {e} (the checkpoint is damaged; it cannot be resumed)",
                path.display()
            ))
        })?;
        state.check_model_files(dir)?;
        Ok(state)
    }

    /// Every weight file the state names must be a plain relative path inside the run
    /// directory (no `..`, no absolute path), so a damaged or edited `state.json` cannot make a
    /// resume read or overwrite files elsewhere.
    fn check_model_files(&self, dir: &Path) -> Result<()> {
        for f in self.model_files.iter().flatten() {
            let p = Path::new(f);
            if p.as_os_str().is_empty()
                || !p.components().all(|c| matches!(c, Component::Normal(_)))
            {
                return Err(Error::Data(format!(
                    "{}: model file {f:?} is not a path inside the run directory",
                    dir.join(STATE_FILE).display()
                )));
            }
        }
        Ok(())
    }
}

/// CRC-32 of `bytes` continued from `crc`.
fn crc_continue(crc: u32, bytes: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new_with_initial(crc);
    h.update(bytes);
    h.finalize()
}

/// An appended file of a run (`metrics.csv` or `params.jsonl`): verified against the
/// checkpoint's length and CRC, then positioned at that length.
struct Appended {
    path: PathBuf,
    file: std::fs::File,
    /// Bytes the file holds (all committed or written by this process).
    len: u64,
    /// CRC-32 of those bytes.
    crc: u32,
    /// Lines of the checkpointed prefix, counted when the file was verified.
    committed_lines: usize,
}

impl Appended {
    /// Open `path`, verified against the checkpointed `bytes` and `crc` (`None`: a state from
    /// before CRCs were recorded), and cut any torn tail past `bytes`; also returns the
    /// verified prefix (the bytes it read for the CRC).
    fn open(path: PathBuf, bytes: u64, crc: Option<u32>) -> Result<(Self, Vec<u8>)> {
        let io = |e: std::io::Error| Error::Io(format!("{}: {e}", path.display()));
        let exists = path.exists();
        if bytes > 0 && !exists {
            return Err(Error::Data(format!(
                "{}: missing, but the checkpoint ({STATE_FILE}) names {bytes} bytes of it; \
                 restore the file or start a new run",
                path.display()
            )));
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io)?;
        let on_disk = file.metadata().map_err(io)?.len();
        if on_disk < bytes {
            return Err(Error::Data(format!(
                "{}: {on_disk} bytes, but the checkpoint ({STATE_FILE}) names {bytes}: the file \
                 was truncated or replaced; restore it or start a new run",
                path.display()
            )));
        }
        let mut prefix = Vec::new();
        (&mut file)
            .take(bytes)
            .read_to_end(&mut prefix)
            .map_err(io)?;
        let got = crc_continue(0, &prefix);
        match crc {
            Some(want) if want != got => {
                return Err(Error::Data(format!(
                    "{}: its first {bytes} bytes differ from what the checkpoint \
                     ({STATE_FILE}) recorded (CRC-32 {got:08x}, recorded {want:08x}): the file \
                     was edited or damaged; restore it or start a new run",
                    path.display()
                )));
            }
            _ => {}
        }
        if bytes > 0 && prefix.last() != Some(&b'\n') {
            return Err(Error::Data(format!(
                "{}: the checkpointed {bytes} bytes do not end a line: the file was edited or \
                 damaged",
                path.display()
            )));
        }
        if on_disk > bytes {
            // The torn tail of a commit the run did not finish: rows the resume recomputes.
            file.set_len(bytes).map_err(io)?;
        }
        file.seek(std::io::SeekFrom::Start(bytes)).map_err(io)?;
        let committed_lines = prefix.iter().filter(|&&b| b == b'\n').count();
        Ok((
            Self {
                path,
                file,
                len: bytes,
                crc: got,
                committed_lines,
            },
            prefix,
        ))
    }

    /// Append `bytes` and sync.
    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let io = |e: std::io::Error| Error::Io(format!("{}: {e}", self.path.display()));
        self.file.write_all(bytes).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.len += bytes.len() as u64;
        self.crc = crc_continue(self.crc, bytes);
        Ok(())
    }
}

/// A run directory being written: its lock, `metrics.csv`, `params.jsonl` and `state.json`.
/// Finished generations wait in memory until [`Checkpoint::commit`] writes them (see the module
/// doc for the cadence).
pub struct Checkpoint {
    dir: PathBuf,
    _lock: RunLock,
    metrics: Appended,
    params: Option<Appended>,
    /// The verified prefix of `params.jsonl`, until [`Checkpoint::load_params`] parses it.
    params_committed: Vec<u8>,
    /// Rows (with their newlines) not yet written.
    pending_rows: String,
    /// `params.jsonl` lines (with their newlines) not yet written.
    pending_params: String,
    /// Whether any generation waits to be committed.
    dirty: bool,
    last_commit: Option<Instant>,
    every: Duration,
    /// Reference values of the real data for `summary.json` (e.g. the VAE's diversity of real
    /// images), set by the model's loop.
    pub reference: Option<serde_json::Value>,
    /// Where this process's time went so far.
    pub seconds: PhaseSeconds,
}

/// Wall-clock seconds a run (this process's part of it) spent in each phase.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PhaseSeconds {
    /// Drawing the pools and fitting the models (the trajectory itself).
    pub fit: f64,
    /// Computing the metrics rows.
    pub metrics: f64,
    /// Writing and syncing rows, models and `state.json`.
    pub checkpoint: f64,
    /// Number of commits (each: syncs of the appended files, then `state.json`).
    pub commits: usize,
}

impl Checkpoint {
    /// Open the run directory `dir` (already locked by `lock`) at the lengths `state` records,
    /// verifying `metrics.csv` and `params.jsonl` against them (see the module doc), and
    /// removing temporary files a killed writer left. Commits at most every `every` (and after
    /// generation 0 and at the end).
    pub(super) fn open(
        dir: &Path,
        lock: RunLock,
        state: &RunState,
        every: Duration,
    ) -> Result<Self> {
        remove_stale_temporaries(dir)?;
        remove_stale_temporaries(&dir.join("weights"))?;
        let (metrics, _) = Appended::open(
            dir.join(METRICS_FILE),
            state.metrics_bytes,
            state.metrics_crc32,
        )?;
        let params_path = dir.join(PARAMS_FILE);
        let (params, params_committed) = if state.params_bytes > 0 || params_path.exists() {
            let (p, prefix) = Appended::open(params_path, state.params_bytes, state.params_crc32)?;
            (Some(p), prefix)
        } else {
            (None, Vec::new())
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            _lock: lock,
            metrics,
            params,
            params_committed,
            pending_rows: String::new(),
            pending_params: String::new(),
            dirty: false,
            last_commit: None,
            every,
            reference: None,
            seconds: PhaseSeconds::default(),
        })
    }

    /// The run directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Check that `metrics.csv`'s committed rows are those of `done` generations of
    /// `replicates` replicates (plus the header), before any generation is computed.
    pub(super) fn verify_rows(&self, done: usize, replicates: usize) -> Result<()> {
        let lines = self.metrics.committed_lines;
        let want = if done == 0 { 0 } else { 1 + done * replicates };
        if lines != want {
            return Err(Error::Data(format!(
                "{}: {lines} lines, but the checkpoint ({STATE_FILE}) holds {done} generations \
                 of {replicates} replicates ({want} lines with the header): the file and the \
                 checkpoint disagree; restore them or start a new run",
                self.metrics.path.display()
            )));
        }
        Ok(())
    }

    /// Reload the mixtures' fitted parameters from `params.jsonl` (one line per generation: the
    /// replicates' parameters as a JSON array) into `state.history`, up to
    /// `state.params_bytes` (verified when the checkpoint was opened). A state that still holds
    /// its history (the format before `params.jsonl`) writes the file from it instead.
    pub(super) fn load_params(&mut self, state: &mut RunState) -> Result<()> {
        let path = self.dir.join(PARAMS_FILE);
        let replicates = state.config.replicates;
        if state.history.len() != replicates {
            if state.history.iter().any(|h| !h.is_empty()) {
                return Err(Error::Data(format!(
                    "{}: history of {} replicates, the run has {replicates}",
                    self.dir.join(STATE_FILE).display(),
                    state.history.len()
                )));
            }
            state.history = vec![Vec::new(); replicates];
        }
        if state.history.iter().any(|h| !h.is_empty()) {
            let n = state.history[0].len();
            if state.history.iter().any(|h| h.len() != n) {
                return Err(Error::Data(format!(
                    "{}: the replicates' histories differ in length",
                    self.dir.join(STATE_FILE).display()
                )));
            }
            if state.params_bytes == 0 {
                let mut text = String::new();
                for i in 0..n {
                    let generation: Vec<&GmmParams> = state.history.iter().map(|h| &h[i]).collect();
                    text.push_str(&json_line(&generation)?);
                }
                let (mut p, _) = Appended::open(path, 0, None)?;
                p.append(text.as_bytes())?;
                state.params_bytes = p.len;
                state.params_crc32 = Some(p.crc);
                self.params = Some(p);
            }
            return Ok(());
        }
        if state.params_bytes == 0 {
            return Ok(());
        }
        // Verified against the checkpoint's length and CRC when the directory was opened.
        let bytes = std::mem::take(&mut self.params_committed);
        let text = std::str::from_utf8(&bytes)
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

    /// Queue one generation's fitted parameters (one per replicate) for `params.jsonl`.
    pub(super) fn append_params(&mut self, fits: &[&GmmParams]) -> Result<()> {
        let line = json_line(fits)?;
        self.pending_params.push_str(&line);
        Ok(())
    }

    /// Queue generation `n`'s rows (after `header` when the file is empty), and commit when the
    /// cadence says so (generation 0, `last`, or the interval since the last commit has passed).
    /// `state` already holds generation `n`'s models.
    pub(super) fn end_generation(
        &mut self,
        state: &mut RunState,
        n: usize,
        header: &str,
        rows: &[String],
        last: bool,
    ) -> Result<()> {
        if self.metrics.len == 0 && self.pending_rows.is_empty() {
            self.pending_rows.push_str(header);
            self.pending_rows.push('\n');
        }
        for row in rows {
            self.pending_rows.push_str(row);
            self.pending_rows.push('\n');
        }
        self.dirty = true;
        let hook = test_abort_generation() == Some(n);
        let due = self.last_commit.is_none_or(|t| t.elapsed() >= self.every);
        if last || due || hook {
            self.commit(state, hook)?;
        }
        Ok(())
    }

    /// Write every queued generation: `params.jsonl` and `metrics.csv` appended and synced,
    /// then `state.json` atomically naming their new lengths and CRCs. `abort_before_state` is
    /// the test hook: die like SIGKILL between the rows and the state.
    fn commit(&mut self, state: &mut RunState, abort_before_state: bool) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        if !self.pending_params.is_empty() {
            if self.params.is_none() {
                self.params = Some(Appended::open(self.dir.join(PARAMS_FILE), 0, None)?.0);
            }
            let p = self.params.as_mut().expect("opened above");
            p.append(std::mem::take(&mut self.pending_params).as_bytes())?;
            state.params_bytes = p.len;
            state.params_crc32 = Some(p.crc);
        }
        self.metrics
            .append(std::mem::take(&mut self.pending_rows).as_bytes())?;
        state.metrics_bytes = self.metrics.len;
        state.metrics_crc32 = Some(self.metrics.crc);
        if abort_before_state {
            std::process::abort();
        }
        let json = serde_json::to_vec(state).map_err(|e| Error::Io(e.to_string()))?;
        write_atomic(&self.dir.join(STATE_FILE), &json)?;
        sync_dir(&self.dir)?;
        self.dirty = false;
        self.last_commit = Some(Instant::now());
        self.seconds.commits += 1;
        Ok(())
    }
}

/// The generation at which the test hook `COLLAPSE_TEST_ABORT_BEFORE_CHECKPOINT=N` commits and
/// then dies (like SIGKILL) after writing the rows but before `state.json`.
fn test_abort_generation() -> Option<usize> {
    std::env::var("COLLAPSE_TEST_ABORT_BEFORE_CHECKPOINT")
        .ok()
        .and_then(|v| v.parse().ok())
}

/// `value` as one JSON line with its newline.
fn json_line<T: serde::Serialize + ?Sized>(value: &T) -> Result<String> {
    let mut line = serde_json::to_string(value).map_err(|e| Error::Io(e.to_string()))?;
    line.push('\n');
    Ok(line)
}

/// Sync directory `dir` so a rename inside it is durable.
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::Io(format!("{}: {e}", dir.display())))
}

/// Remove the temporary files (`.NAME.tmp-PID-N`, see [`write_atomic`]) a killed writer left in
/// `dir`; the caller holds the run's lock, so no live writer owns them.
fn remove_stale_temporaries(dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.contains(".tmp-") && e.path().is_file() {
            std::fs::remove_file(e.path())
                .map_err(|err| Error::Io(format!("{}: {err}", e.path().display())))?;
        }
    }
    Ok(())
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
