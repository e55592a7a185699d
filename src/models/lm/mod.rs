//! A byte-level decoder-only transformer language model (GPT-2 style, in miniature) for the
//! generational loop: Shumailov et al.'s OPT-125m / WikiText-2 experiment on our own kernels.
//!
//! # Model (vocabulary V = 256 bytes, width C, L blocks, H heads of C/H, context T)
//!
//! ```text
//! h₀ = tok_emb[x_t] + pos_emb[t]                                     [T][C]
//! block l:  a = LN₁(h);  [q|k|v] = a·W_qkv + b_qkv;
//!           o = concat_heads softmax(q·kᵀ/√(C/H) + causal mask)·v;   h ← h + o·W_proj + b_proj
//!           a = LN₂(h);  h ← h + GELU(a·W_fc + b_fc)·W_out + b_out     (W_fc: [C][4C])
//! logits = LN_f(h)·W_head                                            [T][V]
//! loss = mean over positions of −log softmax(logits)[next byte]      (nats per byte)
//! ```
//!
//! The masked loss ([`LmTrainer::loss_masked`]) is the mean over the positions a 0/1 mask
//! counts, `Σ mask·xent / Σ mask` (loss on the answer bytes of a (problem, answer) sequence
//! only); its gradient weights position i's `softmax − onehot` by `mask_i / Σ mask`.
//!
//! LayerNorm `LN(x) = (x − mean)/√(var + 1e-5)·γ + β` (biased variance); GELU is the tanh
//! approximation of GPT-2, `½x(1 + tanh(√(2/π)(x + 0.044715x³)))`. Weights are stored
//! `[in][out]` row-major; the head is not tied to the token embedding.
//!
//! # Parameters and optimiser
//!
//! One flat vector in [`layout`] order. Initialisation as GPT-2: weights and embeddings
//! `N(0, 0.02²)` (Philox normals, stream `(seed, LM_INIT + tensor)`), the two residual
//! projections of each block `N(0, (0.02/√(2L))²)`, biases 0, LayerNorm γ = 1, β = 0. AdamW
//! (decoupled weight decay `θ ← θ − lr·wd·θ` on weights and embeddings, not on biases or
//! LayerNorm), after clipping the gradient to a global norm (default 1).
//!
//! # Where it runs
//!
//! [`crate::trainers::Engine::lm`] gives an [`LmTrainer`]: `cpu64` (plain loops, the reference)
//! and `cpu32` (f32, the `gemm` crate) through [`cpu::CpuLm`]. Sampling (a [`Decoder`] with a
//! KV cache, classes drawn by the backend's categorical sampler) is in [`sample`]; data and
//! the training loop in [`train`].

pub mod complete;
pub mod cpu;
pub mod device;
pub mod sample;
pub mod train;

use crate::error::{Error, Result};
use crate::rng::StreamKey;
use crate::rng::streams::LM_INIT;

/// Byte-level vocabulary size.
pub const VOCAB: usize = 256;

/// AdamW's settings (PyTorch's names).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamW {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Added to √v̂.
    pub eps: f64,
    /// Decoupled weight decay (on weights and embeddings only).
    pub weight_decay: f64,
    /// Clip the gradient to this global L2 norm before the step (`None`: no clipping).
    pub clip: Option<f64>,
}

impl AdamW {
    /// These settings as the host update takes them ([`crate::num::adam::adamw_step`]).
    pub fn hyper(&self) -> crate::num::adam::Hyper {
        crate::num::adam::Hyper {
            lr: self.lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
        }
    }
}

impl Default for AdamW {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
            clip: Some(1.0),
        }
    }
}

/// Shape and optimiser of a language model.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LmConfig {
    /// Width C (`d_model`).
    pub width: usize,
    /// Blocks L.
    pub layers: usize,
    /// Attention heads H (C must be a multiple of H).
    pub heads: usize,
    /// Context T (positions with an embedding).
    pub context: usize,
    /// Optimiser.
    pub adam: AdamW,
}

impl Default for LmConfig {
    fn default() -> Self {
        Self {
            width: 128,
            layers: 4,
            heads: 4,
            context: 128,
            adam: AdamW::default(),
        }
    }
}

impl LmConfig {
    /// Head width C/H.
    pub fn head_dim(&self) -> usize {
        self.width / self.heads
    }

    /// Errors on zero sizes, a width that heads do not divide, or unusable optimiser settings.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        if self.width == 0 || self.layers == 0 || self.heads == 0 || self.context == 0 {
            return bad(format!(
                "LM sizes width {}, layers {}, heads {}, context {} must all be ≥ 1",
                self.width, self.layers, self.heads, self.context
            ));
        }
        if !self.width.is_multiple_of(self.heads) {
            return bad(format!(
                "width {} is not a multiple of heads {}",
                self.width, self.heads
            ));
        }
        let a = &self.adam;
        if !(a.lr > 0.0 && a.lr.is_finite()) {
            return bad(format!("learning rate {} must be > 0", a.lr));
        }
        if !((0.0..1.0).contains(&a.beta1) && (0.0..1.0).contains(&a.beta2)) {
            return bad("AdamW betas must be in [0, 1)".into());
        }
        if !(a.eps > 0.0 && a.weight_decay >= 0.0 && a.clip.is_none_or(|c| c > 0.0)) {
            return bad("AdamW eps and clip must be > 0, weight decay ≥ 0".into());
        }
        Ok(())
    }
}

/// What a tensor is, for initialisation and weight decay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A matrix or embedding: `N(0, 0.02²)`, decayed.
    Weight,
    /// A residual projection (`proj_w`, `out_w`): `N(0, (0.02/√(2L))²)`, decayed.
    Residual,
    /// A bias or LayerNorm β: 0, not decayed.
    Zero,
    /// A LayerNorm γ: 1, not decayed.
    One,
}

/// One parameter tensor of the flat vector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tensor {
    /// Name (`tok_emb`, `l0.qkv_w`, …).
    pub name: String,
    /// Rows (input width for weights, 1 for vectors).
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Offset in the flat vector.
    pub offset: usize,
    /// Initialisation and decay class.
    pub kind: Kind,
}

impl Tensor {
    /// Its range in the flat vector.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.rows * self.cols
    }
}

/// Per-block tensors, in layout order within a block.
pub const BLOCK_TENSORS: [&str; 12] = [
    "ln1_g", "ln1_b", "qkv_w", "qkv_b", "proj_w", "proj_b", "ln2_g", "ln2_b", "fc_w", "fc_b",
    "out_w", "out_b",
];

/// Where each tensor sits in [`layout`]: shared by the CPU and the device trainers.
pub(crate) mod idx {
    /// Tensor indices in [`layout`] order.
    pub(crate) struct Idx {
        /// Blocks L.
        pub layers: usize,
    }

    impl Idx {
        /// `tok_emb`.
        pub const TOK: usize = 0;
        /// `pos_emb`.
        pub const POS: usize = 1;
        /// Tensor `j` of [`super::BLOCK_TENSORS`] in block `l`.
        pub fn block(&self, l: usize, j: usize) -> usize {
            2 + 12 * l + j
        }
        /// `lnf_g`.
        pub fn lnf_g(&self) -> usize {
            2 + 12 * self.layers
        }
        /// `lnf_b`.
        pub fn lnf_b(&self) -> usize {
            3 + 12 * self.layers
        }
        /// `head_w`.
        pub fn head(&self) -> usize {
            4 + 12 * self.layers
        }
    }

    /// Offsets within a block ([`super::BLOCK_TENSORS`] order).
    pub const LN1_G: usize = 0;
    pub const LN1_B: usize = 1;
    pub const QKV_W: usize = 2;
    pub const QKV_B: usize = 3;
    pub const PROJ_W: usize = 4;
    pub const PROJ_B: usize = 5;
    pub const LN2_G: usize = 6;
    pub const LN2_B: usize = 7;
    pub const FC_W: usize = 8;
    pub const FC_B: usize = 9;
    pub const OUT_W: usize = 10;
    pub const OUT_B: usize = 11;
}

/// The flat layout: `tok_emb [V][C]`, `pos_emb [T][C]`, then per block [`BLOCK_TENSORS`]
/// (`qkv_w [C][3C]`, `proj_w [C][C]`, `fc_w [C][4C]`, `out_w [4C][C]`, vectors `[1][n]`), then
/// `lnf_g`, `lnf_b` `[1][C]` and `head_w [C][V]`.
pub fn layout(c: &LmConfig) -> Vec<Tensor> {
    let w = c.width;
    let mut out = Vec::new();
    let mut off = 0;
    let mut push = |name: String, rows: usize, cols: usize, kind: Kind| {
        out.push(Tensor {
            name,
            rows,
            cols,
            offset: off,
            kind,
        });
        off += rows * cols;
    };
    push("tok_emb".into(), VOCAB, w, Kind::Weight);
    push("pos_emb".into(), c.context, w, Kind::Weight);
    for l in 0..c.layers {
        for (name, rows, cols, kind) in [
            ("ln1_g", 1, w, Kind::One),
            ("ln1_b", 1, w, Kind::Zero),
            ("qkv_w", w, 3 * w, Kind::Weight),
            ("qkv_b", 1, 3 * w, Kind::Zero),
            ("proj_w", w, w, Kind::Residual),
            ("proj_b", 1, w, Kind::Zero),
            ("ln2_g", 1, w, Kind::One),
            ("ln2_b", 1, w, Kind::Zero),
            ("fc_w", w, 4 * w, Kind::Weight),
            ("fc_b", 1, 4 * w, Kind::Zero),
            ("out_w", 4 * w, w, Kind::Residual),
            ("out_b", 1, w, Kind::Zero),
        ] {
            push(format!("l{l}.{name}"), rows, cols, kind);
        }
    }
    push("lnf_g".into(), 1, w, Kind::One);
    push("lnf_b".into(), 1, w, Kind::Zero);
    push("head_w".into(), w, VOCAB, Kind::Weight);
    out
}

/// Number of parameters.
pub fn param_count(c: &LmConfig) -> usize {
    layout(c).last().map_or(0, |t| t.offset + t.rows * t.cols)
}

/// Initial parameters (see the module documentation), f64.
pub fn init_params(c: &LmConfig, seed: u64) -> Vec<f64> {
    let mut p = vec![0.0; param_count(c)];
    let resid = 0.02 / ((2 * c.layers) as f64).sqrt();
    for (i, t) in layout(c).iter().enumerate() {
        let dst = &mut p[t.range()];
        match t.kind {
            Kind::Zero => {}
            Kind::One => dst.fill(1.0),
            Kind::Weight | Kind::Residual => {
                let sd = if t.kind == Kind::Weight { 0.02 } else { resid };
                crate::rng::host_normals_f64(StreamKey::new(seed, LM_INIT + i as u64), 0, dst);
                dst.iter_mut().for_each(|v| *v *= sd);
            }
        }
    }
    p
}

/// Check a configuration and a flat parameter vector for it (length, finiteness).
pub fn check_params(cfg: &LmConfig, params: &[f64]) -> Result<()> {
    cfg.validate()?;
    crate::num::check_flat_params(params, param_count(cfg), "the model")
}

/// Check a training batch: `rows` sequences of `len + 1` bytes each (inputs are the first
/// `len`, targets the last `len`), `1 ≤ len ≤ context`. Returns `(rows, len)`.
pub fn check_sequences(cfg: &LmConfig, tokens: &[u8], len: usize) -> Result<(usize, usize)> {
    if len == 0 || len > cfg.context {
        return Err(Error::InvalidArgument(format!(
            "sequence length {len} must be in 1..={}",
            cfg.context
        )));
    }
    if tokens.is_empty() || !tokens.len().is_multiple_of(len + 1) {
        return Err(Error::InvalidArgument(format!(
            "{} tokens are not a whole number of {}-byte sequences",
            tokens.len(),
            len + 1
        )));
    }
    Ok((tokens.len() / (len + 1), len))
}

/// Check a loss mask for `rows` sequences of `len` target positions (as [`check_sequences`]
/// returns them): `rows·len` entries, entry `r·len + t` saying whether target position `t` of
/// row `r` (the byte `tokens[r·(len + 1) + t + 1]`) counts, each 0 or 1, at least one 1.
/// Returns the number of counted positions (the divisor of the masked mean).
pub fn check_mask(mask: &[u8], rows: usize, len: usize) -> Result<usize> {
    let n = rows * len;
    if mask.len() != n {
        return Err(Error::InvalidArgument(format!(
            "loss mask has {} entries, but {rows} sequences of {len} target bytes need {n}",
            mask.len()
        )));
    }
    if let Some(i) = mask.iter().position(|&m| m > 1) {
        return Err(Error::InvalidArgument(format!(
            "loss mask entry {i} (row {}, target position {}) is {}: entries must be 0 or 1",
            i / len,
            i % len,
            mask[i]
        )));
    }
    match mask.iter().filter(|&&m| m == 1).count() {
        0 => Err(Error::InvalidArgument(format!(
            "loss mask counts no position (all {n} entries are 0): at least one must be 1"
        ))),
        count => Ok(count),
    }
}

/// Loss of one batch: mean cross-entropy per predicted byte, nats.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct LmLoss {
    /// Mean cross-entropy (nats per byte); `exp` of it is the perplexity.
    pub loss: f64,
}

impl LmLoss {
    /// The loss, or an error when training has diverged.
    pub fn checked(loss: f64) -> Result<Self> {
        if !loss.is_finite() {
            return Err(Error::Numerical(format!(
                "LM loss is {loss}: training diverged; lower --lr"
            )));
        }
        Ok(Self { loss })
    }
}

/// What builds a [`LmTrainer`] on some backend: the composition root ([`crate::trainers::Engine`])
/// implements it, so the training loops here never name a backend.
pub trait MakeLm {
    /// A trainer with parameters `params` (flat, f64, rounded to the backend's precision) and
    /// fresh optimiser state.
    fn lm<'a>(&'a self, cfg: &LmConfig, params: &[f64]) -> Result<Box<dyn LmTrainer + 'a>>;
}

/// A language model with its weights and AdamW state on one backend.
pub trait LmTrainer {
    /// The configuration.
    fn config(&self) -> &LmConfig;

    /// One AdamW step on `tokens`: `rows` sequences of `len + 1` bytes (see
    /// [`check_sequences`]).
    fn step(&mut self, tokens: &[u8], len: usize) -> Result<()>;

    /// The loss of the latest step (GPU backends read it back only when asked).
    fn last_loss(&mut self) -> Result<LmLoss>;

    /// Loss and gradient (flat, [`layout`] order) at the current weights, without a step.
    fn loss_and_gradient(&mut self, tokens: &[u8], len: usize) -> Result<(LmLoss, Vec<f64>)>;

    /// Mean cross-entropy of `tokens` (as for [`LmTrainer::step`]), nats per byte.
    fn loss(&mut self, tokens: &[u8], len: usize) -> Result<f64>;

    /// [`LmTrainer::step`] on the masked loss ([`LmTrainer::loss_masked`]): one AdamW step on
    /// the gradient of the mean cross-entropy over the counted positions only. `mask` has
    /// `rows·len` entries, 0 or 1 (see [`check_mask`]). An all-ones mask gives exactly the bits
    /// of [`LmTrainer::step`]; [`LmTrainer::last_loss`] then reports the masked loss.
    fn step_masked(&mut self, tokens: &[u8], mask: &[u8], len: usize) -> Result<()>;

    /// Masked loss and its gradient (flat, [`layout`] order) at the current weights, without a
    /// step: as [`LmTrainer::loss_and_gradient`] with the loss of [`LmTrainer::loss_masked`].
    fn loss_and_gradient_masked(
        &mut self,
        tokens: &[u8],
        mask: &[u8],
        len: usize,
    ) -> Result<(LmLoss, Vec<f64>)>;

    /// Mean cross-entropy over the counted target positions, `Σ mask·xent / Σ mask`, nats per
    /// counted byte: `tokens` as for [`LmTrainer::step`] (`rows` sequences of `len + 1` bytes),
    /// `mask` `[rows][len]` (entry `r·len + t` counts the byte `tokens[r·(len + 1) + t + 1]`),
    /// 0 or 1 with at least one 1 ([`check_mask`]; anything else is an error). An all-ones
    /// mask gives exactly the bits of [`LmTrainer::loss`]. For loss on the answer only, mark
    /// the answer's bytes (and its end marker) 1 and the prompt's 0.
    fn loss_masked(&mut self, tokens: &[u8], mask: &[u8], len: usize) -> Result<f64>;

    /// Logits `[rows][len][V]` of every position (widened to f64).
    fn logits(&mut self, tokens: &[u8], rows: usize, len: usize) -> Result<Vec<f64>>;

    /// A decoder for autoregressive sampling of `rows` sequences with a KV cache.
    fn decoder(&self, rows: usize) -> Result<Box<dyn Decoder + '_>>;

    /// The current parameters, flat, widened to f64.
    fn params(&self) -> Result<Vec<f64>>;
}

/// Incremental decoding with a KV cache: feed one byte per row, get the next-byte logits.
pub trait Decoder {
    /// Append `tokens` (one per row) at the next position; returns logits `[rows][V]` for the
    /// byte after it. Errors once the context is full.
    fn feed(&mut self, tokens: &[u8]) -> Result<Vec<f64>>;
    /// Positions fed so far.
    fn position(&self) -> usize;
}

/// Write a model directory: `weights.npy` (shape `[1, P]`, f64, [`layout`] order) and
/// `model.json` (`config`, `layout`, and the `extra` fields), both atomically.
pub fn save_model(
    dir: &std::path::Path,
    cfg: &LmConfig,
    params: &[f64],
    extra: serde_json::Value,
) -> Result<()> {
    check_params(cfg, params)?;
    let layout = layout(cfg);
    crate::io::save_model_dir(
        dir,
        serde_json::to_value(cfg).map_err(|e| Error::Io(e.to_string()))?,
        layout
            .iter()
            .map(|t| (t.name.as_str(), t.rows, t.cols, t.offset)),
        params,
        extra,
    )
}

/// Parameters of `c` as [`param_count`] counts them, with checked arithmetic and without
/// building the layout (`None` when the count overflows `usize`): `256·C + T·C + L·(12C² +
/// 13C) + 2C + C·256`.
fn checked_param_count(c: &LmConfig) -> Option<usize> {
    let w = c.width;
    let block = w
        .checked_mul(w)?
        .checked_mul(12)?
        .checked_add(w.checked_mul(13)?)?;
    w.checked_mul(2 * VOCAB + 2)?
        .checked_add(c.context.checked_mul(w)?)?
        .checked_add(c.layers.checked_mul(block)?)
}

/// The configuration under `"config"` of a parsed `model.json`, every field read by name so a
/// missing or mistyped one is named (`config.layers`, `config.adam.lr`, …).
fn config_from_json(v: &serde_json::Value) -> std::result::Result<LmConfig, String> {
    let cfg = v
        .get("config")
        .filter(|c| c.is_object())
        .ok_or("no \"config\" object")?;
    let size = |k: &str| -> std::result::Result<usize, String> {
        match cfg.get(k) {
            None => Err(format!("config.{k} is missing")),
            Some(x) => x
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| format!("config.{k} is {x}, not a size (a whole number ≥ 0)")),
        }
    };
    let adam = cfg
        .get("adam")
        .filter(|a| a.is_object())
        .ok_or("config.adam is missing or not an object")?;
    let num = |k: &str| -> std::result::Result<f64, String> {
        match adam.get(k) {
            None => Err(format!("config.adam.{k} is missing")),
            Some(x) => x
                .as_f64()
                .ok_or_else(|| format!("config.adam.{k} is {x}, not a number")),
        }
    };
    let clip = match adam.get("clip") {
        None | Some(serde_json::Value::Null) => None,
        Some(x) => Some(
            x.as_f64()
                .ok_or_else(|| format!("config.adam.clip is {x}, not a number or null"))?,
        ),
    };
    Ok(LmConfig {
        width: size("width")?,
        layers: size("layers")?,
        heads: size("heads")?,
        context: size("context")?,
        adam: AdamW {
            lr: num("lr")?,
            beta1: num("beta1")?,
            beta2: num("beta2")?,
            eps: num("eps")?,
            weight_decay: num("weight_decay")?,
            clip,
        },
    })
}

/// Read a model directory written by [`save_model`]. `model.json` is read and checked first
/// (every setting by name, then the parameter count its shape needs, with checked arithmetic
/// and before anything of that size is built), then `weights.npy`, whose length must be that
/// count. Errors blame the file at fault: a bad setting names `model.json` and the field, a
/// weights file of another length names both files, the counts, and the `layers` or `context`
/// that would match when one would.
pub fn load_model(dir: &std::path::Path) -> Result<(LmConfig, Vec<f64>)> {
    let path = dir.join("model.json");
    let bad = |m: String| Error::Data(format!("{}: {m}", path.display()));
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let cfg = config_from_json(&v).map_err(bad)?;
    cfg.validate().map_err(|e| match e {
        Error::InvalidArgument(m) => bad(format!("config: {m}")),
        e => e,
    })?;
    let want = checked_param_count(&cfg).ok_or_else(|| {
        bad(format!(
            "config.width {}, config.layers {}, config.context {} give more parameters than \
             this machine can address",
            cfg.width, cfg.layers, cfg.context
        ))
    })?;
    let wpath = dir.join("weights.npy");
    let w = crate::io::read_table(&wpath)?;
    let have = w.data.len();
    if have != want {
        // Which single setting would make the shape fit the weights (both are linear in P).
        let w0 = cfg.width;
        let fixed = |layers: usize, context: usize| {
            checked_param_count(&LmConfig {
                layers,
                context,
                ..cfg
            })
        };
        let per_layer = fixed(1, cfg.context).zip(fixed(0, cfg.context));
        let hint = match per_layer {
            Some((one, zero)) if have > zero && (have - zero) % (one - zero) == 0 => {
                format!(
                    " (config.layers = {} would match)",
                    (have - zero) / (one - zero)
                )
            }
            _ => match fixed(cfg.layers, 0) {
                Some(zero) if have > zero && (have - zero) % w0 == 0 => {
                    format!(" (config.context = {} would match)", (have - zero) / w0)
                }
                _ => String::new(),
            },
        };
        return Err(bad(format!(
            "config (width {}, layers {}, heads {}, context {}) needs {want} parameters, but {} \
             holds {have}{hint}",
            cfg.width,
            cfg.layers,
            cfg.heads,
            cfg.context,
            wpath.display()
        )));
    }
    check_params(&cfg, &w.data).map_err(|e| Error::Data(format!("{}: {e}", wpath.display())))?;
    Ok((cfg, w.data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_contiguous_and_init_follows_kinds() {
        let c = LmConfig {
            width: 8,
            layers: 2,
            heads: 2,
            context: 5,
            ..Default::default()
        };
        let l = layout(&c);
        assert_eq!(l.len(), 2 + 12 * 2 + 3);
        let mut off = 0;
        for t in &l {
            assert_eq!(t.offset, off, "{}", t.name);
            off += t.rows * t.cols;
        }
        assert_eq!(
            param_count(&c),
            256 * 8 + 5 * 8 + 2 * (12 * 64 + 13 * 8) + 2 * 8 + 8 * 256
        );
        let p = init_params(&c, 3);
        for t in &l {
            let v = &p[t.range()];
            match t.kind {
                Kind::Zero => assert!(v.iter().all(|x| *x == 0.0)),
                Kind::One => assert!(v.iter().all(|x| *x == 1.0)),
                _ => {
                    let sd = (v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64).sqrt();
                    let want = if t.kind == Kind::Weight { 0.02 } else { 0.01 };
                    assert!((sd / want - 1.0).abs() < 0.25, "{} sd {sd}", t.name);
                }
            }
        }
        assert_ne!(init_params(&c, 4), p);
    }
}
