//! Numeric tables (`N` rows × `D` columns, f64) from CSV or NPY, validated on the way in.
//!
//! - CSV: comma-separated numbers, one row per line, an optional header line (a first line that
//!   does not parse as numbers), every row the same width. Every error names the **line** (the
//!   1-based line of the file, header and comment lines counted) and the column.
//! - NPY: a 2-D array of little- or big-endian f32 or f64, C or Fortran order. The header's
//!   shape is checked against the file's length before anything is allocated.
//! - IDX (MNIST/Fashion-MNIST image files, raw or gzip, named `*-ubyte[.gz]` or `*.idx[.gz]`):
//!   one row per image, pixels scaled to [0, 1]. A directory holding such files (as Debian's
//!   `dataset-fashion-mnist` installs in `/usr/share/datasets/fashion-mnist`) stands for its
//!   training images ([`super::idx::training_images_in`]).
//!
//! Every value must be finite, since one NaN silently poisons every fitted parameter: NaN or
//! ±inf is an error naming the CSV line and column, or for NPY and IDX the row (1-based) and
//! column.

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
        if rows.checked_mul(cols) != Some(data.len()) {
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

/// Read a table from `path`: `.npy` as NPY, IDX image files as images, a directory as the IDX
/// training images inside it ([`super::idx::training_images_in`]), anything else as CSV. The
/// result is checked to be non-empty and finite.
pub fn read_table(path: &Path) -> Result<Matrix> {
    if path.is_dir() {
        return read_table(&super::idx::training_images_in(path)?);
    }
    let name = path.display().to_string();
    let m = if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"))
    {
        read_npy(path)?
    } else if super::idx::is_idx_name(path) {
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

fn read_csv(path: &Path) -> Result<Matrix> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| Error::Io(format!("{name}: {e}")))?;
    parse_csv(&bytes).map_err(|e| match e {
        Error::Data(m) => Error::Data(format!("{name}: {m}")),
        Error::Io(m) => Error::Io(format!("{name}: {m}")),
        e => e,
    })
}

/// 1-based file lines of byte offsets, counted forward (the csv reader's own line count skips
/// comment lines, so it is not the file's).
struct Lines<'a> {
    bytes: &'a [u8],
    at: usize,
    line: u64,
}

impl Lines<'_> {
    /// The line holding byte `offset` (offsets asked in increasing order are counted once;
    /// an earlier one is counted from the start).
    fn of(&mut self, offset: u64) -> u64 {
        let offset = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.bytes.len());
        if offset < self.at {
            (self.at, self.line) = (0, 1);
        }
        self.line += self.bytes[self.at..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u64;
        self.at = offset;
        self.line
    }

    /// The line a record starts on, given the csv reader's position of it: that position is
    /// where the previous record ended (before or after its line break), so line breaks and
    /// `#` comment lines after it are skipped first.
    fn record(&mut self, offset: u64) -> u64 {
        self.of(offset);
        let b = self.bytes;
        let mut line_start = self.at == 0 || b[self.at - 1] == b'\n';
        while self.at < b.len() {
            match b[self.at] {
                b'\n' => {
                    self.line += 1;
                    line_start = true;
                }
                b'\r' => {}
                b'#' if line_start => {
                    while self.at + 1 < b.len() && b[self.at + 1] != b'\n' {
                        self.at += 1;
                    }
                }
                _ => break,
            }
            self.at += 1;
        }
        self.line
    }
}

/// One line for a CSV reader's error: the file's line (1-based) and, for bad UTF-8, the
/// column.
fn csv_error(e: &csv::Error, lines: &mut Lines) -> Error {
    match e.kind() {
        csv::ErrorKind::Utf8 { pos: Some(p), err } => Error::Data(format!(
            "line {}, column {}: not UTF-8 text",
            lines.record(p.byte()),
            err.field() + 1
        )),
        csv::ErrorKind::Io(io) => Error::Io(io.to_string()),
        _ => match e.position() {
            Some(p) => Error::Data(format!("line {}: {e}", lines.record(p.byte()))),
            None => Error::Data(e.to_string()),
        },
    }
}

/// Parse CSV bytes as [`read_table`] reads a CSV file (see the module documentation): every
/// error names the 1-based line of the file and the column (not the file: the caller adds
/// it). Non-finite values are errors here. Any byte string gives `Ok` or `Err`, never a panic.
pub fn parse_csv(bytes: &[u8]) -> Result<Matrix> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .flexible(true)
        .from_reader(bytes);
    let mut data = Vec::new();
    let mut cols = None;
    let mut rows = 0usize;
    let mut lines = Lines {
        bytes,
        at: 0,
        line: 1,
    };
    for (idx, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| csv_error(&e, &mut lines))?;
        let line = match rec.position() {
            Some(p) => lines.record(p.byte()),
            None => idx as u64 + 1,
        };
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
                    "line {line} has {width} fields, earlier lines have {c}"
                )));
            }
            _ => {}
        }
        for (c, p) in parsed.into_iter().enumerate() {
            let v = p.map_err(|_| {
                Error::Data(format!(
                    "line {line}, column {}: {:?} is not a number",
                    c + 1,
                    &rec[c]
                ))
            })?;
            if !v.is_finite() {
                return Err(Error::Data(format!(
                    "line {line}, column {} is {v} (data must be finite)",
                    c + 1
                )));
            }
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

/// Read an NPY file (see [`parse_npy`]); errors name the file.
fn read_npy(path: &Path) -> Result<Matrix> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| Error::Io(format!("{name}: {e}")))?;
    parse_npy(&bytes).map_err(|e| match e {
        Error::Data(m) => Error::Data(format!("{name}: {m}")),
        e => e,
    })
}

/// Parse the bytes of an NPY file (versions 1.0, 2.0 and 3.0) holding a 2-D float32 or
/// float64 array, little- or big-endian, C or Fortran order, into a row-major [`Matrix`].
///
/// The header is parsed here (a Python dict literal with `descr`, `fortran_order` and
/// `shape`), and the data length the shape promises is computed with checked arithmetic and
/// compared with the bytes the file holds **before** anything is allocated: a shape that
/// overflows, a truncated file and trailing bytes are errors that say how many bytes were
/// expected and found. Any byte string gives `Ok` or `Err`, never a panic. Values are not
/// checked to be finite here ([`read_table`] does).
pub fn parse_npy(bytes: &[u8]) -> Result<Matrix> {
    let bad = |m: String| Error::Data(m);
    if bytes.len() < 10 || !bytes.starts_with(b"\x93NUMPY") {
        return Err(bad(format!(
            "not a valid NPY file: {} bytes without the NPY magic \\x93NUMPY and version",
            bytes.len()
        )));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (header_len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        2 | 3 => {
            return Err(bad(format!(
                "not a valid NPY file: truncated in its preamble ({} bytes)",
                bytes.len()
            )));
        }
        _ => {
            return Err(bad(format!(
                "not a valid NPY file: format version {major}.{minor} (1.0, 2.0 and 3.0 are read)"
            )));
        }
    };
    let data_start = start
        .checked_add(header_len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| {
            bad(format!(
                "not a valid NPY file: truncated in its header (the header needs {header_len} \
                 bytes after byte {start}, the file holds {})",
                bytes.len() - start
            ))
        })?;
    let text = std::str::from_utf8(&bytes[start..data_start])
        .map_err(|e| bad(format!("not a valid NPY file: header is not text ({e})")))?;
    let header =
        npy_header::parse(text).map_err(|m| bad(format!("not a valid NPY file: header {m}")))?;
    let (little, size) = match npy_header::float_descr(&header.descr) {
        Some(d) => d,
        None => {
            return Err(bad(format!(
                "NPY dtype {:?} is not supported; use float32 or float64",
                header.descr
            )));
        }
    };
    let shape_text = format!(
        "({})",
        header
            .shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", ")
            + if header.shape.len() == 1 { "," } else { "" }
    );
    if header.shape.len() != 2 {
        return Err(bad(format!(
            "NPY array has shape {shape_text}; a 2-D array [N, D] is needed"
        )));
    }
    let data = &bytes[data_start..];
    let (rows, cols) = (header.shape[0], header.shape[1]);
    let kind = if size == 8 { "float64" } else { "float32" };
    let want = rows
        .checked_mul(cols)
        .and_then(|n| n.checked_mul(size as u64))
        .filter(|&b| usize::try_from(b).is_ok())
        .ok_or_else(|| {
            bad(format!(
                "NPY shape {shape_text} of {kind} needs more bytes than this machine can address; \
                 the file holds {} bytes of data",
                data.len()
            ))
        })?;
    if want != data.len() as u64 {
        return Err(bad(format!(
            "NPY file is {}: its shape {shape_text} of {kind} needs {want} bytes of data, the \
             file holds {}",
            if (data.len() as u64) < want {
                "truncated"
            } else {
                "longer than its shape (trailing bytes)"
            },
            data.len()
        )));
    }
    // rows·cols·size = data.len() fits usize, so rows and cols do.
    let (rows, cols) = (rows as usize, cols as usize);
    let values: Vec<f64> = if size == 8 {
        data.chunks_exact(8)
            .map(|c| {
                let b: [u8; 8] = c.try_into().unwrap_or_default();
                if little {
                    f64::from_le_bytes(b)
                } else {
                    f64::from_be_bytes(b)
                }
            })
            .collect()
    } else {
        data.chunks_exact(4)
            .map(|c| {
                let b: [u8; 4] = c.try_into().unwrap_or_default();
                f64::from(if little {
                    f32::from_le_bytes(b)
                } else {
                    f32::from_be_bytes(b)
                })
            })
            .collect()
    };
    let data = if header.fortran_order {
        let mut t = vec![0.0; values.len()];
        for c in 0..cols {
            for r in 0..rows {
                t[r * cols + c] = values[c * rows + r];
            }
        }
        t
    } else {
        values
    };
    Ok(Matrix { rows, cols, data })
}

/// The NPY header: a Python dict literal such as
/// `{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }`.
mod npy_header {
    /// What the reader needs from the header.
    pub(super) struct Header {
        pub descr: String,
        pub fortran_order: bool,
        pub shape: Vec<u64>,
    }

    /// A Python literal of the subset NPY headers use.
    enum Value {
        Str(String),
        Bool(bool),
        Int(u64),
        None,
        Seq(Vec<Value>),
        Dict(Vec<(Value, Value)>),
    }

    /// Deepest nesting accepted (a header of 10⁵ `(` must not overflow the stack).
    const MAX_DEPTH: usize = 16;

    /// `(little-endian, bytes)` of a float32/float64 `descr` (`<f8`, `>f4`, `=f8`, `f8`, ...).
    pub(super) fn float_descr(d: &str) -> Option<(bool, usize)> {
        let (order, rest) = match d.as_bytes().first()? {
            b'<' => (Some(true), &d[1..]),
            b'>' => (Some(false), &d[1..]),
            b'=' | b'|' => (None, &d[1..]),
            _ => (None, d),
        };
        let size = match rest {
            "f8" => 8,
            "f4" => 4,
            _ => return None,
        };
        Some((order.unwrap_or(cfg!(target_endian = "little")), size))
    }

    /// Parse the header text (errors say what is wrong, without the file's name).
    pub(super) fn parse(text: &str) -> Result<Header, String> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value(0)?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("has text after the dict at byte {}", p.i));
        }
        let Value::Dict(items) = v else {
            return Err("is not a dict".into());
        };
        let get = |key: &str| {
            items
                .iter()
                .find(|(k, _)| matches!(k, Value::Str(s) if s == key))
                .map(|(_, v)| v)
                .ok_or_else(|| format!("lacks the key '{key}'"))
        };
        let descr = match get("descr")? {
            Value::Str(s) => s.clone(),
            _ => return Err("'descr' is not a string (structured dtypes are not read)".into()),
        };
        let fortran_order = match get("fortran_order")? {
            Value::Bool(b) => *b,
            _ => return Err("'fortran_order' is not True or False".into()),
        };
        let shape = match get("shape")? {
            Value::Seq(v) => v
                .iter()
                .map(|d| match d {
                    Value::Int(n) => Ok(*n),
                    _ => {
                        Err("'shape' holds something other than non-negative integers".to_string())
                    }
                })
                .collect::<Result<Vec<u64>, String>>()?,
            _ => return Err("'shape' is not a tuple".into()),
        };
        Ok(Header {
            descr,
            fortran_order,
            shape,
        })
    }

    struct Parser<'a> {
        s: &'a [u8],
        i: usize,
    }

    impl Parser<'_> {
        fn ws(&mut self) {
            while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
                self.i += 1;
            }
        }

        fn peek(&mut self) -> Option<u8> {
            self.ws();
            self.s.get(self.i).copied()
        }

        fn err<T>(&self, what: &str) -> Result<T, String> {
            Err(format!(
                "is not a valid dict literal: {what} at byte {}",
                self.i
            ))
        }

        fn value(&mut self, depth: usize) -> Result<Value, String> {
            if depth > MAX_DEPTH {
                return self.err("nesting too deep");
            }
            match self.peek() {
                None => self.err("unexpected end"),
                Some(q @ (b'\'' | b'"')) => {
                    self.i += 1;
                    let from = self.i;
                    while self.i < self.s.len() && self.s[self.i] != q {
                        self.i += 1;
                    }
                    if self.i == self.s.len() {
                        return self.err("unterminated string");
                    }
                    let s = String::from_utf8_lossy(&self.s[from..self.i]).into_owned();
                    self.i += 1;
                    Ok(Value::Str(s))
                }
                Some(open @ (b'(' | b'[' | b'{')) => {
                    let close = match open {
                        b'(' => b')',
                        b'[' => b']',
                        _ => b'}',
                    };
                    self.i += 1;
                    let (mut seq, mut dict) = (Vec::new(), Vec::new());
                    loop {
                        if self.peek() == Some(close) {
                            self.i += 1;
                            break;
                        }
                        let v = self.value(depth + 1)?;
                        if open == b'{' {
                            if self.peek() != Some(b':') {
                                return self.err("expected ':'");
                            }
                            self.i += 1;
                            dict.push((v, self.value(depth + 1)?));
                        } else {
                            seq.push(v);
                        }
                        match self.peek() {
                            Some(b',') => self.i += 1,
                            Some(c) if c == close => {}
                            _ => return self.err("expected ',' or a closing bracket"),
                        }
                    }
                    Ok(if open == b'{' {
                        Value::Dict(dict)
                    } else {
                        Value::Seq(seq)
                    })
                }
                Some(_) => {
                    let from = self.i;
                    while self.i < self.s.len()
                        && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == b'_')
                    {
                        self.i += 1;
                    }
                    match &self.s[from..self.i] {
                        b"True" => Ok(Value::Bool(true)),
                        b"False" => Ok(Value::Bool(false)),
                        b"None" => Ok(Value::None),
                        w if !w.is_empty() && w.iter().all(u8::is_ascii_digit) => {
                            match std::str::from_utf8(w).ok().and_then(|t| t.parse().ok()) {
                                Some(n) => Ok(Value::Int(n)),
                                None => self.err("integer too large"),
                            }
                        }
                        _ => self.err("unexpected character"),
                    }
                }
            }
        }
    }
}
