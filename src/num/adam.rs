//! The Adam updates of the CPU trainers, side by side: [`adam_l2_step`] (PyTorch's `Adam` with
//! L2 weight decay: the VAE's) and [`adamw_step`] (PyTorch's `AdamW`, decoupled decay, after
//! [`clip_global_norm`]: the language model's). They share the moment update ([`moments`]) and
//! differ in what they compute after it, so they stay two functions:
//!
//! ```text
//! Adam (L2):  g ← g + wd·θ;  m, v ← moments;  θ ← θ − lr·(m / c₁) / (√(v / c₂) + ε)
//! AdamW:      m, v ← moments;  θ ← θ·(1 − lr·wd) (decayed tensors);
//!             θ ← θ − lr·(m·(1/c₁)) / (√(v·(1/c₂)) + ε)
//! ```
//!
//! with `c₁ = 1 − β₁ᵗ`, `c₂ = 1 − β₂ᵗ` ([`bias_corrections`]) formed in f64 and rounded to `T`
//! (AdamW rounds `1/c`, Adam `c`), every other scalar rounded to `T` once, and the per-element
//! arithmetic in `T`. The GPU trainers' kernels (`shaders/vae.wgsl`, `shaders/lm.wgsl`,
//! `backend::cube`) follow the same formulas.

use std::ops::Range;

use rayon::prelude::*;

use crate::num::PAR_ELEMENTS;
use crate::num::float::HostFloat;

/// Adam's settings (PyTorch's names), as the updates take them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hyper {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay β₁.
    pub beta1: f64,
    /// Second-moment decay β₂.
    pub beta2: f64,
    /// Added to √v̂.
    pub eps: f64,
    /// Weight decay (L2 for Adam, decoupled for AdamW).
    pub weight_decay: f64,
}

/// Bias corrections `(1 − β₁ᵗ, 1 − β₂ᵗ)` of step `t` (1-based), f64.
pub fn bias_corrections(beta1: f64, beta2: f64, t: u32) -> (f64, f64) {
    (1.0 - beta1.powi(t as i32), 1.0 - beta2.powi(t as i32))
}

/// The optimiser's state over a flat parameter vector: first and second moments, and the
/// number of steps taken.
#[derive(Clone, Debug)]
pub struct AdamState<T> {
    /// First moments.
    pub m: Vec<T>,
    /// Second moments.
    pub v: Vec<T>,
    /// Steps taken.
    pub t: u32,
}

impl<T: HostFloat> AdamState<T> {
    /// Zero moments for `n` parameters, no step taken.
    pub fn new(n: usize) -> Self {
        Self {
            m: vec![T::zero(); n],
            v: vec![T::zero(); n],
            t: 0,
        }
    }
}

/// The moment update `m ← β₁·m + (1 − β₁)·g`, `v ← β₂·v + (1 − β₂)·g·g`.
#[inline(always)]
pub fn moments<T: HostFloat>(m: &mut T, v: &mut T, g: T, b1: T, b2: T) {
    *m = b1 * *m + (T::one() - b1) * g;
    *v = b2 * *v + (T::one() - b2) * g * g;
}

/// One Adam step with L2 weight decay (PyTorch's `Adam`) on all of `p` with gradient `g`
/// (the VAE's CPU trainer); counts the step in `s`.
pub fn adam_l2_step<T: HostFloat>(h: &Hyper, s: &mut AdamState<T>, p: &mut [T], g: &[T]) {
    s.t += 1;
    let (b1, b2) = (T::of(h.beta1), T::of(h.beta2));
    let (c1, c2) = bias_corrections(h.beta1, h.beta2, s.t);
    let (c1, c2) = (T::of(c1), T::of(c2));
    let (lr, eps, wd) = (T::of(h.lr), T::of(h.eps), T::of(h.weight_decay));
    // Element-wise, so chunks in parallel give the same bits as one loop.
    p.par_chunks_mut(PAR_ELEMENTS)
        .zip(s.m.par_chunks_mut(PAR_ELEMENTS))
        .zip(s.v.par_chunks_mut(PAR_ELEMENTS))
        .zip(g.par_chunks(PAR_ELEMENTS))
        .for_each(|(((p, m), v), g)| {
            for (((p, m), v), &g) in p.iter_mut().zip(m).zip(v).zip(g) {
                let gi = g + wd * *p;
                moments(m, v, gi, b1, b2);
                let mh = *m / c1;
                let vh = *v / c2;
                *p = *p - lr * mh / (vh.sqrt() + eps);
            }
        });
}

/// Scale `g` to global L2 norm `clip` when its norm (summed in f64, in order) exceeds it.
pub fn clip_global_norm<T: HostFloat>(g: &mut [T], clip: Option<f64>) {
    if let Some(clip) = clip {
        let norm = g.iter().map(|v| v.wide() * v.wide()).sum::<f64>().sqrt();
        if norm > clip {
            let s = T::of(clip / norm);
            g.par_chunks_mut(PAR_ELEMENTS)
                .for_each(|c| c.iter_mut().for_each(|v| *v = *v * s));
        }
    }
}

/// One AdamW step (PyTorch's `AdamW`: decoupled weight decay) on `p` with gradient `g` (the
/// language model's CPU trainer; clip `g` first with [`clip_global_norm`]). `tensors` lists the
/// parameter ranges and whether each is decayed (weights and embeddings are, biases and
/// LayerNorm are not); counts the step in `s`.
pub fn adamw_step<T: HostFloat>(
    h: &Hyper,
    s: &mut AdamState<T>,
    p: &mut [T],
    g: &[T],
    tensors: impl IntoIterator<Item = (Range<usize>, bool)>,
) {
    s.t += 1;
    let (c1, c2) = bias_corrections(h.beta1, h.beta2, s.t);
    let (b1, b2) = (T::of(h.beta1), T::of(h.beta2));
    let (lr, eps) = (T::of(h.lr), T::of(h.eps));
    let (ic1, ic2) = (T::of(1.0 / c1), T::of(1.0 / c2));
    let decay = T::of(1.0 - h.lr * h.weight_decay);
    for (range, decayed) in tensors {
        // Element-wise, so chunks in parallel give the same bits as one loop.
        p[range.clone()]
            .par_chunks_mut(PAR_ELEMENTS)
            .zip(s.m[range.clone()].par_chunks_mut(PAR_ELEMENTS))
            .zip(s.v[range.clone()].par_chunks_mut(PAR_ELEMENTS))
            .zip(g[range].par_chunks(PAR_ELEMENTS))
            .for_each(|(((p, m), v), g)| {
                for (((p, m), v), &g) in p.iter_mut().zip(m).zip(v).zip(g) {
                    moments(m, v, g, b1, b2);
                    if decayed {
                        *p = *p * decay;
                    }
                    let mhat = *m * ic1;
                    let vhat = *v * ic2;
                    *p = *p - lr * mhat / (vhat.sqrt() + eps);
                }
            });
    }
}
