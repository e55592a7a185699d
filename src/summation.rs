//! Summation orders for the drift study: how the rounding error of a sum of `N` terms depends
//! on the order it is formed in.
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
            Self::Pairwise => crate::gmm::pairwise_sum_f32(x),
            _ => self.sequential(x),
        }
    }

    /// `Σ x` in f64 by this order.
    pub fn sum_f64(self, x: &[f64]) -> f64 {
        match self {
            Self::Pairwise => crate::gmm::pairwise_sum(x),
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
}
