//! The matmul as a `#[cube]` kernel written in this crate (not a call into a cubecl library
//! matmul), so the WGSL and cubecl implementations can be compared on one adapter.
//!
//! Same algorithm as `shaders/common/matmul_core.wgsl`, with one fixed tile shape: cubes of
//! `16 × 16` units, each unit a strided `4 × 4` block of C (cube block `64 × 64`), K in steps of
//! 16 through two shared-memory tiles (`As [16][64]`, `Bs [16][64]`, k-major), tile loads
//! coalesced along each operand's contiguous dimension, f32 accumulation. An operand whose
//! contiguous dimension, leading dimension, batch stride and handle offset are multiples of 4 is
//! loaded as 4-wide vectors (`Vector<F, 4>`, the WGSL twin's `vec4` loads; [`load_widths`]),
//! any other as scalars; either way the tiles hold the same values and each element of C sums
//! its k-products in the same order, so the two paths give the same bits. Cube `(x, y, z)` owns
//! C rows `y·64..`, columns `x·64..` of batch `z + batch0`. The storage type of A and B is a
//! generic (`f32`, or `half::f16` for f16 storage); the epilogue is a compile-time parameter.
//! Operands over one storage binding run as several launches ([`crate::ops::matmul::split_launches`]).

use cubecl::prelude::*;

use crate::error::{Error, Result};
use crate::gpu::{GpuContext, MAX_WORKGROUPS_PER_DIM};
use crate::ops::matmul::{LaunchLimits, Matmul, Storage, split_launches};

const WG: usize = 16;
const TM: usize = 4;
const TN: usize = 4;
const BK: usize = 16;
const BM: usize = WG * TM;
const BN: usize = WG * TN;
const THREADS: usize = WG * WG;
/// The width of the vector loads of A and B where [`load_widths`] allows them.
pub const VECTOR_WIDTH: usize = 4;

/// The epilogue's activation (comptime-selected; the nested `if`s keep comptime and runtime
/// conditions apart).
#[cube]
#[allow(clippy::collapsible_if)]
fn activate(x: f32, #[comptime] epilogue: u32) -> f32 {
    let mut v = x;
    if comptime![epilogue == 2] {
        if v < 0.0f32 {
            v = f32::new(0.0);
        }
    }
    if comptime![epilogue == 3] {
        let mut u = 0.797_884_6f32 * (x + 0.044715f32 * x * x * x);
        if u > 15.0f32 {
            u = f32::new(15.0);
        }
        if u < -15.0f32 {
            u = f32::new(-15.0);
        }
        let t = 1.0f32 - 2.0f32 / (f32::exp(2.0f32 * u) + 1.0f32);
        v = 0.5f32 * x * (1.0f32 + t);
    }
    if comptime![epilogue == 4] {
        v = 1.0f32 / (1.0f32 + f32::exp(-x));
    }
    v
}

#[cube(launch, launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn matmul_kernel<F: Float, NA: Size, NB: Size>(
    a: &[Vector<F, NA>],
    b: &[Vector<F, NB>],
    bias: &[f32],
    c: &mut [f32],
    m: u32,
    n: u32,
    k_tiles: u32,
    k: u32,
    batch0: u32,
    rs_a: u32,
    cs_a: u32,
    rs_b: u32,
    cs_b: u32,
    stride_a: u32,
    stride_b: u32,
    stride_c: u32,
    alpha: f32,
    beta: f32,
    #[comptime] epilogue: u32,
) {
    let lx = UNIT_POS_X as usize;
    let ly = UNIT_POS_Y as usize;
    let tid = ly * WG + lx;
    let bt = (CUBE_POS_Z + batch0) as usize;
    let row0 = CUBE_POS_Y as usize * BM;
    let col0 = CUBE_POS_X as usize * BN;
    let (mu, nu, ku) = (m as usize, n as usize, k as usize);
    let (rsa, csa, rsb, csb) = (rs_a as usize, cs_a as usize, rs_b as usize, cs_b as usize);
    let a_base = bt * stride_a as usize;
    let b_base = bt * stride_b as usize;

    let mut a_tile = Shared::<[f32]>::new_slice(BM * BK);
    let mut b_tile = Shared::<[f32]>::new_slice(BN * BK);
    let mut acc = Array::<f32>::new(TM * TN);
    #[unroll]
    for q in 0..TM * TN {
        acc[q] = f32::new(0.0);
    }
    let mut ar = Array::<f32>::new(TM);
    let mut br = Array::<f32>::new(TN);

    // Global loads of `va` (`vb`) elements: 1, or 4 along the operand's contiguous dimension
    // when the host found it and the operand's offsets aligned (`load_widths`). A vector is
    // in bounds exactly when its first element is (the contiguous extent is a multiple of 4),
    // so the guards are those of the scalar loads; the tiles receive the same values.
    let va = a.vector_size().comptime();
    let vb = b.vector_size().comptime();
    let vecs_a = BM * BK / va;
    let vecs_b = BN * BK / vb;
    let loads_a = vecs_a.div_ceil(THREADS);
    let loads_b = vecs_b.div_ceil(THREADS);
    // Tile step between the lanes of one vector: along k (`BM`) when A's k is contiguous,
    // along m (1) otherwise; B's along n (1) or along k (`BN`).
    let step_a = select(csa == 1, BM, 1usize);
    let step_b = select(csb == 1, 1usize, BN);

    for t in 0..k_tiles as usize {
        let k0 = t * BK;
        #[unroll]
        for l in 0..loads_a {
            let e = tid + l * THREADS;
            if e < vecs_a {
                let mut i = (e % (BM / va)) * va;
                let mut kk = e / (BM / va);
                if csa == 1 {
                    i = e / (BK / va);
                    kk = (e % (BK / va)) * va;
                }
                let gi = row0 + i;
                let gk = k0 + kk;
                let slot = kk * BM + i;
                if gi < mu && gk < ku {
                    let v = a[(a_base + gi * rsa + gk * csa) / va];
                    #[unroll]
                    for q in 0..va {
                        a_tile[slot + q * step_a] = f32::cast_from(v.extract(q));
                    }
                } else {
                    #[unroll]
                    for q in 0..va {
                        a_tile[slot + q * step_a] = f32::new(0.0);
                    }
                }
            }
        }
        #[unroll]
        for l in 0..loads_b {
            let e = tid + l * THREADS;
            if e < vecs_b {
                let mut j = (e % (BN / vb)) * vb;
                let mut kk = e / (BN / vb);
                if csb != 1 {
                    j = e / (BK / vb);
                    kk = (e % (BK / vb)) * vb;
                }
                let gj = col0 + j;
                let gk = k0 + kk;
                let slot = kk * BN + j;
                if gj < nu && gk < ku {
                    let v = b[(b_base + gk * rsb + gj * csb) / vb];
                    #[unroll]
                    for q in 0..vb {
                        b_tile[slot + q * step_b] = f32::cast_from(v.extract(q));
                    }
                } else {
                    #[unroll]
                    for q in 0..vb {
                        b_tile[slot + q * step_b] = f32::new(0.0);
                    }
                }
            }
        }
        sync_cube();
        #[unroll]
        for kk in 0..BK {
            #[unroll]
            for r in 0..TM {
                ar[r] = a_tile[kk * BM + ly + WG * r];
            }
            #[unroll]
            for s in 0..TN {
                br[s] = b_tile[kk * BN + lx + WG * s];
            }
            #[unroll]
            for r in 0..TM {
                #[unroll]
                for s in 0..TN {
                    acc[r * TN + s] += ar[r] * br[s];
                }
            }
        }
        sync_cube();
    }

    let c_base = bt * stride_c as usize;
    #[unroll]
    for r in 0..TM {
        let i = row0 + ly + WG * r;
        #[unroll]
        for s in 0..TN {
            let j = col0 + lx + WG * s;
            if i < mu && j < nu {
                let idx = c_base + i * nu + j;
                let mut v = alpha * acc[r * TN + s];
                if beta != 0.0f32 {
                    v += beta * c[idx];
                }
                if comptime![epilogue != 0] {
                    v = activate(v + bias[j], epilogue);
                }
                c[idx] = v;
            }
        }
    }
}

/// Operands in cubecl handles (A and B as f32, or f16 with f16 storage; bias f32, a dummy
/// element when absent; C f32).
pub struct CubeOperands {
    a: cubecl::server::Handle,
    b: cubecl::server::Handle,
    bias: cubecl::server::Handle,
    c: cubecl::server::Handle,
    bias_len: usize,
}

impl CubeOperands {
    /// Operands already on the device (f32 storage): A, B, the bias (`bias_len` elements; one
    /// dummy element when the epilogue adds none) and C.
    pub fn from_handles(
        a: cubecl::server::Handle,
        b: cubecl::server::Handle,
        bias: cubecl::server::Handle,
        bias_len: usize,
        c: cubecl::server::Handle,
    ) -> Self {
        Self {
            a,
            b,
            bias,
            c,
            bias_len,
        }
    }
}

/// Check `p` against the adapter (f16 support, grid size).
pub fn check_device(gpu: &GpuContext, p: &Matmul) -> Result<()> {
    if p.storage == Storage::F16 && !gpu.features().contains(wgpu::Features::SHADER_F16) {
        return Err(Error::Unsupported(format!(
            "f16 storage needs SHADER_F16, which adapter {} lacks",
            gpu.info.name
        )));
    }
    let gx = p.n.div_ceil(BN);
    let gy = p.m.div_ceil(BM);
    if gx > MAX_WORKGROUPS_PER_DIM as usize || gy > MAX_WORKGROUPS_PER_DIM as usize {
        return Err(Error::InvalidArgument(format!(
            "matmul {}: {gx} × {gy} cubes exceed {MAX_WORKGROUPS_PER_DIM} per dimension",
            p.label()
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
                 {max} bytes; split the product",
                p.label()
            )));
        }
    }
    Ok(())
}

/// Upload the operands (C only when β ≠ 0, else a fresh buffer, poisoned when the context
/// poisons outputs).
pub fn upload(
    gpu: &GpuContext,
    client: &Client,
    p: &Matmul,
    a: &[f64],
    b: &[f64],
    bias: Option<&[f64]>,
    c: &[f64],
) -> Result<CubeOperands> {
    check_device(gpu, p)?;
    let store = |x: &[f64]| match p.storage {
        Storage::F32 => {
            let v: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            client.create_from_slice(bytemuck::cast_slice(&v))
        }
        Storage::F16 => {
            let mut v: Vec<u16> = x
                .iter()
                .map(|&v| half::f16::from_f64(v).to_bits())
                .collect();
            if v.len() % 2 == 1 {
                v.push(0);
            }
            client.create_from_slice(bytemuck::cast_slice(&v))
        }
    };
    let bias32: Vec<f32> = match bias {
        Some(v) => v.iter().map(|&x| x as f32).collect(),
        None => vec![0.0],
    };
    let c32: Vec<f32> = if p.beta != 0.0 {
        c.iter().map(|&x| x as f32).collect()
    } else {
        let fill = if gpu.poisoning() {
            f32::from_bits(crate::gpu::POISON_WORD)
        } else {
            0.0
        };
        vec![fill; p.len_c()]
    };
    Ok(CubeOperands {
        a: store(a),
        b: store(b),
        bias: client.create_from_slice(bytemuck::cast_slice(&bias32)),
        c: client.create_from_slice(bytemuck::cast_slice(&c32)),
        bias_len: bias32.len(),
    })
}

/// The widths of the global loads of A and B for `p`: [`VECTOR_WIDTH`] where the operand's
/// contiguous dimension (as the kernel reads it: A's k when its column stride is 1, else its
/// m; B's n when its column stride is 1, else its k), its leading dimension and, with more
/// than one batch, its batch stride are multiples of the width, so every vector lies whole
/// inside the operand and starts on a multiple of the width; 1 (scalar loads) otherwise.
/// [`launch`] also needs the operand's handle offset aligned ([`CubeOperands`]).
pub fn load_widths(p: &Matmul) -> (usize, usize) {
    let w = VECTOR_WIDTH;
    let fits = |contig: usize, ld: usize, stride: usize| {
        contig.is_multiple_of(w)
            && ld.is_multiple_of(w)
            && (p.batch == 1 || stride.is_multiple_of(w))
    };
    let (rs_a, cs_a) = p.strides_a();
    let (rs_b, cs_b) = p.strides_b();
    let a = if cs_a == 1 {
        fits(p.k, rs_a, p.stride_a)
    } else {
        rs_a == 1 && fits(p.m, cs_a, p.stride_a)
    };
    let b = if cs_b == 1 {
        fits(p.n, rs_b, p.stride_b)
    } else {
        rs_b == 1 && fits(p.k, cs_b, p.stride_b)
    };
    (if a { w } else { 1 }, if b { w } else { 1 })
}

/// Whether `h`'s byte offset is a multiple of a `w`-wide vector of `p`'s storage.
fn offset_aligned(p: &Matmul, h: &cubecl::server::Handle, w: usize) -> bool {
    let bytes = if p.storage == Storage::F16 { 2 } else { 4 };
    h.offset_start
        .unwrap_or(0)
        .is_multiple_of((w * bytes) as u64)
}

/// Launch `p` on uploaded operands (asynchronously: cubecl orders it before later reads),
/// without cubecl's runtime bounds checks unless `gpu` compiles checked shaders
/// ([`GpuContext::checked_shaders`], `COLLAPSE_CHECKED_SHADERS=1`), with vector loads where
/// [`load_widths`] and the handles' offsets allow them.
pub fn launch(gpu: &GpuContext, client: &Client, p: &Matmul, ops: &CubeOperands) {
    launch_with(gpu, client, p, ops, true);
}

/// [`launch`], with vector loads only if `allow_vector` (else scalar loads throughout); returns
/// the load widths of A and B it used.
pub fn launch_with(
    gpu: &GpuContext,
    client: &Client,
    p: &Matmul,
    ops: &CubeOperands,
    allow_vector: bool,
) -> (usize, usize) {
    let checked = gpu.checked_shaders();
    let (rs_a, cs_a) = p.strides_a();
    let (rs_b, cs_b) = p.strides_b();
    let (mut wa, mut wb) = if allow_vector { load_widths(p) } else { (1, 1) };
    if !offset_aligned(p, &ops.a, wa) {
        wa = 1;
    }
    if !offset_aligned(p, &ops.b, wb) {
        wb = 1;
    }
    let gx = p.n.div_ceil(BN) as u32;
    let gy = p.m.div_ceil(BM) as u32;
    let mut batch0 = 0usize;
    while batch0 < p.batch {
        let nb = (p.batch - batch0).min(MAX_WORKGROUPS_PER_DIM as usize);
        macro_rules! go {
            // SAFETY: the raw buffer lengths are the operands' lengths checked by `upload`
            // and `check_device`, in vectors of `wa` / `wb` elements (`load_widths`: a length
            // that is a multiple of the width); see below for the unchecked launch.
            ($t:ty, $launch:ident) => {{
                unsafe {
                    matmul_kernel::$launch::<$t>(
                        client,
                        CubeCount::Static(gx, gy, nb as u32),
                        CubeDim::new_2d(WG as u32, WG as u32),
                        wa,
                        wb,
                        BufferArg::from_raw_parts(ops.a.clone(), p.len_a() / wa),
                        BufferArg::from_raw_parts(ops.b.clone(), p.len_b() / wb),
                        BufferArg::from_raw_parts(ops.bias.clone(), ops.bias_len),
                        BufferArg::from_raw_parts(ops.c.clone(), p.len_c()),
                        p.m as u32,
                        p.n as u32,
                        p.k.div_ceil(BK) as u32,
                        p.k as u32,
                        batch0 as u32,
                        rs_a as u32,
                        cs_a as u32,
                        rs_b as u32,
                        cs_b as u32,
                        p.stride_a as u32,
                        p.stride_b as u32,
                        p.stride_c as u32,
                        p.alpha as f32,
                        p.beta as f32,
                        p.epilogue.code(),
                    )
                }
            }};
        }
        // SAFETY (unchecked): every load is guarded by `gi < m && gk < k` / `gj < n && gk < k`
        // on its first element, and a vector's other elements lie in the same row (column) of
        // the operand, below its contiguous extent, a multiple of the width (`load_widths`);
        // every store is guarded by `i < m && j < n`, the tile indices stay below BM·BK /
        // BN·BK, and the host checked each operand's length against `p` (`upload`,
        // `check_device`); the loops run to uniform bounds.
        match (p.storage, checked) {
            (Storage::F32, true) => go!(f32, launch),
            (Storage::F16, true) => go!(half::f16, launch),
            (Storage::F32, false) => go!(f32, launch_unchecked),
            (Storage::F16, false) => go!(half::f16, launch_unchecked),
        }
        batch0 += nb;
    }
    (wa, wb)
}

/// Read C back (waits for the launches before it).
pub fn read_c(client: &Client, p: &Matmul, ops: &CubeOperands) -> Result<Vec<f32>> {
    let bytes = client
        .read_one(ops.c.clone())
        .map_err(|e| Error::Cubecl(format!("{e:?}")))?;
    Ok(bytemuck::cast_slice::<u8, f32>(&bytes[..p.len_c() * 4]).to_vec())
}

/// `C = act(α·op(A)·op(B) + β·C + bias)` on host slices (validates, uploads, launches, reads back).
pub fn matmul(
    gpu: &GpuContext,
    client: &Client,
    p: &Matmul,
    a: &[f64],
    b: &[f64],
    bias: Option<&[f64]>,
    c: &mut [f64],
) -> Result<()> {
    matmul_with(gpu, client, true, p, a, b, bias, c).map(|_| ())
}

/// [`matmul`], with vector loads only if `allow_vector` ([`launch_with`]); returns the load
/// widths of A and B of each launch, in order.
#[allow(clippy::too_many_arguments)]
pub fn matmul_with(
    gpu: &GpuContext,
    client: &Client,
    allow_vector: bool,
    p: &Matmul,
    a: &[f64],
    b: &[f64],
    bias: Option<&[f64]>,
    c: &mut [f64],
) -> Result<Vec<(usize, usize)>> {
    p.validate(a.len(), b.len(), bias.map(<[f64]>::len), c.len())?;
    let lim = LaunchLimits {
        binding_bytes: gpu.max_binding_elements(1),
        max_rows: MAX_WORKGROUPS_PER_DIM as usize * BM,
        max_cols: MAX_WORKGROUPS_PER_DIM as usize * BN,
    };
    let mut widths = Vec::new();
    split_launches(p, a, b, bias, c, &lim, &mut |q, a, b, bias, c| {
        let ops = upload(gpu, client, q, a, b, bias, c)?;
        widths.push(launch_with(gpu, client, q, &ops, allow_vector));
        let got = read_c(client, q, &ops)?;
        gpu.check_health()?;
        for (o, v) in c.iter_mut().zip(got) {
            *o = v as f64;
        }
        Ok(())
    })?;
    Ok(widths)
}
