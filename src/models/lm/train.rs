//! Text data and the training loop of the language model (`collapse train lm`).
//!
//! # Corpus
//!
//! The default corpus is Debian's `fortunes` package (`/usr/share/games/fortunes`, installed by
//! `apt-get install fortunes`): about 2 MB of short English texts — quotations, jokes, poems —
//! in files of records separated by lines holding `%`. It is free, packaged, plain English and
//! small enough to train on two CPU cores. Every file there without an extension is read, in
//! name order, except `art` and `ascii-art` (pictures drawn in characters).
//!
//! # Split
//!
//! The text is cut into records: at `%` lines when it has them, else at blank lines
//! (paragraphs), else (fewer than 20 paragraphs) at every line. Record `i` goes to validation
//! when Philox draw `i` of stream `(LM_SPLIT_SEED, LM_SPLIT)` is below 0.1 — fixed, whatever the run's
//! seed, so every run, backend and generation is measured on the same validation text. Each
//! part is its records joined in order, each ending in `%\n`.
//!
//! # Training
//!
//! Step `s` trains on `batch` windows of `context + 1` bytes of the training text starting at
//! offsets drawn from stream `(seed, LM_BATCH + s)`. Validation loss: mean cross-entropy
//! over up to `eval_windows` windows of `context + 1` bytes evenly spaced over the validation
//! text (every byte predicted once when the text is short enough). Perplexity is `exp(loss)`
//! per byte. The unigram baseline is the validation cross-entropy under the training text's
//! byte frequencies (add-one smoothed).

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{LmConfig, LmTrainer, MakeLm, init_params};
use crate::error::{Error, Result};
use crate::rng::streams::{LM_BATCH, LM_SPLIT, LM_SPLIT_SEED};
use crate::rng::{StreamKey, unit_f64};

/// Where the default corpus lives.
pub const FORTUNES_DIR: &str = "/usr/share/games/fortunes";
/// Fraction of records held out for validation.
pub const VALIDATION_FRACTION: f64 = 0.1;

/// A training and a validation text.
#[derive(Clone, Debug)]
pub struct Corpus {
    /// Training bytes.
    pub train: Vec<u8>,
    /// Validation bytes.
    pub val: Vec<u8>,
    /// Records in each part.
    pub records: (usize, usize),
    /// Files read.
    pub files: Vec<PathBuf>,
}

/// The default corpus files (see the module documentation).
pub fn fortune_files() -> Result<Vec<PathBuf>> {
    let dir = Path::new(FORTUNES_DIR);
    let rd = std::fs::read_dir(dir).map_err(|e| {
        Error::Io(format!(
            "{}: {e}; install the corpus with `apt-get install fortunes` or give --data FILE",
            dir.display()
        ))
    })?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            p.is_file() && !name.contains('.') && name != "art" && name != "ascii-art"
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::Io(format!(
            "{}: no fortune files; install `fortunes` or give --data FILE",
            dir.display()
        )));
    }
    Ok(files)
}

/// Records of `text`: at `%` lines when it has them, else at blank lines (paragraphs), else —
/// when that gives fewer than [`MIN_PARAGRAPHS`] — one record per line. Separator lines drop,
/// and so do records that are only whitespace.
pub fn records(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    if lines.iter().any(|l| l.trim_end() == "%") {
        return split_at(&lines, |l| l.trim_end() == "%");
    }
    let paragraphs = split_at(&lines, |l| l.trim().is_empty());
    if paragraphs.len() >= MIN_PARAGRAPHS {
        return paragraphs;
    }
    lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Below this many paragraphs a text is split into lines instead.
pub const MIN_PARAGRAPHS: usize = 20;

/// Records of `lines` between separator lines (which drop).
fn split_at(lines: &[&str], separator: impl Fn(&str) -> bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for &l in lines {
        if separator(l) {
            if !cur.trim().is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            cur.clear();
        } else {
            cur.push_str(l);
            cur.push('\n');
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

/// Read `files` (UTF-8 text) and split them (see the module documentation). Errors name the
/// file: one that cannot be read, is not UTF-8, or holds no record (empty, or only
/// whitespace and `%` lines).
pub fn load_corpus(files: &[PathBuf]) -> Result<Corpus> {
    let mut recs = Vec::new();
    for f in files {
        if f.is_dir() {
            return Err(Error::Io(format!(
                "{}: is a directory; give the text files (--data FILE …)",
                f.display()
            )));
        }
        let bytes = std::fs::read(f).map_err(|e| Error::Io(format!("{}: {e}", f.display())))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            Error::Data(format!(
                "{}: not UTF-8 text (byte {})",
                f.display(),
                e.utf8_error().valid_up_to()
            ))
        })?;
        let before = recs.len();
        recs.extend(records(&text));
        if recs.len() == before {
            return Err(Error::Data(format!(
                "{}: no text to learn ({} bytes: empty, or only whitespace and % lines)",
                f.display(),
                text.len()
            )));
        }
    }
    split(recs, files.to_vec())
}

/// `files` for a message: all of them up to three, else the first two and how many more.
pub fn describe_files(files: &[PathBuf]) -> String {
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    match names.len() {
        0 => "no files".into(),
        1..=3 => names.join(", "),
        n => format!("{}, {} and {} more", names[0], names[1], n - 2),
    }
}

/// Split records into training and validation text.
pub fn split(recs: Vec<String>, files: Vec<PathBuf>) -> Result<Corpus> {
    let key = StreamKey::new(LM_SPLIT_SEED, LM_SPLIT);
    let (mut train, mut val) = (Vec::new(), Vec::new());
    let (mut nt, mut nv) = (0, 0);
    for (i, r) in recs.iter().enumerate() {
        let part = if unit_f64(key.u32_at(i as u64)) < VALIDATION_FRACTION {
            nv += 1;
            &mut val
        } else {
            nt += 1;
            &mut train
        };
        part.extend_from_slice(r.as_bytes());
        part.extend_from_slice(b"%\n");
    }
    if nt == 0 || nv == 0 {
        return Err(Error::Data(format!(
            "{}: {} records are too few to hold out a validation part (records are split at % \
             lines, else blank lines, else lines; give more text)",
            describe_files(&files),
            recs.len()
        )));
    }
    Ok(Corpus {
        train,
        val,
        records: (nt, nv),
        files,
    })
}

/// `rows` windows of `len + 1` bytes of `text` at offsets from `key`.
pub fn batch(text: &[u8], rows: usize, len: usize, key: StreamKey) -> Result<Vec<u8>> {
    if text.len() < len + 1 {
        return Err(Error::Data(format!(
            "{} bytes of text are shorter than one window of {}",
            text.len(),
            len + 1
        )));
    }
    let span = text.len() - len;
    let mut out = Vec::with_capacity(rows * (len + 1));
    for r in 0..rows {
        let o = ((unit_f64(key.u32_at(r as u64)) * span as f64) as usize).min(span - 1);
        out.extend_from_slice(&text[o..o + len + 1]);
    }
    Ok(out)
}

/// Up to `max` windows of `len + 1` bytes evenly spaced over `text` (stride ≥ `len`).
pub fn eval_windows(text: &[u8], len: usize, max: usize) -> Result<Vec<u8>> {
    if text.len() < len + 1 || max == 0 {
        return Err(Error::Data(format!(
            "{} bytes of validation text are shorter than one window of {}",
            text.len(),
            len + 1
        )));
    }
    let fit = (text.len() - 1) / len;
    let count = fit.min(max);
    let stride = if count > 1 {
        (text.len() - len - 1) / (count - 1)
    } else {
        0
    };
    let mut out = Vec::with_capacity(count * (len + 1));
    for w in 0..count {
        let o = w * stride;
        out.extend_from_slice(&text[o..o + len + 1]);
    }
    Ok(out)
}

/// Cross-entropy (nats per byte) of `val` under the add-one-smoothed byte frequencies of
/// `train`.
pub fn unigram_cross_entropy(train: &[u8], val: &[u8]) -> f64 {
    let mut counts = [1.0f64; 256];
    for &b in train {
        counts[b as usize] += 1.0;
    }
    let total: f64 = counts.iter().sum();
    -val.iter()
        .map(|&b| (counts[b as usize] / total).ln())
        .sum::<f64>()
        / val.len() as f64
}

/// Distinct-n of `texts`: unique word n-grams over all n-grams (words split at whitespace,
/// n-grams not crossing texts); NaN when there are none.
pub fn distinct_n(texts: &[Vec<u8>], n: usize) -> f64 {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0usize;
    for t in texts {
        let s = String::from_utf8_lossy(t);
        let words: Vec<&str> = s.split_whitespace().collect();
        for g in words.windows(n) {
            seen.insert(g.join(" "));
            total += 1;
        }
    }
    if total == 0 {
        f64::NAN
    } else {
        seen.len() as f64 / total as f64
    }
}

/// What to train.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    /// The model (sequence length = its context).
    pub lm: LmConfig,
    /// AdamW steps.
    pub steps: usize,
    /// Sequences per step.
    pub batch: usize,
    /// Philox seed of the weights and batches.
    pub seed: u64,
    /// Measure the validation loss every this many steps (and after the last).
    pub eval_every: usize,
    /// Validation windows per measurement.
    pub eval_windows: usize,
}

/// One measurement.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EvalRow {
    /// Steps done.
    pub step: usize,
    /// Mean training loss of the steps since the previous row (nats per byte; empty at 0).
    pub train_loss: Option<f64>,
    /// Validation loss, nats per byte.
    pub val_loss: f64,
    /// `exp(val_loss)`.
    pub val_ppl: f64,
    /// Training seconds since the previous row (evaluation excluded).
    pub seconds: f64,
    /// Training tokens (predicted bytes) per second over those seconds.
    pub tokens_per_s: f64,
}

/// Train from the Philox initialisation for `cfg.steps` steps; `progress(step, loss)` after
/// every step. Returns the model and the measurements (the first before training).
pub fn train<'a>(
    backend: &'a dyn MakeLm,
    cfg: &TrainConfig,
    corpus: &Corpus,
    progress: &mut dyn FnMut(usize, f64),
) -> Result<(Box<dyn LmTrainer + 'a>, Vec<EvalRow>)> {
    let lm = backend.lm(&cfg.lm, &init_params(&cfg.lm, cfg.seed))?;
    continue_training(lm, cfg, corpus, progress)
}

/// Train `lm` (from its current weights, fresh optimiser counts) as [`train`] does.
pub fn continue_training<'a>(
    mut lm: Box<dyn LmTrainer + 'a>,
    cfg: &TrainConfig,
    corpus: &Corpus,
    progress: &mut dyn FnMut(usize, f64),
) -> Result<(Box<dyn LmTrainer + 'a>, Vec<EvalRow>)> {
    cfg.lm.validate()?;
    if cfg.batch == 0 || cfg.eval_every == 0 || cfg.eval_windows == 0 {
        return Err(Error::InvalidArgument(
            "--batch, --eval-every and --eval-windows must be ≥ 1".into(),
        ));
    }
    let len = cfg.lm.context;
    let short = |e: Error| match e {
        Error::Data(m) => Error::Data(format!(
            "{}: {m}; give more text or a smaller --context",
            describe_files(&corpus.files)
        )),
        e => e,
    };
    let val = eval_windows(&corpus.val, len, cfg.eval_windows).map_err(short)?;
    if cfg.steps > 0 {
        batch(&corpus.train, 1, len, StreamKey::new(cfg.seed, LM_BATCH)).map_err(short)?;
    }
    let val_loss = lm.loss(&val, len)?;
    let mut rows = vec![EvalRow {
        step: 0,
        train_loss: None,
        val_loss,
        val_ppl: val_loss.exp(),
        seconds: 0.0,
        tokens_per_s: 0.0,
    }];
    let (mut losses, mut t, mut since) = (Vec::new(), Instant::now(), 0usize);
    for s in 0..cfg.steps {
        let x = batch(
            &corpus.train,
            cfg.batch,
            len,
            StreamKey::new(cfg.seed, LM_BATCH + s as u64),
        )?;
        lm.step(&x, len)?;
        let l = lm.last_loss()?.loss;
        losses.push(l);
        since += 1;
        progress(s + 1, l);
        if (s + 1) % cfg.eval_every == 0 || s + 1 == cfg.steps {
            let seconds = t.elapsed().as_secs_f64();
            let val_loss = lm.loss(&val, len)?;
            rows.push(EvalRow {
                step: s + 1,
                train_loss: Some(losses.iter().sum::<f64>() / losses.len() as f64),
                val_loss,
                val_ppl: val_loss.exp(),
                seconds,
                tokens_per_s: (since * cfg.batch * len) as f64 / seconds,
            });
            losses.clear();
            since = 0;
            t = Instant::now();
        }
    }
    Ok((lm, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_split_and_windows() {
        let text = "a b\n%\nc d e\nf\n%\n\n%\ng\n";
        assert_eq!(records(text), vec!["a b\n", "c d e\nf\n", "g\n"]);
        // Few paragraphs: one record per line.
        assert_eq!(
            records("p one\n\np two\nmore\n"),
            vec!["p one\n", "p two\n", "more\n"]
        );
        let paras: String = (0..25).map(|i| format!("p {i}\nmore\n\n")).collect();
        assert_eq!(records(&paras).len(), 25);
        assert_eq!(records(&paras)[1], "p 1\nmore\n");
        let recs: Vec<String> = (0..200).map(|i| format!("record {i}\n")).collect();
        let c = split(recs, vec![]).unwrap();
        assert_eq!(c.records.0 + c.records.1, 200);
        assert!(c.records.1 > 5 && c.records.1 < 40, "{:?}", c.records);
        let w = eval_windows(&c.val, 8, 1000).unwrap();
        assert_eq!(w.len() % 9, 0);
        assert_eq!(&w[..9], &c.val[..9]);
        // Test-local key (no result or golden depends on it).
        let b = batch(&c.train, 3, 8, StreamKey::new(1, 2)).unwrap();
        assert_eq!(b.len(), 27);
        assert!(batch(b"short", 2, 8, StreamKey::new(1, 2)).is_err());
        let u = unigram_cross_entropy(b"aaaa", b"aa");
        assert!((u - (260f64 / 5.0).ln()).abs() < 1e-12);
        let d = distinct_n(&[b"a b a b".to_vec()], 2);
        assert!((d - 2.0 / 3.0).abs() < 1e-12);
    }
}
