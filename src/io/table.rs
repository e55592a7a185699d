//! Numeric tables (`N` rows × `D` columns, f64) from CSV or NPY, validated on the way in.
//!
//! - CSV: comma-separated numbers, one row per line, an optional header line (a first line that
//!   does not parse as numbers), every row the same width. Errors name the line and column.
//! - NPY: a 2-D array of little- or big-endian f32 or f64, C or Fortran order.
//! - IDX (MNIST/Fashion-MNIST image files, raw or gzip, named `*-ubyte[.gz]` or `*.idx[.gz]`):
//!   one row per image, pixels scaled to [0, 1].
//!
//! Every value must be finite: NaN or ±inf is an error naming the row (1-based data row) and
//! column, since one NaN silently poisons every fitted parameter.

use std::path::Path;

use crate::error::{Error, Result};

/// A dense row-major matrix of f64.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    /// Number of rows (data points).
    pub rows: usize,
    /// Number of columns (dimensions).
    pub cols: usize,
    /// `rows × cols` values, row-major.
    pub data: Vec<f64>,
}

impl Matrix {
    /// A matrix from row-major data (errors when the length is not `rows·cols`).
    pub fn new(rows: usize, cols: usize, data: Vec<f64>) -> Result<Self> {
        if data.len() != rows * cols {
            return Err(Error::InvalidArgument(format!(
                "matrix data has {} values, expected {rows}×{cols}",
                data.len()
            )));
        }
        Ok(Self { rows, cols, data })
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// Error naming the first non-finite value (1-based row and column), if any.
    pub fn check_finite(&self, what: &str) -> Result<()> {
        match self.data.iter().position(|v| !v.is_finite()) {
            None => Ok(()),
            Some(i) => Err(Error::Data(format!(
                "{what}: row {}, column {} is {} (data must be finite)",
                i / self.cols.max(1) + 1,
                i % self.cols.max(1) + 1,
                self.data[i]
            ))),
        }
    }
}

/// Read a table from `path`: `.npy` as NPY, IDX image files as images, anything else as CSV. The result is checked to be
/// non-empty and finite.
pub fn read_table(path: &Path) -> Result<Matrix> {
    let name = path.display().to_string();
    let m = if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"))
    {
        read_npy(path)?
    } else if is_idx_name(path) {
        let img = super::idx::read_idx_images(path)?;
        let data = (0..img.count).flat_map(|i| img.image_f64(i)).collect();
        Matrix::new(img.count, img.dim(), data)?
    } else {
        read_csv(path)?
    };
    if m.rows == 0 || m.cols == 0 {
        return Err(Error::Data(format!(
            "{name}: no data ({}×{})",
            m.rows, m.cols
        )));
    }
    m.check_finite(&name)?;
    Ok(m)
}

/// IDX image files are recognised by name: `*-ubyte`, `*-ubyte.gz`, `*.idx`, `*.idx.gz` (MNIST's
/// and Fashion-MNIST's naming).
fn is_idx_name(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let stem = name.strip_suffix(".gz").unwrap_or(&name);
    stem.ends_with("-ubyte") || stem.ends_with(".idx")
}

fn read_csv(path: &Path) -> Result<Matrix> {
    let name = path.display().to_string();
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .flexible(true)
        .from_path(path)
        .map_err(|e| Error::Data(format!("{name}: {e}")))?;
    let mut data = Vec::new();
    let mut cols = None;
    let mut rows = 0usize;
    for (idx, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| Error::Data(format!("{name}: {e}")))?;
        let line = rec.position().map(|p| p.line()).unwrap_or(idx as u64 + 1);
        let parsed: Vec<std::result::Result<f64, _>> =
            rec.iter().map(|f| f.parse::<f64>()).collect();
        if idx == 0 && parsed.iter().any(|p| p.is_err()) {
            continue; // a header line
        }
        let width = rec.len();
        match cols {
            None => cols = Some(width),
            Some(c) if c != width => {
                return Err(Error::Data(format!(
                    "{name}: line {line} has {width} fields, earlier rows have {c}"
                )));
            }
            _ => {}
        }
        for (c, p) in parsed.into_iter().enumerate() {
            let v = p.map_err(|_| {
                Error::Data(format!(
                    "{name}: line {line}, column {}: {:?} is not a number",
                    c + 1,
                    &rec[c]
                ))
            })?;
            data.push(v);
        }
        rows += 1;
    }
    Ok(Matrix {
        rows,
        cols: cols.unwrap_or(0),
        data,
    })
}

fn read_npy(path: &Path) -> Result<Matrix> {
    use npyz::{DType, TypeChar};
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| Error::Io(format!("{name}: {e}")))?;
    let npy = npyz::NpyFile::new(&bytes[..])
        .map_err(|e| Error::Data(format!("{name}: not a valid NPY file: {e}")))?;
    let shape = npy.shape().to_vec();
    if shape.len() != 2 {
        return Err(Error::Data(format!(
            "{name}: NPY array has shape {shape:?}; a 2-D array [N, D] is needed"
        )));
    }
    let (rows, cols) = (shape[0] as usize, shape[1] as usize);
    let fortran = npy.order() == npyz::Order::Fortran;
    let data: Vec<f64> = match npy.dtype() {
        DType::Plain(t) if t.type_char() == TypeChar::Float && t.size_field() == 8 => npy
            .into_vec::<f64>()
            .map_err(|e| Error::Data(format!("{name}: {e}")))?,
        DType::Plain(t) if t.type_char() == TypeChar::Float && t.size_field() == 4 => npy
            .into_vec::<f32>()
            .map_err(|e| Error::Data(format!("{name}: {e}")))?
            .into_iter()
            .map(f64::from)
            .collect(),
        other => {
            return Err(Error::Data(format!(
                "{name}: NPY dtype {} is not supported; use float32 or float64",
                other.descr()
            )));
        }
    };
    if data.len() != rows * cols {
        return Err(Error::Data(format!(
            "{name}: NPY holds {} values but its shape says {rows}×{cols} (truncated file?)",
            data.len()
        )));
    }
    let data = if fortran {
        let mut t = vec![0.0; data.len()];
        for c in 0..cols {
            for r in 0..rows {
                t[r * cols + c] = data[c * rows + r];
            }
        }
        t
    } else {
        data
    };
    Ok(Matrix { rows, cols, data })
}
