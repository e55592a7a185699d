//! Summation orders: the pairwise sums and accumulator every backend's reductions use
//! ([`pairwise_sum`], [`PairwiseAcc`]), and for the drift study how the rounding error of a sum
//! of `N` terms depends on the order it is formed in.
//!
//! - [`Summation::Naive`]: left to right, one accumulator; worst-case error grows like `N·ε`
//!   (typically `√N·ε` for random signs);
//! - [`Summation::Pairwise`]: a balanced binary tree (what the crate's reductions use on every
//!   backend: blocks, then pairs); error `O(ε log N)`;
//! - [`Summation::Kahan`]: left to right with Kahan's compensation (the lost low part of each
//!   addition is fed into the next term); error `2ε + O(N ε²)` relative to `Σ|x|`. (Neumaier's
//!   variant, which keeps the compensation in a second accumulator, was tried and rejected: in
//!   f32 that accumulator grows to `O(N ε Σ|x|)` and its own naive rounding dominates.)
//!
//! All three are deterministic: the same inputs give the same bits.

/// A summation order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Summation {
    /// One accumulator, left to right.
    Naive,
    /// Balanced binary tree (recursive halves).
    Pairwise,
    /// Kahan-compensated, left to right.
    Kahan,
}

impl Summation {
    /// All three, in the order above.
    pub const ALL: [Summation; 3] = [Self::Naive, Self::Pairwise, Self::Kahan];

    /// Lower-case name (`naive`, `pairwise`, `kahan`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Naive => "naive",
            Self::Pairwise => "pairwise",
            Self::Kahan => "kahan",
        }
    }

    /// `Σ x` in f32 by this order.
    pub fn sum_f32(self, x: &[f32]) -> f32 {
        match self {
            Self::Pairwise => pairwise_sum_f32(x),
            _ => self.sequential(x),
        }
    }

    /// `Σ x` in f64 by this order.
    pub fn sum_f64(self, x: &[f64]) -> f64 {
        match self {
            Self::Pairwise => pairwise_sum(x),
            _ => self.sequential(x),
        }
    }

    /// The left-to-right orders (naive, Kahan) at the precision of `T`.
    fn sequential<T: num_traits::Float>(self, x: &[T]) -> T {
        let (mut s, mut c) = (T::zero(), T::zero());
        for &v in x {
            if self == Self::Kahan {
                let y = v - c;
                let t = s + y;
                c = (t - s) - y;
                s = t;
            } else {
                s = s + v;
            }
        }
        s
    }
}

/// Pairwise (cascade) sum: rounding error grows like `O(ε log n)`, not `O(ε n)`.
pub fn pairwise_sum(x: &[f64]) -> f64 {
    if x.len() <= 16 {
        return x.iter().sum();
    }
    let (a, b) = x.split_at(x.len() / 2);
    pairwise_sum(a) + pairwise_sum(b)
}

/// [`pairwise_sum`] in f32.
pub fn pairwise_sum_f32(x: &[f32]) -> f32 {
    if x.len() <= 16 {
        return x.iter().sum();
    }
    let (a, b) = x.split_at(x.len() / 2);
    pairwise_sum_f32(a) + pairwise_sum_f32(b)
}

/// Pairwise accumulation of equally long vectors (per-block partial sums) in a fixed order:
/// a binary counter of partial sums, so partials `p_0, p_1, …` are combined as the leaves of a
/// balanced tree. Deterministic, `O(log n)` memory, and rounding error `O(ε log n)` across blocks.
pub struct PairwiseAcc<T> {
    stack: Vec<(u32, Vec<T>)>,
}

impl<T: Copy + std::ops::Add<Output = T>> Default for PairwiseAcc<T> {
    fn default() -> Self {
        Self { stack: Vec::new() }
    }
}

impl<T: Copy + std::ops::Add<Output = T>> PairwiseAcc<T> {
    /// Add the next partial.
    pub fn push(&mut self, mut v: Vec<T>) {
        let mut level = 0;
        while let Some((l, top)) = self.stack.last() {
            if *l != level {
                break;
            }
            for (a, b) in v.iter_mut().zip(top) {
                *a = *b + *a;
            }
            self.stack.pop();
            level += 1;
        }
        self.stack.push((level, v));
    }

    /// The total (`None` when nothing was pushed).
    pub fn finish(mut self) -> Option<Vec<T>> {
        let mut acc = self.stack.pop()?.1;
        while let Some((_, v)) = self.stack.pop() {
            for (a, b) in acc.iter_mut().zip(v) {
                *a = b + *a;
            }
        }
        Some(acc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10⁶ copies of 0.1f32 (exact sum of the f32 values known in f64).
    #[test]
    fn orders_rank_as_theory_says() {
        let n = 1_000_000;
        let x = vec![0.1f32; n];
        let exact = 0.1f32 as f64 * n as f64;
        let err = |s: Summation| ((s.sum_f32(&x) as f64 - exact) / exact).abs();
        let (naive, pw, kahan) = (
            err(Summation::Naive),
            err(Summation::Pairwise),
            err(Summation::Kahan),
        );
        assert!(naive > 1e-3, "naive {naive}");
        assert!(pw < 1e-6, "pairwise {pw}");
        assert!(kahan < 1e-7, "kahan {kahan}");
        assert!(kahan <= pw && pw < naive);
    }

    #[test]
    fn kahan_f64_keeps_terms_below_half_an_ulp() {
        let mut x = vec![1.0];
        x.extend([1e-16; 10]);
        assert_eq!(Summation::Naive.sum_f64(&x), 1.0); // every 1e-16 is lost
        let k = Summation::Kahan.sum_f64(&x);
        assert!((k - 1.0 - 1e-15).abs() < 2.3e-16, "{k}");
    }

    #[test]
    fn pairwise_sum_beats_naive_on_many_small_terms() {
        let x = vec![0.1f32; 1 << 24];
        let naive: f32 = x.iter().sum();
        let pw = pairwise_sum_f32(&x);
        let exact = 0.1f32 as f64 * (1u64 << 24) as f64;
        assert!(((pw as f64) - exact).abs() / exact < 1e-6);
        assert!(((naive as f64) - exact).abs() / exact > 1e-2);
    }
}
