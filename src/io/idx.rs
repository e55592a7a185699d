//! The IDX format of MNIST and Fashion-MNIST image files, raw or gzip-compressed.
//!
//! Layout (big-endian): bytes 0–1 zero, byte 2 the element type (`0x08` = unsigned byte, the
//! only one image files use), byte 3 the number of dimensions (3 for images: count, rows,
//! columns), then one u32 per dimension, then the elements in row-major order. A file is
//! rejected with a message naming what is wrong: bad magic, another element type or dimension
//! count, a zero dimension, or a length that does not match the header (truncated or trailing
//! bytes). Gzip is recognised by its magic bytes `1f 8b`, whatever the file is called.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// Images from an IDX file: `count` images of `rows × cols` unsigned bytes, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct IdxImages {
    /// Number of images.
    pub count: usize,
    /// Rows per image.
    pub rows: usize,
    /// Columns per image.
    pub cols: usize,
    /// Pixels `[count][rows][cols]`.
    pub pixels: Vec<u8>,
}

impl IdxImages {
    /// Pixels per image.
    pub fn dim(&self) -> usize {
        self.rows * self.cols
    }

    /// Image `i` scaled to [0, 1] (pixel / 255).
    pub fn image_f64(&self, i: usize) -> impl Iterator<Item = f64> + '_ {
        self.pixels[i * self.dim()..(i + 1) * self.dim()]
            .iter()
            .map(|&p| p as f64 / 255.0)
    }
}

/// Read an IDX image file (raw or gzip). A gzip file is inflated only as far as its header
/// promises (plus one byte, to tell trailing data), so a stream that inflates past that is
/// refused without inflating it whole.
pub fn read_idx_images(path: &Path) -> Result<IdxImages> {
    let raw = std::fs::read(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    decode_idx_images(&raw).map_err(|e| match e {
        Error::Data(m) => Error::Data(format!("{}: {m}", path.display())),
        e => e,
    })
}

/// Decode the bytes of an IDX image file, raw or gzip-compressed (recognised by the magic
/// bytes `1f 8b`), as [`read_idx_images`] does (errors without the file's name). Any byte
/// string gives `Ok` or `Err`, never a panic.
pub fn decode_idx_images(raw: &[u8]) -> Result<IdxImages> {
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return parse_idx_images(raw);
    }
    let gz = |e: std::io::Error| Error::Data(format!("bad gzip stream: {e}"));
    let mut dec = flate2::read::GzDecoder::new(raw);
    let mut out = Vec::new();
    (&mut dec).take(16).read_to_end(&mut out).map_err(gz)?;
    if out.len() == 16 {
        // The header is whole: inflate no more than it promises, plus one byte.
        let want = header_dims(&out)?.3;
        let limit = u64::try_from(want).unwrap_or(u64::MAX).saturating_add(1);
        dec.take(limit).read_to_end(&mut out).map_err(gz)?;
    }
    parse_idx_images(&out)
}

/// Training images inside `dir`, for a data set installed as a directory (Debian's
/// `dataset-fashion-mnist` installs `/usr/share/datasets/fashion-mnist` holding
/// `train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz` and their `t10k-` test
/// counterparts): the IDX file (by name, see [`is_idx_name`]) whose name starts with
/// `train-images`, the uncompressed one first when both are there. Its test images are then
/// found beside it as `t10k-images…`. Errors name the directory and what was looked for.
pub fn training_images_in(dir: &Path) -> Result<std::path::PathBuf> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
    let mut found: Vec<std::path::PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("train-images") && is_idx_name(p) && p.is_file()
        })
        .collect();
    // Uncompressed before gzip, then by name: the same choice on every machine.
    found.sort_by_key(|p| (p.extension().is_some_and(|e| e == "gz"), p.clone()));
    found.into_iter().next().ok_or_else(|| {
        Error::Data(format!(
            "{} is a directory without IDX training images (looked for \
             train-images-idx3-ubyte[.gz] or another train-images*-ubyte[.gz] / *.idx[.gz] file); \
             give the image file itself",
            dir.display()
        ))
    })
}

/// IDX files are recognised by name: `*-ubyte`, `*-ubyte.gz`, `*.idx`, `*.idx.gz` (MNIST's
/// and Fashion-MNIST's naming), case-insensitive.
pub fn is_idx_name(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let stem = name.strip_suffix(".gz").unwrap_or(&name);
    stem.ends_with("-ubyte") || stem.ends_with(".idx")
}

/// `(count, rows, cols, count·rows·cols)` of a whole 16-byte image-file header, checked: magic,
/// element type, 3 dimensions, none 0, a product that fits `usize`.
fn header_dims(b: &[u8]) -> Result<(usize, usize, usize, usize)> {
    let bad = |m: String| Err(Error::Data(m));
    if b.len() < 4 {
        return bad(format!("{} bytes: too short for an IDX header", b.len()));
    }
    if b[0] != 0 || b[1] != 0 {
        return bad(format!(
            "not an IDX file (magic starts {:02x} {:02x}, expected 00 00)",
            b[0], b[1]
        ));
    }
    if b[2] != 0x08 {
        return bad(format!(
            "IDX element type 0x{:02x}; image files hold unsigned bytes (0x08)",
            b[2]
        ));
    }
    if b[3] != 3 {
        return bad(format!(
            "IDX file with {} dimensions; image files have 3 (count, rows, columns){}",
            b[3],
            if b[3] == 1 {
                " — this looks like a label file"
            } else {
                ""
            }
        ));
    }
    if b.len() < 16 {
        return bad(format!("{} bytes: the header needs 16", b.len()));
    }
    let dim =
        |i: usize| u32::from_be_bytes([b[4 + 4 * i], b[5 + 4 * i], b[6 + 4 * i], b[7 + 4 * i]]);
    let (count, rows, cols) = (dim(0) as usize, dim(1) as usize, dim(2) as usize);
    if count == 0 || rows == 0 || cols == 0 {
        return bad(format!(
            "IDX dimensions {count} × {rows} × {cols}: none may be 0"
        ));
    }
    let want = count
        .checked_mul(rows)
        .and_then(|v| v.checked_mul(cols))
        .ok_or_else(|| Error::Data(format!("IDX dimensions {count} × {rows} × {cols} overflow")))?;
    Ok((count, rows, cols, want))
}

/// Parse the bytes of an (uncompressed) IDX image file.
pub fn parse_idx_images(b: &[u8]) -> Result<IdxImages> {
    let bad = |m: String| Err(Error::Data(m));
    let (count, rows, cols, want) = header_dims(b)?;
    let have = b.len() - 16;
    if have != want {
        return bad(format!(
            "the header promises {count} images of {rows} × {cols} = {want} bytes, the file \
             holds {have}{}",
            if have < want {
                " (truncated)"
            } else {
                " (trailing bytes)"
            }
        ));
    }
    Ok(IdxImages {
        count,
        rows,
        cols,
        pixels: b[16..].to_vec(),
    })
}

/// The IDX bytes of `img` (gzip-compressed when `gzip`): for tests and for small data sets.
pub fn encode_idx_images(img: &IdxImages, gzip: bool) -> Vec<u8> {
    let mut b = vec![0, 0, 0x08, 3];
    for v in [img.count, img.rows, img.cols] {
        b.extend_from_slice(&(v as u32).to_be_bytes());
    }
    b.extend_from_slice(&img.pixels);
    if gzip {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&b).expect("writing to memory");
        e.finish().expect("writing to memory")
    } else {
        b
    }
}

/// Write a grid of grayscale images (values in [0, 1], each `rows × cols`) as one PNG, `per_row`
/// images per grid row with a 2-pixel gap, atomically.
pub fn write_png_grid(
    path: &Path,
    images: &[f64],
    (rows, cols): (usize, usize),
    per_row: usize,
) -> Result<()> {
    let n = images.len() / (rows * cols);
    if n == 0 || per_row == 0 {
        return Err(Error::InvalidArgument("no images to draw".into()));
    }
    let gap = 2;
    let gw = per_row.min(n);
    let gh = n.div_ceil(gw);
    let (w, h) = (gw * (cols + gap) + gap, gh * (rows + gap) + gap);
    let mut px = vec![64u8; w * h];
    for i in 0..n {
        let (gy, gx) = (i / gw, i % gw);
        for r in 0..rows {
            for c in 0..cols {
                let v = images[i * rows * cols + r * cols + c];
                let y = gap + gy * (rows + gap) + r;
                let x = gap + gx * (cols + gap) + c;
                px[y * w + x] = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w as u32, h as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc
            .write_header()
            .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
        wr.write_image_data(&px)
            .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    }
    crate::io::write_atomic(path, &out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> IdxImages {
        IdxImages {
            count: 3,
            rows: 2,
            cols: 4,
            pixels: (0..24).map(|i| (i * 10) as u8).collect(),
        }
    }

    #[test]
    fn round_trips_raw_and_gzip() {
        let img = small();
        for gz in [false, true] {
            let dir =
                std::env::temp_dir().join(format!("collapse-idx-{}-{gz}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let p = dir.join("x.idx");
            std::fs::write(&p, encode_idx_images(&img, gz)).unwrap();
            assert_eq!(read_idx_images(&p).unwrap(), img);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let good = encode_idx_images(&small(), false);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (good[..10].to_vec(), "header needs 16"),
            (good[..good.len() - 1].to_vec(), "truncated"),
            ([good.clone(), vec![0]].concat(), "trailing"),
            ([vec![1, 0], good[2..].to_vec()].concat(), "not an IDX file"),
            (
                [vec![0, 0, 0x0d], good[3..].to_vec()].concat(),
                "element type 0x0d",
            ),
            (
                [vec![0, 0, 8, 1], good[4..].to_vec()].concat(),
                "label file",
            ),
            (
                vec![0, 0, 8, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1],
                "may be 0",
            ),
            (vec![0, 0], "too short"),
        ];
        for (b, want) in cases {
            let e = parse_idx_images(&b).unwrap_err().to_string();
            assert!(e.contains(want), "{e} (wanted {want:?})");
        }
    }

    #[test]
    fn png_grid_is_written() {
        let dir = std::env::temp_dir().join(format!("collapse-png-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("g.png");
        let imgs: Vec<f64> = (0..5 * 6).map(|i| i as f64 / 29.0).collect();
        write_png_grid(&p, &imgs, (2, 3), 2).unwrap();
        let b = std::fs::read(&p).unwrap();
        assert!(b.starts_with(b"\x89PNG"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
