//! Outputs that never clobber: a command checks, before any work, that the files it is about to
//! write do not exist yet, unless the user passed `--force`.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Refuse (with one line naming the flag, the files and the way out) when any of `files`
/// already exists and `force` is false. `flag` names where the paths came from (`--out DIR`).
pub fn refuse_overwrite(files: &[PathBuf], force: bool, flag: &str) -> Result<()> {
    if force {
        return Ok(());
    }
    let existing: Vec<String> = files
        .iter()
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if existing.is_empty() {
        return Ok(());
    }
    Err(Error::InvalidArgument(format!(
        "{flag}: {} already exist{}; pass --force to replace {}, or choose another {}",
        existing.join(", "),
        if existing.len() == 1 { "s" } else { "" },
        if existing.len() == 1 { "it" } else { "them" },
        flag.split_whitespace().next().unwrap_or(flag)
    )))
}

/// The files named `names` inside `dir`.
pub fn in_dir(dir: &Path, names: &[&str]) -> Vec<PathBuf> {
    names.iter().map(|n| dir.join(n)).collect()
}

/// The `*.svg` files directly inside `dir` (none for a missing directory), sorted.
pub fn svg_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "svg"))
        .collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn existing_files_are_refused_unless_forced() {
        let dir = std::env::temp_dir().join(format!("collapse-out-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = in_dir(&dir, &["a.csv", "b.json"]);
        refuse_overwrite(&files, false, "--out x").unwrap();
        std::fs::write(&files[1], b"mine").unwrap();
        let e = refuse_overwrite(&files, false, "--out x")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("b.json already exists") && e.contains("--force"),
            "{e}"
        );
        assert!(!e.contains("a.csv"), "{e}");
        refuse_overwrite(&files, true, "--out x").unwrap();
        assert_eq!(std::fs::read(&files[1]).unwrap(), b"mine");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
