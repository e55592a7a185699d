//! Training a VAE on IDX images, epoch by epoch, on any backend (`collapse train vae`).
//!
//! Each epoch visits the training images in a Philox permutation (stream
//! `(seed, VAE_SHUFFLE + epoch)`, Fisher–Yates), in batches of `batch` (the last one may be
//! smaller). Step `s` (counted over the whole run) draws its reparameterisation noise from stream
//! `(seed, VAE_NOISE + s)`. The loss is read back every `loss_every` steps (GPU backends pay
//! for a read-back); the epoch's training loss is the mean of those reads. After each epoch the
//! test set's negative ELBO is measured (one noise draw per image, stream
//! `(seed, VAE_EVAL)`, the same every epoch); a row with epoch 0 gives it before training.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{MakeVae, VaeConfig, VaeTrainer, init_params};
use crate::error::{Error, Result};
use crate::io::idx::IdxImages;
use crate::rng::{StreamKey, unit_f64};

use crate::rng::streams::{VAE_EVAL, VAE_NOISE, VAE_SAMPLE, VAE_SHUFFLE};
/// What to train.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct TrainConfig {
    /// The model.
    pub vae: VaeConfig,
    /// Passes over the training images.
    pub epochs: usize,
    /// Images per step.
    pub batch: usize,
    /// Philox seed of the weights, shuffles and noise.
    pub seed: u64,
    /// Read the loss back every this many steps.
    pub loss_every: usize,
}

/// One epoch's figures.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EpochRow {
    /// Epoch (0 = before training).
    pub epoch: usize,
    /// Mean training loss over the read-backs of the epoch (nats per image; empty for 0).
    pub train_loss: Option<f64>,
    /// Test negative ELBO (nats per image).
    pub test_neg_elbo: f64,
    /// Seconds of training in the epoch (evaluation excluded).
    pub seconds: f64,
    /// Training images per second.
    pub images_per_s: f64,
}

/// `[n][D]` pixels in [0, 1] of images `idx` of `img`.
pub fn gather(img: &IdxImages, idx: &[usize]) -> Vec<f64> {
    let mut x = Vec::with_capacity(idx.len() * img.dim());
    for &i in idx {
        x.extend(img.image_f64(i));
    }
    x
}

/// A Philox permutation of `0..n` (Fisher–Yates).
pub fn permutation(n: usize, key: StreamKey) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = ((unit_f64(key.u32_at(i as u64)) * (i + 1) as f64) as usize).min(i);
        p.swap(i, j);
    }
    p
}

/// One pass over `n` examples in the Philox permutation of stream `(seed, VAE_SHUFFLE +
/// epoch)`, in batches of `batch` (the last may be smaller): `gather(indices)` gives a batch's
/// pixels; step number `*step` (counted over the whole run, incremented here) draws its noise
/// from stream `(seed, VAE_NOISE + step)`. `after(vae, s, steps)` runs after batch `s` of
/// `steps`.
#[allow(clippy::too_many_arguments)]
pub fn run_epoch(
    vae: &mut dyn VaeTrainer,
    n: usize,
    batch: usize,
    seed: u64,
    epoch: usize,
    step: &mut u64,
    gather: &dyn Fn(&[usize]) -> Vec<f64>,
    after: &mut dyn FnMut(&mut dyn VaeTrainer, usize, usize) -> Result<()>,
) -> Result<()> {
    let order = permutation(n, StreamKey::new(seed, VAE_SHUFFLE + epoch as u64));
    let steps = n.div_ceil(batch);
    for (s, idx) in order.chunks(batch).enumerate() {
        let x = gather(idx);
        vae.step(&x, StreamKey::new(seed, VAE_NOISE + *step))?;
        *step += 1;
        after(vae, s, steps)?;
    }
    Ok(())
}

/// Train on `train`, evaluating on `test`; `progress(epoch, steps_done, steps_per_epoch, loss)`
/// is called after every step. Returns the trained model and the per-epoch rows.
pub fn train<'a>(
    backend: &'a dyn MakeVae,
    cfg: &TrainConfig,
    train: &IdxImages,
    test: &IdxImages,
    progress: &mut dyn FnMut(usize, usize, usize, Option<f64>),
) -> Result<(Box<dyn VaeTrainer + 'a>, Vec<EpochRow>)> {
    cfg.vae.validate()?;
    if train.dim() != cfg.vae.d || test.dim() != cfg.vae.d {
        return Err(Error::InvalidArgument(format!(
            "images have {} (train) and {} (test) pixels; the model expects D = {}",
            train.dim(),
            test.dim(),
            cfg.vae.d
        )));
    }
    if cfg.batch == 0 || cfg.epochs == 0 || cfg.loss_every == 0 {
        return Err(Error::InvalidArgument(
            "--batch, --epochs and the loss interval must be ≥ 1".into(),
        ));
    }
    let mut vae = backend.vae(&cfg.vae, &init_params(&cfg.vae, cfg.seed))?;
    let test_x = gather(test, &(0..test.count).collect::<Vec<_>>());
    let eval = StreamKey::new(cfg.seed, VAE_EVAL);
    let mut rows = vec![EpochRow {
        epoch: 0,
        train_loss: None,
        test_neg_elbo: vae.neg_elbo(&test_x, eval)?,
        seconds: 0.0,
        images_per_s: 0.0,
    }];
    let mut step = 0u64;
    for epoch in 1..=cfg.epochs {
        let t = Instant::now();
        let mut losses = Vec::new();
        run_epoch(
            vae.as_mut(),
            train.count,
            cfg.batch,
            cfg.seed,
            epoch,
            &mut step,
            &|idx| gather(train, idx),
            &mut |vae, s, steps| {
                let read = (s + 1) % cfg.loss_every == 0 || s + 1 == steps;
                let loss = if read {
                    let l = vae.last_loss()?.loss;
                    losses.push(l);
                    Some(l)
                } else {
                    None
                };
                progress(epoch, s + 1, steps, loss);
                Ok(())
            },
        )?;
        let seconds = t.elapsed().as_secs_f64();
        rows.push(EpochRow {
            epoch,
            train_loss: Some(losses.iter().sum::<f64>() / losses.len() as f64),
            test_neg_elbo: vae.neg_elbo(&test_x, eval)?,
            seconds,
            images_per_s: train.count as f64 / seconds,
        });
    }
    Ok((vae, rows))
}

/// `n` images decoded from latents `z ~ N(0, I)` (Philox stream `(seed, VAE_SAMPLE)`,
/// drawn in f64) → `[n][D]` pixel probabilities.
pub fn sample_images(vae: &mut dyn VaeTrainer, n: usize, seed: u64) -> Result<Vec<f64>> {
    let mut z = vec![0.0; n * vae.config().z];
    crate::rng::host_normals_f64(StreamKey::new(seed, VAE_SAMPLE), 0, &mut z);
    vae.decode(&z)
}

/// The training images `collapse train vae` and `collapse run --model vae` read when no data
/// file is given: Debian's Fashion-MNIST (`apt-get install dataset-fashion-mnist`).
pub const DEFAULT_TRAIN_IMAGES: &str =
    "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz";

/// The test file that MNIST-style data sets ship beside a training file: `t10k-REST` for a
/// file named `train-REST` (e.g. `t10k-images-idx3-ubyte.gz` beside
/// `train-images-idx3-ubyte.gz`), when it exists; `None` otherwise.
pub fn t10k_sibling(train: &Path) -> Option<PathBuf> {
    train.file_name().and_then(|n| n.to_str()).and_then(|n| {
        n.strip_prefix("train-")
            .map(|rest| train.with_file_name(format!("t10k-{rest}")))
            .filter(|p| p.exists())
    })
}

/// Split the last 10% (rounded down) of `data` off as a test set: `data` keeps the first 90%,
/// the rest is returned. Errors (naming `path`, the file `data` came from) when that leaves
/// either side empty.
pub fn hold_out_last(data: &mut IdxImages, path: &Path) -> Result<IdxImages> {
    let keep = data.count - data.count / 10;
    if keep == 0 || keep == data.count {
        return Err(Error::Data(format!(
            "{}: {} images are too few to hold out a test set; give --test-data",
            path.display(),
            data.count
        )));
    }
    let d = data.dim();
    let test = IdxImages {
        count: data.count - keep,
        rows: data.rows,
        cols: data.cols,
        pixels: data.pixels[keep * d..].to_vec(),
    };
    data.pixels.truncate(keep * d);
    data.count = keep;
    Ok(test)
}

/// The training and test images of `collapse train vae`: the IDX file `data` (or, when `data`
/// is a directory such as `/usr/share/datasets/fashion-mnist`, the training images inside it:
/// [`crate::io::idx::training_images_in`]; `note` is told which file), and as test set
/// `test_data`, else [`t10k_sibling`] of `data`, else [`hold_out_last`] of `data` (then
/// `note` is told how many images were held out). `limit` keeps only the first `limit`
/// training images (applied after the hold-out; `Some(0)` is an error). Errors when the test
/// images' size differs from the training images'.
pub fn load_images(
    data: &Path,
    test_data: Option<&Path>,
    limit: Option<usize>,
    note: &mut dyn FnMut(&str),
) -> Result<(IdxImages, IdxImages)> {
    use crate::io::idx::{read_idx_images, training_images_in};
    let found;
    let data = if data.is_dir() {
        found = training_images_in(data)?;
        note(&format!("{}: reading {}", data.display(), found.display()));
        found.as_path()
    } else {
        data
    };
    let mut train = read_idx_images(data)?;
    let test = match test_data
        .map(Path::to_path_buf)
        .or_else(|| t10k_sibling(data))
    {
        Some(p) => read_idx_images(&p)?,
        None => {
            let t = hold_out_last(&mut train, data)?;
            note(&format!(
                "no test file: holding out the last {} images",
                t.count
            ));
            t
        }
    };
    if let Some(n) = limit {
        if n == 0 {
            return Err(Error::InvalidArgument("--limit must be ≥ 1".into()));
        }
        train.count = train.count.min(n);
        train.pixels.truncate(train.count * train.dim());
    }
    if (test.rows, test.cols) != (train.rows, train.cols) {
        return Err(Error::Data(format!(
            "test images are {}×{}, training images {}×{}",
            test.rows, test.cols, train.rows, train.cols
        )));
    }
    Ok((train, test))
}

/// Write a trained VAE into `dir` (created if missing), as `models::lm::save_model` does for
/// the language model: `weights.npy` (shape `[1, P]`, float64, in [`super::layout`]'s order)
/// and `model.json` with the training configuration `cfg` (under `"config"`), the layout
/// (name, rows, cols, offset of every tensor), a note on the weights file, and every field of
/// the JSON object `extra` (backend, data, epochs, ...). Keys come out sorted.
pub fn save_model(
    dir: &Path,
    cfg: &TrainConfig,
    params: &[f64],
    extra: serde_json::Value,
) -> Result<()> {
    let layout = super::layout(&cfg.vae);
    crate::io::save_model_dir(
        dir,
        serde_json::to_value(cfg).map_err(|e| Error::Io(e.to_string()))?,
        layout.iter().map(|t| (t.name, t.rows, t.cols, t.offset)),
        params,
        extra,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_are_permutations() {
        // Test-local keys (no result or golden depends on them).
        let p = permutation(1000, StreamKey::new(1, 2));
        let mut s = p.clone();
        s.sort_unstable();
        assert_eq!(s, (0..1000).collect::<Vec<_>>());
        assert_ne!(p, (0..1000).collect::<Vec<_>>());
        assert_ne!(p, permutation(1000, StreamKey::new(1, 3)));
    }
    fn images(count: usize) -> IdxImages {
        IdxImages {
            count,
            rows: 2,
            cols: 3,
            pixels: (0..count * 6).map(|i| i as u8).collect(),
        }
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vae-train-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn hold_out_keeps_the_first_ninety_percent() {
        let mut x = images(25);
        let t = hold_out_last(&mut x, Path::new("x")).unwrap();
        assert_eq!((x.count, t.count), (23, 2));
        assert_eq!(x.pixels, (0..23 * 6).map(|i| i as u8).collect::<Vec<_>>());
        assert_eq!(
            t.pixels,
            (23 * 6..25 * 6).map(|i| i as u8).collect::<Vec<_>>()
        );
        assert_eq!((t.rows, t.cols), (2, 3));
        for n in [0, 1, 9] {
            let e = hold_out_last(&mut images(n), Path::new("few.idx")).unwrap_err();
            assert!(e.to_string().contains("few.idx") && e.to_string().contains("--test-data"));
        }
    }

    #[test]
    fn the_t10k_file_beside_a_train_file_is_the_test_set() {
        let d = tmpdir("sibling");
        let train = d.join("train-images-idx3-ubyte");
        assert_eq!(t10k_sibling(&train), None, "no sibling on disk");
        std::fs::write(d.join("t10k-images-idx3-ubyte"), b"").unwrap();
        assert_eq!(t10k_sibling(&train), Some(d.join("t10k-images-idx3-ubyte")));
        assert_eq!(
            t10k_sibling(&d.join("images-idx3-ubyte")),
            None,
            "not a train- file"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn load_images_holds_out_then_limits() {
        let d = tmpdir("load");
        let path = d.join("x-ubyte");
        std::fs::write(&path, crate::io::idx::encode_idx_images(&images(30), false)).unwrap();
        let mut notes = Vec::new();
        let (train, test) =
            load_images(&path, None, Some(5), &mut |m| notes.push(m.to_string())).unwrap();
        assert_eq!((train.count, test.count), (5, 3));
        assert_eq!(train.pixels.len(), 5 * 6);
        assert_eq!(notes, ["no test file: holding out the last 3 images"]);
        let (train, test) = load_images(&path, Some(&path), None, &mut |_| {}).unwrap();
        assert_eq!((train.count, test.count), (30, 30));
        let e = load_images(&path, None, Some(0), &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("--limit"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn saved_model_json_holds_config_layout_and_extra() {
        let d = tmpdir("save");
        let cfg = TrainConfig {
            vae: VaeConfig {
                d: 4,
                h: 3,
                z: 2,
                ..VaeConfig::default()
            },
            epochs: 1,
            batch: 2,
            seed: 7,
            loss_every: 1,
        };
        let params = init_params(&cfg.vae, 7);
        save_model(&d, &cfg, &params, serde_json::json!({"backend": "cpu64"})).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("model.json")).unwrap()).unwrap();
        assert_eq!(v["config"]["seed"], 7);
        assert_eq!(v["config"]["vae"]["h"], 3);
        assert_eq!(v["backend"], "cpu64");
        let layout = v["layout"].as_array().unwrap();
        assert_eq!(layout.len(), super::super::layout(&cfg.vae).len());
        let last = layout.last().unwrap();
        let end = last["offset"].as_u64().unwrap()
            + last["rows"].as_u64().unwrap() * last["cols"].as_u64().unwrap();
        assert_eq!(end as usize, params.len());
        assert!(d.join("weights.npy").is_file());
        let _ = std::fs::remove_dir_all(&d);
    }
}
