//! The matmul as a `#[cube]` kernel written in this crate (not a call into a cubecl library
//! matmul), so the WGSL and cubecl implementations can be compared on one adapter.
//!
//! Same algorithm as `shaders/common/matmul_core.wgsl`, with one fixed tile shape: cubes of
//! `16 × 16` units, each unit a strided `4 × 4` block of C (cube block `64 × 64`), K in steps of
//! 16 through two shared-memory tiles (`As [16][64]`, `Bs [16][64]`, k-major), scalar tile loads
//! coalesced along each operand's contiguous dimension, f32 accumulation. Cube `(x, y, z)` owns
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
const LOADS_A: usize = (BM * BK).div_ceil(THREADS);
const LOADS_B: usize = (BN * BK).div_ceil(THREADS);

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
fn matmul_kernel<F: Float>(
    a: &[F],
    b: &[F],
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

    for t in 0..k_tiles as usize {
        let k0 = t * BK;
        #[unroll]
        for l in 0..LOADS_A {
            let e = tid + l * THREADS;
            if e < BM * BK {
                let mut i = e % BM;
                let mut kk = e / BM;
                if csa == 1 {
                    i = e / BK;
                    kk = e % BK;
                }
                let gi = row0 + i;
                let gk = k0 + kk;
                let mut v = f32::new(0.0);
                if gi < mu && gk < ku {
                    v = f32::cast_from(a[a_base + gi * rsa + gk * csa]);
                }
                a_tile[kk * BM + i] = v;
            }
        }
        #[unroll]
        for l in 0..LOADS_B {
            let e = tid + l * THREADS;
            if e < BN * BK {
                let mut j = e % BN;
                let mut kk = e / BN;
                if csb != 1 {
                    j = e / BK;
                    kk = e % BK;
                }
                let gj = col0 + j;
                let gk = k0 + kk;
                let mut v = f32::new(0.0);
                if gj < nu && gk < ku {
                    v = f32::cast_from(b[b_base + gk * rsb + gj * csb]);
                }
                b_tile[kk * BN + j] = v;
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

/// Launch `p` on uploaded operands (asynchronously: cubecl orders it before later reads),
/// without cubecl's runtime bounds checks unless `gpu` compiles checked shaders
/// ([`GpuContext::checked_shaders`], `COLLAPSE_CHECKED_SHADERS=1`).
pub fn launch(gpu: &GpuContext, client: &Client, p: &Matmul, ops: &CubeOperands) {
    let checked = gpu.checked_shaders();
    let (rs_a, cs_a) = p.strides_a();
    let (rs_b, cs_b) = p.strides_b();
    let gx = p.n.div_ceil(BN) as u32;
    let gy = p.m.div_ceil(BM) as u32;
    let mut batch0 = 0usize;
    while batch0 < p.batch {
        let nb = (p.batch - batch0).min(MAX_WORKGROUPS_PER_DIM as usize);
        macro_rules! go {
            // SAFETY: the raw buffer lengths are the operands' lengths checked by `upload`
            // and `check_device`; see below for the unchecked launch.
            ($t:ty, $launch:ident) => {{
                unsafe {
                    matmul_kernel::$launch::<$t>(
                        client,
                        CubeCount::Static(gx, gy, nb as u32),
                        CubeDim::new_2d(WG as u32, WG as u32),
                        BufferArg::from_raw_parts(ops.a.clone(), p.len_a()),
                        BufferArg::from_raw_parts(ops.b.clone(), p.len_b()),
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
        // and every store by `i < m && j < n`, the tile indices stay below BM·BK / BN·BK, and
        // the host checked each operand's length against `p` (`upload`, `check_device`); the
        // loops run to uniform bounds.
        match (p.storage, checked) {
            (Storage::F32, true) => go!(f32, launch),
            (Storage::F16, true) => go!(half::f16, launch),
            (Storage::F32, false) => go!(f32, launch_unchecked),
            (Storage::F16, false) => go!(half::f16, launch_unchecked),
        }
        batch0 += nb;
    }
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
    p.validate(a.len(), b.len(), bias.map(<[f64]>::len), c.len())?;
    let lim = LaunchLimits {
        binding_bytes: gpu.max_binding_elements(1),
        max_rows: MAX_WORKGROUPS_PER_DIM as usize * BM,
        max_cols: MAX_WORKGROUPS_PER_DIM as usize * BN,
    };
    split_launches(p, a, b, bias, c, &lim, &mut |q, a, b, bias, c| {
        let ops = upload(gpu, client, q, a, b, bias, c)?;
        launch(gpu, client, q, &ops);
        let got = read_c(client, q, &ops)?;
        gpu.check_health()?;
        for (o, v) in c.iter_mut().zip(got) {
            *o = v as f64;
        }
        Ok(())
    })
}
