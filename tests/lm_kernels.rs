//! Every kernel of the language model's GPU backends ([`LmOps`]: `shaders/lm.wgsl` and the
//! `#[cube]` kernels) against a plain f64 host computation, one kernel at a time, on Philox
//! inputs with poisoned outputs. Bound: norm-wise relative error 1e-5 (f32 arithmetic on
//! well-conditioned inputs; measured errors are ~1e-7), exact for index kernels.

mod common;

use collapse_kernels::backend::cpu64::Cpu64;
use collapse_kernels::ops::Backend;
use collapse_kernels::ops::lm::{AdamStep, LmOps};
use collapse_kernels::ops::matmul::{Epilogue, Matmul};
use collapse_kernels::ops::memory::FlatLayout;
use collapse_kernels::rng::StreamKey;
use common::rel_err;

const TOL: f64 = 1e-5;

fn normals(n: usize, stream: u64) -> Vec<f32> {
    let mut v = vec![0.0; n];
    Cpu64.normal(StreamKey::new(21, stream), 0, &mut v).unwrap();
    v.into_iter().map(|x| x as f32).collect()
}

fn wide(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn check(name: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    assert!(
        got.iter().all(|x| x.is_finite()),
        "{name}: non-finite output"
    );
    let e = rel_err(&wide(got), want);
    assert!(e < TOL, "{name}: relative error {e}");
}

fn ln_ref(x: &[f32], g: &[f32], b: &[f32], c: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mut y, mut xh, mut rs) = (vec![], vec![], vec![]);
    for row in x.chunks(c) {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / c as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / c as f64;
        let r = 1.0 / (var + 1e-5).sqrt();
        for j in 0..c {
            let h = (row[j] as f64 - mean) * r;
            xh.push(h);
            y.push(h * g[j] as f64 + b[j] as f64);
        }
        rs.push(r);
    }
    (y, xh, rs)
}

fn all_kernels<O: LmOps>(o: &O) {
    let up = |v: &[f32]| o.upload("in", v).unwrap();
    let rd = |b: &O::Buf, n: usize| o.read(b, n).unwrap();
    let (rows, len, heads, d) = (2usize, 5usize, 2usize, 3usize);
    let c = heads * d;
    let n = rows * len;

    // gemm: batched, both transposes, accumulate, bias.
    let (m, nn, k, batch) = (4, 5, 3, 2);
    let a = normals(batch * k * m, 1);
    let b = normals(batch * nn * k, 2);
    let c0 = normals(batch * m * nn, 3);
    let bias = normals(nn, 4);
    let cb = up(&c0);
    let g = Matmul::new(m, nn, k)
        .transposed(true, true)
        .scaled(1.0, 1.0)
        .batched(batch)
        .with_epilogue(Epilogue::Bias);
    o.gemm(&g, &up(&a), &up(&b), &cb, Some(&up(&bias))).unwrap();
    let mut want = vec![0.0; batch * m * nn];
    for t in 0..batch {
        for i in 0..m {
            for j in 0..nn {
                let mut s = c0[t * m * nn + i * nn + j] as f64 + bias[j] as f64;
                for p in 0..k {
                    s += a[t * k * m + p * m + i] as f64 * b[t * nn * k + j * k + p] as f64;
                }
                want[t * m * nn + i * nn + j] = s;
            }
        }
    }
    check("gemm", &rd(&cb, batch * m * nn), &want);

    // fill, embed.
    let out = o.alloc("out", 7).unwrap();
    o.fill(&out, 7, 2.5).unwrap();
    check("fill", &rd(&out, 7), &[2.5; 7]);
    let tokens: Vec<u32> = (0..n as u32).map(|i| (i * 37 + 11) % 256).collect();
    let tok_emb = normals(256 * c, 5);
    let pos_emb = normals(8 * c, 6);
    let tb = o.upload_u32("tokens", &tokens).unwrap();
    let e = o.alloc("e", n * c).unwrap();
    o.embed(&tb, &up(&tok_emb), &up(&pos_emb), &e, n, len, 2, c)
        .unwrap();
    let want: Vec<f64> = (0..n * c)
        .map(|i| {
            let (r, j) = (i / c, i % c);
            tok_emb[tokens[r] as usize * c + j] as f64 + pos_emb[(2 + r % len) * c + j] as f64
        })
        .collect();
    check("embed", &rd(&e, n * c), &want);

    // layer_norm and its backward.
    let x = normals(n * c, 7);
    let (gm, bt) = (normals(c, 8), normals(c, 9));
    let (y, xh, rs) = (
        o.alloc("y", n * c).unwrap(),
        o.alloc("xh", n * c).unwrap(),
        o.alloc("rs", n).unwrap(),
    );
    o.layer_norm(&up(&x), &up(&gm), &up(&bt), &y, &xh, &rs, n, c, 1e-5)
        .unwrap();
    let (wy, wxh, wrs) = ln_ref(&x, &gm, &bt, c);
    check("layer_norm y", &rd(&y, n * c), &wy);
    check("layer_norm xhat", &rd(&xh, n * c), &wxh);
    check("layer_norm rstd", &rd(&rs, n), &wrs);
    let dy = normals(n * c, 10);
    let dx0 = normals(n * c, 11);
    let (dx, prod) = (up(&dx0), o.alloc("prod", n * c).unwrap());
    o.layer_norm_back(&up(&dy), &xh, &rs, &up(&gm), &dx, &prod, n, c)
        .unwrap();
    let (mut wdx, mut wprod) = (vec![], vec![]);
    for i in 0..n {
        let dxh: Vec<f64> = (0..c)
            .map(|j| dy[i * c + j] as f64 * gm[j] as f64)
            .collect();
        let xr = &wxh[i * c..(i + 1) * c];
        let m1 = dxh.iter().sum::<f64>() / c as f64;
        let m2 = dxh.iter().zip(xr).map(|(a, b)| a * b).sum::<f64>() / c as f64;
        for j in 0..c {
            wdx.push(dx0[i * c + j] as f64 + wrs[i] * (dxh[j] - m1 - xr[j] * m2));
            wprod.push(dy[i * c + j] as f64 * xr[j]);
        }
    }
    check("layer_norm_back dx", &rd(&dx, n * c), &wdx);
    check("layer_norm_back prod", &rd(&prod, n * c), &wprod);

    // col_sum.
    let cs = o.alloc("cs", c).unwrap();
    o.col_sum(&up(&dy), &cs, n, c).unwrap();
    let want: Vec<f64> = (0..c)
        .map(|j| (0..n).map(|i| dy[i * c + j] as f64).sum())
        .collect();
    check("col_sum", &rd(&cs, c), &want);

    // gather / scatter heads (exact).
    let stride = 3 * c;
    let qkv = normals(n * stride, 12);
    let hb = o.alloc("heads", n * c).unwrap();
    o.gather_heads(&up(&qkv), &hb, (rows, heads, len, d), stride, c)
        .unwrap();
    let got = rd(&hb, n * c);
    let mut back = vec![0.0f32; n * stride];
    for r in 0..rows {
        for h in 0..heads {
            for t in 0..len {
                for e in 0..d {
                    let src = (r * len + t) * stride + c + h * d + e;
                    let i = ((r * heads + h) * len + t) * d + e;
                    assert_eq!(got[i], qkv[src], "gather_heads {i}");
                    back[src] = got[i];
                }
            }
        }
    }
    let sb = up(&vec![0.0; n * stride]);
    o.scatter_heads(&hb, &sb, (rows, heads, len, d), stride, c)
        .unwrap();
    assert_eq!(rd(&sb, n * stride), back, "scatter_heads");

    // causal softmax and its backward.
    let r = rows * heads * len;
    let s0 = normals(r * len, 13);
    let sb = up(&s0);
    o.causal_softmax(&sb, r, len, 0.7).unwrap();
    let mut wp = vec![0.0; r * len];
    for i in 0..r {
        let last = i % len;
        let row = &s0[i * len..(i + 1) * len];
        let mx = row[..=last]
            .iter()
            .map(|&v| v as f64 * 0.7)
            .fold(f64::MIN, f64::max);
        let z: f64 = row[..=last]
            .iter()
            .map(|&v| (v as f64 * 0.7 - mx).exp())
            .sum();
        for j in 0..=last {
            wp[i * len + j] = (row[j] as f64 * 0.7 - mx).exp() / z;
        }
    }
    let p = rd(&sb, r * len);
    check("causal_softmax", &p, &wp);
    let dp0 = normals(r * len, 14);
    let dpb = up(&dp0);
    o.softmax_back(&sb, &dpb, r, len, 0.7).unwrap();
    let mut want = vec![0.0; r * len];
    for i in 0..r {
        let s: f64 = (0..len)
            .map(|j| p[i * len + j] as f64 * dp0[i * len + j] as f64)
            .sum();
        for j in 0..len {
            want[i * len + j] = p[i * len + j] as f64 * (dp0[i * len + j] as f64 - s) * 0.7;
        }
    }
    check("softmax_back", &rd(&dpb, r * len), &want);

    // GELU and its derivative.
    let f = normals(40, 15);
    let gb = o.alloc("g", 40).unwrap();
    o.gelu(&up(&f), &gb, 40).unwrap();
    let (a_, s_) = (0.044_715f64, (2.0 / std::f64::consts::PI).sqrt());
    let want: Vec<f64> = f
        .iter()
        .map(|&x| {
            let x = x as f64;
            0.5 * x * (1.0 + (s_ * (x + a_ * x * x * x)).tanh())
        })
        .collect();
    check("gelu", &rd(&gb, 40), &want);
    let dg0 = normals(40, 16);
    let dgb = up(&dg0);
    o.gelu_back(&up(&f), &dgb, 40).unwrap();
    let want: Vec<f64> = f
        .iter()
        .zip(&dg0)
        .map(|(&x, &g)| {
            let x = x as f64;
            let t = (s_ * (x + a_ * x * x * x)).tanh();
            g as f64 * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * s_ * (1.0 + 3.0 * a_ * x * x))
        })
        .collect();
    check("gelu_back", &rd(&dgb, 40), &want);

    // cross-entropy (loss rows, gradient), mean.
    let logits = normals(n * 256, 17);
    let lb = up(&logits);
    let lrows = o.alloc("rows", n).unwrap();
    let quarter = up(&vec![0.25; n]);
    o.cross_entropy(&lb, &tb, &quarter, &lrows, n, true)
        .unwrap();
    let (mut wl, mut wg) = (vec![], vec![]);
    for i in 0..n {
        let row = &logits[i * 256..(i + 1) * 256];
        let mx = row.iter().map(|&v| v as f64).fold(f64::MIN, f64::max);
        let z: f64 = row.iter().map(|&v| (v as f64 - mx).exp()).sum();
        let y = tokens[i] as usize;
        wl.push(z.ln() + mx - row[y] as f64);
        for (j, &v) in row.iter().enumerate() {
            let oh = if j == y { 1.0 } else { 0.0 };
            wg.push(((v as f64 - mx).exp() / z - oh) * 0.25);
        }
    }
    check("cross_entropy rows", &rd(&lrows, n), &wl);
    check("cross_entropy grad", &rd(&lb, n * 256), &wg);
    let mb = o.alloc("mean", 1).unwrap();
    o.mean(&lrows, &quarter, &mb, n, n).unwrap();
    check("mean", &rd(&mb, 1), &[wl.iter().sum::<f64>() / n as f64]);

    // Weighted: per-row gradient weights mask/Σ mask (rows 1, 4 and 6 not counted), and the
    // mean over the counted rows only.
    let mask: Vec<f32> = (0..n)
        .map(|i| if [1, 4, 6].contains(&i) { 0.0 } else { 1.0 })
        .collect();
    let count = mask.iter().filter(|&&m| m == 1.0).count();
    let weights: Vec<f32> = mask.iter().map(|&m| m / count as f32).collect();
    let wb = up(&weights);
    let lb = up(&logits);
    o.cross_entropy(&lb, &tb, &wb, &lrows, n, true).unwrap();
    let wg_w: Vec<f64> = wg
        .iter()
        .enumerate()
        .map(|(k, &g)| g / 0.25 * weights[k / 256] as f64)
        .collect();
    check("cross_entropy rows (weighted)", &rd(&lrows, n), &wl);
    let got = rd(&lb, n * 256);
    check("cross_entropy grad (weighted)", &got, &wg_w);
    for i in [1, 4, 6] {
        assert!(
            got[i * 256..(i + 1) * 256].iter().all(|&g| g == 0.0),
            "row {i} of weight 0 has a nonzero gradient"
        );
    }
    let mb = o.alloc("mean", 1).unwrap();
    o.mean(&lrows, &wb, &mb, n, count).unwrap();
    let counted: f64 = (0..n).filter(|&i| mask[i] == 1.0).map(|i| wl[i]).sum();
    check("mean (weighted)", &rd(&mb, 1), &[counted / count as f64]);

    // onehot (exact), pos_grad.
    let ob = o.alloc("onehot", n * 256).unwrap();
    o.onehot(&tb, &ob, n).unwrap();
    let got = rd(&ob, n * 256);
    for (i, v) in got.iter().enumerate() {
        assert_eq!(
            *v,
            (tokens[i / 256] as usize == i % 256) as u8 as f32,
            "onehot {i}"
        );
    }
    let dh = normals(n * c, 18);
    let ctx = len + 2;
    let pg = o.alloc("pos grad", ctx * c).unwrap();
    o.pos_grad(&up(&dh), &pg, rows, len, ctx, c).unwrap();
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
    check("pos_grad", &rd(&pg, ctx * c), &want);

    // sumsq and AdamW with clipping (global norm over two tensors of one flat layout, the
    // first decayed, the second not).
    let (g1, g2) = (normals(300, 19), normals(50, 20));
    let flat = FlatLayout::new(&[300, 50]);
    let (o1, o2) = (flat.range(0).0, flat.range(1).0);
    let norms = o.alloc("norms", 2).unwrap();
    let gb = up(&flat.pack(&[g1.clone(), g2.clone()].concat()));
    let blocks = o.upload_u32("blocks", &flat.blocks(|i| i == 0)).unwrap();
    o.sumsq(&gb, &blocks, flat.n_blocks(), &norms).unwrap();
    let sq = |v: &[f32]| v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>();
    check("sumsq", &rd(&norms, 2), &[sq(&g1), sq(&g2)]);
    let scale = o.alloc("clip factor", 2).unwrap();
    o.clip_scale(&norms, 2, 1.0, &scale).unwrap();
    let (p0, m0, v0) = (normals(350, 21), normals(350, 22), normals(350, 23));
    let v0: Vec<f32> = v0.iter().map(|x| x.abs()).collect();
    let (pb, mb2, vb) = (
        up(&flat.pack(&p0)),
        up(&flat.pack(&m0)),
        up(&flat.pack(&v0)),
    );
    let step = AdamStep {
        lr: 0.01,
        betas: (0.9, 0.95),
        eps: 1e-8,
        inv_corr: (1.0 / 0.1, 1.0 / 0.05),
    };
    o.adamw(
        [&pb, &gb, &mb2, &vb],
        &blocks,
        flat.n_blocks(),
        &scale,
        &step,
        0.999,
    )
    .unwrap();
    let scale = 1.0f64.min(1.0 / (sq(&g1) + sq(&g2)).sqrt());
    let (mut wp, mut wm, mut wv) = (vec![], vec![], vec![]);
    for i in 0..350 {
        let (g, decay) = if i < 300 {
            (g1[i], 0.999)
        } else {
            (g2[i - 300], 1.0)
        };
        let g = g as f64 * scale;
        let m = 0.9 * m0[i] as f64 + 0.1 * g;
        let v = 0.95 * v0[i] as f64 + 0.05 * g * g;
        wm.push(m);
        wv.push(v);
        wp.push(p0[i] as f64 * decay - 0.01 * (m / 0.1) / ((v / 0.05).sqrt() + 1e-8));
    }
    let both = |b: &_| {
        let all = rd(b, flat.len());
        [&all[o1..o1 + 300], &all[o2..o2 + 50]].concat()
    };
    check("adamw m", &both(&mb2), &wm);
    check("adamw v", &both(&vb), &wv);
    check("adamw p", &both(&pb), &wp);

    // KV store and incremental attention at position 2 of a 4-position cache.
    let (cr, cctx, pos) = (2usize, 4usize, 2usize);
    let kc0 = normals(cr * cctx * c, 24);
    let vc0 = normals(cr * cctx * c, 25);
    let q = normals(cr * 3 * c, 26);
    let (kb, vb) = (up(&kc0), up(&vc0));
    let qb = up(&q);
    o.kv_store(&qb, &kb, &vb, cr, cctx, c, pos).unwrap();
    let (mut wk, mut wv) = (wide(&kc0), wide(&vc0));
    for r in 0..cr {
        for j in 0..c {
            wk[(r * cctx + pos) * c + j] = q[r * 3 * c + c + j] as f64;
            wv[(r * cctx + pos) * c + j] = q[r * 3 * c + 2 * c + j] as f64;
        }
    }
    check("kv_store k", &rd(&kb, cr * cctx * c), &wk);
    check("kv_store v", &rd(&vb, cr * cctx * c), &wv);
    let ab = o.alloc("att", cr * c).unwrap();
    o.decode_attention(&qb, &kb, &vb, &ab, (cr, heads, cctx, d), pos, 0.6)
        .unwrap();
    let mut want = vec![0.0; cr * c];
    for r in 0..cr {
        for h in 0..heads {
            let s: Vec<f64> = (0..=pos)
                .map(|j| {
                    (0..d)
                        .map(|e| {
                            q[r * 3 * c + h * d + e] as f64 * wk[(r * cctx + j) * c + h * d + e]
                        })
                        .sum::<f64>()
                        * 0.6
                })
                .collect();
            let mx = s.iter().cloned().fold(f64::MIN, f64::max);
            let z: f64 = s.iter().map(|v| (v - mx).exp()).sum();
            for e in 0..d {
                want[r * c + h * d + e] = (0..=pos)
                    .map(|j| (s[j] - mx).exp() / z * wv[(r * cctx + j) * c + h * d + e])
                    .sum();
            }
        }
    }
    check("decode_attention", &rd(&ab, cr * c), &want);
}

#[test]
fn wgsl_lm_kernels_match_the_host() {
    let Some(gpu) = common::gpu() else { return };
    let wgsl = collapse_kernels::backend::wgsl::Wgsl::new(gpu.clone());
    let tile = wgsl.matmul_tile().unwrap().tile;
    all_kernels(&collapse_kernels::backend::wgsl::memory::WgslKernels::new(gpu, tile).unwrap());
}

#[test]
fn cube_lm_kernels_match_the_host() {
    let Some(gpu) = common::gpu() else { return };
    let client = gpu.cube_client().unwrap();
    all_kernels(&collapse_kernels::backend::cube::memory::CubeKernels::new(
        &client, &gpu,
    ));
}
