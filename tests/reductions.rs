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
use collapse_kernels::ops::lm::LmOps;
use collapse_kernels::ops::memory::{FLAT_BLOCK, FlatLayout};
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
    // Gradient sums of squares of five tensors of one flat buffer (one dispatch: blocks of
    // 4096, ragged tails, a one-element tensor), then the clip factor (clipping, not clipping,
    // and clip 0 = none).
    let sizes = [10_000usize, 4096, 1, 70_001, 5000];
    let tensors: Vec<Vec<f32>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| normals(n, 50 + i as u64))
        .collect();
    let flat = FlatLayout::new(&sizes);
    let total = flat.n_blocks();
    let mut packed = flat.pack(&tensors.concat());
    // The gaps between tensors hold NaN: a kernel that read one would say so.
    let mut covered = vec![false; flat.len()];
    for i in 0..sizes.len() {
        let (off, n) = flat.range(i);
        covered[off..off + n].iter_mut().for_each(|c| *c = true);
    }
    for (x, c) in packed.iter_mut().zip(&covered) {
        if !c {
            *x = f32::NAN;
        }
    }
    let parts = o.alloc("parts", total).unwrap();
    let blocks = o.upload_u32("blocks", &flat.blocks(|_| false)).unwrap();
    o.sumsq(&up(&packed), &blocks, total, &parts).unwrap();
    let p = rd(&parts, total);
    let mut first = 0;
    for (i, t) in tensors.iter().enumerate() {
        let nb = sizes[i].div_ceil(FLAT_BLOCK).max(1);
        let want: f64 = t.iter().map(|&x| (x as f64).powi(2)).sum();
        let got: f64 = p[first..first + nb].iter().map(|&x| x as f64).sum();
        assert!(
            ((got - want) / want).abs() < TOL,
            "sumsq of tensor {i}: {got} vs {want}"
        );
        first += nb;
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

/// Three tensors of a flat layout (a multi-block one, a tiny one, a ragged one), their values
/// from `stream`, and the gaps between them NaN (a kernel that touched one would show it).
fn flat_tensors(flat: &FlatLayout, stream: u64) -> (Vec<f32>, Vec<Vec<f32>>) {
    let ts: Vec<Vec<f32>> = (0..flat.tensors())
        .map(|i| normals(flat.range(i).1, stream + i as u64))
        .collect();
    let mut packed = vec![f32::NAN; flat.len()];
    for (i, t) in ts.iter().enumerate() {
        let (off, n) = flat.range(i);
        packed[off..off + n].copy_from_slice(t);
    }
    (packed, ts)
}

/// `got` (a flat buffer read back) holds `want[i]` for tensor `i` of `flat` (checked as
/// [`check`] does) and NaN in every gap.
fn check_flat(name: &str, flat: &FlatLayout, got: &[f32], want: &[Vec<f64>]) {
    for (i, w) in want.iter().enumerate() {
        let (off, n) = flat.range(i);
        check(&format!("{name} tensor {i}"), &got[off..off + n], w);
    }
    assert!(
        got.len() >= flat.len(),
        "{name}: buffer shorter than its layout"
    );
    let mut gaps = 0;
    for (k, g) in got.iter().enumerate().take(flat.len()) {
        if !(0..flat.tensors()).any(|i| {
            let (off, n) = flat.range(i);
            (off..off + n).contains(&k)
        }) {
            assert!(g.is_nan(), "{name}: gap element {k} was written");
            gaps += 1;
        }
    }
    assert!(gaps > 0, "{name}: the layout has gaps to check");
}

/// AdamW over three tensors of one flat layout in one dispatch, decayed and undecayed blocks,
/// against f64; the views of the flat buffers read back the same values.
fn adamw_flat<O: LmOps>(o: &O) {
    use collapse_kernels::ops::lm::AdamStep;
    let sizes = [4096 + 700usize, 5, 300];
    let decayed = [true, false, true];
    let decay = 0.999f32;
    let flat = FlatLayout::new(&sizes);
    let (m0, ms) = flat_tensors(&flat, 80);
    let (v0, vs) = flat_tensors(&flat, 83);
    let v0: Vec<f32> = v0.iter().map(|x| x.abs()).collect();
    let vs: Vec<Vec<f32>> = vs
        .iter()
        .map(|t| t.iter().map(|x| x.abs()).collect())
        .collect();
    let (p0, ps) = flat_tensors(&flat, 86);
    let (g0, gs) = flat_tensors(&flat, 89);
    let [mb, vb, pb, gb] = [&m0, &v0, &p0, &g0].map(|x| o.upload("flat", x).unwrap());
    let blocks = o
        .upload_u32("blocks", &flat.blocks(|i| decayed[i]))
        .unwrap();
    let scale = o.upload("scale", &[0.5, 0.0]).unwrap();
    let step = AdamStep {
        lr: 0.01,
        betas: (0.9, 0.95),
        eps: 1e-8,
        inv_corr: (1.0 / 0.1, 1.0 / 0.05),
    };
    o.adamw(
        [&pb, &gb, &mb, &vb],
        &blocks,
        flat.n_blocks(),
        &scale,
        &step,
        decay,
    )
    .unwrap();
    let (mut wp, mut wm, mut wv) = (vec![], vec![], vec![]);
    for t in 0..3 {
        let d = if decayed[t] { decay as f64 } else { 1.0 };
        let (mut p, mut mm, mut vv) = (vec![], vec![], vec![]);
        for i in 0..sizes[t] {
            let g = gs[t][i] as f64 * 0.5;
            let m = 0.9 * ms[t][i] as f64 + 0.1 * g;
            let v = 0.95 * vs[t][i] as f64 + 0.05 * g * g;
            mm.push(m);
            vv.push(v);
            p.push(ps[t][i] as f64 * d - 0.01 * (m / 0.1) / ((v / 0.05).sqrt() + 1e-8));
        }
        wp.push(p);
        wm.push(mm);
        wv.push(vv);
    }
    check_flat("adamw p", &flat, &o.read(&pb, flat.len()).unwrap(), &wp);
    check_flat("adamw m", &flat, &o.read(&mb, flat.len()).unwrap(), &wm);
    check_flat("adamw v", &flat, &o.read(&vb, flat.len()).unwrap(), &wv);
    // Views: each tensor's view reads back its own values.
    for (t, view) in flat.views(o, &pb).unwrap().iter().enumerate() {
        check(
            &format!("adamw view {t}"),
            &o.read(view, sizes[t]).unwrap(),
            &wp[t],
        );
    }
    assert!(
        o.view(&pb, 1, 4).is_err(),
        "a view at an unaligned offset is refused"
    );
}

/// The VAE's Adam (L2 decay) over three tensors of one flat layout in one dispatch, against
/// f64.
fn vae_adam_flat<O: VaeOps>(o: &O) {
    use collapse_kernels::ops::vae::AdamStep;
    let sizes = [300usize, 7, 4096 + 513];
    let flat = FlatLayout::new(&sizes);
    let (m0, ms) = flat_tensors(&flat, 90);
    let (v0, vs) = flat_tensors(&flat, 93);
    let v0: Vec<f32> = v0.iter().map(|x| x.abs()).collect();
    let vs: Vec<Vec<f32>> = vs
        .iter()
        .map(|t| t.iter().map(|x| x.abs()).collect())
        .collect();
    let (p0, ps) = flat_tensors(&flat, 96);
    let (g0, gs) = flat_tensors(&flat, 99);
    let [mb, vb, pb, gb] = [&m0, &v0, &p0, &g0].map(|x| o.upload("flat", x).unwrap());
    let blocks = o.upload_u32("blocks", &flat.blocks(|_| false)).unwrap();
    let s = AdamStep {
        lr: 0.01,
        betas: (0.9, 0.95),
        eps: 1e-8,
        weight_decay: 0.01,
        corr: (0.1, 0.05),
    };
    o.adam([&pb, &gb, &mb, &vb], &blocks, flat.n_blocks(), &s)
        .unwrap();
    let (mut wp, mut wm, mut wv) = (vec![], vec![], vec![]);
    for t in 0..3 {
        let (mut pp, mut mm, mut vv) = (vec![], vec![], vec![]);
        for i in 0..sizes[t] {
            let p = ps[t][i] as f64;
            let g = gs[t][i] as f64 + 0.01 * p;
            let m = 0.9 * ms[t][i] as f64 + 0.1 * g;
            let v = 0.95 * vs[t][i] as f64 + 0.05 * g * g;
            mm.push(m);
            vv.push(v);
            pp.push(p - 0.01 * (m / 0.1) / ((v / 0.05).sqrt() + 1e-8));
        }
        wp.push(pp);
        wm.push(mm);
        wv.push(vv);
    }
    check_flat("vae adam p", &flat, &o.read(&pb, flat.len()).unwrap(), &wp);
    check_flat("vae adam m", &flat, &o.read(&mb, flat.len()).unwrap(), &wm);
    check_flat("vae adam v", &flat, &o.read(&vb, flat.len()).unwrap(), &wv);
}

/// The fused noise draw and reparameterisation (`reparam_noise`) give the bits of the noise fill
/// followed by `reparam`, at a count with a ragged last Philox block; and the noise is the
/// host's Philox normals (cpu32's f32 Box–Muller within 1e-5).
fn fused_reparam_noise<O: VaeOps>(o: &O) {
    let n = 4 * 300 + 3;
    let key = StreamKey::new(12, 34);
    let mu = o.upload("mu", &normals(n, 70)).unwrap();
    let lv = o.upload("lv", &normals(n, 71)).unwrap();
    let (eps1, z1) = (o.alloc("eps", n).unwrap(), o.alloc("z", n).unwrap());
    let (eps2, z2) = (o.alloc("eps", n).unwrap(), o.alloc("z", n).unwrap());
    o.normals(key, n, &eps1).unwrap();
    o.reparam(&mu, &lv, &eps1, &z1, n).unwrap();
    o.reparam_noise(key, [&mu, &lv], &eps2, &z2, n).unwrap();
    let bits =
        |b: &O::Buf| -> Vec<u32> { o.read(b, n).unwrap().iter().map(|x| x.to_bits()).collect() };
    assert_eq!(
        bits(&eps1),
        bits(&eps2),
        "fused noise differs from the fill"
    );
    assert_eq!(bits(&z1), bits(&z2), "fused z differs from reparam");
    let mut host = vec![0.0f64; n];
    Cpu64.normal(key, 0, &mut host).unwrap();
    check("fused noise vs Philox", &o.read(&eps2, n).unwrap(), &host);
}

/// Two runs give the same bits.
fn deterministic<O: LmOps + VaeOps>(o: &O) {
    fused_reparam_noise(o);
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

/// Most WGSL dispatches one training step of the LM below (2 blocks: 29 tensors) may take: 112
/// at this revision, one sumsq and one AdamW dispatch over the flat layout (133 with sumsq four
/// tensors and AdamW two tensors a dispatch; 160 with one of each per tensor and three
/// gathers/scatters per block, before the two-level reductions added their second passes).
const LM_STEP_DISPATCHES: u64 = 112;

/// Most WGSL dispatches one VAE training step (10 tensors) may take: 32 at this revision, one
/// Adam dispatch over the flat layout (36 with two tensors an Adam dispatch; 36 before that
/// too, with one-pass column sums and one Adam dispatch per tensor).
const VAE_STEP_DISPATCHES: u64 = 32;

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
