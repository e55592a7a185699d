//! CSV and NPY tables: good files read, bad files give errors that name what is wrong.

mod common;

use std::path::{Path, PathBuf};

use collapse_kernels::io::{read_table, write_atomic};
use common::npy_bytes;

/// The file `name` holding `bytes` in the test's own directory `dir`.
fn tmp(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn f64_bytes(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn csv_with_and_without_header() {
    let dir = common::tmpdir("csv");
    let a = read_table(&tmp(&dir, "a.csv", b"x,y\n1,2\n3.5,-4e-1\n")).unwrap();
    assert_eq!((a.rows, a.cols), (2, 2));
    assert_eq!(a.data, vec![1.0, 2.0, 3.5, -0.4]);
    let b = read_table(&tmp(&dir, "b.csv", b"1, 2\n 3 ,4\n")).unwrap();
    assert_eq!(b.data, vec![1.0, 2.0, 3.0, 4.0]);
}

#[test]
fn malformed_csv_names_the_line() {
    let dir = common::tmpdir("malformed-csv");
    let cases: [(&str, &[u8], &str); 5] = [
        ("text.csv", b"x,y\n1,2\n3,abc\n", "line 3, column 2"),
        ("ragged.csv", b"1,2\n3,4,5\n", "line 2 has 3 fields"),
        ("nan.csv", b"1,2\n3,NaN\n", "line 2, column 2"),
        ("inf.csv", b"1,2\ninf,4\n", "line 2, column 1"),
        ("empty.csv", b"", "no data"),
    ];
    for (name, bytes, needle) in cases {
        let e = read_table(&tmp(&dir, name, bytes)).unwrap_err().to_string();
        assert!(e.contains(needle), "{name}: {e}");
    }
}

#[test]
fn npy_f64_f32_and_fortran_order() {
    let dir = common::tmpdir("npy");
    let m = read_table(&tmp(
        &dir,
        "c.npy",
        &npy_bytes(
            "<f8",
            false,
            "(2, 3)",
            &f64_bytes(&[1., 2., 3., 4., 5., 6.]),
        ),
    ))
    .unwrap();
    assert_eq!((m.rows, m.cols), (2, 3));
    assert_eq!(m.data, vec![1., 2., 3., 4., 5., 6.]);
    let f32s: Vec<u8> = [1.5f32, -2.0, 0.25, 8.0]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let m = read_table(&tmp(
        &dir,
        "d.npy",
        &npy_bytes("<f4", false, "(2, 2)", &f32s),
    ))
    .unwrap();
    assert_eq!(m.data, vec![1.5, -2.0, 0.25, 8.0]);
    // Fortran order: column-major on disk, row-major in memory.
    let m = read_table(&tmp(
        &dir,
        "e.npy",
        &npy_bytes("<f8", true, "(2, 3)", &f64_bytes(&[1., 4., 2., 5., 3., 6.])),
    ))
    .unwrap();
    assert_eq!(m.data, vec![1., 2., 3., 4., 5., 6.]);
}

#[test]
fn bad_npy_files_are_clear_errors() {
    let dir = common::tmpdir("bad-npy");
    let cases = [
        (
            "1d.npy",
            npy_bytes("<f8", false, "(3,)", &f64_bytes(&[1., 2., 3.])),
            "2-D",
        ),
        (
            "int.npy",
            npy_bytes("<i4", false, "(1, 2)", &[0u8; 8]),
            "not supported",
        ),
        (
            "short.npy",
            npy_bytes("<f8", false, "(2, 2)", &f64_bytes(&[1., 2., 3.])),
            // A data error: the file is truncated.
            "bad data",
        ),
        (
            "nan.npy",
            npy_bytes("<f8", false, "(2, 1)", &f64_bytes(&[1., f64::NAN])),
            "row 2, column 1",
        ),
        ("junk.npy", b"not an npy file at all".to_vec(), "NPY"),
    ];
    for (name, bytes, needle) in cases {
        let e = read_table(&tmp(&dir, name, &bytes))
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{name}: {e}");
        assert!(
            e.contains(name),
            "{name}: error does not name the file: {e}"
        );
    }
    let e = read_table(&tmp(&dir, "x", b"")).map(|_| ()).unwrap_err();
    assert!(e.to_string().contains("no data"));
    let e = read_table(Path::new("/nonexistent/file.csv")).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/file.csv"), "{e}");
}

/// Files beside `p` whose name contains `pattern` (write_atomic's temporaries).
fn temporaries(p: &std::path::Path, pattern: &str) -> usize {
    std::fs::read_dir(p.parent().unwrap())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(pattern)
        })
        .count()
}

#[test]
fn atomic_write_replaces_whole_files() {
    let dir = common::tmpdir("atomic");
    let p = tmp(&dir, "out.json", b"old");
    write_atomic(&p, b"new contents").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"new contents");
    // No temporary left beside it (the test's own directory: nothing else writes there).
    assert_eq!(temporaries(&p, ".tmp-"), 0);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
}

/// Writers on several threads (replicates run at once) may write the same file: every write
/// succeeds, the file ends as one whole write, and no temporary file is left behind.
#[test]
fn concurrent_atomic_writes_do_not_collide() {
    let dir = common::tmpdir("concurrent");
    let p = tmp(&dir, "shared.bin", b"old");
    std::thread::scope(|s| {
        for t in 0..8u8 {
            let p = &p;
            s.spawn(move || {
                for _ in 0..20 {
                    write_atomic(p, &vec![t; 4096]).unwrap();
                }
            });
        }
    });
    let got = std::fs::read(&p).unwrap();
    assert_eq!(got.len(), 4096);
    assert!(got.iter().all(|&b| b == got[0]) && got[0] < 8);
    assert_eq!(temporaries(&p, ".tmp-"), 0);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
}
