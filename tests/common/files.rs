//! The image outputs, decoded so tests check what they show rather than that they exist: PNG
//! grids (`samples.png`, `samples/gNNNN.png`) and plotters' SVG plots (legend labels, series).

use std::path::Path;

/// An 8-bit grayscale PNG: `width × height` pixels, row-major.
pub struct Gray {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// The pixels, row by row.
    pub pixels: Vec<u8>,
}

impl Gray {
    /// Decode the PNG at `path`; panics unless it is 8-bit grayscale.
    pub fn read(path: &Path) -> Gray {
        let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut reader = png::Decoder::new(file)
            .read_info()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader
            .next_frame(&mut buf)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            (info.color_type, info.bit_depth),
            (png::ColorType::Grayscale, png::BitDepth::Eight),
            "{}",
            path.display()
        );
        buf.truncate(info.buffer_size());
        Gray {
            width: info.width as usize,
            height: info.height as usize,
            pixels: buf,
        }
    }

    /// Tile `i` of a grid written by `io::idx::write_png_grid` (`per_row` tiles of
    /// `rows × cols` per grid row, 2-pixel gaps), as its pixels row-major.
    pub fn tile(&self, i: usize, (rows, cols): (usize, usize), per_row: usize) -> Vec<u8> {
        let gap = 2;
        let (gy, gx) = (i / per_row, i % per_row);
        (0..rows)
            .flat_map(|r| {
                let y = gap + gy * (rows + gap) + r;
                let x = gap + gx * (cols + gap);
                self.pixels[y * self.width + x..y * self.width + x + cols].to_vec()
            })
            .collect()
    }
}

/// The size in pixels of a `write_png_grid` grid of `n` tiles of `rows × cols`, `per_row` to a
/// grid row, 2-pixel gaps around every tile.
pub fn grid_size(n: usize, (rows, cols): (usize, usize), per_row: usize) -> (usize, usize) {
    let gw = per_row.min(n);
    let gh = n.div_ceil(gw);
    (gw * (cols + 2) + 2, gh * (rows + 2) + 2)
}

/// Check a `write_png_grid` PNG of `n` tiles of `rows × cols`: its size, and that every tile
/// shows an image that is not constant (a broken decoder or an all-zero sampler draws flat
/// tiles). Returns the decoded grid.
pub fn check_grid(path: &Path, n: usize, shape: (usize, usize), per_row: usize) -> Gray {
    let g = Gray::read(path);
    assert_eq!(
        (g.width, g.height),
        grid_size(n, shape, per_row),
        "{}: size",
        path.display()
    );
    for i in 0..n {
        let t = g.tile(i, shape, per_row);
        assert!(
            t.iter().any(|&p| p != t[0]),
            "{}: tile {i} is constant ({})",
            path.display(),
            t[0]
        );
    }
    g
}

/// The text of every `<text>` element of the SVG at `path`, in document order (plotters writes
/// the title, the axis descriptions, the tick labels, then the legend's labels).
pub fn svg_texts(path: &Path) -> Vec<String> {
    let s = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    let mut rest = s.as_str();
    while let Some(i) = rest.find("<text") {
        rest = &rest[i..];
        let open = rest.find('>').expect("a <text> element closes its tag") + 1;
        let close = rest.find("</text>").expect("a <text> element ends");
        out.push(rest[open..close].trim().to_string());
        rest = &rest[close..];
    }
    out
}

/// The legend of a plotters SVG: its last `n` texts, which must be the series' `labels` in
/// order (checked here).
pub fn check_legend(path: &Path, labels: &[&str]) {
    let texts = svg_texts(path);
    assert!(texts.len() >= labels.len(), "{}: {texts:?}", path.display());
    assert_eq!(
        &texts[texts.len() - labels.len()..],
        labels,
        "{}: legend",
        path.display()
    );
}

/// The number of data lines drawn 2 pixels wide (every series' line and its legend sample are
/// `<polyline … stroke-width="2">`; the grid and axes are thinner).
pub fn svg_wide_lines(path: &Path) -> usize {
    let s = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    s.split("<polyline")
        .skip(1)
        .filter(|p| p[..p.find('>').unwrap_or(p.len())].contains("stroke-width=\"2\""))
        .count()
}
