//! The language model's masked loss (`loss_masked`, `loss_and_gradient_masked`, `step_masked`:
//! the mean cross-entropy over the target positions a 0/1 mask counts, as for loss on the
//! answer bytes only): cpu64 against the mean of per-position cross-entropies from `logits()`
//! and against finite differences; an all-ones mask gives the unmasked bits exactly; cpu32,
//! wgsl and cube track cpu64; bad masks are one-line errors that change nothing.

mod common;

use collapse_kernels::backend::cpu32::Cpu32;
use collapse_kernels::backend::cpu64::Cpu64;
use collapse_kernels::models::lm::{LmConfig, VOCAB, init_params, layout};
use collapse_kernels::ops::Backend;
use collapse_kernels::rng::{StreamKey, unit_f64};
use collapse_kernels::trainers::Engine;
use common::rel_err;

fn tiny() -> LmConfig {
    LmConfig {
        width: 16,
        layers: 2,
        heads: 2,
        context: 12,
        ..Default::default()
    }
}

/// `rows` sequences of `len + 1` Philox bytes (test-local stream; no result depends on it).
fn random_tokens(rows: usize, len: usize, seed: u64) -> Vec<u8> {
    let key = StreamKey::new(seed, 71);
    (0..rows * (len + 1))
        .map(|i| key.u32_at(i as u64) as u8)
        .collect()
}

/// A `[rows][len]` mask, each entry 1 with probability `p` (Philox), never all 0: at least
/// one counted and one uncounted position per row when `len ≥ 2`.
fn random_mask(rows: usize, len: usize, p: f64, seed: u64) -> Vec<u8> {
    let key = StreamKey::new(seed, 72);
    let mut m: Vec<u8> = (0..rows * len)
        .map(|i| (unit_f64(key.u32_at(i as u64)) < p) as u8)
        .collect();
    for r in 0..rows {
        let row = &mut m[r * len..(r + 1) * len];
        if row.iter().all(|&v| v == 0) {
            row[r % len] = 1;
        }
        if len >= 2 && row.iter().all(|&v| v == 1) {
            row[(r + 1) % len] = 0;
        }
    }
    m
}

/// The initial weights of `cfg` plus noise, so LayerNorm and biases are not at special points.
fn perturbed(cfg: &LmConfig, seed: u64) -> Vec<f64> {
    let mut p = init_params(cfg, seed);
    let mut noise = vec![0.0; p.len()];
    collapse_kernels::rng::host_normals_f64(StreamKey::new(seed, 73), 0, &mut noise);
    p.iter_mut().zip(&noise).for_each(|(a, b)| *a += 0.3 * b);
    p
}

/// The inputs (first `len` bytes of each sequence) of `tokens`.
fn inputs(tokens: &[u8], len: usize) -> Vec<u8> {
    tokens
        .chunks(len + 1)
        .flat_map(|s| s[..len].to_vec())
        .collect()
}

/// cpu64: the masked loss is the mean, over the counted positions, of `lse − logit[target]`
/// computed here in f64 from `logits()` (relative error ≤ 1e-12), it differs from the
/// unmasked loss, and the masked gradient matches central differences of `loss_masked` on a
/// spread of parameters (every tensor kind) within 1e-6 of the gradient's largest entry.
#[test]
fn cpu64_masked_loss_is_the_counted_mean_and_its_gradient_is_right() {
    let cfg = tiny();
    let (rows, len) = (3, 10);
    let p = perturbed(&cfg, 11);
    let x = random_tokens(rows, len, 1);
    let mask = random_mask(rows, len, 0.4, 2);
    let mut lm = Engine::Cpu64(Cpu64).lm(&cfg, &p).unwrap();
    let logits = lm.logits(&inputs(&x, len), rows, len).unwrap();
    let (mut sum, mut count) = (0.0, 0);
    for r in 0..rows {
        for t in 0..len {
            if mask[r * len + t] == 0 {
                continue;
            }
            let l = &logits[(r * len + t) * VOCAB..(r * len + t + 1) * VOCAB];
            let m = l.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + l.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            sum += lse - l[x[r * (len + 1) + t + 1] as usize];
            count += 1;
        }
    }
    assert!(0 < count && count < rows * len, "{count} counted");
    let want = sum / count as f64;
    let got = lm.loss_masked(&x, &mask, len).unwrap();
    let e = rel_err(&[got], &[want]);
    assert!(e <= 1e-12, "masked loss {got} vs {want}: {e}");
    let all = lm.loss(&x, len).unwrap();
    assert!(
        (all - got).abs() > 1e-3,
        "the mask changes nothing: {all} {got}"
    );

    let (l, g) = lm.loss_and_gradient_masked(&x, &mask, len).unwrap();
    assert_eq!(l.loss, got);
    let gmax = g.iter().fold(0.0f64, |a, b| a.max(b.abs()));
    assert!(gmax > 1e-3, "{gmax}");
    let h = 1e-5;
    let mut worst = (0.0, String::new());
    let mut checked = 0;
    for t in layout(&cfg) {
        // A few entries of every tensor, spread over it.
        let size = t.rows * t.cols;
        for i in t.range().step_by((size / 3).max(1)) {
            let mut pp = p.clone();
            pp[i] += h;
            let mut up = Engine::Cpu64(Cpu64).lm(&cfg, &pp).unwrap();
            let up = up.loss_masked(&x, &mask, len).unwrap();
            pp[i] -= 2.0 * h;
            let mut down = Engine::Cpu64(Cpu64).lm(&cfg, &pp).unwrap();
            let down = down.loss_masked(&x, &mask, len).unwrap();
            let fd = (up - down) / (2.0 * h);
            let err = (fd - g[i]).abs() / gmax;
            checked += 1;
            if err > worst.0 {
                worst = (
                    err,
                    format!("{}[{}]: fd {fd} vs {}", t.name, i - t.offset, g[i]),
                );
            }
        }
    }
    assert!(checked > 50, "{checked} entries checked");
    assert!(worst.0 < 1e-6, "worst {worst:?}");
}

/// Only counted targets matter: changing the final target byte of a row whose last position
/// is not counted (a byte that is no position's input) leaves the masked loss and gradient
/// bit-identical, and changes them when it is counted.
#[test]
fn uncounted_targets_do_not_matter() {
    let cfg = tiny();
    let (rows, len) = (2, 8);
    let p = perturbed(&cfg, 12);
    let x = random_tokens(rows, len, 3);
    let mut mask = random_mask(rows, len, 0.5, 4);
    mask[len - 1] = 0; // row 0's last target not counted
    mask[2 * len - 1] = 1; // row 1's counted
    for b in [Engine::Cpu64(Cpu64), Engine::Cpu32(Cpu32)] {
        let mut lm = b.lm(&cfg, &p).unwrap();
        let base = lm.loss_and_gradient_masked(&x, &mask, len).unwrap();
        let mut y = x.clone();
        y[len] = y[len].wrapping_add(17);
        assert_eq!(lm.loss_and_gradient_masked(&y, &mask, len).unwrap(), base);
        let mut z = x.clone();
        z[2 * (len + 1) - 1] = z[2 * (len + 1) - 1].wrapping_add(17);
        let other = lm.loss_and_gradient_masked(&z, &mask, len).unwrap();
        assert_ne!(other.0, base.0, "{}: a counted target changed", b.name());
    }
}

/// An all-ones mask is the unmasked loss, bit for bit, on cpu64 and cpu32: the loss, the
/// gradient, and three steps (weights and last loss) from the same start.
#[test]
fn all_ones_mask_is_bit_identical_on_cpu() {
    for b in [Engine::Cpu64(Cpu64), Engine::Cpu32(Cpu32)] {
        all_ones_is_unmasked(&b);
    }
}

fn all_ones_is_unmasked(b: &Engine) {
    let cfg = tiny();
    let (rows, len) = (3, 11);
    let p = perturbed(&cfg, 13);
    let x = random_tokens(rows, len, 5);
    let ones = vec![1u8; rows * len];
    let mut a = b.lm(&cfg, &p).unwrap();
    let mut m = b.lm(&cfg, &p).unwrap();
    let name = b.name();
    assert_eq!(
        a.loss(&x, len).unwrap().to_bits(),
        m.loss_masked(&x, &ones, len).unwrap().to_bits(),
        "{name}: loss"
    );
    let (la, ga) = a.loss_and_gradient(&x, len).unwrap();
    let (lm_, gm) = m.loss_and_gradient_masked(&x, &ones, len).unwrap();
    assert_eq!(la.loss.to_bits(), lm_.loss.to_bits(), "{name}: loss");
    assert!(
        ga.iter().zip(&gm).all(|(u, v)| u.to_bits() == v.to_bits()),
        "{name}: gradient"
    );
    for s in 0..3 {
        let xs = random_tokens(rows, len, 20 + s);
        a.step(&xs, len).unwrap();
        m.step_masked(&xs, &ones, len).unwrap();
        assert_eq!(
            a.last_loss().unwrap().loss.to_bits(),
            m.last_loss().unwrap().loss.to_bits(),
            "{name}: loss of step {s}"
        );
    }
    let (pa, pm) = (a.params().unwrap(), m.params().unwrap());
    assert!(
        pa.iter().zip(&pm).all(|(u, v)| u.to_bits() == v.to_bits()),
        "{name}: weights after 3 steps"
    );
}

/// A backend's masked loss and gradient against cpu64's from the same weights, batch and mask
/// (`tol`: loss relative, `gtol`: per-tensor norm-wise gradient, `wtol`: weights after one
/// masked step, norm-wise), with the tolerance style of tests/lm.rs.
fn masked_tracks_cpu64(b: &Engine, (tol, gtol, wtol): (f64, f64, f64)) {
    let cfg = tiny();
    let (rows, len) = (3, cfg.context);
    let p = perturbed(&cfg, 14);
    let x = random_tokens(rows, len, 6);
    let mask = random_mask(rows, len, 0.3, 7);
    let mut r64 = Engine::Cpu64(Cpu64).lm(&cfg, &p).unwrap();
    let mut other = b.lm(&cfg, &p).unwrap();
    let (l64, g64) = r64.loss_and_gradient_masked(&x, &mask, len).unwrap();
    let (lo, go) = other.loss_and_gradient_masked(&x, &mask, len).unwrap();
    assert!(
        (l64.loss - lo.loss).abs() <= tol * l64.loss,
        "{}: {l64:?} {lo:?}",
        b.name()
    );
    let mut worst = (0.0, String::new());
    for t in layout(&cfg) {
        let e = rel_err(&go[t.range()], &g64[t.range()]);
        assert!(e.is_finite() && e < gtol, "{}: gradient error {e}", t.name);
        if e > worst.0 {
            worst = (e, t.name.clone());
        }
    }
    eprintln!("{}: worst masked gradient error {worst:?}", b.name());
    // The masked gradient is not the unmasked one (the mask reaches the backend).
    let (_, gall) = other.loss_and_gradient(&x, len).unwrap();
    assert!(rel_err(&gall, &go) > 1e-2, "{}: mask ignored", b.name());
    assert_eq!(
        other.loss_masked(&x, &mask, len).unwrap() as f32,
        lo.loss as f32
    );
    r64.step_masked(&x, &mask, len).unwrap();
    other.step_masked(&x, &mask, len).unwrap();
    // Weights after the step, over the entries whose cpu64 gradient is not (analytically)
    // zero: the keys' bias has a zero gradient (softmax ignores a shift of every score), and
    // AdamW's first step moves a weight by about ±lr whatever its gradient's size, so f32
    // noise there (~1e-9) moves it by up to lr either way.
    let gmax = g64.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    let live: Vec<usize> = (0..g64.len())
        .filter(|&i| g64[i].abs() > 1e-6 * gmax)
        .collect();
    assert!(live.len() > g64.len() / 2, "{} live entries", live.len());
    let (po, p64) = (other.params().unwrap(), r64.params().unwrap());
    let pick = |v: &[f64]| live.iter().map(|&i| v[i]).collect::<Vec<_>>();
    let e = rel_err(&pick(&po), &pick(&p64));
    assert!(e < wtol, "{}: weights after one masked step: {e}", b.name());
    assert!((other.last_loss().unwrap().loss - l64.loss).abs() <= tol * l64.loss);
}

/// Bad masks are one-line errors naming what is wrong, and change nothing: the weights and
/// the last step's loss are as before.
fn bad_masks_are_errors(b: &Engine) {
    let cfg = tiny();
    let (rows, len) = (2, 6);
    let p = perturbed(&cfg, 15);
    let x = random_tokens(rows, len, 8);
    let mut lm = b.lm(&cfg, &p).unwrap();
    let good = random_mask(rows, len, 0.5, 9);
    lm.step_masked(&x, &good, len).unwrap();
    let (w0, l0) = (lm.params().unwrap(), lm.last_loss().unwrap());
    let mut two = good.clone();
    two[7] = 2;
    let cases: [(&[u8], &str); 4] = [
        (
            &good[..11],
            "loss mask has 11 entries, but 2 sequences of 6 target bytes need 12",
        ),
        (
            &[good.clone(), vec![1]].concat(),
            "loss mask has 13 entries",
        ),
        (
            &two,
            "loss mask entry 7 (row 1, target position 1) is 2: entries must be 0 or 1",
        ),
        (
            &[0; 12],
            "loss mask counts no position (all 12 entries are 0)",
        ),
    ];
    for (mask, want) in cases {
        let errs = [
            lm.step_masked(&x, mask, len).unwrap_err().to_string(),
            lm.loss_masked(&x, mask, len).unwrap_err().to_string(),
            lm.loss_and_gradient_masked(&x, mask, len)
                .unwrap_err()
                .to_string(),
        ];
        for e in errs {
            assert!(e.contains(want), "{}: {e:?} lacks {want:?}", b.name());
            assert!(!e.contains('\n'), "{}: not one line: {e:?}", b.name());
        }
    }
    assert_eq!(lm.params().unwrap(), w0, "{}: weights changed", b.name());
    assert_eq!(
        lm.last_loss().unwrap(),
        l0,
        "{}: last loss changed",
        b.name()
    );
}

#[test]
fn cpu32_masked_tracks_cpu64() {
    masked_tracks_cpu64(&Engine::Cpu32(Cpu32), (1e-6, 1e-4, 1e-5));
}

#[test]
fn bad_masks_are_errors_on_cpu() {
    for b in [Engine::Cpu64(Cpu64), Engine::Cpu32(Cpu32)] {
        bad_masks_are_errors(&b);
    }
}

/// A GPU backend: masked loss and gradient within the GPU tolerances of tests/lm.rs
/// (`gpu_matches_cpu64`), the all-ones mask bit-identical to the unmasked loss, bad masks
/// errors.
fn gpu_masked(b: &Engine) {
    masked_tracks_cpu64(b, (1e-5, 1e-3, 1e-4));
    all_ones_is_unmasked(b);
    bad_masks_are_errors(b);
}

#[test]
fn wgsl_masked_tracks_cpu64() {
    let Some(gpu) = common::gpu() else { return };
    gpu_masked(&Engine::Wgsl(collapse_kernels::backend::wgsl::Wgsl::new(
        gpu,
    )));
}

#[test]
fn cube_masked_tracks_cpu64() {
    let Some(gpu) = common::gpu() else { return };
    gpu_masked(&Engine::Cube(
        collapse_kernels::backend::cube::Cube::new(gpu).unwrap(),
    ));
}
