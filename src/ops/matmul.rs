//! What the matrix-multiply kernels exchange with the host: the problem description
//! ([`Matmul`]), its validation, the epilogue functions, and its FLOP / byte counts.
//!
//! **The operation.** For each batch `b < batch`:
//!
//! ```text
//! C_b = act( α · op(A_b) · op(B_b) + β · C_b + bias )
//! ```
//!
//! with `op(A_b)` of shape `[M][K]`, `op(B_b)` `[K][N]`, `C_b` `[M][N]`, all row-major f32 (f64 on
//! the cpu64 reference). `op(X)` is `X` or `Xᵀ`: with `trans_a = false` `A_b` is stored `[M][K]`,
//! with `trans_a = true` it is stored `[K][M]` (and `B_b` likewise `[K][N]` or `[N][K]`). Batch
//! `b` of each operand starts at `b · stride` elements (a stride of 0 broadcasts one matrix to
//! every batch, e.g. shared weights). `bias` is `[N]`, added to every row of every batch.
//!
//! **β = 0** means C's old contents are not read at all (BLAS convention): a C full of NaN stays
//! harmless. **The epilogue** ([`Epilogue`]) runs once per output element after the bias add:
//! ReLU, GELU (tanh form, as GPT-2 and BERT use) or the logistic sigmoid.
//!
//! **f16 storage** ([`Storage::F16`]): A and B are rounded to IEEE binary16 on upload and read as
//! f16 by the kernels, which still accumulate in f32 and write C as f32. It halves the bytes the
//! kernel reads; the rounding of the inputs (relative 2⁻¹¹) dominates its error.

use crate::error::{Error, Result};
use crate::num::activation;

/// What runs on each output element after `α·AB + β·C + bias`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, clap::ValueEnum)]
pub enum Epilogue {
    /// Nothing (no bias).
    None,
    /// Add `bias[n]`.
    Bias,
    /// Add the bias, then `max(x, 0)`.
    BiasRelu,
    /// Add the bias, then GELU, tanh form: `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
    BiasGelu,
    /// Add the bias, then `1 / (1 + e^(−x))`.
    BiasSigmoid,
}

impl Epilogue {
    /// All five.
    pub const ALL: [Epilogue; 5] = [
        Self::None,
        Self::Bias,
        Self::BiasRelu,
        Self::BiasGelu,
        Self::BiasSigmoid,
    ];

    /// The code the kernels switch on (`0..=4`, in the order of [`Epilogue::ALL`]).
    pub fn code(self) -> u32 {
        match self {
            Self::None => 0,
            Self::Bias => 1,
            Self::BiasRelu => 2,
            Self::BiasGelu => 3,
            Self::BiasSigmoid => 4,
        }
    }

    /// Whether it reads a bias vector.
    pub fn has_bias(self) -> bool {
        self != Self::None
    }

    /// The activation applied to `x` (the bias already added), in f64: the reference definition
    /// ([`activation::gelu`], [`activation::sigmoid`]).
    pub fn activate(self, x: f64) -> f64 {
        match self {
            Self::None | Self::Bias => x,
            Self::BiasRelu => x.max(0.0),
            Self::BiasGelu => activation::gelu(x),
            Self::BiasSigmoid => activation::sigmoid(x),
        }
    }

    /// [`Epilogue::activate`] in f32, written as the kernels compute it
    /// ([`activation::gelu_f32_exp`], [`activation::sigmoid`]).
    pub fn activate_f32(self, x: f32) -> f32 {
        match self {
            Self::None | Self::Bias => x,
            Self::BiasRelu => x.max(0.0),
            Self::BiasGelu => activation::gelu_f32_exp(x),
            Self::BiasSigmoid => activation::sigmoid(x),
        }
    }
}

/// How A and B are stored on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, clap::ValueEnum)]
pub enum Storage {
    /// f32 (the default).
    F32,
    /// IEEE binary16 storage, f32 accumulation (needs `SHADER_F16` on GPU backends).
    F16,
}

/// One (batched) matrix multiply: shapes, transposes, scalars, strides, epilogue. See the
/// module documentation for the exact operation and layouts.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Matmul {
    /// Rows of op(A) and of C.
    pub m: usize,
    /// Columns of op(B) and of C.
    pub n: usize,
    /// Columns of op(A), rows of op(B).
    pub k: usize,
    /// Number of independent products.
    pub batch: usize,
    /// A is stored `[K][M]` and used transposed.
    pub trans_a: bool,
    /// B is stored `[N][K]` and used transposed.
    pub trans_b: bool,
    /// α.
    pub alpha: f64,
    /// β (0 means C is not read).
    pub beta: f64,
    /// Elements between consecutive batches of A (0 broadcasts one A).
    pub stride_a: usize,
    /// Elements between consecutive batches of B (0 broadcasts one B).
    pub stride_b: usize,
    /// Elements between consecutive batches of C (at least `M·N` when `batch > 1`).
    pub stride_c: usize,
    /// Bias and activation.
    pub epilogue: Epilogue,
    /// Storage of A and B.
    pub storage: Storage,
}

impl Matmul {
    /// `C = A·B` for one `[M][K]·[K][N]` product, no transposes, α = 1, β = 0, packed strides.
    pub fn new(m: usize, n: usize, k: usize) -> Self {
        Self {
            m,
            n,
            k,
            batch: 1,
            trans_a: false,
            trans_b: false,
            alpha: 1.0,
            beta: 0.0,
            stride_a: m * k,
            stride_b: k * n,
            stride_c: m * n,
            epilogue: Epilogue::None,
            storage: Storage::F32,
        }
    }

    /// `batch` products with packed strides.
    pub fn batched(mut self, batch: usize) -> Self {
        self.batch = batch;
        self.stride_a = self.m * self.k;
        self.stride_b = self.k * self.n;
        self.stride_c = self.m * self.n;
        self
    }

    /// Set the transposes.
    pub fn transposed(mut self, trans_a: bool, trans_b: bool) -> Self {
        self.trans_a = trans_a;
        self.trans_b = trans_b;
        self
    }

    /// Set α and β.
    pub fn scaled(mut self, alpha: f64, beta: f64) -> Self {
        self.alpha = alpha;
        self.beta = beta;
        self
    }

    /// Set the epilogue.
    pub fn with_epilogue(mut self, e: Epilogue) -> Self {
        self.epilogue = e;
        self
    }

    /// Set the storage of A and B.
    pub fn with_storage(mut self, s: Storage) -> Self {
        self.storage = s;
        self
    }

    /// Elements the A slice must hold: `(batch − 1)·stride_a + M·K`.
    pub fn len_a(&self) -> usize {
        (self.batch - 1) * self.stride_a + self.m * self.k
    }

    /// Elements the B slice must hold.
    pub fn len_b(&self) -> usize {
        (self.batch - 1) * self.stride_b + self.k * self.n
    }

    /// Elements the C slice must hold.
    pub fn len_c(&self) -> usize {
        (self.batch - 1) * self.stride_c + self.m * self.n
    }

    /// Row and column strides of A as used (`op(A)[i][p]` is at `i·rs + p·cs`).
    pub fn strides_a(&self) -> (usize, usize) {
        if self.trans_a {
            (1, self.m)
        } else {
            (self.k, 1)
        }
    }

    /// Row and column strides of B as used (`op(B)[p][j]` is at `p·rs + j·cs`).
    pub fn strides_b(&self) -> (usize, usize) {
        if self.trans_b {
            (1, self.k)
        } else {
            (self.n, 1)
        }
    }

    /// Sizes, strides, α and β as the host products of [`crate::num::gemm`] take them.
    pub fn shape(&self) -> crate::num::gemm::GemmShape {
        crate::num::gemm::GemmShape {
            m: self.m,
            n: self.n,
            k: self.k,
            batch: self.batch,
            strides_a: self.strides_a(),
            strides_b: self.strides_b(),
            stride_a: self.stride_a,
            stride_b: self.stride_b,
            stride_c: self.stride_c,
            alpha: self.alpha,
            beta: self.beta,
        }
    }

    /// Floating-point operations: `2·M·N·K` per batch (the epilogue is not counted).
    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.n as f64 * self.k as f64 * self.batch as f64
    }

    /// The fewest bytes the operation must move: A and B read once (at their storage width), C
    /// written once, and read once more when β ≠ 0.
    pub fn min_bytes(&self) -> f64 {
        let w = match self.storage {
            Storage::F32 => 4.0,
            Storage::F16 => 2.0,
        };
        let na = if self.stride_a == 0 { 1 } else { self.batch };
        let nb = if self.stride_b == 0 { 1 } else { self.batch };
        let c = if self.beta != 0.0 { 8.0 } else { 4.0 };
        w * (na * self.m * self.k + nb * self.k * self.n) as f64
            + c * (self.batch * self.m * self.n) as f64
    }

    /// Short shape label, e.g. `257x129x65 b7 TN bias_gelu f16`.
    pub fn label(&self) -> String {
        let mut s = format!("{}x{}x{}", self.m, self.n, self.k);
        if self.batch > 1 {
            s += &format!(" b{}", self.batch);
        }
        if self.trans_a || self.trans_b {
            s += &format!(
                " {}{}",
                if self.trans_a { 'T' } else { 'N' },
                if self.trans_b { 'T' } else { 'N' }
            );
        }
        if self.epilogue != Epilogue::None {
            s += &format!(" {:?}", self.epilogue).to_lowercase();
        }
        if self.storage == Storage::F16 {
            s += " f16";
        }
        s
    }

    /// Check the description and the operand lengths; every backend calls this first.
    pub fn validate(&self, a: usize, b: usize, bias: Option<usize>, c: usize) -> Result<()> {
        let bad = |m: String| {
            Err(Error::InvalidArgument(format!(
                "matmul {}: {m}",
                self.label()
            )))
        };
        if self.m == 0 || self.n == 0 || self.k == 0 || self.batch == 0 {
            return bad("M, N, K and batch must all be at least 1".into());
        }
        if !self.alpha.is_finite() || !self.beta.is_finite() {
            return bad(format!(
                "α = {} and β = {} must be finite",
                self.alpha, self.beta
            ));
        }
        if self.batch > 1 && self.stride_c < self.m * self.n {
            return bad(format!(
                "stride_c = {} is below M·N = {}: batches of C would overlap",
                self.stride_c,
                self.m * self.n
            ));
        }
        for (name, got, want) in [
            ("A", a, self.len_a()),
            ("B", b, self.len_b()),
            ("C", c, self.len_c()),
        ] {
            if got != want {
                return bad(format!("{name} holds {got} values, the shape needs {want}"));
            }
        }
        match (self.epilogue.has_bias(), bias) {
            (true, None) => return bad("the epilogue adds a bias but none was given".into()),
            (false, Some(_)) => {
                return bad("a bias was given but the epilogue is `none`".into());
            }
            (true, Some(l)) if l != self.n => {
                return bad(format!("bias holds {l} values, N = {}", self.n));
            }
            _ => {}
        }
        let max = u32::MAX as usize;
        if self.len_a() > max || self.len_b() > max || self.len_c() > max {
            return bad("an operand exceeds 2³² elements".into());
        }
        Ok(())
    }
}

/// What one device launch of a matmul may cover: the bytes of one storage binding (each of A, B
/// and C is one binding), and the rows and columns of C its grid reaches (workgroups per grid
/// dimension times the tile).
#[derive(Clone, Copy, Debug)]
pub struct LaunchLimits {
    /// Bytes of one storage binding.
    pub binding_bytes: u64,
    /// Rows of C one launch covers at most.
    pub max_rows: usize,
    /// Columns of C one launch covers at most.
    pub max_cols: usize,
}

impl Storage {
    /// Bytes per stored element of A and B.
    pub fn bytes(self) -> usize {
        match self {
            Storage::F32 => 4,
            Storage::F16 => 2,
        }
    }
}

impl Matmul {
    /// Whether one launch within `lim` covers the whole problem.
    pub fn fits(&self, lim: &LaunchLimits) -> bool {
        let w = self.storage.bytes() as u64;
        self.len_a() as u64 * w <= lim.binding_bytes
            && self.len_b() as u64 * w <= lim.binding_bytes
            && self.len_c() as u64 * 4 <= lim.binding_bytes
            && self.m <= lim.max_rows
            && self.n <= lim.max_cols
    }
}

/// One device launch of a matmul on host slices (a problem that [`Matmul::fits`]).
pub type Launch<'a> =
    dyn FnMut(&Matmul, &[f64], &[f64], Option<&[f64]>, &mut [f64]) -> Result<()> + 'a;

/// Run the validated problem `p` through `launch` in pieces that each fit `lim`: whole when it
/// fits; else as groups of consecutive batches (sub-slices, no copies); a batch too big by
/// itself in blocks of C's rows and columns, whose operands are packed into fresh,
/// untransposed host arrays (C's block gathered when β ≠ 0, then scattered back). Every element
/// of C is still one dot product over all of K, so splitting changes the launches, not the
/// operation. Errors when one row of op(A) or one column of op(B) alone exceeds a binding.
pub fn split_launches(
    p: &Matmul,
    a: &[f64],
    b: &[f64],
    bias: Option<&[f64]>,
    c: &mut [f64],
    lim: &LaunchLimits,
    launch: &mut Launch<'_>,
) -> Result<()> {
    if p.fits(lim) {
        return launch(p, a, b, bias, c);
    }
    let group = |g: usize| Matmul {
        batch: g,
        ..p.clone()
    };
    let single = Matmul {
        stride_a: 0,
        stride_b: 0,
        stride_c: 0,
        ..group(1)
    };
    let mut b0 = 0;
    while b0 < p.batch {
        let (sa, sb, sc) = (b0 * p.stride_a, b0 * p.stride_b, b0 * p.stride_c);
        if !single.fits(lim) {
            blocks(
                &single,
                &a[sa..sa + single.len_a()],
                &b[sb..sb + single.len_b()],
                bias,
                &mut c[sc..sc + single.len_c()],
                lim,
                launch,
            )?;
            b0 += 1;
            continue;
        }
        // The most consecutive batches from b0 that fit (fitting shrinks as batches grow).
        let (mut lo, mut hi) = (1, p.batch - b0);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if group(mid).fits(lim) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        let q = group(lo);
        launch(
            &q,
            &a[sa..sa + q.len_a()],
            &b[sb..sb + q.len_b()],
            bias,
            &mut c[sc..sc + q.len_c()],
        )?;
        b0 += lo;
    }
    Ok(())
}

/// One batch of `p` in blocks of C (see [`split_launches`]).
fn blocks(
    p: &Matmul,
    a: &[f64],
    b: &[f64],
    bias: Option<&[f64]>,
    c: &mut [f64],
    lim: &LaunchLimits,
    launch: &mut Launch<'_>,
) -> Result<()> {
    let (m, n, k) = (p.m, p.n, p.k);
    let w = p.storage.bytes() as u64;
    let max = lim.binding_bytes;
    let too_big = |what: &str| {
        Err(Error::InvalidArgument(format!(
            "matmul {}: {what} (K = {k}) exceeds the binding limit of {max} bytes by itself",
            p.label()
        )))
    };
    let nb = if k as u64 * n as u64 * w <= max {
        n.min(lim.max_cols)
    } else {
        ((max / (k as u64 * w)) as usize).min(lim.max_cols)
    };
    if nb == 0 {
        return too_big("one column of op(B)");
    }
    let mb = ((max / (k as u64 * w)) as usize)
        .min((max / (nb as u64 * 4)) as usize)
        .min(lim.max_rows);
    if mb == 0 {
        return too_big("one row of op(A)");
    }
    let (rs_a, cs_a) = p.strides_a();
    let (rs_b, cs_b) = p.strides_b();
    for j0 in (0..n).step_by(nb) {
        let nj = nb.min(n - j0);
        let bp: Vec<f64> = (0..k)
            .flat_map(|q| (j0..j0 + nj).map(move |j| b[q * rs_b + j * cs_b]))
            .collect();
        let biasp = bias.map(|v| &v[j0..j0 + nj]);
        for i0 in (0..m).step_by(mb) {
            let mi = mb.min(m - i0);
            let ap: Vec<f64> = (i0..i0 + mi)
                .flat_map(|i| (0..k).map(move |q| a[i * rs_a + q * cs_a]))
                .collect();
            let mut cp: Vec<f64> = if p.beta != 0.0 {
                (i0..i0 + mi)
                    .flat_map(|i| c[i * n + j0..i * n + j0 + nj].iter().copied())
                    .collect()
            } else {
                vec![0.0; mi * nj]
            };
            let q = Matmul {
                m: mi,
                n: nj,
                trans_a: false,
                trans_b: false,
                ..p.clone()
            };
            launch(&q, &ap, &bp, biasp, &mut cp)?;
            for (i, row) in cp.chunks(nj).enumerate() {
                let at = (i0 + i) * n + j0;
                c[at..at + nj].copy_from_slice(row);
            }
        }
    }
    Ok(())
}

/// Round `x` to the nearest IEEE binary16 value (ties to even) and back: what f16 storage keeps.
pub fn round_f16(x: f64) -> f64 {
    half::f16::from_f64(x).to_f64()
}

/// Norm-wise relative error `‖got − want‖₂ / ‖want‖₂` (∞ when a value is NaN; the absolute
/// norm when `want` is all zero).
pub fn rel_error(got: &[f64], want: &[f64]) -> f64 {
    if got.len() != want.len() || got.iter().any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    let (mut d, mut w) = (0.0, 0.0);
    for (g, r) in got.iter().zip(want) {
        d += (g - r) * (g - r);
        w += r * r;
    }
    if w == 0.0 { d.sqrt() } else { (d / w).sqrt() }
}
