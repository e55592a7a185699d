//! `collapse bench …`: timing tables measured by the CLI itself (criterion benches measure the
//! same operations under `benches/`).

use std::time::Instant;

use crate::error::Result;
use crate::io::Matrix;
use crate::ops::Backend;
use crate::ops::gmm::{CovarianceType, GmmParams, PassLayout};
use crate::ops::sampling::{Factor, MixtureBatch};
use crate::rng::streams;

/// One GMM benchmark shape.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct GmmShape {
    /// Points.
    pub n: usize,
    /// Dimensions.
    pub d: usize,
    /// Components.
    pub k: usize,
    /// Covariance type.
    pub covariance_type: CovarianceType,
}

impl std::str::FromStr for GmmShape {
    type Err = crate::Error;
    /// `NxDxK:TYPE`, TYPE one of `full`, `tied`, `diag`, `spherical`, e.g.
    /// `1000000x64x64:diag`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            crate::Error::InvalidArgument(format!(
                "shape {s:?}: use NxDxK:TYPE, TYPE one of full, tied, diag, spherical"
            ))
        };
        let (dims, cov) = s.split_once(':').ok_or_else(bad)?;
        let v: Vec<usize> = dims
            .split('x')
            .map(|t| t.parse().map_err(|_| bad()))
            .collect::<Result<_>>()?;
        let covariance_type = CovarianceType::ALL
            .into_iter()
            .find(|c| c.name() == cov)
            .ok_or_else(bad)?;
        match v[..] {
            [n, _, k] if n >= 1 && k > n => Err(crate::Error::InvalidArgument(format!(
                "shape {s:?}: K = {k} components exceed the N = {n} points (K ≤ N)"
            ))),
            [n, d, k] if n >= 1 && d >= 1 && k >= 1 => Ok(Self {
                n,
                d,
                k,
                covariance_type,
            }),
            _ => Err(bad()),
        }
    }
}

impl GmmShape {
    /// What [`gmm_data`] and one timed backend hold at once for this shape, at least: the f64
    /// points and component indices, the backend's f32 copy, the responsibilities (f64 and a
    /// backend copy), and the start, the statistics and the updated model (`K·D` means and
    /// `K·D` or `K·D²` covariances, the passes' layout, three times).
    pub fn tally(&self) -> crate::io::budget::Tally {
        let GmmShape { n, d, k, .. } = *self;
        let per = match self.covariance_type.layout() {
            PassLayout::Full => d.saturating_mul(d),
            PassLayout::Diag => d,
        };
        let mut t = crate::io::budget::Tally::new(
            format!(
                "bench gmm --shape {n}x{d}x{k}:{}",
                self.covariance_type.name()
            ),
            "lower N, D or K of --shape",
        );
        t.add(&[n, d], 12)
            .add(&[n], 4)
            .add(&[n, k], 16)
            .add(&[k, d, 3], 8)
            .add(&[k, per, 3], 8);
        t
    }

    /// Refuse this shape (one line naming `--shape`, with the bytes) when the machine cannot
    /// hold [`GmmShape::tally`]; before anything is allocated.
    pub fn check_memory(&self) -> Result<()> {
        self.tally().check().map(|_| ())
    }
}

/// The shapes of the GMM issues: [100k, 16] → 32 full, diag, tied and spherical, [1M, 8] → 16
/// full.
pub const GMM_SHAPES: [GmmShape; 5] = [
    GmmShape {
        n: 100_000,
        d: 16,
        k: 32,
        covariance_type: CovarianceType::Full,
    },
    GmmShape {
        n: 100_000,
        d: 16,
        k: 32,
        covariance_type: CovarianceType::Diag,
    },
    GmmShape {
        n: 1_000_000,
        d: 8,
        k: 16,
        covariance_type: CovarianceType::Full,
    },
    GmmShape {
        n: 100_000,
        d: 16,
        k: 32,
        covariance_type: CovarianceType::Tied,
    },
    GmmShape {
        n: 100_000,
        d: 16,
        k: 32,
        covariance_type: CovarianceType::Spherical,
    },
];

/// Deterministic benchmark data for `shape`: `N` points from a `K`-component mixture with
/// means spread over [−10, 10]ᴰ and covariances 0.5·I (Philox seed 2024), and a starting model
/// (the true weights, means shifted by 0.5, identity covariances).
pub fn gmm_data(shape: GmmShape, cpu: &dyn Backend) -> Result<(Matrix, GmmParams)> {
    let GmmShape {
        n,
        d,
        k,
        covariance_type,
    } = shape;
    let mut u = vec![0.0; k * d];
    cpu.uniform(streams::bench::GMM_MEANS, 0, &mut u)?;
    let means: Vec<f64> = u.iter().map(|v| 20.0 * v - 10.0).collect();
    let batch = MixtureBatch {
        replicates: 1,
        k,
        d,
        weights: vec![1.0 / k as f64; k],
        means: means.clone(),
        factor: Factor::Diagonal(vec![0.5f64.sqrt(); k * d]),
    };
    let p = batch.prepare()?;
    let mut x = vec![0.0; n * d];
    let mut c = vec![0u32; n];
    cpu.sample_mixture(&p, n, streams::bench::GMM_DATA, 0, &mut x, &mut c)?;
    let cov: Vec<f64> = match covariance_type {
        CovarianceType::Full => (0..k * d * d)
            .map(|i| if i % (d * d) % (d + 1) == 0 { 1.0 } else { 0.0 })
            .collect(),
        CovarianceType::Tied => (0..d * d)
            .map(|i| if i % (d + 1) == 0 { 1.0 } else { 0.0 })
            .collect(),
        CovarianceType::Diag => vec![1.0; k * d],
        CovarianceType::Spherical => vec![1.0; k],
    };
    let start = GmmParams {
        k,
        d,
        covariance_type,
        weights: vec![1.0 / k as f64; k],
        means: means.iter().map(|m| m + 0.5).collect(),
        covariances: cov,
    };
    Ok((Matrix::new(n, d, x)?, start))
}

/// One timing record.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GmmTiming {
    /// Backend.
    pub backend: String,
    /// Where it ran.
    pub device: String,
    /// The shape.
    pub n: usize,
    /// Dimensions.
    pub d: usize,
    /// Components.
    pub k: usize,
    /// `full` or `diag`.
    pub covariance_type: String,
    /// Median seconds per EM iteration (one E-step + one two-pass M-step).
    pub seconds_per_iter: f64,
    /// Fastest iteration.
    pub min_seconds: f64,
    /// Iterations timed.
    pub iterations: usize,
    /// `N·K / seconds_per_iter`.
    pub point_components_per_s: f64,
    /// Host waits for the queue in one timed EM iteration (the last), as the shared GPU
    /// context counts them ([`crate::gpu::GpuContext::counts`]); empty for CPU backends. The
    /// cubecl backend's launches and reads go through cubecl, not the context: 0 there.
    pub waits_per_iter: Option<u64>,
    /// WGSL dispatches in one timed EM iteration (the last); empty for CPU backends.
    pub dispatches_per_iter: Option<u64>,
    /// The per-kernel device times of the timed iterations (WGSL dispatches recorded by the
    /// context; `None` on CPU backends or when nothing was recorded). Not a CSV column.
    #[serde(skip)]
    pub kernels: Option<crate::measure::kernels::KernelTable>,
}

/// Time `iters` EM iterations of `backend` on `x` from `start` (after one untimed warm-up
/// iteration). Parameters are updated between iterations exactly as in a fit. With `gpu` (the
/// context a GPU backend runs on) it also counts the host waits and dispatches of each timed
/// iteration and sums the recorded kernel times of the timed iterations per kernel.
pub fn time_gmm(
    backend: &dyn Backend,
    gpu: Option<&crate::gpu::GpuContext>,
    x: &Matrix,
    start: &GmmParams,
    iters: usize,
) -> Result<GmmTiming> {
    let mut pass = backend.gmm_pass(x)?;
    let mut params = start.clone();
    let mut times = Vec::new();
    let mut counts = None;
    let mut kernel_times = Vec::new();
    for it in 0..=iters {
        if let Some(g) = gpu {
            g.reset_counts();
            g.take_timings();
        }
        let t = Instant::now();
        pass.estep(&params.estep_params()?)?;
        let s = pass.mstep(params.covariance_type.layout())?;
        if it > 0 {
            times.push(t.elapsed().as_secs_f64());
            if let Some(g) = gpu {
                counts = Some(g.counts());
                kernel_times.extend(g.take_timings());
            }
        }
        // Same update as a fit (weights, scatter/N_k + 1e-6·I).
        let cfg = crate::models::gmm::GmmConfig {
            covariance_type: params.covariance_type,
            ..crate::models::gmm::GmmConfig::new(params.k)
        };
        params = crate::models::gmm::params_from_stats(&s, x, &cfg, &mut 0, &mut None).0;
    }
    times.sort_by(f64::total_cmp);
    let med = times[times.len() / 2];
    Ok(GmmTiming {
        backend: backend.name().into(),
        device: backend.device(),
        n: x.rows,
        d: x.cols,
        k: start.k,
        covariance_type: start.covariance_type.name().to_string(),
        seconds_per_iter: med,
        min_seconds: times[0],
        iterations: iters,
        point_components_per_s: (x.rows * start.k) as f64 / med,
        waits_per_iter: counts.map(|c| c.waits),
        dispatches_per_iter: counts.map(|c| c.dispatches),
        kernels: (!kernel_times.is_empty())
            .then(|| crate::measure::kernels::KernelTable::from_times(&kernel_times)),
    })
}

/// A device-side throughput measurement.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Throughput {
    /// What was measured.
    pub what: String,
    /// Bytes counted (see each probe).
    pub bytes: u64,
    /// Fastest of the repetitions, seconds (device time with timestamps).
    pub seconds: f64,
    /// `bytes / seconds`, GB/s.
    pub gb_per_s: f64,
    /// `GpuTimestamp` or `WallClock`.
    pub timing: String,
}

/// The copy-bandwidth ceiling: `shaders/probe.wgsl:copy` over the largest buffer one binding
/// allows (at most 256 MiB), best of `reps`; bytes = read + written.
pub fn copy_bandwidth(gpu: &crate::gpu::GpuContext, reps: usize) -> Result<Throughput> {
    let elems = (gpu.max_binding_elements(16).min(1 << 24)) as usize; // vec4<f32> = 16 bytes
    let pipe = gpu.pipeline("probe.wgsl", "copy")?;
    let src = gpu.input_buffer("probe src", &vec![0u8; elems * 16])?;
    let dst = gpu.output_buffer("probe dst", (elems * 16) as u64)?;
    let bind = gpu.bind(&pipe, &[&src, &dst])?;
    let mut best: Option<crate::gpu::KernelTime> = None;
    for _ in 0..reps.max(1) {
        let t = gpu.dispatch(
            "probe.wgsl:copy",
            &pipe,
            &bind,
            crate::gpu::GpuContext::grid((elems as u32).div_ceil(256)),
        )?;
        if best.as_ref().is_none_or(|b| t.seconds < b.seconds) {
            best = Some(t);
        }
    }
    let t = best.expect("at least one repetition");
    let bytes = 2 * elems as u64 * 16;
    Ok(Throughput {
        what: "copy (read + write)".into(),
        bytes,
        seconds: t.seconds,
        gb_per_s: bytes as f64 / t.seconds / 1e9,
        timing: format!("{:?}", t.source),
    })
}

/// FLOPs one invocation of `shaders/probe.wgsl:fma_chains` performs.
pub const FMA_FLOPS_PER_INVOCATION: u64 = 8 * 4 * 2 * 256;

/// The f32 arithmetic ceiling: `shaders/probe.wgsl:fma_chains` (8 independent vec4 fma chains
/// of 256 steps per invocation) over 2²⁰ invocations on a GPU (2¹⁶ on a CPU adapter), best of
/// `reps`. Returned in a [`Throughput`] whose `bytes` field holds the FLOPs and `gb_per_s` the
/// GFLOP/s. The output is read back and checked finite (the chains must really run).
pub fn fma_throughput(gpu: &crate::gpu::GpuContext, reps: usize) -> Result<Throughput> {
    let invocations: usize = if gpu.info.device_type == wgpu::DeviceType::Cpu {
        1 << 16
    } else {
        1 << 20
    };
    let pipe = gpu.pipeline("probe.wgsl", "fma_chains")?;
    // b = 0.999, c = 0.001: every chain converges towards 1 and stays finite.
    let mut init = vec![0.5f32; invocations * 4];
    init[..4].copy_from_slice(&[0.999; 4]);
    init[4..8].copy_from_slice(&[0.001; 4]);
    let src = gpu.input_buffer("fma src", bytemuck::cast_slice(&init))?;
    let dst = gpu.output_buffer("fma dst", (invocations * 16) as u64)?;
    let bind = gpu.bind(&pipe, &[&src, &dst])?;
    let mut best: Option<crate::gpu::KernelTime> = None;
    for _ in 0..reps.max(1) {
        let t = gpu.dispatch(
            "probe.wgsl:fma_chains",
            &pipe,
            &bind,
            crate::gpu::GpuContext::grid((invocations as u32).div_ceil(256)),
        )?;
        if best.as_ref().is_none_or(|b| t.seconds < b.seconds) {
            best = Some(t);
        }
    }
    let out: Vec<f32> = gpu.read_buffer(&dst, invocations * 4)?;
    if let Some(i) = out.iter().position(|v| !v.is_finite()) {
        return Err(crate::Error::Numerical(format!(
            "fma probe: element {i} is {} (the kernel did not run as written)",
            out[i]
        )));
    }
    let t = best.expect("at least one repetition");
    let flops = invocations as u64 * FMA_FLOPS_PER_INVOCATION;
    Ok(Throughput {
        what: "fma chains (f32 FLOPs)".into(),
        bytes: flops,
        seconds: t.seconds,
        gb_per_s: flops as f64 / t.seconds / 1e9,
        timing: format!("{:?}", t.source),
    })
}

/// The adapter's measured ceilings: f32 FMA GFLOP/s and copy GB/s.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Ceilings {
    /// `probe.wgsl:fma_chains`, GFLOP/s.
    pub gflops: f64,
    /// `probe.wgsl:copy`, GB/s (read + written).
    pub gb_per_s: f64,
}

/// Measure both ceilings (best of `reps` each).
pub fn ceilings(gpu: &crate::gpu::GpuContext, reps: usize) -> Result<Ceilings> {
    Ok(Ceilings {
        gflops: fma_throughput(gpu, reps)?.gb_per_s,
        gb_per_s: copy_bandwidth(gpu, reps)?.gb_per_s,
    })
}

/// Bytes per second the WGSL GMM sampler writes (samples as f32 plus a u32 component each) for
/// `n` samples of a K = 16, D = 8 full mixture, from the kernel's own device time (the sum over
/// its chunks), best of `reps`.
pub fn sampler_write_rate(
    gpu: &std::sync::Arc<crate::gpu::GpuContext>,
    n: usize,
    reps: usize,
) -> Result<Throughput> {
    let (k, d) = (16, 8);
    let mut l = vec![0.0; k * d * d];
    for c in 0..k {
        for i in 0..d {
            for j in 0..=i {
                l[c * d * d + i * d + j] = if i == j { 0.5 } else { 0.1 };
            }
        }
    }
    let p = MixtureBatch {
        replicates: 1,
        k,
        d,
        weights: vec![1.0 / k as f64; k],
        means: (0..k * d).map(|i| (i % 7) as f64).collect(),
        factor: Factor::Cholesky(l),
    }
    .prepare()?;
    let b = crate::backend::create(crate::backend::BackendKind::Wgsl, Some(gpu))?;
    let (mut x, mut c) = (vec![0.0; n * d], vec![0u32; n]);
    b.sample_mixture(
        &p,
        1024,
        streams::bench::SAMPLING,
        0,
        &mut x[..1024 * d],
        &mut c[..1024],
    )?; // warm-up
    let mut best = f64::INFINITY;
    let mut timing = String::new();
    for _ in 0..reps.max(1) {
        gpu.take_timings();
        b.sample_mixture(&p, n, streams::bench::SAMPLING, 0, &mut x, &mut c)?;
        let ts: Vec<_> = gpu
            .take_timings()
            .into_iter()
            .filter(|t| t.kernel == "sampling.wgsl:sample_mixture")
            .collect();
        timing = ts
            .first()
            .map(|t| format!("{:?}", t.source))
            .unwrap_or_default();
        best = best.min(ts.iter().map(|t| t.seconds).sum());
    }
    let bytes = (n * (d * 4 + 4)) as u64;
    Ok(Throughput {
        what: format!("WGSL GMM sampler writes (K={k}, D={d}, full, N={n})"),
        bytes,
        seconds: best,
        gb_per_s: bytes as f64 / best / 1e9,
        timing,
    })
}

/// The square sizes of the matmul bench (`N×N·N×N`).
pub const MATMUL_SQUARES: [usize; 6] = [128, 256, 512, 1024, 2048, 4096];

/// The matmul shapes of the models, `(label, M, N, K, Aᵀ, Bᵀ)` (A stored `[K][M]` when `Aᵀ`,
/// B stored `[N][K]` when `Bᵀ`): first the transformer's MLP up-projection at 32 sequences × 128
/// tokens of width 256 (`lm_mlp_up`) and the VAE's first layer at batch 128 (`vae_enc1`), then
/// every product of one training step of the default language model (`collapse bench lm`:
/// width 128, 16 sequences × 128 tokens = 2048 rows; forward `fwd`, weight gradient `dW`,
/// input gradient `dx`, and one head's attention scores) and of the default VAE (784-400-20) at
/// batch 128 and 1024. `scripts/bench-cpu-peers.sh` times them against PyTorch.
pub const MATMUL_MODEL_SHAPES: [(&str, usize, usize, usize, bool, bool); 39] = [
    ("lm_mlp_up", 4096, 1024, 256, false, false),
    ("vae_enc1", 128, 400, 784, false, false),
    ("lm_qkv_fwd", 2048, 384, 128, false, false),
    ("lm_qkv_dW", 128, 384, 2048, true, false),
    ("lm_qkv_dx", 2048, 128, 384, false, true),
    ("lm_proj_fwd", 2048, 128, 128, false, false),
    ("lm_proj_dW", 128, 128, 2048, true, false),
    ("lm_proj_dx", 2048, 128, 128, false, true),
    ("lm_fc_fwd", 2048, 512, 128, false, false),
    ("lm_fc_dW", 128, 512, 2048, true, false),
    ("lm_fc_dx", 2048, 128, 512, false, true),
    ("lm_out_fwd", 2048, 128, 512, false, false),
    ("lm_out_dW", 512, 128, 2048, true, false),
    ("lm_out_dx", 2048, 512, 128, false, true),
    ("lm_head_fwd", 2048, 256, 128, false, false),
    ("lm_head_dW", 128, 256, 2048, true, false),
    ("lm_head_dx", 2048, 128, 256, false, true),
    ("lm_att_scores", 128, 128, 32, false, true),
    ("vae128_enc_dW", 784, 400, 128, true, false),
    ("vae128_mu_fwd", 128, 20, 400, false, false),
    ("vae128_mu_dW", 400, 20, 128, true, false),
    ("vae128_mu_dx", 128, 400, 20, false, true),
    ("vae128_dec_fwd", 128, 400, 20, false, false),
    ("vae128_dec_dW", 20, 400, 128, true, false),
    ("vae128_dec_dx", 128, 20, 400, false, true),
    ("vae128_out_fwd", 128, 784, 400, false, false),
    ("vae128_out_dW", 400, 784, 128, true, false),
    ("vae128_out_dx", 128, 400, 784, false, true),
    ("vae1024_enc_fwd", 1024, 400, 784, false, false),
    ("vae1024_enc_dW", 784, 400, 1024, true, false),
    ("vae1024_mu_fwd", 1024, 20, 400, false, false),
    ("vae1024_mu_dW", 400, 20, 1024, true, false),
    ("vae1024_mu_dx", 1024, 400, 20, false, true),
    ("vae1024_dec_fwd", 1024, 400, 20, false, false),
    ("vae1024_dec_dW", 20, 400, 1024, true, false),
    ("vae1024_dec_dx", 1024, 20, 400, false, true),
    ("vae1024_out_fwd", 1024, 784, 400, false, false),
    ("vae1024_out_dW", 400, 784, 1024, true, false),
    ("vae1024_out_dx", 1024, 400, 784, false, true),
];

/// One timed matmul.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MatmulTiming {
    /// Backend name (`cpu32` is the `gemm` crate through [`crate::num::gemm::sgemm`]).
    pub backend: String,
    /// Adapter or CPU description.
    pub device: String,
    /// Shape label (`MxNxK`, …).
    pub shape: String,
    /// M.
    pub m: usize,
    /// N.
    pub n: usize,
    /// K.
    pub k: usize,
    /// A stored `[K][M]` and used transposed.
    pub trans_a: bool,
    /// B stored `[N][K]` and used transposed.
    pub trans_b: bool,
    /// Median seconds per product.
    pub seconds: f64,
    /// Fastest seconds.
    pub min_seconds: f64,
    /// `2MNK / median`, GFLOP/s.
    pub gflops: f64,
    /// Fewest bytes the product must move / median, GB/s.
    pub gb_per_s: f64,
    /// `GpuTimestamp` (device time), `WallClock` (host, includes synchronisation).
    pub timing: String,
    /// Norm-wise relative error of this backend's C against the check reference.
    pub rel_error: f64,
    /// The check reference: `cpu64` for small products, else `cpu32`.
    pub reference: String,
    /// WGSL tile shape (empty for other backends).
    pub tile: String,
}

/// Inputs of a bench product: deterministic values in [−0.5, 0.5), rounded to f32.
pub fn matmul_inputs(p: &crate::ops::matmul::Matmul) -> (Vec<f64>, Vec<f64>) {
    let fill = |n: usize, s: usize| -> Vec<f64> {
        (0..n)
            .map(|i| (((i + s) * 2_654_435_761) % 1_000_003) as f32 as f64 / 1_000_003.0 - 0.5)
            .collect()
    };
    (fill(p.len_a(), 1), fill(p.len_b(), 7))
}

/// A matmul prepared on one backend with its operands resident where the backend keeps them
/// (device buffers for GPU backends, f32 copies for cpu32): `run()` does one product and
/// returns its seconds and how they were measured; `result()` returns C.
pub struct MatmulRunner<'a> {
    run: Box<dyn FnMut() -> Result<(f64, &'static str)> + 'a>,
    result: Box<dyn FnMut() -> Result<Vec<f64>> + 'a>,
    /// WGSL tile shape name (empty elsewhere).
    pub tile: String,
}

impl MatmulRunner<'_> {
    /// One product: (seconds, timing source).
    pub fn run(&mut self) -> Result<(f64, &'static str)> {
        (self.run)()
    }
    /// C after the last run, widened.
    pub fn result(&mut self) -> Result<Vec<f64>> {
        (self.result)()
    }
}

/// Prepare `p` (f32 storage, β = 0) on backend `kind`.
pub fn matmul_runner<'a>(
    kind: crate::backend::BackendKind,
    gpu: Option<&'a std::sync::Arc<crate::gpu::GpuContext>>,
    p: &'a crate::ops::matmul::Matmul,
) -> Result<MatmulRunner<'a>> {
    use crate::backend::BackendKind;
    let (a, b) = matmul_inputs(p);
    let need_gpu =
        || gpu.ok_or_else(|| crate::Error::InvalidArgument(format!("{kind} needs a GPU")));
    Ok(match kind {
        BackendKind::Cpu64 => {
            let c = std::rc::Rc::new(std::cell::RefCell::new(vec![0.0; p.len_c()]));
            let c2 = c.clone();
            MatmulRunner {
                run: Box::new(move || {
                    let t = Instant::now();
                    crate::backend::cpu64::matmul::matmul(p, &a, &b, None, &mut c.borrow_mut())?;
                    Ok((t.elapsed().as_secs_f64(), "WallClock"))
                }),
                result: Box::new(move || Ok(c2.borrow().clone())),
                tile: String::new(),
            }
        }
        BackendKind::Cpu32 => {
            let a32: Vec<f32> = a.iter().map(|&v| v as f32).collect();
            let b32: Vec<f32> = b.iter().map(|&v| v as f32).collect();
            let c = std::rc::Rc::new(std::cell::RefCell::new(vec![0f32; p.len_c()]));
            let c2 = c.clone();
            MatmulRunner {
                run: Box::new(move || {
                    let t = Instant::now();
                    crate::backend::cpu32::matmul::sgemm(p, &a32, &b32, None, &mut c.borrow_mut());
                    Ok((t.elapsed().as_secs_f64(), "WallClock"))
                }),
                result: Box::new(move || Ok(c2.borrow().iter().map(|&v| v as f64).collect())),
                tile: String::new(),
            }
        }
        BackendKind::Wgsl => {
            use crate::backend::wgsl::matmul as wm;
            let gpu = need_gpu()?;
            let tile = crate::backend::wgsl::Wgsl::new(gpu.clone())
                .matmul_tile()?
                .tile;
            wm::check_device(gpu, p, &tile)?;
            let ops = std::rc::Rc::new(wm::upload(gpu, p, &a, &b, None, &[])?);
            let ops2 = ops.clone();
            MatmulRunner {
                run: Box::new(move || {
                    let s = wm::launch(gpu, p, &tile, &ops, true)?;
                    let src = if gpu.has_timestamps() {
                        "GpuTimestamp"
                    } else {
                        "WallClock"
                    };
                    Ok((s, src))
                }),
                result: Box::new(move || {
                    let v: Vec<f32> = gpu.read_buffer(&ops2.c, p.len_c())?;
                    Ok(v.into_iter().map(|x| x as f64).collect())
                }),
                tile: tile.name.to_string(),
            }
        }
        BackendKind::Cube => {
            use crate::backend::cube::matmul as cm;
            let gpu = need_gpu()?;
            let client = std::rc::Rc::new(gpu.cube_client()?);
            let ops = std::rc::Rc::new(cm::upload(gpu, &client, p, &a, &b, None, &[])?);
            let (client2, ops2) = (client.clone(), ops.clone());
            MatmulRunner {
                run: Box::new(move || {
                    let t = Instant::now();
                    cm::launch(gpu, &client, p, &ops);
                    cubecl::future::block_on(client.sync())
                        .map_err(|e| crate::Error::Cubecl(format!("{e:?}")))?;
                    gpu.check_health()?;
                    Ok((t.elapsed().as_secs_f64(), "WallClock"))
                }),
                result: Box::new(move || {
                    let v = cm::read_c(&client2, p, &ops2)?;
                    Ok(v.into_iter().map(|x| x as f64).collect())
                }),
                tile: String::new(),
            }
        }
    })
}

/// Seconds of untimed products before a matmul timing starts ([`time_matmul`]).
pub const MATMUL_WARMUP_S: f64 = 0.05;

/// Time `p` on `kind`: one checked warm-up run (C against `reference`), further untimed runs
/// until [`MATMUL_WARMUP_S`] has passed (threads awake, caches and clocks settled, as the
/// PyTorch peer's warm-ups do), then `reps` timed runs.
pub fn time_matmul(
    kind: crate::backend::BackendKind,
    gpu: Option<&std::sync::Arc<crate::gpu::GpuContext>>,
    label: &str,
    p: &crate::ops::matmul::Matmul,
    reps: usize,
    reference: (&str, &[f64]),
) -> Result<MatmulTiming> {
    let mut r = matmul_runner(kind, gpu, p)?;
    r.run()?;
    let c = r.result()?;
    let rel_error = crate::ops::matmul::rel_error(&c, reference.1);
    let warm = std::time::Instant::now();
    while warm.elapsed().as_secs_f64() < MATMUL_WARMUP_S {
        r.run()?;
    }
    let mut times = Vec::with_capacity(reps);
    let mut source = "";
    for _ in 0..reps.max(1) {
        let (s, src) = r.run()?;
        times.push(s);
        source = src;
    }
    times.sort_by(f64::total_cmp);
    let med = times[times.len() / 2];
    let device = match kind {
        crate::backend::BackendKind::Cpu64 => "host CPU, 1 thread, f64".to_string(),
        crate::backend::BackendKind::Cpu32 => {
            format!(
                "host CPU, {} threads, gemm crate",
                rayon::current_num_threads()
            )
        }
        _ => gpu.map(|g| g.info.name.clone()).unwrap_or_default(),
    };
    Ok(MatmulTiming {
        backend: kind.name().into(),
        device,
        shape: label.into(),
        m: p.m,
        n: p.n,
        k: p.k,
        trans_a: p.trans_a,
        trans_b: p.trans_b,
        seconds: med,
        min_seconds: times[0],
        gflops: p.flops() / med * 1e-9,
        gb_per_s: p.min_bytes() / med * 1e-9,
        timing: source.into(),
        rel_error,
        reference: reference.0.into(),
        tile: r.tile.clone(),
    })
}
