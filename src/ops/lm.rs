//! The kernels a GPU backend provides to the byte-level language model's device trainer
//! (`models::lm::device`), besides its buffers and matrix products: embeddings, LayerNorm,
//! attention pieces, GELU, cross-entropy and AdamW. Implemented by `backend::wgsl::lm`
//! (`shaders/lm.wgsl`) and `backend::cube::lm`.

use super::memory::DeviceMemory;
use crate::error::Result;

/// AdamW settings of one tensor's update.
#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    /// Learning rate.
    pub lr: f32,
    /// β₁, β₂.
    pub betas: (f32, f32),
    /// ε.
    pub eps: f32,
    /// Factor applied to the weights before the step (`1 − lr·wd`, or 1 when not decayed).
    pub decay: f32,
    /// `1/(1 − β₁ᵗ)`, `1/(1 − β₂ᵗ)`.
    pub inv_corr: (f32, f32),
    /// Clip to this global norm (0: none); the squared norms of all tensors are in `norms`.
    pub clip: f32,
    /// Number of tensors whose squared norms `norms` holds.
    pub tensors: usize,
}

/// The kernels a GPU backend provides to the language model, besides its buffers and matrix
/// products ([`DeviceMemory`]). Every buffer holds f32 unless named; `count`s are elements.
#[allow(clippy::too_many_arguments)]
pub trait LmOps: DeviceMemory {
    /// `out[i] = value` for `i < count`.
    fn fill(&self, out: &Self::Buf, count: usize, value: f32) -> Result<()>;
    /// `out[i][j] = tok_emb[tokens[i]][j] + pos_emb[pos0 + i % len][j]`, `i < n`, `j < c`.
    fn embed(
        &self,
        tokens: &Self::Buf,
        tok_emb: &Self::Buf,
        pos_emb: &Self::Buf,
        out: &Self::Buf,
        n: usize,
        len: usize,
        pos0: usize,
        c: usize,
    ) -> Result<()>;
    /// LayerNorm of the `n` rows of `x` (`[n][c]`): `y`, `xhat`, `rstd` (`[n]`).
    fn layer_norm(
        &self,
        x: &Self::Buf,
        gamma: &Self::Buf,
        beta: &Self::Buf,
        y: &Self::Buf,
        xhat: &Self::Buf,
        rstd: &Self::Buf,
        n: usize,
        c: usize,
        eps: f32,
    ) -> Result<()>;
    /// LayerNorm backward: `dx += rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂⊙x̂))` with `dx̂ = dy⊙γ`, and
    /// `prod = dy⊙x̂` (whose column sums are dγ).
    fn layer_norm_back(
        &self,
        dy: &Self::Buf,
        xhat: &Self::Buf,
        rstd: &Self::Buf,
        gamma: &Self::Buf,
        dx: &Self::Buf,
        prod: &Self::Buf,
        n: usize,
        c: usize,
    ) -> Result<()>;
    /// `out[j] = Σ_i rows[i][j]` over `n` rows of `c`.
    fn col_sum(&self, rows: &Self::Buf, out: &Self::Buf, n: usize, c: usize) -> Result<()>;
    /// Copy columns `offset .. offset + H·d` of `src` (`[rows·len][stride]`) into `dst`
    /// (`[rows][H][len][d]`).
    fn gather_heads(
        &self,
        src: &Self::Buf,
        dst: &Self::Buf,
        shape: (usize, usize, usize, usize),
        stride: usize,
        offset: usize,
    ) -> Result<()>;
    /// The inverse of [`LmOps::gather_heads`]: `src` `[rows][H][len][d]` into those columns of
    /// `dst` (other columns untouched). `shape` is `(rows, H, len, d)`.
    fn scatter_heads(
        &self,
        src: &Self::Buf,
        dst: &Self::Buf,
        shape: (usize, usize, usize, usize),
        stride: usize,
        offset: usize,
    ) -> Result<()>;
    /// In place on `s` (`[r][len]` rows, row `i` a query at position `i % len`): scale, causal
    /// mask, softmax (0 above the diagonal).
    fn causal_softmax(&self, s: &Self::Buf, r: usize, len: usize, scale: f32) -> Result<()>;
    /// In place on `dp`: `dS = P ⊙ (dP − rowsum(P ⊙ dP))·scale`.
    fn softmax_back(
        &self,
        p: &Self::Buf,
        dp: &Self::Buf,
        r: usize,
        len: usize,
        scale: f32,
    ) -> Result<()>;
    /// `g = GELU(f)` (tanh form).
    fn gelu(&self, f: &Self::Buf, g: &Self::Buf, count: usize) -> Result<()>;
    /// `dg ← dg ⊙ GELU′(f)`.
    fn gelu_back(&self, f: &Self::Buf, dg: &Self::Buf, count: usize) -> Result<()>;
    /// Per row of `logits` (`[n][256]`): `rows[i] = logsumexp − logit[target]`; with `grad`,
    /// `logits ← (softmax − onehot)·weights[i]` in place. `weights` (`[n]`) are the rows'
    /// shares of the mean loss: `1/n` each, or `mask/Σ mask` for a masked loss.
    fn cross_entropy(
        &self,
        logits: &Self::Buf,
        targets: &Self::Buf,
        weights: &Self::Buf,
        rows: &Self::Buf,
        n: usize,
        grad: bool,
    ) -> Result<()>;
    /// `out[0] = Σ_{i < n, weights[i] ≠ 0} rows[i] / count` (in order; a row of weight 0 is
    /// skipped, not multiplied, so it adds nothing even when not finite). With every weight
    /// nonzero and `count = n` it is the plain mean.
    fn mean(
        &self,
        rows: &Self::Buf,
        weights: &Self::Buf,
        out: &Self::Buf,
        n: usize,
        count: usize,
    ) -> Result<()>;
    /// `out[i][v] = [tokens[i] == v]`, `[n][256]`.
    fn onehot(&self, tokens: &Self::Buf, out: &Self::Buf, n: usize) -> Result<()>;
    /// `out[t][j] = Σ_r dh[r·len + t][j]` for `t < len`, 0 for `len ≤ t < ctx`.
    fn pos_grad(
        &self,
        dh: &Self::Buf,
        out: &Self::Buf,
        rows: usize,
        len: usize,
        ctx: usize,
        c: usize,
    ) -> Result<()>;
    /// `norms[slot] = Σ g²`.
    fn sumsq(&self, g: &Self::Buf, count: usize, norms: &Self::Buf, slot: usize) -> Result<()>;
    /// AdamW on one tensor (gradient scaled by the global clip factor from `norms`).
    fn adamw(
        &self,
        p: &Self::Buf,
        g: &Self::Buf,
        m: &Self::Buf,
        v: &Self::Buf,
        norms: &Self::Buf,
        count: usize,
        s: &AdamStep,
    ) -> Result<()>;
    /// Store the keys and values of `qkv` (`[rows][3C]`) at position `pos` of the caches
    /// (`[rows][ctx][C]`).
    fn kv_store(
        &self,
        qkv: &Self::Buf,
        k: &Self::Buf,
        v: &Self::Buf,
        rows: usize,
        ctx: usize,
        c: usize,
        pos: usize,
    ) -> Result<()>;
    /// One query per row (`qkv` `[rows][3C]`) attending to cached positions `0..=pos`:
    /// `o` `[rows][C]`.
    fn decode_attention(
        &self,
        qkv: &Self::Buf,
        k: &Self::Buf,
        v: &Self::Buf,
        o: &Self::Buf,
        shape: (usize, usize, usize, usize),
        pos: usize,
        scale: f32,
    ) -> Result<()>;
}
