//! Launcher for the matmul kernels (`shaders/matmul.wgsl`, `matmul_vec4.wgsl`,
//! `matmul_f16.wgsl`, sharing `common/matmul_core.wgsl`) and the per-adapter tile autotune.
//!
//! **Which kernel.** f16 storage → `matmul_f16.wgsl`; else `matmul_vec4.wgsl` when every vec4
//! tile load is aligned (see [`vec4_ok`]); else the scalar `matmul.wgsl`, which takes any shape.
//!
//! **Tile shape.** The kernels' `override` constants (workgroup `WG_X × WG_Y`, register block
//! `TM × TN`, K step `BK`) come from one of [`TILE_CONFIGS`]. The first matmul on an adapter
//! picks one ([`choose_tile`]): the env `COLLAPSE_MATMUL_TILE=NAME` if set; else a choice cached
//! on disk for this adapter and driver (`$COLLAPSE_CACHE_DIR`, else `$XDG_CACHE_HOME/collapse-kernels`,
//! else `~/.cache/collapse-kernels`, file `matmul-tiles.json`); else a small autotune that times
//! every shape on a square product (1024³ on a GPU, 128³ on a CPU adapter) and keeps the
//! fastest, then writes it to that cache. [`TileChoice`] says which and how it was chosen;
//! `collapse bench matmul` prints it.
//!
//! **Big operands.** `Backend::matmul` runs a problem whose A, B or C exceeds one storage
//! binding (or whose C exceeds the grid) as several launches that fit, through
//! [`crate::ops::matmul::split_launches`]; [`launch`] on device-resident operands (the VAE and LM
//! trainers) takes one launch's worth and says so otherwise.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::gpu::{BufferRange, GpuContext, MAX_WORKGROUPS_PER_DIM};
use crate::ops::matmul::{Matmul, Storage};

/// One tile shape of the matmul kernels (values of their `override` constants).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TileConfig {
    /// Name used by `COLLAPSE_MATMUL_TILE` and in reports.
    pub name: &'static str,
    /// Workgroup width (invocations along N).
    pub wg_x: u32,
    /// Workgroup height (invocations along M).
    pub wg_y: u32,
    /// Rows of C per invocation (4 or 8).
    pub tm: u32,
    /// Columns of C per invocation (4 or 8).
    pub tn: u32,
    /// K step per workgroup-memory tile (a multiple of 4).
    pub bk: u32,
}

impl TileConfig {
    /// Rows of C per workgroup.
    pub fn bm(&self) -> u32 {
        self.wg_y * self.tm
    }
    /// Columns of C per workgroup.
    pub fn bn(&self) -> u32 {
        self.wg_x * self.tn
    }
    /// The pipeline constants.
    pub fn constants(&self) -> [(&'static str, f64); 5] {
        [
            ("WG_X", self.wg_x as f64),
            ("WG_Y", self.wg_y as f64),
            ("TM", self.tm as f64),
            ("TN", self.tn as f64),
            ("BK", self.bk as f64),
        ]
    }
    /// Bytes of workgroup memory it uses (both tiles, each k row padded by 4 floats).
    pub fn workgroup_bytes(&self) -> u32 {
        4 * self.bk * (self.bm() + 4 + self.bn() + 4)
    }
}

/// The tile shapes the autotune chooses from. TM and TN are 4 or 8 (the kernels' register
/// block is made of 4 × 4 micro-tiles held in named vec4 registers); BK is a multiple of 4.
pub const TILE_CONFIGS: [TileConfig; 6] = [
    TileConfig {
        name: "64x64k16_4x4",
        wg_x: 16,
        wg_y: 16,
        tm: 4,
        tn: 4,
        bk: 16,
    },
    TileConfig {
        name: "128x128k8_8x8",
        wg_x: 16,
        wg_y: 16,
        tm: 8,
        tn: 8,
        bk: 8,
    },
    TileConfig {
        name: "128x128k16_8x8",
        wg_x: 16,
        wg_y: 16,
        tm: 8,
        tn: 8,
        bk: 16,
    },
    TileConfig {
        name: "128x64k8_8x4",
        wg_x: 16,
        wg_y: 16,
        tm: 8,
        tn: 4,
        bk: 8,
    },
    TileConfig {
        name: "64x128k8_4x8",
        wg_x: 16,
        wg_y: 16,
        tm: 4,
        tn: 8,
        bk: 8,
    },
    TileConfig {
        name: "32x32k16_4x4",
        wg_x: 8,
        wg_y: 8,
        tm: 4,
        tn: 4,
        bk: 16,
    },
];

/// The tile configuration by name.
pub fn tile_by_name(name: &str) -> Result<TileConfig> {
    TILE_CONFIGS
        .iter()
        .find(|t| t.name == name)
        .copied()
        .ok_or_else(|| {
            let names: Vec<&str> = TILE_CONFIGS.iter().map(|t| t.name).collect();
            Error::InvalidArgument(format!(
                "unknown matmul tile {name:?}; choose one of {}",
                names.join(", ")
            ))
        })
}

/// The tile chosen for an adapter, and how.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TileChoice {
    /// The configuration.
    pub tile: TileConfig,
    /// `env` (COLLAPSE_MATMUL_TILE), `cache FILE` or `autotune`.
    pub source: String,
    /// The autotune's measurements, GFLOP/s per tile name (empty unless it ran now).
    pub tuned: Vec<(String, f64)>,
    /// The square size the autotune timed.
    pub tune_size: usize,
}

/// `MatmulParams` of `common/matmul_core.wgsl` (uniform, 64 bytes).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    batch0: u32,
    rs_a: u32,
    cs_a: u32,
    rs_b: u32,
    cs_b: u32,
    stride_a: u32,
    stride_b: u32,
    stride_c: u32,
    epilogue: u32,
    alpha: f32,
    beta: f32,
    pad: [u32; 2],
}

/// Whether `matmul_vec4.wgsl` may run `p`: f32 storage, and the contiguous dimension of each
/// operand and its batch stride are multiples of 4 (so every vec4 is aligned and lies wholly
/// inside or outside the matrix).
pub fn vec4_ok(p: &Matmul) -> bool {
    let a_contig = if p.trans_a { p.m } else { p.k };
    let b_contig = if p.trans_b { p.k } else { p.n };
    p.storage == Storage::F32
        && a_contig.is_multiple_of(4)
        && b_contig.is_multiple_of(4)
        && (p.batch == 1 || (p.stride_a.is_multiple_of(4) && p.stride_b.is_multiple_of(4)))
}

/// The shader file that runs `p`.
pub fn shader_for(p: &Matmul, allow_vec4: bool) -> &'static str {
    match p.storage {
        Storage::F16 => "matmul_f16.wgsl",
        Storage::F32 if allow_vec4 && vec4_ok(p) => "matmul_vec4.wgsl",
        Storage::F32 => "matmul.wgsl",
    }
}

/// Operands on the device, in the layouts of [`crate::ops::matmul`]: A and B as f32 (or as f16 bits
/// with f16 storage), bias f32 (a one-element dummy when there is none), C f32.
pub struct DeviceOperands {
    /// A.
    pub a: BufferRange,
    /// B.
    pub b: BufferRange,
    /// Bias.
    pub bias: BufferRange,
    /// C (read when β ≠ 0, written).
    pub c: BufferRange,
}

fn storage_bytes(p: &Matmul, x: &[f64]) -> Vec<u8> {
    match p.storage {
        Storage::F32 => {
            let v: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            bytemuck::cast_slice(&v).to_vec()
        }
        Storage::F16 => {
            let mut v: Vec<u16> = x
                .iter()
                .map(|&v| half::f16::from_f64(v).to_bits())
                .collect();
            if v.len() % 2 == 1 {
                v.push(0);
            }
            bytemuck::cast_slice(&v).to_vec()
        }
    }
}

/// Check `p` against the adapter: f16 support, binding sizes, grid size.
pub fn check_device(gpu: &GpuContext, p: &Matmul, tile: &TileConfig) -> Result<()> {
    if p.storage == Storage::F16 && !gpu.features().contains(wgpu::Features::SHADER_F16) {
        return Err(Error::Unsupported(format!(
            "f16 storage needs SHADER_F16, which adapter {} lacks",
            gpu.info.name
        )));
    }
    let w = if p.storage == Storage::F16 { 2 } else { 4 };
    let max = gpu.max_binding_elements(1);
    for (name, bytes) in [
        ("A", p.len_a() as u64 * w),
        ("B", p.len_b() as u64 * w),
        ("C", p.len_c() as u64 * 4),
    ] {
        if bytes > max {
            return Err(Error::InvalidArgument(format!(
                "matmul {}: {name} takes {bytes} bytes, over the adapter's binding limit of \
                 {max} bytes; split the product (fewer batches or fewer rows per call)",
                p.label()
            )));
        }
    }
    let gx = (p.n as u64).div_ceil(tile.bn() as u64);
    let gy = (p.m as u64).div_ceil(tile.bm() as u64);
    if gx > MAX_WORKGROUPS_PER_DIM as u64 || gy > MAX_WORKGROUPS_PER_DIM as u64 {
        return Err(Error::InvalidArgument(format!(
            "matmul {}: {gx} × {gy} workgroups exceed {MAX_WORKGROUPS_PER_DIM} per dimension",
            p.label()
        )));
    }
    Ok(())
}

/// Upload the operands of `p` (C only when β ≠ 0; otherwise a fresh, poisoned-in-tests buffer).
pub fn upload(
    gpu: &GpuContext,
    p: &Matmul,
    a: &[f64],
    b: &[f64],
    bias: Option<&[f64]>,
    c: &[f64],
) -> Result<DeviceOperands> {
    let a = gpu.input_buffer("matmul A", &storage_bytes(p, a))?;
    let b = gpu.input_buffer("matmul B", &storage_bytes(p, b))?;
    let bias: Vec<f32> = match bias {
        Some(v) => v.iter().map(|&x| x as f32).collect(),
        None => vec![0.0],
    };
    let bias = gpu.input_buffer("matmul bias", bytemuck::cast_slice(&bias))?;
    let c = if p.beta != 0.0 {
        let v: Vec<f32> = c.iter().map(|&x| x as f32).collect();
        gpu.input_buffer("matmul C", bytemuck::cast_slice(&v))?
    } else {
        gpu.output_buffer("matmul C", (p.len_c() * 4) as u64)?
    };
    Ok(DeviceOperands {
        a: a.into(),
        b: b.into(),
        bias: bias.into(),
        c: c.into(),
    })
}

/// Run `p` on device-resident operands with tile `tile`, waiting for it; returns the summed
/// kernel seconds (GPU timestamps where the adapter has them). `allow_vec4 = false` forces the
/// scalar kernel (tests use it to cover both).
pub fn launch(
    gpu: &GpuContext,
    p: &Matmul,
    tile: &TileConfig,
    ops: &DeviceOperands,
    allow_vec4: bool,
) -> Result<f64> {
    check_device(gpu, p, tile)?;
    let shader = shader_for(p, allow_vec4);
    let pipeline = gpu.pipeline_with(shader, "matmul", &tile.constants())?;
    let (rs_a, cs_a) = p.strides_a();
    let (rs_b, cs_b) = p.strides_b();
    let gx = (p.n as u32).div_ceil(tile.bn());
    let gy = (p.m as u32).div_ceil(tile.bm());
    let label = format!("{shader}:matmul[{}]", tile.name);
    let mut seconds = 0.0;
    let mut batch0 = 0usize;
    while batch0 < p.batch {
        let nb = (p.batch - batch0).min(MAX_WORKGROUPS_PER_DIM as usize);
        let params = Params {
            m: p.m as u32,
            n: p.n as u32,
            k: p.k as u32,
            batch0: batch0 as u32,
            rs_a: rs_a as u32,
            cs_a: cs_a as u32,
            rs_b: rs_b as u32,
            cs_b: cs_b as u32,
            stride_a: p.stride_a as u32,
            stride_b: p.stride_b as u32,
            stride_c: p.stride_c as u32,
            epilogue: p.epilogue.code(),
            alpha: p.alpha as f32,
            beta: p.beta as f32,
            pad: [0; 2],
        };
        let uniform = gpu.uniform_buffer("matmul params", bytemuck::bytes_of(&params))?;
        let bind = gpu.bind(&pipeline, &[&uniform, &ops.a, &ops.b, &ops.bias, &ops.c])?;
        seconds += gpu
            .dispatch3(&label, &pipeline, &bind, (gx, gy, nb as u32))?
            .seconds;
        batch0 += nb;
    }
    Ok(seconds)
}

/// `C = act(α·op(A)·op(B) + β·C + bias)` on host slices with tile `tile` (validates, uploads,
/// launches, reads C back widened to f64).
#[allow(clippy::too_many_arguments)]
pub fn matmul_with(
    gpu: &GpuContext,
    tile: &TileConfig,
    allow_vec4: bool,
    p: &Matmul,
    a: &[f64],
    b: &[f64],
    bias: Option<&[f64]>,
    c: &mut [f64],
) -> Result<()> {
    p.validate(a.len(), b.len(), bias.map(<[f64]>::len), c.len())?;
    check_device(gpu, p, tile)?;
    let ops = upload(gpu, p, a, b, bias, c)?;
    launch(gpu, p, tile, &ops, allow_vec4)?;
    let got: Vec<f32> = gpu.read_buffer(&ops.c, p.len_c())?;
    for (o, v) in c.iter_mut().zip(got) {
        *o = v as f64;
    }
    Ok(())
}

/// The folder the autotune cache lives in (see the module documentation), if one is known.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("COLLAPSE_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("collapse-kernels"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/collapse-kernels"))
}

fn adapter_key(gpu: &GpuContext) -> String {
    format!(
        "{} | {:?} | {} {}",
        gpu.info.name, gpu.info.backend, gpu.info.driver, gpu.info.driver_info
    )
}

/// Pick the tile shape for this adapter as the module documentation describes, with the disk
/// cache in `cache` (a JSON map from adapter and driver to tile name; `None`: no cache).
pub fn choose_tile(gpu: &GpuContext, cache_file: Option<&std::path::Path>) -> Result<TileChoice> {
    let cpu = gpu.info.device_type == wgpu::DeviceType::Cpu;
    let tune_size = if cpu { 128 } else { 1024 };
    if let Ok(name) = std::env::var("COLLAPSE_MATMUL_TILE") {
        return Ok(TileChoice {
            tile: tile_by_name(&name)?,
            source: "env COLLAPSE_MATMUL_TILE".into(),
            tuned: Vec::new(),
            tune_size,
        });
    }
    let key = adapter_key(gpu);
    let file = cache_file.map(std::path::Path::to_path_buf);
    let mut cache: BTreeMap<String, String> = file
        .as_ref()
        .and_then(|f| std::fs::read(f).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    if let Some(tile) = cache.get(&key).and_then(|n| tile_by_name(n).ok()) {
        return Ok(TileChoice {
            tile,
            source: format!(
                "cache {}",
                file.as_ref()
                    .map(|f| f.display().to_string())
                    .unwrap_or_default()
            ),
            tuned: Vec::new(),
            tune_size,
        });
    }
    // Autotune: one square product, every tile that fits the adapter, best of 3 after a warm-up.
    let n = tune_size;
    let p = Matmul::new(n, n, n);
    let data: Vec<f64> = (0..n * n)
        .map(|i| ((i * 7919) % 1009) as f64 / 1009.0 - 0.5)
        .collect();
    let max_wg = gpu.limits().max_compute_workgroup_storage_size;
    let max_inv = gpu.limits().max_compute_invocations_per_workgroup;
    let mut tuned = Vec::new();
    let mut best: Option<(TileConfig, f64)> = None;
    for tile in TILE_CONFIGS {
        if tile.workgroup_bytes() > max_wg || tile.wg_x * tile.wg_y > max_inv {
            continue;
        }
        let ops = upload(gpu, &p, &data, &data, None, &[])?;
        launch(gpu, &p, &tile, &ops, true)?;
        let mut t = f64::INFINITY;
        for _ in 0..3 {
            t = t.min(launch(gpu, &p, &tile, &ops, true)?);
        }
        let gflops = p.flops() / t * 1e-9;
        tuned.push((tile.name.to_string(), gflops));
        if best.is_none_or(|(_, b)| t < b) {
            best = Some((tile, t));
        }
    }
    let (tile, _) = best.ok_or_else(|| {
        Error::Unsupported(format!("no matmul tile fits adapter {}", gpu.info.name))
    })?;
    let mut source = "autotune".to_string();
    if let Some(f) = &file {
        cache.insert(key, tile.name.to_string());
        let saved = f
            .parent()
            .map(std::fs::create_dir_all)
            .transpose()
            .ok()
            .and_then(|_| serde_json::to_vec_pretty(&cache).ok())
            .and_then(|bytes| crate::io::write_atomic(f, &bytes).ok());
        source += &match saved {
            Some(()) => format!(" (saved to {})", f.display()),
            None => format!(" (could not save to {})", f.display()),
        };
    }
    Ok(TileChoice {
        tile,
        source,
        tuned,
        tune_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernels' register block is 4 × 4 vec4 micro-tiles and the tile loads store whole
    /// vec4s: every shape must have TM, TN in {4, 8} and BK a multiple of 4.
    #[test]
    fn every_tile_fits_the_vec4_register_block() {
        for t in TILE_CONFIGS {
            assert!(matches!(t.tm, 4 | 8) && matches!(t.tn, 4 | 8), "{}", t.name);
            assert_eq!(t.bk % 4, 0, "{}", t.name);
            assert_eq!(
                t.name,
                format!("{}x{}k{}_{}x{}", t.bm(), t.bn(), t.bk, t.tm, t.tn),
                "tile names say their shape"
            );
        }
    }
}
