//! Reading and writing data: numeric tables from CSV and NPY files, and atomic file writes.

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
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
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
