//! Matrix multiply: every backend against the cpu64 reference on awkward shapes, every
//! transpose, α/β combination, batch count, epilogue and storage; every WGSL tile shape and both
//! WGSL load paths; bad input; the autotune and its cache.
//!
//! Inputs are fresh Philox normals (seed printed; set `MATMUL_TEST_SEED` to replay), rounded to
//! f32 so every backend sees the same values. GPU outputs are poisoned with NaN before each
//! kernel, so an unwritten element fails. Bounds, norm-wise relative error vs cpu64:
//! - f32: `1e-5` (measured ≤ ~1e-6 at K ≤ 4096); on the awkward shapes, whose C can hold one
//!   element, relative to the magnitude `‖|α|·|op(A)|·|op(B)| + |β|·|C|‖` rather than to `‖C‖`
//!   (GEMM's error bound: when α·AB and β·C nearly cancel in a 1×1 product, f32's rounding of each
//!   term is a large part of the small result, on every backend, and a fixed bound on `‖C‖`
//!   failed by chance once in a few hundred seeds; the magnitude equals `‖C‖` without cancellation);
//! - f16 storage vs cpu64 on the same f16-rounded inputs: `1e-5`; vs the unrounded inputs:
//!   `3e-3` (binary16 keeps 11 significant bits: each input off by ≤ 2⁻¹¹ relative).

mod common;

use collapse_kernels::backend::wgsl::matmul::{
    TILE_CONFIGS, choose_tile, matmul_with, shader_for, tile_by_name,
};
use collapse_kernels::backend::{BackendKind, create};
use collapse_kernels::error::Error;
use collapse_kernels::ops::Backend;
use collapse_kernels::ops::matmul::{Epilogue, Matmul, Storage};
use collapse_kernels::rng::StreamKey;
use common::cli::{collapse, fails, ok};
use common::rel_err;

const F32_BOUND: f64 = 1e-5;
const F16_SAME_INPUT_BOUND: f64 = 1e-5;
const F16_VS_F32_BOUND: f64 = 3e-3;

fn seed() -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SEED.get_or_init(|| common::seed_from_env("MATMUL_TEST_SEED"))
}

/// `n` standard normals rounded to f32 (stream `stream` of the test seed).
fn data(n: usize, stream: u64) -> Vec<f64> {
    let mut z = vec![0.0; n];
    create(BackendKind::Cpu64, None)
        .unwrap()
        .normal(StreamKey::new(seed(), stream), 0, &mut z)
        .unwrap();
    z.iter().map(|&v| v as f32 as f64).collect()
}

struct Case {
    p: Matmul,
    a: Vec<f64>,
    b: Vec<f64>,
    bias: Option<Vec<f64>>,
    c0: Vec<f64>,
}

fn case(p: Matmul, stream: u64) -> Case {
    let a = data(p.len_a(), 4 * stream);
    let b = data(p.len_b(), 4 * stream + 1);
    let bias = p.epilogue.has_bias().then(|| data(p.n, 4 * stream + 2));
    // β = 0: C holds NaN, which must not reach the output.
    let c0 = if p.beta != 0.0 {
        data(p.len_c(), 4 * stream + 3)
    } else {
        vec![f64::NAN; p.len_c()]
    };
    Case { p, a, b, bias, c0 }
}

fn run(be: &dyn Backend, c: &Case) -> Vec<f64> {
    let mut out = c.c0.clone();
    be.matmul(&c.p, &c.a, &c.b, c.bias.as_deref(), &mut out)
        .unwrap_or_else(|e| panic!("{} {}: {e}", be.name(), c.p.label()));
    out
}

fn reference(c: &Case) -> Vec<f64> {
    run(create(BackendKind::Cpu64, None).unwrap().as_ref(), c)
}

/// `|α|·|op(A)|·|op(B)| + |β|·|C|` (+ `|bias|`) in f64: what each element's rounding error scales
/// with (the activation, if any, left out: every one has slope ≤ 1.13).
fn magnitude(c: &Case) -> Vec<f64> {
    let abs = |v: &[f64]| v.iter().map(|x| x.abs()).collect::<Vec<f64>>();
    let mut p = c.p.clone().scaled(c.p.alpha.abs(), c.p.beta.abs());
    p.epilogue = if p.epilogue.has_bias() {
        Epilogue::Bias
    } else {
        Epilogue::None
    };
    reference(&Case {
        p,
        a: abs(&c.a),
        b: abs(&c.b),
        bias: c.bias.as_deref().map(abs),
        c0: abs(&c.c0),
    })
}

/// Norm-wise error of `got` relative to [`magnitude`] (`‖got − want‖ / ‖mag‖`), within `bound`.
fn check_conditioned(name: &str, got: &[f64], want: &[f64], mag: &[f64], what: &str) {
    assert_eq!(got.len(), want.len());
    let num: f64 = got.iter().zip(want).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f64 = mag.iter().map(|y| y * y).sum();
    let e = if got.iter().all(|v| v.is_finite()) {
        (num / den.max(f64::MIN_POSITIVE)).sqrt()
    } else {
        f64::INFINITY
    };
    assert!(
        e <= F32_BOUND,
        "{name} {what}: error {e:.3e} relative to |α||A||B| + |β||C| > {F32_BOUND:.0e} (seed {})",
        seed()
    );
}

fn check(name: &str, got: &[f64], want: &[f64], bound: f64, what: &str) {
    let e = rel_err(got, want);
    assert!(
        e <= bound,
        "{name} {what}: relative error {e:.3e} > {bound:.0e} (seed {})",
        seed()
    );
}

/// The awkward shapes of the issue (M×N×K), plus the 4096-long one the other way round.
const SHAPES: [(usize, usize, usize); 5] = [
    (1, 1, 1),
    (63, 2, 10),
    (1, 4096, 1),
    (4096, 1, 1),
    (257, 129, 65),
];

#[test]
fn every_backend_matches_cpu64_on_awkward_shapes() {
    let backends = common::backends();
    let mut stream = 0;
    for (m, n, k) in SHAPES {
        for batch in [1, 7] {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                for alpha in [0.0, 1.0, 2.3] {
                    for beta in [0.0, 1.0, 2.3] {
                        stream += 1;
                        let p = Matmul::new(m, n, k)
                            .batched(batch)
                            .transposed(ta, tb)
                            .scaled(alpha, beta);
                        let c = case(p, stream);
                        let want = reference(&c);
                        assert!(want.iter().all(|v| v.is_finite()));
                        let mag = magnitude(&c);
                        for be in backends.iter().filter(|b| b.name() != "cpu64") {
                            check_conditioned(
                                be.name(),
                                &run(be.as_ref(), &c),
                                &want,
                                &mag,
                                &c.p.label(),
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn epilogues_match_cpu64() {
    let backends = common::backends();
    for (i, e) in Epilogue::ALL.into_iter().enumerate() {
        for (m, n, k, batch) in [(257, 129, 65, 1), (33, 20, 300, 3)] {
            let p = Matmul::new(m, n, k)
                .batched(batch)
                .scaled(0.7, 0.5)
                .with_epilogue(e);
            let c = case(p, 1000 + i as u64);
            let want = reference(&c);
            for be in backends.iter().filter(|b| b.name() != "cpu64") {
                check(
                    be.name(),
                    &run(be.as_ref(), &c),
                    &want,
                    F32_BOUND,
                    &c.p.label(),
                );
            }
        }
    }
}

#[test]
fn activations_f32_match_f64_definitions() {
    for x in [-20.0f32, -3.0, -0.5, -1e-3, 0.0, 1e-3, 0.7, 4.0, 30.0] {
        for e in Epilogue::ALL {
            let got = e.activate_f32(x) as f64;
            let want = e.activate(x as f64);
            assert!(
                (got - want).abs() <= 1e-6 * (1.0 + want.abs()),
                "{e:?}({x}) = {got}, want {want}"
            );
        }
    }
}

#[test]
fn wgsl_every_tile_shape_and_both_load_paths() {
    let Some(gpu) = common::gpu() else { return };
    // Vec4-eligible shapes (contiguous dimensions multiples of 4) and ineligible ones.
    let shapes = [(68, 36, 20), (130, 68, 44), (257, 129, 65), (5, 3, 7)];
    let mut vec4_seen = false;
    for tile in TILE_CONFIGS {
        for (s, &(m, n, k)) in shapes.iter().enumerate() {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let p = Matmul::new(m, n, k)
                    .batched(2)
                    .transposed(ta, tb)
                    .scaled(1.5, 0.5);
                let c = case(p, 2000 + s as u64);
                let want = reference(&c);
                for allow_vec4 in [true, false] {
                    vec4_seen |= shader_for(&c.p, allow_vec4) == "matmul_vec4.wgsl";
                    let mut got = c.c0.clone();
                    matmul_with(&gpu, &tile, allow_vec4, &c.p, &c.a, &c.b, None, &mut got)
                        .unwrap_or_else(|e| panic!("{} {}: {e}", tile.name, c.p.label()));
                    let what = format!("{} vec4={allow_vec4} {}", tile.name, c.p.label());
                    check("wgsl", &got, &want, F32_BOUND, &what);
                }
            }
        }
    }
    assert!(vec4_seen, "no shape exercised matmul_vec4.wgsl");
}

/// The cube matmul's vector loads: shapes whose operands qualify take 4-wide loads of A and
/// B (both, or one) and give the same bits as the scalar loads (the tiles hold the same values
/// and each element of C sums in the same order), partial tiles included; shapes that do not
/// qualify take scalar loads and match cpu64. Outputs are poisoned (a NaN C with β = 0 here,
/// the context's poisoned buffer otherwise), so an element never written fails.
#[test]
fn cube_vector_loads_match_scalar_loads_bit_for_bit() {
    use collapse_kernels::backend::cube::matmul::{load_widths, matmul_with};
    let Some(gpu) = common::gpu() else { return };
    let client = gpu.cube_client().unwrap();
    let mut vector_seen = (false, false);
    // (M, N, K): whole tiles; partial tiles with every contiguous dimension a multiple of 4;
    // A qualifying and B not (N odd) when B is not transposed; nothing qualifying.
    let shapes = [(128, 128, 64), (100, 52, 36), (68, 70, 20), (67, 70, 45)];
    for (s, &(m, n, k)) in shapes.iter().enumerate() {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            for beta in [0.0, 0.5] {
                let p = Matmul::new(m, n, k)
                    .batched(2)
                    .transposed(ta, tb)
                    .scaled(1.5, beta);
                let c = case(p, 5000 + 10 * s as u64 + 2 * ta as u64 + tb as u64);
                let want = reference(&c);
                let what = c.p.label();
                let mut vec_out = c.c0.clone();
                let used = matmul_with(&gpu, &client, true, &c.p, &c.a, &c.b, None, &mut vec_out)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(used, vec![load_widths(&c.p)], "{what}");
                let mut scalar_out = c.c0.clone();
                let used_scalar = matmul_with(
                    &gpu,
                    &client,
                    false,
                    &c.p,
                    &c.a,
                    &c.b,
                    None,
                    &mut scalar_out,
                )
                .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(used_scalar, vec![(1, 1)], "{what}");
                check("cube vector", &vec_out, &want, F32_BOUND, &what);
                check("cube scalar", &scalar_out, &want, F32_BOUND, &what);
                let (wa, wb) = used[0];
                vector_seen.0 |= wa == 4;
                vector_seen.1 |= wb == 4;
                if s == 0 || s == 1 {
                    assert_eq!(
                        (wa, wb),
                        (4, 4),
                        "{what}: an aligned shape took scalar loads"
                    );
                }
                if s == 3 {
                    assert_eq!((wa, wb), (1, 1), "{what}: a ragged shape took vector loads");
                }
                let first_diff = vec_out
                    .iter()
                    .zip(&scalar_out)
                    .position(|(x, y)| x.to_bits() != y.to_bits());
                assert_eq!(
                    first_diff, None,
                    "{what}: vector loads ({wa}, {wb}) and scalar loads differ"
                );
            }
        }
    }
    assert_eq!(vector_seen, (true, true));
}

#[test]
fn f16_storage_matches_cpu64_on_rounded_inputs() {
    let gpu_backends = common::gpu_backends();
    for (i, (m, n, k)) in [(257, 129, 65), (64, 64, 512), (3, 5, 7)]
        .into_iter()
        .enumerate()
    {
        let p32 = Matmul::new(m, n, k)
            .batched(2)
            .transposed(i == 1, i == 2)
            .scaled(1.0, 0.5)
            .with_epilogue(Epilogue::BiasGelu);
        let p16 = p32.clone().with_storage(Storage::F16);
        let c32 = case(p32, 3000 + i as u64);
        let c16 = Case {
            p: p16,
            a: c32.a.clone(),
            b: c32.b.clone(),
            bias: c32.bias.clone(),
            c0: c32.c0.clone(),
        };
        let want16 = reference(&c16);
        let want32 = reference(&c32);
        // The reference itself: f16 rounding moves the result by about 2^-11.
        let e = rel_err(&want16, &want32);
        assert!(
            e > 1e-5 && e < F16_VS_F32_BOUND,
            "f16 reference vs f32: {e:.3e}"
        );
        let cpu32 = create(BackendKind::Cpu32, None).unwrap();
        check(
            "cpu32",
            &run(cpu32.as_ref(), &c16),
            &want16,
            F16_SAME_INPUT_BOUND,
            "f16",
        );
        for be in &gpu_backends {
            let gpu = common::gpu().unwrap();
            if !gpu.features().contains(wgpu::Features::SHADER_F16) {
                let mut out = c16.c0.clone();
                let err = be.matmul(&c16.p, &c16.a, &c16.b, c16.bias.as_deref(), &mut out);
                assert!(matches!(err, Err(Error::Unsupported(_))), "{err:?}");
                continue;
            }
            let got = run(be.as_ref(), &c16);
            check(
                be.name(),
                &got,
                &want16,
                F16_SAME_INPUT_BOUND,
                &c16.p.label(),
            );
            check(
                be.name(),
                &got,
                &want32,
                F16_VS_F32_BOUND,
                "f16 vs f32 inputs",
            );
        }
    }
}

#[test]
fn broadcast_and_padded_batch_strides() {
    let backends = common::backends();
    // One B shared by 5 batches (stride 0), C batches with a gap of 3 elements between them.
    let mut p = Matmul::new(17, 12, 9).batched(5).scaled(1.0, 1.0);
    p.stride_b = 0;
    p.stride_c = 17 * 12 + 3;
    let c = case(p, 4000);
    let want = reference(&c);
    for be in backends.iter().filter(|b| b.name() != "cpu64") {
        let got = run(be.as_ref(), &c);
        check(be.name(), &got, &want, F32_BOUND, &c.p.label());
        // The gaps between C batches are left as they were.
        for bt in 0..4 {
            for g in 0..3 {
                let i = bt * c.p.stride_c + 17 * 12 + g;
                assert_eq!(got[i].to_bits(), c.c0[i].to_bits(), "{} gap {i}", be.name());
            }
        }
    }
}

/// Operands over one storage binding (a context capped at 16 KiB per binding here) run as
/// launches that fit: groups of batches, then blocks of C's rows and columns with packed
/// operands. Results match cpu64 like unsplit ones (poisoned outputs: a block never written
/// fails), the gaps between padded C batches stay untouched, and one row of op(A) over the
/// limit by itself is a clear error.
#[test]
fn operands_over_one_binding_are_split_into_launches() {
    let limit = 16 * 1024;
    let Some(small) = common::small_binding_gpu(limit) else {
        return;
    };
    let backends: Vec<Box<dyn Backend>> = [BackendKind::Wgsl, BackendKind::Cube]
        .into_iter()
        .map(|k| create(k, Some(&small)).unwrap())
        .collect();
    let unlimited = collapse_kernels::ops::matmul::LaunchLimits {
        binding_bytes: limit,
        max_rows: usize::MAX,
        max_cols: usize::MAX,
    };
    let mut problems = Vec::new();
    // C (100 × 70 f32, 28 KB) over the limit: blocks of rows, every transpose, bias + GELU, β ≠ 0.
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        problems.push(
            Matmul::new(100, 70, 33)
                .transposed(ta, tb)
                .scaled(1.3, 0.7)
                .with_epilogue(Epilogue::BiasGelu),
        );
    }
    // B (40 × 200, 32 KB) over the limit: blocks of columns too.
    problems.push(Matmul::new(50, 200, 40).transposed(false, true));
    // 9 batches that fit one by one but not together: groups; B broadcast, C padded.
    let mut p = Matmul::new(30, 20, 16).batched(9).scaled(1.0, 1.0);
    p.stride_b = 0;
    p.stride_c = 30 * 20 + 5;
    problems.push(p);
    // f16 storage, where the adapter has it.
    if small.features().contains(wgpu::Features::SHADER_F16) {
        problems.push(
            Matmul::new(90, 60, 70)
                .with_storage(Storage::F16)
                .scaled(1.0, 0.5),
        );
    }
    for (i, p) in problems.into_iter().enumerate() {
        assert!(!p.fits(&unlimited), "{} fits: not a split case", p.label());
        let c = case(p, 6000 + i as u64);
        let want = reference(&c);
        for be in &backends {
            let got = run(be.as_ref(), &c);
            check(be.name(), &got, &want, F32_BOUND, &c.p.label());
            if c.p.batch > 1 {
                for bt in 0..c.p.batch - 1 {
                    for g in 0..5 {
                        let at = bt * c.p.stride_c + 30 * 20 + g;
                        assert_eq!(got[at].to_bits(), c.c0[at].to_bits(), "gap {at}");
                    }
                }
            }
        }
    }
    // One row of op(A) (K = 5000 f32, 20 KB) is over the limit by itself.
    let c = case(Matmul::new(2, 2, 5000), 6100);
    for be in &backends {
        let mut out = c.c0.clone();
        let e = be.matmul(&c.p, &c.a, &c.b, None, &mut out).unwrap_err();
        assert!(
            matches!(e, Error::InvalidArgument(_)) && e.to_string().contains("binding limit"),
            "{}: {e}",
            be.name()
        );
    }
}

#[test]
fn more_batches_than_one_dispatch_holds() {
    let backends = common::gpu_backends();
    let p = Matmul::new(1, 2, 3).batched(65_535 + 5);
    let c = case(p, 5000);
    let want = reference(&c);
    for be in &backends {
        check(
            be.name(),
            &run(be.as_ref(), &c),
            &want,
            F32_BOUND,
            &c.p.label(),
        );
    }
}

#[test]
fn bad_input_is_a_clear_error_on_every_backend() {
    let backends = common::backends();
    let ok = Matmul::new(3, 4, 5);
    let a = data(15, 1);
    let b = data(20, 2);
    let bias = data(4, 3);
    for be in &backends {
        let mut c = vec![0.0; 12];
        let mut bad = |p: &Matmul, a: &[f64], b: &[f64], bias: Option<&[f64]>, want: &str| {
            let err = be.matmul(p, a, b, bias, &mut c).unwrap_err();
            assert!(
                matches!(err, Error::InvalidArgument(_)) && err.to_string().contains(want),
                "{}: {err} (wanted {want:?})",
                be.name()
            );
        };
        bad(&Matmul::new(0, 4, 5), &[], &b, None, "at least 1");
        bad(&ok, &a[..14], &b, None, "A holds 14");
        bad(&ok, &a, &b[..19], None, "B holds 19");
        bad(&ok.clone().scaled(f64::NAN, 0.0), &a, &b, None, "finite");
        bad(
            &ok.clone().with_epilogue(Epilogue::BiasRelu),
            &a,
            &b,
            None,
            "none was given",
        );
        bad(&ok, &a, &b, Some(&bias), "epilogue is `none`");
        bad(
            &ok.clone().with_epilogue(Epilogue::Bias),
            &a,
            &b,
            Some(&bias[..3]),
            "bias holds 3",
        );
        let mut overlap = ok.clone().batched(2);
        overlap.stride_c = 5;
        bad(&overlap, &data(30, 4), &data(40, 5), None, "overlap");
        let mut c_short = vec![0.0; 11];
        let err = be.matmul(&ok, &a, &b, None, &mut c_short).unwrap_err();
        assert!(err.to_string().contains("C holds 11"), "{err}");
    }
}

#[test]
fn autotune_picks_a_tile_and_caches_it() {
    let Some(gpu) = common::gpu() else { return };
    let dir = common::tmpdir("tune");
    let file = dir.join("matmul-tiles.json");
    let first = choose_tile(&gpu, Some(&file)).unwrap();
    assert!(first.source.starts_with("autotune"), "{}", first.source);
    assert!(first.source.contains("saved"), "{}", first.source);
    assert!(!first.tuned.is_empty());
    assert!(first.tuned.iter().all(|(_, g)| g.is_finite() && *g > 0.0));
    assert!(TILE_CONFIGS.contains(&first.tile));
    // Each tile timed once, in TILE_CONFIGS order, and the one chosen is the fastest (the first
    // of the fastest on a tie).
    let order: Vec<&str> = TILE_CONFIGS
        .iter()
        .map(|t| t.name)
        .filter(|n| first.tuned.iter().any(|(t, _)| t == n))
        .collect();
    let names: Vec<&str> = first.tuned.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, order, "tiles timed");
    let best = first
        .tuned
        .iter()
        .fold(None::<&(String, f64)>, |b, t| match b {
            Some(b) if b.1 >= t.1 => Some(b),
            _ => Some(t),
        })
        .unwrap();
    assert_eq!(first.tile.name, best.0, "{:?}", first.tuned);
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains(first.tile.name)
    );
    let second = choose_tile(&gpu, Some(&file)).unwrap();
    assert!(second.source.starts_with("cache"), "{}", second.source);
    assert_eq!(second.tile, first.tile);
    assert!(tile_by_name("no-such-tile").is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bench_matmul_cli_checks_times_and_writes_csv() {
    let dir = common::tmpdir("bench");
    let csv = dir.join("mm.csv");
    let records = dir.join("records");
    let stdout = ok(&collapse([
        "bench",
        "matmul",
        "--backends",
        "cpu64,cpu32",
        "--sizes",
        "16",
        "--shape",
        "3x5x7",
        "--reps",
        "2",
        "--out",
        csv.to_str().unwrap(),
        "--records",
        records.to_str().unwrap(),
    ]));
    assert!(
        stdout.contains("16x16x16") && stdout.contains("3x5x7"),
        "{stdout}"
    );
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(text.lines().count(), 1 + 4, "{text}");
    assert!(
        text.starts_with("backend,device,shape,m,n,k,trans_a,trans_b,seconds"),
        "{text}"
    );
    // Both backends on both shapes; each row's M, N, K are its shape's, its median no faster
    // than its fastest, its throughput 2MNK / median, its error within the CLI's 1e-4 check.
    let table = common::table::Table::read(&csv);
    let mut seen: Vec<(String, String)> = table
        .rows()
        .map(|r| (r.str("shape").to_string(), r.str("backend").to_string()))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("16x16x16", "cpu32"),
            ("16x16x16", "cpu64"),
            ("3x5x7", "cpu32"),
            ("3x5x7", "cpu64")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    for r in table.rows() {
        let (m, n, k) = (r.usize("m"), r.usize("n"), r.usize("k"));
        assert_eq!(format!("{m}x{n}x{k}"), r.str("shape"));
        let secs = r.f64("seconds");
        assert!(
            secs > 0.0 && r.f64("min_seconds") <= secs,
            "{}",
            r.str("shape")
        );
        let want = 2.0 * (m * n * k) as f64 / secs * 1e-9;
        assert!(
            (r.f64("gflops") - want).abs() <= 1e-12 * want,
            "{}",
            r.str("shape")
        );
        assert!(r.f64("rel_error") <= 1e-4, "{}", r.str("shape"));
    }
    // The JSON records: one per (shape, backend), stamped, and comparable with themselves.
    let recs = collapse_kernels::measure::records::load(&records).unwrap();
    assert_eq!(recs.len(), 4, "{recs:?}");
    for r in &recs {
        assert_eq!(r.kernel, "matmul");
        assert_eq!(r.source, "collapse bench matmul");
        assert!(
            r.median_s > 0.0 && r.throughput > 0.0 && r.unit == "GFLOP/s",
            "{r:?}"
        );
        assert!(r.date.starts_with("20") && !r.git_rev.is_empty(), "{r:?}");
        // The record of a CSV row: the same median and throughput, its spread median − fastest.
        let row = table
            .rows()
            .find(|x| x.str("backend") == r.backend && x.str("shape") == r.shape)
            .unwrap_or_else(|| panic!("no CSV row for {r:?}"));
        assert_eq!(r.median_s, row.f64("seconds"), "{r:?}");
        assert_eq!(r.throughput, row.f64("gflops"), "{r:?}");
        assert!((0.0..=r.median_s).contains(&r.spread_s), "{r:?}");
    }
    let text = ok(&collapse([
        "bench",
        "--compare",
        records.to_str().unwrap(),
        records.to_str().unwrap(),
    ]));
    assert_eq!(text.matches("1.000").count(), 4, "{text}");
    fails(
        &collapse(["bench", "matmul", "--backends", "cpu32", "--shape", "3x5"]),
        "use MxNxK",
        "a shape of two numbers",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The roofline ceilings on this adapter: the FMA probe's chains run (finite output, checked
/// inside) and both ceilings are positive and finite.
#[test]
fn roofline_ceilings_are_measured() {
    let Some(gpu) = common::gpu() else { return };
    let c = collapse_kernels::measure::bench::ceilings(&gpu, 2).unwrap();
    assert!(c.gflops.is_finite() && c.gflops > 0.0, "{c:?}");
    assert!(c.gb_per_s.is_finite() && c.gb_per_s > 0.0, "{c:?}");
}

/// The trusted shader modules (the default) and naga's checked ones
/// (`GpuOptions::checked_shaders`, `COLLAPSE_CHECKED_SHADERS=1`) compute the same bits: the
/// checks only clamp indices the kernels already guard.
#[test]
fn checked_and_trusted_modules_agree_bit_for_bit() {
    use collapse_kernels::gpu::{GpuContext, GpuOptions};
    let Some(trusted) = common::gpu() else {
        return;
    };
    assert!(!trusted.checked_shaders());
    let checked = GpuContext::new(&GpuOptions {
        adapter: std::env::var("COLLAPSE_ADAPTER").ok(),
        poison: true,
        checked_shaders: true,
        ..Default::default()
    })
    .unwrap();
    let p = Matmul::new(67, 70, 45);
    let (a, b) = collapse_kernels::measure::bench::matmul_inputs(&p);
    for tile in TILE_CONFIGS {
        let mut want = vec![f64::NAN; 67 * 70];
        let mut got = vec![f64::NAN; 67 * 70];
        matmul_with(&trusted, &tile, true, &p, &a, &b, None, &mut want).unwrap();
        matmul_with(&checked, &tile, true, &p, &a, &b, None, &mut got).unwrap();
        assert!(want.iter().all(|v| v.is_finite()), "{}", tile.name);
        let same = want
            .iter()
            .zip(&got)
            .all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{}: checked and trusted modules differ", tile.name);
    }
}
