//! The kernels a GPU backend provides to the byte-level language model's device trainer
//! (`models::lm::device`), besides its buffers and matrix products: embeddings, LayerNorm,
//! attention pieces, GELU, cross-entropy and AdamW. Implemented by `backend::wgsl::lm`
//! (`shaders/lm.wgsl`) and `backend::cube::lm`.

use super::memory::DeviceMemory;
use crate::error::Result;

/// AdamW settings of one step (every tensor's).
#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    /// Learning rate.
    pub lr: f32,
    /// β₁, β₂.
    pub betas: (f32, f32),
    /// ε.
    pub eps: f32,
    /// `1/(1 − β₁ᵗ)`, `1/(1 − β₂ᵗ)`.
    pub inv_corr: (f32, f32),
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
    /// `out[j] = Σ_i rows[i][j]` over `n` rows of `c`: two-level (chunks of rows summed in
    /// order, then the chunks in order; [`crate::backend::launch::col_chunks`]), the same bits
    /// every run.
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
    /// Q, K and V out of `qkv` (`[rows·len][3C]`, C = H·d) into `[rows][H][len][d]` each:
    /// [`LmOps::gather_heads`] at offsets 0, C and 2C (one launch where the backend fuses them).
    fn gather_qkv(
        &self,
        qkv: &Self::Buf,
        [q, k, v]: [&Self::Buf; 3],
        shape: (usize, usize, usize, usize),
    ) -> Result<()> {
        let c = shape.1 * shape.3;
        self.gather_heads(qkv, q, shape, 3 * c, 0)?;
        self.gather_heads(qkv, k, shape, 3 * c, c)?;
        self.gather_heads(qkv, v, shape, 3 * c, 2 * c)
    }
    /// The inverse of [`LmOps::gather_qkv`]: `dq`, `dk`, `dv` into the three column blocks of
    /// `dqkv` ([`LmOps::scatter_heads`] thrice, or one fused launch).
    fn scatter_qkv(
        &self,
        [q, k, v]: [&Self::Buf; 3],
        qkv: &Self::Buf,
        shape: (usize, usize, usize, usize),
    ) -> Result<()> {
        let c = shape.1 * shape.3;
        self.scatter_heads(q, qkv, shape, 3 * c, 0)?;
        self.scatter_heads(k, qkv, shape, 3 * c, c)?;
        self.scatter_heads(v, qkv, shape, 3 * c, 2 * c)
    }
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
    /// `out[0] = Σ_{i < n, weights[i] ≠ 0} rows[i] / count` (a row of weight 0 is skipped, not
    /// multiplied, so it adds nothing even when not finite; a fixed two-level order: blocks of
    /// rows, then the blocks). With every weight nonzero and `count = n` it is the plain mean.
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
    /// `out[t][j] = Σ_r dh[r·len + t][j]` for `t < len`, 0 for `len ≤ t < ctx` (two-level,
    /// fixed order, as [`LmOps::col_sum`]).
    fn pos_grad(
        &self,
        dh: &Self::Buf,
        out: &Self::Buf,
        rows: usize,
        len: usize,
        ctx: usize,
        c: usize,
    ) -> Result<()>;
    /// Partial sums of squares of every gradient tensor, in one dispatch: `grads` holds them
    /// all in one flat buffer laid out by a [`FlatLayout`], `blocks` is that layout's block
    /// table ([`FlatLayout::blocks`](super::memory::FlatLayout::blocks), `n_blocks` blocks, uploaded as u32), and `parts[w] =
    /// Σ g²` over block `w` (in a fixed order), which [`LmOps::clip_scale`] then reduces once.
    fn sumsq(
        &self,
        grads: &Self::Buf,
        blocks: &Self::Buf,
        n_blocks: usize,
        parts: &Self::Buf,
    ) -> Result<()>;
    /// The global gradient-norm clip factor, once per step: `q = Σ_{k < n} parts[k]` (fixed
    /// order), `scale[0] = clip/√q` when `clip > 0` and `√q > clip`, else 1; `scale[1] = q`.
    fn clip_scale(&self, parts: &Self::Buf, n: usize, clip: f32, scale: &Self::Buf) -> Result<()>;
    /// AdamW on every tensor in one dispatch: `pgmv` = `[p, g, m, v]` are flat buffers in one
    /// [`FlatLayout`](super::memory::FlatLayout) whose block table is `blocks` (`n_blocks` blocks); each gradient is
    /// multiplied by the clip factor `scale[0]` (from [`LmOps::clip_scale`]), and the weights of
    /// blocks flagged 1 are multiplied by `decay` (`1 − lr·wd`) before the step.
    fn adamw(
        &self,
        pgmv: [&Self::Buf; 4],
        blocks: &Self::Buf,
        n_blocks: usize,
        scale: &Self::Buf,
        s: &AdamStep,
        decay: f32,
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
