//! Reading and writing data: numeric tables from CSV and NPY files, IDX image files, NPY and PNG
//! output, and atomic
//! file writes.

pub mod budget;
pub mod idx;
pub mod output;
pub mod table;

pub use table::{Matrix, read_table};

use crate::error::{Error, Result};
use std::path::Path;

/// Write `bytes` to `path` atomically: into a temporary file beside it, flushed, then renamed
/// over `path`, so a reader never sees a half-written file and a crash leaves the old one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| Error::InvalidArgument(format!("{} is not a file path", path.display())))?;
    // Unique per process and call, so concurrent writers (replicates run at once) never share
    // a temporary file; the rename makes the last complete write win.
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{call}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let io = |e: std::io::Error| Error::Io(format!("writing {}: {e}", path.display()));
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)
}

/// Write `m` as a version-1.0 little-endian float64 NPY file (C order), atomically.
pub fn write_npy(path: &Path, m: &Matrix) -> Result<()> {
    let mut header = format!(
        "{{'descr': '<f8', 'fortran_order': False, 'shape': ({}, {}), }}",
        m.rows, m.cols
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + m.data.len() * 8);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in &m.data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    write_atomic(path, &out)
}
/// Write records as CSV (header from the first record's fields), atomically.
/// The parent folder is created if missing.
pub fn write_csv<T: serde::Serialize>(path: &Path, rows: &[T]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| crate::Error::Io(format!("{}: {e}", dir.display())))?;
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r)
            .map_err(|e| crate::Error::Io(format!("{}: {e}", path.display())))?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| crate::Error::Io(format!("{}: {e}", path.display())))?;
    crate::io::write_atomic(path, &bytes)
}
/// Write a trained model into `dir` (created if missing): `weights.npy` (the flat weights,
/// shape `[1, P]`, float64) and `model.json` holding `config` (under `"config"`), `layout` (one
/// `{name, rows, cols, offset}` per tensor, in the weights' order), a note on the weights file,
/// and every field of the JSON object `extra`. Keys come out sorted. The VAE's and the LM's
/// `save_model` write through this.
pub fn save_model_dir<'a>(
    dir: &Path,
    config: serde_json::Value,
    layout: impl Iterator<Item = (&'a str, usize, usize, usize)>,
    params: &[f64],
    extra: serde_json::Value,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
    write_npy(
        &dir.join("weights.npy"),
        &Matrix::new(1, params.len(), params.to_vec())?,
    )?;
    let layout: Vec<serde_json::Value> = layout
        .map(|(name, rows, cols, offset)| {
            serde_json::json!({"name": name, "rows": rows, "cols": cols, "offset": offset})
        })
        .collect();
    let mut meta = serde_json::json!({
        "config": config,
        "layout": layout,
        "weights": "weights.npy (shape [1, P], float64, the layout's order)",
    });
    if let (Some(m), serde_json::Value::Object(e)) = (meta.as_object_mut(), extra) {
        m.extend(e);
    }
    write_atomic(
        &dir.join("model.json"),
        serde_json::to_string_pretty(&meta)
            .map_err(|e| Error::Io(e.to_string()))?
            .as_bytes(),
    )
}
