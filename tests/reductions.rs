//! The two-level reductions of both GPU backends (`shaders/lm.wgsl`, `shaders/vae.wgsl` and the
//! cubecl kernels of `src/backend/cube/reduce.rs`) against f64 host sums on fresh Philox
//! inputs, at sizes that span several workgroups and chunks with ragged tails (rows not a
//! multiple of the chunk, columns not a multiple of the workgroup width), outputs poisoned;
//! their determinism (two runs, the same bits); and upper bounds on the WGSL dispatches of one
//! LM and one VAE training step, so the counts cannot creep back.
//!
//! Tolerance: norm-wise relative error 1e-5 (f32 sums of up to ~10⁴ terms in chunks of ≤ 64;
//! measured errors are ~1e-7).

mod common;

use std::sync::Arc;

use collapse_kernels::backend::BackendKind;
use collapse_kernels::backend::cpu64::Cpu64;
use collapse_kernels::gpu::{GpuContext, GpuOptions};
use collapse_kernels::ops::Backend;
use collapse_kernels::ops::lm::{LmOps, sumsq_parts};
use collapse_kernels::ops::vae::VaeOps;
use collapse_kernels::rng::StreamKey;
use collapse_kernels::trainers::Engine;
use common::rel_err;

const TOL: f64 = 1e-5;

fn normals(n: usize, stream: u64) -> Vec<f32> {
    let mut v = vec![0.0; n];
    Cpu64.normal(StreamKey::new(77, stream), 0, &mut v).unwrap();
    v.into_iter().map(|x| x as f32).collect()
}

fn check(name: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    assert!(
        got.iter().all(|x| x.is_finite()),
        "{name}: non-finite output"
    );
    let g: Vec<f64> = got.iter().map(|&x| x as f64).collect();
    let e = rel_err(&g, want);
    assert!(e < TOL, "{name}: relative error {e}");
}

fn col_ref(x: &[f32], n: usize, c: usize) -> Vec<f64> {
    (0..c)
        .map(|j| (0..n).map(|r| x[r * c + j] as f64).sum())
        .collect()
}

/// Every reduction once on `o`, checked; returns every output (for the determinism test).
fn reductions<O: LmOps + VaeOps>(o: &O) -> Vec<Vec<f32>> {
    let up = |v: &[f32]| o.upload("in", v).unwrap();
    let rd = |b: &O::Buf, n: usize| o.read(b, n).unwrap();
    let mut outs = Vec::new();
    // Column sums: many chunks with a ragged last one and ragged column blocks; one row; more
    // rows than 256 chunks of 32 (larger chunks); narrow.
    for (i, &(n, c)) in [
        (2065, 130),
        (1000, 400),
        (37, 20),
        (1, 5),
        (9001, 3),
        (128, 784),
    ]
    .iter()
    .enumerate()
    {
        let x = normals(n * c, 10 + i as u64);
        let xb = up(&x);
        let want = col_ref(&x, n, c);
        let out = o.alloc("lm col sums", c).unwrap();
        LmOps::col_sum(o, &xb, &out, n, c).unwrap();
        let got = rd(&out, c);
        check(&format!("lm col_sum {n}x{c}"), &got, &want);
        outs.push(got);
        let out = o.alloc("vae col sums", c).unwrap();
        VaeOps::col_sum(o, &xb, &out, n, c).unwrap();
        let got = rd(&out, c);
        check(&format!("vae col_sum {n}x{c}"), &got, &want);
        outs.push(got);
    }
    // Position gradients: [rows·len][c] summed over the rows, zeros past len.
    let (rows, len, ctx, c) = (70, 7, 9, 70);
    let dh = normals(rows * len * c, 30);
    let out = o.alloc("pos grad", ctx * c).unwrap();
    o.pos_grad(&up(&dh), &out, rows, len, ctx, c).unwrap();
    let want: Vec<f64> = (0..ctx * c)
        .map(|i| {
            let (t, j) = (i / c, i % c);
            if t < len {
                (0..rows).map(|r| dh[(r * len + t) * c + j] as f64).sum()
            } else {
                0.0
            }
        })
        .collect();
    let got = rd(&out, ctx * c);
    check("pos_grad", &got, &want);
    outs.push(got);
    // Weighted loss mean over several blocks of 1024 rows; rows of weight 0 skipped (one of
    // them not finite).
    for (k, &n) in [2500usize, 3, 1024].iter().enumerate() {
        let mut rl: Vec<f32> = normals(n, 40 + k as u64).iter().map(|x| x.abs()).collect();
        let w: Vec<f32> = (0..n)
            .map(|i| if i % 5 == 2 { 0.0 } else { 0.25 })
            .collect();
        if n > 2 {
            rl[2] = f32::NAN;
        }
        let count = w.iter().filter(|&&x| x != 0.0).count();
        let want: f64 = (0..n)
            .filter(|&i| w[i] != 0.0)
            .map(|i| rl[i] as f64)
            .sum::<f64>()
            / count as f64;
        let out = o.alloc("mean", 1).unwrap();
        o.mean(&up(&rl), &up(&w), &out, n, count).unwrap();
        let got = rd(&out, 1);
        check(&format!("mean {n}"), &got, &[want]);
        outs.push(got);
    }
    // Gradient sums of squares of four tensors into one partials buffer, then the clip factor
    // (clipping, not clipping, and clip 0 = none).
    let sizes = [10_000usize, 4096, 1, 70_001, 5000];
    let tensors: Vec<Vec<f32>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| normals(n, 50 + i as u64))
        .collect();
    let mut offsets = vec![0];
    for &n in &sizes {
        offsets.push(offsets.last().unwrap() + sumsq_parts(n));
    }
    let total = *offsets.last().unwrap();
    let parts = o.alloc("parts", total).unwrap();
    // Five tensors: two launches of four and one on WGSL.
    let bufs: Vec<O::Buf> = tensors.iter().map(|t| up(t)).collect();
    let list: Vec<(&O::Buf, usize, usize)> = (0..tensors.len())
        .map(|i| (&bufs[i], tensors[i].len(), offsets[i]))
        .collect();
    o.sumsq(&list, &parts).unwrap();
    let p = rd(&parts, total);
    for (i, t) in tensors.iter().enumerate() {
        let want: f64 = t.iter().map(|&x| (x as f64).powi(2)).sum();
        let got: f64 = p[offsets[i]..offsets[i + 1]]
            .iter()
            .map(|&x| x as f64)
            .sum();
        assert!(
            ((got - want) / want).abs() < TOL,
            "sumsq of tensor {i}: {got} vs {want}"
        );
    }
    outs.push(p);
    let q: f64 = tensors.iter().flatten().map(|&x| (x as f64).powi(2)).sum();
    for clip in [10.0f32, 1e6, 0.0] {
        let scale = o.alloc("clip", 2).unwrap();
        o.clip_scale(&parts, total, clip, &scale).unwrap();
        let norm = q.sqrt();
        let f = if clip > 0.0 && norm > clip as f64 {
            clip as f64 / norm
        } else {
            1.0
        };
        let got = rd(&scale, 2);
        check(&format!("clip_scale {clip}"), &got, &[f, q]);
        outs.push(got);
    }
    // Batch loss over two blocks of 1024 images, and a small batch.
    for (k, &b) in [1500usize, 7].iter().enumerate() {
        let bce: Vec<f32> = normals(b, 60 + k as u64).iter().map(|x| x.abs()).collect();
        let kl: Vec<f32> = normals(b, 62 + k as u64).iter().map(|x| x.abs()).collect();
        let (beta, inv_b) = (0.5f32, 1.0 / b as f32);
        let sb: f64 = bce.iter().map(|&x| x as f64).sum::<f64>() * inv_b as f64;
        let sk: f64 = kl.iter().map(|&x| x as f64).sum::<f64>() * inv_b as f64;
        let loss = o.alloc("loss", 3).unwrap();
        o.batch_loss(&up(&bce), &up(&kl), &loss, b, beta, inv_b)
            .unwrap();
        let got = rd(&loss, 3);
        check(
            &format!("batch_loss {b}"),
            &got,
            &[sb + beta as f64 * sk, sb, sk],
        );
        outs.push(got);
    }
    outs
}

/// The fused Q/K/V moves equal three `gather_heads` / `scatter_heads` (exact: index kernels).
fn qkv_moves<O: LmOps>(o: &O) {
    let (rows, heads, len, d) = (3usize, 2usize, 5usize, 7usize);
    let c = heads * d;
    let shape = (rows, heads, len, d);
    let qkv = normals(rows * len * 3 * c, 70);
    let src = o.upload("qkv", &qkv).unwrap();
    let n = rows * len * c;
    let fused: Vec<O::Buf> = (0..3).map(|_| o.alloc("fused", n).unwrap()).collect();
    o.gather_qkv(&src, [&fused[0], &fused[1], &fused[2]], shape)
        .unwrap();
    for (k, f) in fused.iter().enumerate() {
        let one = o.alloc("one", n).unwrap();
        o.gather_heads(&src, &one, shape, 3 * c, k * c).unwrap();
        assert_eq!(
            o.read(f, n).unwrap(),
            o.read(&one, n).unwrap(),
            "gather_qkv {k}"
        );
    }
    let back = o.alloc("back", rows * len * 3 * c).unwrap();
    o.scatter_qkv([&fused[0], &fused[1], &fused[2]], &back, shape)
        .unwrap();
    assert_eq!(
        o.read(&back, rows * len * 3 * c).unwrap(),
        qkv,
        "scatter_qkv"
    );
}

/// AdamW over three tensors (two launches on WGSL) whose moments sit at offsets of two flat
/// buffers, each with its own decay, against f64.
fn adamw_flat<O: LmOps>(o: &O) {
    use collapse_kernels::ops::lm::{AdamStep, AdamTensor};
    let sizes = [700usize, 5, 300];
    let offsets = [0usize, 700, 705];
    let decays = [0.999f32, 1.0, 0.99];
    let total = 1005;
    let (m0, v0) = (normals(total, 80), normals(total, 81));
    let v0: Vec<f32> = v0.iter().map(|x| x.abs()).collect();
    let (mb, vb) = (o.upload("m", &m0).unwrap(), o.upload("v", &v0).unwrap());
    let ps: Vec<Vec<f32>> = (0..3).map(|i| normals(sizes[i], 82 + i as u64)).collect();
    let gs: Vec<Vec<f32>> = (0..3).map(|i| normals(sizes[i], 85 + i as u64)).collect();
    let pb: Vec<O::Buf> = ps.iter().map(|p| o.upload("p", p).unwrap()).collect();
    let gb: Vec<O::Buf> = gs.iter().map(|g| o.upload("g", g).unwrap()).collect();
    let scale = o.upload("scale", &[0.5, 0.0]).unwrap();
    let step = AdamStep {
        lr: 0.01,
        betas: (0.9, 0.95),
        eps: 1e-8,
        inv_corr: (1.0 / 0.1, 1.0 / 0.05),
    };
    let tensors: Vec<AdamTensor<'_, O::Buf>> = (0..3)
        .map(|i| AdamTensor {
            p: &pb[i],
            g: &gb[i],
            count: sizes[i],
            offset: offsets[i],
            decay: decays[i],
        })
        .collect();
    o.adamw(&tensors, &mb, &vb, &scale, &step).unwrap();
    let (mut wm, mut wv) = (vec![0.0; total], vec![0.0; total]);
    for t in 0..3 {
        let mut wp = vec![];
        for i in 0..sizes[t] {
            let k = offsets[t] + i;
            let g = gs[t][i] as f64 * 0.5;
            let m = 0.9 * m0[k] as f64 + 0.1 * g;
            let v = 0.95 * v0[k] as f64 + 0.05 * g * g;
            wm[k] = m;
            wv[k] = v;
            wp.push(
                ps[t][i] as f64 * decays[t] as f64 - 0.01 * (m / 0.1) / ((v / 0.05).sqrt() + 1e-8),
            );
        }
        check(
            &format!("adamw p {t}"),
            &o.read(&pb[t], sizes[t]).unwrap(),
            &wp,
        );
    }
    check("adamw m", &o.read(&mb, total).unwrap(), &wm);
    check("adamw v", &o.read(&vb, total).unwrap(), &wv);
}

/// The VAE's Adam (L2 decay) over three tensors whose moments sit at offsets of two flat
/// buffers, against f64.
fn vae_adam_flat<O: VaeOps>(o: &O) {
    use collapse_kernels::ops::vae::{AdamStep, AdamTensor};
    let sizes = [300usize, 7, 513];
    let offsets = [0usize, 300, 307];
    let total = 820;
    let (m0, v0) = (normals(total, 90), normals(total, 91));
    let v0: Vec<f32> = v0.iter().map(|x| x.abs()).collect();
    let (mb, vb) = (o.upload("m", &m0).unwrap(), o.upload("v", &v0).unwrap());
    let ps: Vec<Vec<f32>> = (0..3).map(|i| normals(sizes[i], 92 + i as u64)).collect();
    let gs: Vec<Vec<f32>> = (0..3).map(|i| normals(sizes[i], 95 + i as u64)).collect();
    let pb: Vec<O::Buf> = ps.iter().map(|p| o.upload("p", p).unwrap()).collect();
    let gb: Vec<O::Buf> = gs.iter().map(|g| o.upload("g", g).unwrap()).collect();
    let s = AdamStep {
        lr: 0.01,
        betas: (0.9, 0.95),
        eps: 1e-8,
        weight_decay: 0.01,
        corr: (0.1, 0.05),
    };
    let tensors: Vec<AdamTensor<'_, O::Buf>> = (0..3)
        .map(|i| AdamTensor {
            p: &pb[i],
            g: &gb[i],
            count: sizes[i],
            offset: offsets[i],
        })
        .collect();
    o.adam(&tensors, &mb, &vb, &s).unwrap();
    let (mut wm, mut wv) = (vec![0.0; total], vec![0.0; total]);
    for t in 0..3 {
        let mut wp = vec![];
        for i in 0..sizes[t] {
            let k = offsets[t] + i;
            let p = ps[t][i] as f64;
            let g = gs[t][i] as f64 + 0.01 * p;
            let m = 0.9 * m0[k] as f64 + 0.1 * g;
            let v = 0.95 * v0[k] as f64 + 0.05 * g * g;
            wm[k] = m;
            wv[k] = v;
            wp.push(p - 0.01 * (m / 0.1) / ((v / 0.05).sqrt() + 1e-8));
        }
        check(
            &format!("vae adam p {t}"),
            &o.read(&pb[t], sizes[t]).unwrap(),
            &wp,
        );
    }
    check("vae adam m", &o.read(&mb, total).unwrap(), &wm);
    check("vae adam v", &o.read(&vb, total).unwrap(), &wv);
}

/// Two runs give the same bits.
fn deterministic<O: LmOps + VaeOps>(o: &O) {
    qkv_moves(o);
    adamw_flat(o);
    vae_adam_flat(o);
    let a = reductions(o);
    let b = reductions(o);
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let same = x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits());
        assert!(same, "output {i} differs between two runs");
    }
}

#[test]
fn wgsl_reductions_match_f64_and_repeat_bit_for_bit() {
    let Some(gpu) = common::gpu() else { return };
    let wgsl = collapse_kernels::backend::wgsl::Wgsl::new(gpu.clone());
    let tile = wgsl.matmul_tile().unwrap().tile;
    deterministic(&collapse_kernels::backend::wgsl::memory::WgslKernels::new(gpu, tile).unwrap());
}

#[test]
fn cube_reductions_match_f64_and_repeat_bit_for_bit() {
    let Some(gpu) = common::gpu() else { return };
    let client = gpu.cube_client().unwrap();
    deterministic(&collapse_kernels::backend::cube::memory::CubeKernels::new(
        &client, &gpu,
    ));
}

/// Most WGSL dispatches one training step of the LM below (2 blocks: 29 tensors) may take: 133
/// at this revision (160 with one sumsq and one AdamW dispatch per tensor and three
/// gathers/scatters per block, before the two-level reductions added their second passes).
const LM_STEP_DISPATCHES: u64 = 133;

/// Most WGSL dispatches one VAE training step (10 tensors) may take: 36 at this revision (36
/// before too, with one-pass column sums and one Adam dispatch per tensor).
const VAE_STEP_DISPATCHES: u64 = 36;

/// A context of its own, so no other test's dispatches are counted.
fn counting_gpu() -> Option<Arc<GpuContext>> {
    common::gpu()?;
    Some(
        GpuContext::new(&GpuOptions {
            adapter: std::env::var("COLLAPSE_ADAPTER").ok(),
            poison: true,
            binding_limit: None,
            queued: true,
            ..Default::default()
        })
        .unwrap(),
    )
}

#[test]
fn wgsl_training_steps_stay_within_their_dispatch_counts() {
    let Some(gpu) = counting_gpu() else { return };
    let engine = Engine::create(BackendKind::Wgsl, Some(&gpu)).unwrap();
    let cfg = collapse_kernels::models::lm::LmConfig {
        width: 16,
        layers: 2,
        heads: 2,
        context: 12,
        ..Default::default()
    };
    let mut lm = engine
        .lm(&cfg, &collapse_kernels::models::lm::init_params(&cfg, 3))
        .unwrap();
    let tokens: Vec<u8> = (0..4 * 13).map(|i| (i * 37 % 251) as u8).collect();
    lm.step(&tokens, 12).unwrap();
    lm.last_loss().unwrap();
    gpu.reset_counts();
    lm.step(&tokens, 12).unwrap();
    let d = gpu.counts().dispatches;
    assert!(lm.last_loss().unwrap().loss.is_finite());
    println!("LM step: {d} dispatches");
    assert!(
        d <= LM_STEP_DISPATCHES,
        "an LM training step took {d} WGSL dispatches, over {LM_STEP_DISPATCHES}"
    );

    let vcfg = collapse_kernels::models::vae::VaeConfig {
        d: 30,
        h: 12,
        z: 3,
        ..Default::default()
    };
    let mut vae = engine
        .vae(&vcfg, &collapse_kernels::models::vae::init_params(&vcfg, 3))
        .unwrap();
    let x: Vec<f64> = (0..5 * 30).map(|i| (i % 7) as f64 / 7.0).collect();
    vae.step(&x, StreamKey::new(5, 0)).unwrap();
    vae.last_loss().unwrap();
    gpu.reset_counts();
    vae.step(&x, StreamKey::new(5, 1)).unwrap();
    let d = gpu.counts().dispatches;
    assert!(vae.last_loss().unwrap().loss.is_finite());
    println!("VAE step: {d} dispatches");
    assert!(
        d <= VAE_STEP_DISPATCHES,
        "a VAE training step took {d} WGSL dispatches, over {VAE_STEP_DISPATCHES}"
    );
}
