//! The VAE: one cpu32 step against the cpu64 reference from the same weights and batch, training
//! on Fashion-MNIST lowers the test negative ELBO, `collapse train vae` on small IDX files built
//! here, and bad input.

mod common;

use std::path::Path;

use collapse_kernels::backend::BackendKind;
use collapse_kernels::backend::cpu32::Cpu32;
use collapse_kernels::backend::cpu64::Cpu64;
use collapse_kernels::io::idx::encode_idx_images;
use collapse_kernels::models::vae::{VaeConfig, init_params, layout};
use collapse_kernels::ops::Backend;
use collapse_kernels::rng::StreamKey;
use collapse_kernels::trainers::Engine;

use common::cli::{collapse, fails, ok};
use common::files::check_grid;
use common::rel_err;
use common::table::Table;
use common::tmpdir;

const FASHION: &str = "/usr/share/datasets/fashion-mnist";

/// One step of `b` matches the cpu64 step from the same weights and batch: the gradient within
/// 1e-4 norm-wise per tensor, the loss within 1e-6 relative, the updated weights within 1e-5
/// norm-wise (Adam's first step moves each weight by about ±lr, so a tiny gradient whose sign
/// differs in f32 can move one weight the other way; the norm-wise bound allows a few).
fn step_matches_cpu64(b: &Engine) {
    let cfg = VaeConfig {
        d: 64,
        h: 48,
        z: 6,
        ..Default::default()
    };
    let imgs = common::bars(32, 8, 3);
    let x: Vec<f64> = (0..32).flat_map(|i| imgs.image_f64(i)).collect();
    let p0 = init_params(&cfg, 9);
    let key = StreamKey::new(4, 5);
    let mut a = Engine::Cpu64(Cpu64).vae(&cfg, &p0).unwrap();
    let mut v = b.vae(&cfg, &p0).unwrap();
    let name = b.name();
    let (la, ga) = a.loss_and_gradient(&x, key).unwrap();
    let (lb, gb) = v.loss_and_gradient(&x, key).unwrap();
    assert!(
        ((la.loss - lb.loss) / la.loss).abs() < 1e-6,
        "{name}: {la:?} {lb:?}"
    );
    assert!(
        ((la.kl - lb.kl) / la.kl).abs() < 1e-5,
        "{name}: {la:?} {lb:?}"
    );
    for t in layout(&cfg) {
        let e = rel_err(&gb[t.range()], &ga[t.range()]);
        assert!(e < 1e-4, "{name} {}: gradient error {e}", t.name);
    }
    a.step(&x, key).unwrap();
    v.step(&x, key).unwrap();
    let (pa, pb) = (a.params().unwrap(), v.params().unwrap());
    assert!(rel_err(&pb, &pa) < 1e-5, "{name}: {}", rel_err(&pb, &pa));
    assert!(rel_err(&pa, &p0) > 1e-4, "the step moved nothing");
    assert!(((a.last_loss().unwrap().loss - v.last_loss().unwrap().loss) / la.loss).abs() < 1e-6);
    // Evaluation paths agree too.
    let (ea, eb) = (a.neg_elbo(&x, key).unwrap(), v.neg_elbo(&x, key).unwrap());
    assert!(((ea - eb) / ea).abs() < 1e-6, "{name}: −ELBO {ea} vs {eb}");
    let (ra, rb) = (a.reconstruct(&x).unwrap(), v.reconstruct(&x).unwrap());
    assert!(rel_err(&rb, &ra) < 1e-5, "{name}: reconstructions");
    let zs: Vec<f64> = (0..3 * cfg.z).map(|i| (i as f64 * 0.37).sin()).collect();
    assert!(rel_err(&v.decode(&zs).unwrap(), &a.decode(&zs).unwrap()) < 1e-5);
}

#[test]
fn cpu32_step_matches_cpu64() {
    step_matches_cpu64(&Engine::Cpu32(Cpu32));
}

/// The WGSL trainer (matmul kernels + vae.wgsl + on-device Philox noise) against cpu64, on the
/// adapter with poisoned outputs (fails under CI=true without one).
#[test]
fn wgsl_step_matches_cpu64() {
    let Some(gpu) = common::gpu() else { return };
    let b = Engine::create(BackendKind::Wgsl, Some(&gpu)).unwrap();
    step_matches_cpu64(&b);
}

/// The cubecl trainer (cubecl matmul + `#[cube]` VAE kernels + cubecl Philox) against cpu64.
#[test]
fn cube_step_matches_cpu64() {
    let Some(gpu) = common::gpu() else { return };
    let b = Engine::create(BackendKind::Cube, Some(&gpu)).unwrap();
    step_matches_cpu64(&b);
}

/// epochs.csv as (epoch, test negative ELBO) rows.
fn epochs_csv(dir: &Path) -> Vec<(usize, f64)> {
    let t = Table::read(dir.join("epochs.csv"));
    assert_eq!(
        t.header(),
        [
            "epoch",
            "train_loss",
            "test_neg_elbo",
            "seconds",
            "images_per_s"
        ]
    );
    t.rows()
        .map(|r| (r.usize("epoch"), r.f64("test_neg_elbo")))
        .collect()
}

#[test]
fn train_cli_on_small_idx_files() {
    let dir = tmpdir("cli");
    let (train, test) = (dir.join("train.idx.gz"), dir.join("test.idx"));
    std::fs::write(&train, encode_idx_images(&common::bars(480, 8, 1), true)).unwrap();
    let test_images = common::bars(96, 8, 2);
    std::fs::write(&test, encode_idx_images(&test_images, false)).unwrap();
    let out = dir.join("run");
    let flags = [
        "train", "vae", "--epochs", "3", "--batch", "32", "--hidden", "32", "--latent", "4",
        "--lr", "3e-3", "--data",
    ];
    fails(
        &collapse(flags.iter().copied().chain([train.to_str().unwrap()])),
        "--out",
        "--out is required",
    );
    ok(&collapse(flags.iter().copied().chain([
        train.to_str().unwrap(),
        "--test-data",
        test.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])));
    let rows = epochs_csv(&out);
    assert_eq!(rows.len(), 4);
    assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), [0, 1, 2, 3]);
    assert!(
        rows[3].1 < rows[0].1 - 1.0,
        "test −ELBO did not fall: {rows:?}"
    );
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("model.json")).unwrap()).unwrap();
    assert_eq!(meta["layout"].as_array().unwrap().len(), 10);
    assert_eq!(meta["train_images"].as_u64(), Some(480));
    assert_eq!(meta["test_images"].as_u64(), Some(96));
    // The weights: one row of every parameter of the 64→32→4 layout, in its order, finite
    // and not all alike.
    let cfg = VaeConfig {
        d: 64,
        h: 32,
        z: 4,
        ..Default::default()
    };
    let total: usize = layout(&cfg).iter().map(|t| t.rows * t.cols).sum();
    let last = layout(&cfg).last().map(|t| t.offset + t.rows * t.cols);
    assert_eq!(last, Some(total));
    for (t, m) in layout(&cfg).iter().zip(meta["layout"].as_array().unwrap()) {
        assert_eq!(m["name"].as_str(), Some(t.name));
        assert_eq!(m["offset"].as_u64(), Some(t.offset as u64), "{}", t.name);
    }
    let w = collapse_kernels::io::read_table(&out.join("weights.npy")).unwrap();
    assert_eq!((w.rows, w.cols), (1, total));
    assert!(w.data.iter().all(|v| v.is_finite()) && w.data.iter().any(|&v| v != w.data[0]));
    // 64 samples of 8×8, 8 to a row, none flat.
    check_grid(&out.join("samples.png"), 64, (8, 8), 8);
    // The first 16 test images (top row, exactly their pixels) over their reconstructions
    // (none flat, checked above).
    let png = check_grid(&out.join("reconstructions.png"), 32, (8, 8), 16);
    for i in 0..16 {
        let original = &test_images.pixels[i * 64..(i + 1) * 64];
        assert_eq!(png.tile(i, (8, 8), 16), original, "test image {i}");
    }
    // A truncated file and a label file are refused with the reason.
    let bytes = std::fs::read(&test).unwrap();
    let bad = dir.join("bad.idx");
    std::fs::write(&bad, &bytes[..bytes.len() - 7]).unwrap();
    fails(
        &collapse([
            "train",
            "vae",
            "--data",
            bad.to_str().unwrap(),
            "--out",
            dir.join("y").to_str().unwrap(),
        ]),
        "truncated",
        "a truncated IDX file",
    );
    let labels = dir.join("labels.idx");
    std::fs::write(&labels, [0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3]).unwrap();
    let err = fails(
        &collapse([
            "train",
            "vae",
            "--data",
            labels.to_str().unwrap(),
            "--out",
            dir.join("z").to_str().unwrap(),
        ]),
        "label file",
        "an IDX label file",
    );
    assert!(err.contains(labels.to_str().unwrap()), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Training on real Fashion-MNIST (Debian's dataset-fashion-mnist; scripts/test.sh installs it)
/// lowers the test negative ELBO: 2 epochs on 3000 training images, evaluated on the 10 000 test
/// images. Fails under CI=true when the data is missing.
#[test]
fn training_on_fashion_mnist_lowers_the_test_neg_elbo() {
    let train = Path::new(FASHION).join("train-images-idx3-ubyte.gz");
    if !common::data_installed(&train, "apt-get install dataset-fashion-mnist") {
        return;
    }
    let dir = tmpdir("fashion");
    ok(&collapse([
        "train",
        "vae",
        "--epochs",
        "2",
        "--limit",
        "3000",
        "--hidden",
        "128",
        "--data",
        train.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]));
    let rows = epochs_csv(&dir);
    assert_eq!(rows.len(), 3);
    eprintln!("test −ELBO by epoch: {rows:?}");
    assert!(rows[0].1 > 500.0, "untrained −ELBO {rows:?}");
    assert!(
        rows[1].1 < rows[0].1 - 100.0 && rows[2].1 < rows[1].1,
        "{rows:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A batch whose activations exceed one storage binding (a context capped at 64 KiB here) is
/// refused before any launch, saying how many images fit.
#[test]
fn a_batch_over_the_binding_limit_is_a_clear_error() {
    let Some(small) = common::small_binding_gpu(64 * 1024) else {
        return;
    };
    let cfg = VaeConfig {
        d: 64,
        h: 48,
        z: 6,
        ..Default::default()
    };
    let p0 = init_params(&cfg, 9);
    let imgs = common::bars(300, 8, 3);
    let x: Vec<f64> = (0..300).flat_map(|i| imgs.image_f64(i)).collect();
    for kind in [BackendKind::Wgsl, BackendKind::Cube] {
        let b = Engine::create(kind, Some(&small)).unwrap();
        let mut v = b.vae(&cfg, &p0).unwrap();
        // 300 images × 64 f32 = 76.8 KB > 64 KiB; 256 fit.
        let e = v.step(&x, StreamKey::new(1, 2)).unwrap_err().to_string();
        assert!(e.contains("at most 256 images"), "{kind:?}: {e}");
        v.step(&x[..256 * 64], StreamKey::new(1, 2)).unwrap();
    }
}
