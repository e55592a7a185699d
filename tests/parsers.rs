//! Property tests of every parser of user files: random bytes, and valid files truncated or
//! with a flipped bit, give `Ok` (a value that is consistent) or `Err`, and never a panic.
//! CSV and NPY tables, IDX (raw and gzip), the LM's model.json + weights.npy, golden files,
//! and the text loader of `train lm --data`. (state.json and params.jsonl are the run
//! directory's and tested with it.)

mod common;

use std::path::Path;

use proptest::prelude::*;

use collapse_kernels::io::idx::{IdxImages, decode_idx_images, encode_idx_images};
use collapse_kernels::io::table::{Matrix, parse_csv, parse_npy};
use collapse_kernels::io::write_npy;
use collapse_kernels::measure::goldens;
use collapse_kernels::models::lm::{self, LmConfig};

/// Cases per property: enough to reach the odd corners, few enough for a fast suite.
const CASES: u32 = 128;

/// A valid file mutated: cut to `cut` (a fraction of its length) when `truncate`, else bit
/// `bit` of byte `at` (fractions of the length) flipped.
fn mutate(good: &[u8], truncate: bool, frac: f64, bit: u8) -> Vec<u8> {
    let i = ((good.len() as f64 * frac) as usize).min(good.len().saturating_sub(1));
    if truncate {
        good[..i].to_vec()
    } else {
        let mut b = good.to_vec();
        if !b.is_empty() {
            b[i] ^= 1 << (bit % 8);
        }
        b
    }
}

/// A valid matrix's invariants.
fn consistent(m: &Matrix) {
    assert_eq!(m.rows.checked_mul(m.cols), Some(m.data.len()));
}

fn npy_bytes(m: &Matrix) -> Vec<u8> {
    let dir = common::tmpdir("npy-bytes");
    let p = dir.join(format!("m{}.npy", m.data.len()));
    write_npy(&p, m).unwrap();
    std::fs::read(&p).unwrap()
}

fn small_idx() -> IdxImages {
    IdxImages {
        count: 3,
        rows: 4,
        cols: 5,
        pixels: (0..60).map(|i| (i * 7) as u8).collect(),
    }
}

/// A small LM's model directory, as `collapse train lm` writes it.
fn lm_dir(dir: &Path) -> LmConfig {
    let cfg = LmConfig {
        width: 4,
        layers: 1,
        heads: 2,
        context: 6,
        ..Default::default()
    };
    lm::save_model(dir, &cfg, &lm::init_params(&cfg, 1), serde_json::json!({})).unwrap();
    cfg
}

fn golden_text() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("results/golden/fingerprints.json"),
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, .. ProptestConfig::default() })]

    #[test]
    fn csv_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(m) = parse_csv(&bytes) {
            consistent(&m);
            prop_assert!(m.data.iter().all(|v| v.is_finite()));
        }
    }

    #[test]
    fn csv_number_like_text(text in "[0-9a-z.,#\"\\- \r\n]{0,200}") {
        if let Ok(m) = parse_csv(text.as_bytes()) {
            consistent(&m);
        }
    }

    #[test]
    fn npy_any_bytes(tail in proptest::collection::vec(any::<u8>(), 0..300), magic in any::<bool>()) {
        // Half the cases start with the magic and a version, to reach the header parser.
        let bytes = if magic {
            [b"\x93NUMPY\x01\x00".to_vec(), tail].concat()
        } else {
            tail
        };
        if let Ok(m) = parse_npy(&bytes) {
            consistent(&m);
        }
    }

    #[test]
    fn npy_header_text(header in "[{}()\\[\\]':, 0-9a-zA-Z<>_]{0,120}", data in 0usize..64) {
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend((header.len() as u16).to_le_bytes());
        b.extend(header.as_bytes());
        b.extend(vec![0u8; data]);
        if let Ok(m) = parse_npy(&b) {
            consistent(&m);
        }
    }

    #[test]
    fn npy_mutated(rows in 1usize..5, cols in 1usize..5, truncate in any::<bool>(),
                   frac in 0.0f64..1.0, bit in any::<u8>()) {
        let m = Matrix::new(rows, cols, (0..rows * cols).map(|i| i as f64 * 0.5).collect()).unwrap();
        let good = npy_bytes(&m);
        prop_assert_eq!(parse_npy(&good).unwrap(), m);
        if let Ok(m) = parse_npy(&mutate(&good, truncate, frac, bit)) {
            consistent(&m);
        }
    }

    #[test]
    fn idx_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300), gz in any::<bool>()) {
        let bytes = if gz { [vec![0x1f, 0x8b], bytes].concat() } else { bytes };
        if let Ok(img) = decode_idx_images(&bytes) {
            prop_assert_eq!(img.pixels.len(), img.count * img.dim());
        }
    }

    #[test]
    fn idx_mutated(gz in any::<bool>(), truncate in any::<bool>(), frac in 0.0f64..1.0,
                   bit in any::<u8>()) {
        let good = encode_idx_images(&small_idx(), gz);
        prop_assert_eq!(decode_idx_images(&good).unwrap(), small_idx());
        if let Ok(img) = decode_idx_images(&mutate(&good, truncate, frac, bit)) {
            prop_assert_eq!(img.pixels.len(), img.count * img.dim());
        }
    }

    #[test]
    fn golden_mutated(truncate in any::<bool>(), frac in 0.0f64..1.0, bit in any::<u8>()) {
        let good = golden_text();
        prop_assert!(goldens::parse(&good).is_ok());
        let bytes = mutate(good.as_bytes(), truncate, frac, bit);
        if let Ok(text) = std::str::from_utf8(&bytes)
            && let Ok(g) = goldens::parse(text)
        {
            prop_assert!(goldens::validate(&g).is_ok());
        }
    }

    #[test]
    fn golden_any_text(text in "[{}\\[\\]\":, 0-9a-z._\\-]{0,200}") {
        let _ = goldens::parse(&text);
    }

    #[test]
    fn text_loader_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let dir = common::tmpdir("text-any");
        let p = dir.join("t.txt");
        std::fs::write(&p, &bytes).unwrap();
        if let Ok(c) = lm::train::load_corpus(std::slice::from_ref(&p)) {
            prop_assert!(!c.train.is_empty() && !c.val.is_empty());
        }
        let _ = lm::train::records(&String::from_utf8_lossy(&bytes));
    }
}

proptest! {
    // Each case writes a model directory: fewer cases.
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn lm_model_dir_mutated(json in any::<bool>(), truncate in any::<bool>(),
                            frac in 0.0f64..1.0, bit in any::<u8>()) {
        let dir = common::tmpdir("lm-model");
        let cfg = lm_dir(&dir);
        prop_assert_eq!(lm::load_model(&dir).unwrap().0, cfg);
        let file = dir.join(if json { "model.json" } else { "weights.npy" });
        let good = std::fs::read(&file).unwrap();
        std::fs::write(&file, mutate(&good, truncate, frac, bit)).unwrap();
        if let Ok((c, p)) = lm::load_model(&dir) {
            prop_assert!(lm::check_params(&c, &p).is_ok());
        }
    }

    #[test]
    fn lm_model_json_settings(width in 0usize..1 << 40, layers in 0usize..1 << 40,
                              heads in 0usize..9, context in 0usize..1 << 40) {
        // Any sizes in model.json: an error (the weights hold a 4-wide, 1-layer model's
        // parameters) or the one matching shape; never a hang or an allocation of their size.
        let dir = common::tmpdir("lm-json");
        lm_dir(&dir);
        let path = dir.join("model.json");
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        v["config"]["width"] = width.into();
        v["config"]["layers"] = layers.into();
        v["config"]["heads"] = heads.into();
        v["config"]["context"] = context.into();
        std::fs::write(&path, v.to_string()).unwrap();
        match lm::load_model(&dir) {
            Ok((c, p)) => prop_assert!(lm::check_params(&c, &p).is_ok()),
            Err(e) => prop_assert!(e.to_string().contains("model.json"), "{}", e),
        }
    }
}
