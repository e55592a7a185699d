//! What the models hold, computed from their shapes with checked arithmetic before anything is
//! allocated (see [`crate::io::budget`]): parameter counts that equal [`super::lm::param_count`]
//! and [`super::vae::param_count`] where those do not overflow, and lower bounds of the bytes a
//! training step holds, for the callers whose shapes come from flags (`bench lm`, `bench vae`,
//! `collapse run`).

use super::lm::{LmConfig, VOCAB};
use super::vae::VaeConfig;
use crate::io::budget::Tally;
use crate::ops::gmm::CovarianceType;

/// Parameters of the language model `c` (`256·C + T·C + L·(12C² + 13C) + 2C + C·256`, the
/// tensors of [`super::lm::layout`]); `None` when the count overflows 64 bits.
pub fn lm_param_count(c: &LmConfig) -> Option<u64> {
    let w = c.width as u64;
    let per_block = w
        .checked_mul(w)?
        .checked_mul(12)?
        .checked_add(w.checked_mul(13)?)?;
    w.checked_mul(2 * VOCAB as u64 + 2)?
        .checked_add((c.context as u64).checked_mul(w)?)?
        .checked_add((c.layers as u64).checked_mul(per_block)?)
}

/// Parameters of the VAE `c` (`2·D·H + 3·H·Z + 2H + 2Z + D`, the tensors of
/// [`super::vae::layout`]); `None` when the count overflows 64 bits.
pub fn vae_param_count(c: &VaeConfig) -> Option<u64> {
    let (d, h, z) = (c.d as u64, c.h as u64, c.z as u64);
    d.checked_mul(h)?
        .checked_mul(2)?
        .checked_add(h.checked_mul(z)?.checked_mul(3)?)?
        .checked_add(h.checked_mul(2)?)?
        .checked_add(z.checked_mul(2)?)?
        .checked_add(d)
}

/// Values of a `k`-component mixture in `d` dimensions (weights, means, covariances: `d²` per
/// component for full, `d²` in all for tied, `d` per component for diag, 1 for spherical);
/// `None` when the count overflows 64 bits.
pub fn gmm_value_count(k: usize, d: usize, cov: CovarianceType) -> Option<u64> {
    let covariances = cov.stored_values(k, d)? as u64;
    let (k, d) = (k as u64, d as u64);
    k.checked_mul(d.checked_add(1)?)?.checked_add(covariances)
}

/// Add `count` (`None`: overflowed) values of `elem` bytes, `copies` times, to `t` (an overflow
/// makes the tally overflow).
pub fn add_count(t: &mut Tally, count: Option<u64>, copies: usize, elem: usize) {
    match count.and_then(|c| usize::try_from(c).ok()) {
        Some(c) => t.add(&[c, copies], elem),
        None => t.add(&[usize::MAX, usize::MAX], 8),
    };
}

/// A lower bound of what one LM training step of `c` at `batch` sequences holds on the host or
/// device (f64 counted; f32 backends hold about half): the parameters with their gradient and
/// AdamW moments and the initial copy (5 × P), the tokens, every block's activations
/// (`batch·T·16C`), the attention scores (`batch·H·T²` per block) and the logits
/// (`batch·T·256`).
pub fn lm_step_tally(t: &mut Tally, c: &LmConfig, batch: usize) {
    add_count(t, lm_param_count(c), 5, 8);
    let (tl, w) = (c.context, c.width);
    t.add(&[batch, tl.saturating_add(1)], 5);
    t.add(&[batch, tl, 16, w, c.layers], 8);
    t.add(&[batch, c.heads, tl, tl, c.layers], 8);
    t.add(&[batch, tl, VOCAB], 8);
}

/// A lower bound of what one VAE training step of `c` at `batch` images holds (f64): the
/// parameters with their gradient, Adam moments and the initial copy (5 × P), the images and
/// their reconstructions and gradients (3 × `batch·D`), the hidden and latent activations.
pub fn vae_step_tally(t: &mut Tally, c: &VaeConfig, batch: usize) {
    add_count(t, vae_param_count(c), 5, 8);
    t.add(&[batch, c.d, 3], 8);
    t.add(&[batch, c.h, 4], 8);
    t.add(&[batch, c.z, 6], 8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_match_the_layouts() {
        for (w, l, h, t) in [(8, 2, 2, 5), (64, 2, 4, 64), (3, 1, 1, 1), (128, 4, 8, 32)] {
            let c = LmConfig {
                width: w,
                layers: l,
                heads: h,
                context: t,
                ..Default::default()
            };
            assert_eq!(
                lm_param_count(&c),
                Some(super::super::lm::param_count(&c) as u64)
            );
        }
        for (d, h, z) in [(784, 400, 20), (1, 1, 1), (10, 3, 2)] {
            let c = VaeConfig {
                d,
                h,
                z,
                ..VaeConfig::default()
            };
            assert_eq!(
                vae_param_count(&c),
                Some(super::super::vae::param_count(&c) as u64)
            );
        }
        assert_eq!(gmm_value_count(2, 3, CovarianceType::Diag), Some(14));
        assert_eq!(gmm_value_count(2, 3, CovarianceType::Full), Some(26));
        assert_eq!(gmm_value_count(2, 3, CovarianceType::Tied), Some(17));
        assert_eq!(gmm_value_count(2, 3, CovarianceType::Spherical), Some(10));
    }

    #[test]
    fn huge_shapes_overflow_instead_of_wrapping() {
        let c = LmConfig {
            width: 1 << 32,
            layers: 100,
            ..Default::default()
        };
        assert_eq!(lm_param_count(&c), None);
        let big = LmConfig {
            width: 1_000_000,
            layers: 100,
            ..Default::default()
        };
        // 1.2·10¹⁵ parameters: representable, and far over any machine.
        let p = lm_param_count(&big).unwrap();
        assert!(p > 1_200_000_000_000_000);
        let mut t = Tally::new("x", "h");
        lm_step_tally(&mut t, &big, 16);
        assert!(t.bytes().unwrap() > 8 * p);
        assert_eq!(
            gmm_value_count(1 << 33, 1 << 33, CovarianceType::Full),
            None
        );
        let mut t = Tally::new("x", "h");
        add_count(&mut t, None, 1, 8);
        assert_eq!(t.bytes(), None);
    }
}
