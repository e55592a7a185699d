//! CSV outputs (`metrics.csv`, `epochs.csv`, `log.csv`, the drift tables) read into rows keyed by
//! header name, so a test names the column it checks and a missing or renamed column fails with
//! the file, the name and the columns there are.

use std::path::{Path, PathBuf};

/// A CSV file with a header row: every field kept as text, parsed on access.
pub struct Table {
    path: PathBuf,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// Read the CSV file at `path` (header row first; every row as long as the header).
    pub fn read(path: impl AsRef<Path>) -> Table {
        let path = path.as_ref().to_path_buf();
        let mut r =
            csv::Reader::from_path(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let header = r
            .headers()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .iter()
            .map(String::from)
            .collect();
        let rows = r
            .records()
            .map(|x| {
                x.unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                    .iter()
                    .map(String::from)
                    .collect()
            })
            .collect();
        Table { path, header, rows }
    }

    /// The `metrics.csv` of the run directory `dir`.
    pub fn metrics(dir: &Path) -> Table {
        Table::read(dir.join("metrics.csv"))
    }

    /// The column names, in file order.
    pub fn header(&self) -> Vec<&str> {
        self.header.iter().map(String::as_str).collect()
    }

    /// Number of rows after the header.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the file holds no row after the header.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Position of column `name`; panics naming the file and its columns when there is none.
    pub fn column(&self, name: &str) -> usize {
        self.header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| {
                panic!(
                    "{}: no column {name:?} (columns: {})",
                    self.path.display(),
                    self.header.join(",")
                )
            })
    }

    /// Row `i` (0 = the first after the header).
    pub fn row(&self, i: usize) -> Row<'_> {
        assert!(
            i < self.rows.len(),
            "{}: row {i} of {}",
            self.path.display(),
            self.rows.len()
        );
        Row { table: self, i }
    }

    /// The last row.
    pub fn last(&self) -> Row<'_> {
        assert!(!self.rows.is_empty(), "{}: no rows", self.path.display());
        self.row(self.rows.len() - 1)
    }

    /// Every row, in file order.
    pub fn rows(&self) -> impl Iterator<Item = Row<'_>> {
        (0..self.rows.len()).map(move |i| Row { table: self, i })
    }

    /// Column `name` as text.
    pub fn strs(&self, name: &str) -> Vec<&str> {
        let c = self.column(name);
        self.rows.iter().map(|r| r[c].as_str()).collect()
    }

    /// Column `name` as numbers (panics naming the row and the value that does not parse).
    pub fn col(&self, name: &str) -> Vec<f64> {
        self.rows().map(|r| r.f64(name)).collect()
    }

    /// Column `name` over the rows whose `generation` is `g` (one per replicate in
    /// `metrics.csv`); panics when there is none.
    pub fn at(&self, name: &str, g: usize) -> Vec<f64> {
        let v: Vec<f64> = self
            .rows()
            .filter(|r| r.usize("generation") == g)
            .map(|r| r.f64(name))
            .collect();
        assert!(
            !v.is_empty(),
            "{}: no rows of generation {g}",
            self.path.display()
        );
        v
    }
}

/// One row of a [`Table`], read by column name.
#[derive(Clone, Copy)]
pub struct Row<'a> {
    table: &'a Table,
    i: usize,
}

impl<'a> Row<'a> {
    /// The field of column `name`, as text.
    pub fn str(&self, name: &str) -> &'a str {
        &self.table.rows[self.i][self.table.column(name)]
    }

    /// The field of column `name` as a number (`NaN`, `inf` parse; anything else panics).
    pub fn f64(&self, name: &str) -> f64 {
        let s = self.str(name);
        s.parse().unwrap_or_else(|e| {
            panic!(
                "{}: row {}, column {name}: {s:?} is not a number ({e})",
                self.table.path.display(),
                self.i + 1
            )
        })
    }

    /// The field of column `name` as a count or index.
    pub fn usize(&self, name: &str) -> usize {
        let s = self.str(name);
        s.parse().unwrap_or_else(|e| {
            panic!(
                "{}: row {}, column {name}: {s:?} is not a count ({e})",
                self.table.path.display(),
                self.i + 1
            )
        })
    }
}
