//! Every Philox stream purpose of the crate, named once with its value.
//!
//! A draw is named by `(seed, stream, index)` ([`StreamKey`]); two uses of one seed draw
//! independent numbers exactly when their stream numbers differ. Each purpose below owns a
//! range of stream numbers (a base plus an index below a span: a tensor, an epoch, a step, a
//! chunk…), and the tests at the bottom check that no two ranges overlap, so no two purposes
//! can ever draw the same numbers under one seed. The values are part of every result and
//! golden: **never change one**; add a purpose with a fresh range (and to [`FAMILIES`]).
//!
//! Seeds: a run's streams are drawn under its seed `s`; each model the generational loop fits
//! draws its own streams ([`VAE_INIT`] …) under the derived seed
//! `s ^ stream_id(EM_INIT, replicate, generation)`, distinct for every (replicate, generation)
//! because [`stream_id`] is injective.

use super::StreamKey;

// ---------------------------------------------------------------------------------------------
// The generational loop (`experiment`): packed ids.

/// The purposes of the generational loop, packed into a stream number by [`stream_id`].
pub mod purpose {
    /// The real data of a replicate (generation 0, and fresh real data later).
    pub const REAL: u64 = 1;
    /// Synthetic samples drawn from a generation's model.
    pub const SYNTHETIC: u64 = 2;
    /// The mixing choices of a pool (which rows are real, which synthetic).
    pub const MIX: u64 = 3;
    /// A fit's initialisation: used as a *seed* (`seed ^ stream_id(EM_INIT, r, n)`), the seed
    /// of generation `n`'s model of replicate `r` (the held-out verifier's fit takes
    /// replicate [`super::RUN_WIDE_REPLICATE`]).
    pub const EM_INIT: u64 = 4;
    /// The held-out real data.
    pub const HELD_OUT: u64 = 5;
    /// Metrics' own draws (tail coverage, diversity samples).
    pub const TAIL: u64 = 6;
    /// Task problems (`--model task`): the problems generation `n` of a replicate trains on
    /// (generation 0: the real labelled pairs; later: fresh problems the previous generation
    /// answers; `mix:F`'s real pairs at `generation | 2³¹`), one problem per
    /// [`crate::tasks::Task::words`] counters.
    pub const TASK: u64 = 7;
    /// The verifiers' own draws: the `noisy:P` verifier's flip per candidate, the task
    /// model's answer sampling (sub-streams by attempt, see `experiment::task`).
    pub const VERIFIER: u64 = 8;
    /// Every purpose, in value order.
    pub const ALL: [u64; 8] = [
        REAL, SYNTHETIC, MIX, EM_INIT, HELD_OUT, TAIL, TASK, VERIFIER,
    ];
}

/// Bit position of the purpose field of [`stream_id`] (bits 56..64).
pub const PURPOSE_SHIFT: u32 = 56;
/// Bit position of the replicate field of [`stream_id`] (bits 32..56).
pub const REPLICATE_SHIFT: u32 = 32;
/// Mask of the replicate field before shifting: 2²⁴ replicates.
pub const REPLICATE_MASK: u64 = 0xFF_FFFF;
/// Mask of the generation field (bits 0..32): 2³² generations.
pub const GENERATION_MASK: u64 = 0xFFFF_FFFF;
/// The replicate number of run-wide streams (the held-out verifier's fit): the largest
/// replicate field, which no run reaches.
pub const RUN_WIDE_REPLICATE: usize = 0xFF_FFFF;

/// The stream of `purpose` ([`purpose`]) for `replicate` at `generation`:
/// `purpose << 56 | (replicate mod 2²⁴) << 32 | (generation mod 2³²)`.
pub fn stream_id(purpose: u64, replicate: usize, generation: usize) -> u64 {
    (purpose << PURPOSE_SHIFT)
        | ((replicate as u64 & REPLICATE_MASK) << REPLICATE_SHIFT)
        | (generation as u64 & GENERATION_MASK)
}

/// Bit position of the chunk number in [`chunk_stream`].
pub const CHUNK_SHIFT: u32 = 40;
/// Chunks a chunked evaluation may use (bits 40..52 of the stream): 4 million VAE images in
/// chunks of 1000, a million LM rows in chunks of 256. Beyond it, chunk 0x15E0 of
/// [`VAE_EVAL`] would be a step of [`VAE_NOISE`].
pub const MAX_CHUNKS: u64 = 1 << 12;
/// Replicates below this keep [`chunk_stream`]s of packed ids distinct: the chunk bits (40..52)
/// overlap the replicate field's bits 8..20, so chunk `c` of replicate `r` is chunk 0 of
/// replicate `r ^ (c << 8)`; below 256 replicates that replicate does not exist.
pub const CHUNKED_REPLICATES: usize = 1 << 8;

// Chunk bits stay below the purpose field, so a packed id's chunks keep its purpose.
const _: () = assert!(MAX_CHUNKS << CHUNK_SHIFT <= 1 << PURPOSE_SHIFT);

/// Sub-stream `chunk` of `stream` (`stream ^ chunk << 40`, `chunk <` [`MAX_CHUNKS`]): the
/// chunks of a long evaluation (the VAE's negative ELBO in chunks of 1000 images,
/// `models::vae::chunked_neg_elbo`; the LM's generation in chunks of 256 rows,
/// `experiment::lm`), chunk 0 being `stream` itself.
pub fn chunk_stream(stream: u64, chunk: u64) -> u64 {
    stream ^ (chunk << CHUNK_SHIFT)
}

// ---------------------------------------------------------------------------------------------
// Models: streams under the model's seed.

/// VAE weight initialisation, `+ tensor` (`models::vae::init_params`).
pub const VAE_INIT: u64 = 0x7A3E_0000;
/// VAE epoch shuffles, `+ epoch` (`models::vae::train::run_epoch`).
pub const VAE_SHUFFLE: u64 = 0x5AFF_0000_0000;
/// VAE reparameterisation noise of training step `s`, `+ s` (`models::vae::train`).
pub const VAE_NOISE: u64 = 0x0015_E000_0000_0000;
/// VAE evaluation noise (the negative ELBO of held-out images, the same every epoch; chunked
/// by [`chunk_stream`]): `models::vae::train`, `experiment::vae`'s metrics.
pub const VAE_EVAL: u64 = 0xE7A1;
/// Latents of the VAE's sample grids (`models::vae::train::sample_images`).
pub const VAE_SAMPLE: u64 = 0x5A3F;
/// LM weight initialisation, `+ tensor` (`models::lm::init_params`).
pub const LM_INIT: u64 = 0x11A0_0000;
/// The LM corpus's fixed train/validation split, under seed [`LM_SPLIT_SEED`] whatever the
/// run's seed (`models::lm::train::Corpus`).
pub const LM_SPLIT: u64 = 0x0005_B117;
/// The seed of [`LM_SPLIT`].
pub const LM_SPLIT_SEED: u64 = 0;
/// LM training batches (row offsets) of step `s`, `+ s` (`models::lm::train`,
/// `experiment::lm`).
pub const LM_BATCH: u64 = 0xBA7C_0000_0000;
/// The sampled texts of `collapse train lm` and `collapse sample lm` (the CLI).
pub const LM_SAMPLE: u64 = 0x5A;
/// GMM initialisations, `+ init index` (`models::gmm`).
pub const GMM_INIT: u64 = 0x6d6d_0000;
/// Samples of `collapse sample gmm` from a fitted mixture (the CLI).
pub const GMM_SAMPLE: u64 = 0x6d5a;
/// GMM component re-seeding (`models::gmm`; one stream, draws counted across the fit).
pub const GMM_RESEED: u64 = 0x6d6d_ffff;

// ---------------------------------------------------------------------------------------------
// The drift study.

/// Bootstrap resamples of a median's standard error (`drift::median_se`), under the chain's
/// seed.
pub const DRIFT_BOOTSTRAP: u64 = 0xB007;

/// The kernel sweep's inputs (`drift::kernels`), under the sweep's own seed.
pub mod drift_sweep {
    /// The summation family's terms.
    pub const SUM: u64 = 1;
    /// The fitted data (Gaussian fit, log-likelihood).
    pub const FIT: u64 = 2;
    /// Mixture samples of the log-likelihood family.
    pub const MIXTURE_POINTS: u64 = 3;
    /// The sampling family's draws.
    pub const SAMPLE: u64 = 4;
    /// The matmul family's A.
    pub const MATMUL_A: u64 = 5;
    /// The matmul family's B.
    pub const MATMUL_B: u64 = 6;
    /// Every stream, in value order.
    pub const ALL: [u64; 6] = [SUM, FIT, MIXTURE_POINTS, SAMPLE, MATMUL_A, MATMUL_B];
}

// ---------------------------------------------------------------------------------------------
// Fixed keys of `collapse check` and the benches.

/// The fixed inputs of `collapse check` (`measure::goldens`): each golden's numbers depend on
/// these keys.
pub mod golden {
    use super::StreamKey;
    /// `philox_u32`'s raw draws.
    pub const PHILOX_U32: StreamKey = StreamKey::new(42, 7);
    /// `normal`'s draws.
    pub const NORMAL: StreamKey = StreamKey::new(42, 8);
    /// `gmm_sample_components` and `gmm_sample_values` (one call, two outputs).
    pub const MIXTURE: StreamKey = StreamKey::new(9, 1);
    /// `categorical_top20`'s logits.
    pub const CATEGORICAL_LOGITS: StreamKey = StreamKey::new(3, 3);
    /// `categorical_top20`'s draws.
    pub const CATEGORICAL: StreamKey = StreamKey::new(3, 4);
    /// The EM goldens' data.
    pub const EM_DATA: StreamKey = StreamKey::new(5, 5);
    /// The seed of the matmul goldens' inputs (streams [`MATMUL_A`] … [`MATMUL_C`]).
    pub const MATMUL_SEED: u64 = 11;
    /// Matmul input A.
    pub const MATMUL_A: u64 = 1;
    /// Matmul input B.
    pub const MATMUL_B: u64 = 2;
    /// Matmul bias.
    pub const MATMUL_BIAS: u64 = 3;
    /// Matmul C (for β ≠ 0).
    pub const MATMUL_C: u64 = 4;
    /// `vae_loss_gradient`'s model seed (its weights: [`super::VAE_INIT`] under it).
    pub const VAE_SEED: u64 = 12;
    /// `vae_loss_gradient`'s images.
    pub const VAE_IMAGES: StreamKey = StreamKey::new(VAE_SEED, 1);
    /// `vae_loss_gradient`'s noise.
    pub const VAE_NOISE: StreamKey = StreamKey::new(VAE_SEED, 2);
    /// `lm_loss_gradient`'s model seed (its weights: [`super::LM_INIT`] under it).
    pub const LM_SEED: u64 = 13;
    /// `lm_loss_gradient`'s tokens.
    pub const LM_TOKENS: StreamKey = StreamKey::new(LM_SEED, 1);
    /// Every key (the matmul inputs as keys), for the collision test.
    pub const ALL: [StreamKey; 12] = [
        PHILOX_U32,
        NORMAL,
        MIXTURE,
        CATEGORICAL_LOGITS,
        CATEGORICAL,
        EM_DATA,
        StreamKey::new(MATMUL_SEED, MATMUL_A),
        StreamKey::new(MATMUL_SEED, MATMUL_B),
        StreamKey::new(MATMUL_SEED, MATMUL_BIAS),
        StreamKey::new(MATMUL_SEED, MATMUL_C),
        VAE_IMAGES,
        VAE_NOISE,
    ];
}

/// The fixed inputs of the benches (`measure::bench`): timings do not depend on the values,
/// but fixed keys keep every run's work identical.
pub mod bench {
    use super::StreamKey;
    /// The GMM bench's component means.
    pub const GMM_MEANS: StreamKey = StreamKey::new(2024, 1);
    /// The GMM bench's data.
    pub const GMM_DATA: StreamKey = StreamKey::new(2024, 2);
    /// The sampling bench's draws.
    pub const SAMPLING: StreamKey = StreamKey::new(1, 1);
    /// The VAE bench's pixels.
    pub const VAE_PIXELS: StreamKey = StreamKey::new(1, 0xBE7C);
    /// The LM bench's bytes.
    pub const LM_BYTES: StreamKey = StreamKey::new(1, 0x1B7C);
    /// The seed of the VAE bench's noise: step `s` (the untimed one is 0) draws stream `s`.
    pub const VAE_NOISE_SEED: u64 = 2;
    /// The LM bench's sampling run.
    pub const LM_SAMPLE: StreamKey = StreamKey::new(3, 0);
}

// ---------------------------------------------------------------------------------------------
// The ranges, for the collision test.

/// One purpose's stream numbers: `base + i` for `i < span`, and with `chunked` also every
/// [`chunk_stream`] of those (chunks `< MAX_CHUNKS`).
#[derive(Clone, Copy, Debug)]
pub struct Family {
    /// The purpose's name.
    pub name: &'static str,
    /// First stream number.
    pub base: u64,
    /// How many consecutive numbers it owns.
    pub span: u64,
    /// Whether it is also drawn in [`chunk_stream`]s.
    pub chunked: bool,
}

const fn family(name: &'static str, base: u64, span: u64, chunked: bool) -> Family {
    Family {
        name,
        base,
        span,
        chunked,
    }
}

/// Every purpose drawn under a run's or a model's seed, with the range it may use: tensors
/// `< 2¹⁶`, GMM initialisations `< 2¹⁶ − 1`, epochs and LM steps `< 2³²`, VAE steps `< 2⁴⁰`,
/// each generational purpose its whole packed range. (The drift sweep, `collapse check` and
/// the benches draw under seeds of their own; their keys are checked apart.)
pub const FAMILIES: [Family; 21] = [
    family(
        "REAL",
        purpose::REAL << PURPOSE_SHIFT,
        1 << PURPOSE_SHIFT,
        true,
    ),
    family(
        "SYNTHETIC",
        purpose::SYNTHETIC << PURPOSE_SHIFT,
        1 << PURPOSE_SHIFT,
        true,
    ),
    family(
        "MIX",
        purpose::MIX << PURPOSE_SHIFT,
        1 << PURPOSE_SHIFT,
        true,
    ),
    family(
        "EM_INIT",
        purpose::EM_INIT << PURPOSE_SHIFT,
        1 << PURPOSE_SHIFT,
        true,
    ),
    family(
        "HELD_OUT",
        purpose::HELD_OUT << PURPOSE_SHIFT,
        1 << PURPOSE_SHIFT,
        true,
    ),
    family(
        "TAIL",
        purpose::TAIL << PURPOSE_SHIFT,
        1 << PURPOSE_SHIFT,
        true,
    ),
    family(
        "TASK",
        purpose::TASK << PURPOSE_SHIFT,
        1 << PURPOSE_SHIFT,
        true,
    ),
    family(
        "VERIFIER",
        purpose::VERIFIER << PURPOSE_SHIFT,
        1 << PURPOSE_SHIFT,
        true,
    ),
    family("VAE_INIT", VAE_INIT, 1 << 16, false),
    family("VAE_SHUFFLE", VAE_SHUFFLE, 1 << 32, false),
    family("VAE_NOISE", VAE_NOISE, 1 << 40, false),
    family("VAE_EVAL", VAE_EVAL, 1, true),
    family("VAE_SAMPLE", VAE_SAMPLE, 1, false),
    family("LM_INIT", LM_INIT, 1 << 16, false),
    family("LM_SPLIT", LM_SPLIT, 1, false),
    family("LM_BATCH", LM_BATCH, 1 << 32, false),
    family("LM_SAMPLE", LM_SAMPLE, 1, false),
    family("GMM_INIT", GMM_INIT, 0xffff, false),
    family("GMM_RESEED", GMM_RESEED, 1, false),
    family("GMM_SAMPLE", GMM_SAMPLE, 1, false),
    family("DRIFT_BOOTSTRAP", DRIFT_BOOTSTRAP, 1, false),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Closed intervals `[lo, hi]` a family covers (one per chunk when chunked; the packed
    /// purposes' chunks stay inside their own range, since chunk bits are below bit 56).
    fn intervals(f: &Family) -> Vec<(u64, u64, &'static str)> {
        let hi = f.base + (f.span - 1);
        if !f.chunked || f.span == 1 << PURPOSE_SHIFT {
            return vec![(f.base, hi, f.name)];
        }
        // A chunked single stream: every chunk is a distinct number.
        assert_eq!(f.span, 1);
        (0..MAX_CHUNKS)
            .map(|c| {
                let s = chunk_stream(f.base, c);
                (s, s, f.name)
            })
            .collect()
    }

    #[test]
    fn no_two_purposes_share_a_stream() {
        let mut all: Vec<(u64, u64, &str)> = FAMILIES.iter().flat_map(intervals).collect();
        // Every span fits without wrapping.
        for f in &FAMILIES {
            assert!(f.base.checked_add(f.span - 1).is_some(), "{} wraps", f.name);
        }
        all.sort();
        for w in all.windows(2) {
            assert!(
                w[0].1 < w[1].0,
                "{} [{:#x}, {:#x}] overlaps {} [{:#x}, {:#x}]",
                w[0].2,
                w[0].0,
                w[0].1,
                w[1].2,
                w[1].0,
                w[1].1
            );
        }
        // Names are unique too.
        let mut names: Vec<&str> = FAMILIES.iter().map(|f| f.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), FAMILIES.len());
    }

    #[test]
    fn packed_ids_are_injective_and_stay_in_their_purpose() {
        // The three fields are disjoint bit ranges covering the word.
        let (p, r, g) = (
            0xFFu64 << PURPOSE_SHIFT,
            REPLICATE_MASK << REPLICATE_SHIFT,
            GENERATION_MASK,
        );
        assert_eq!(p & r, 0);
        assert_eq!(p & g, 0);
        assert_eq!(r & g, 0);
        assert_eq!(p | r | g, u64::MAX);
        // Purposes are distinct, nonzero (so derived seeds differ from the run's) and fit.
        let mut ps = purpose::ALL.to_vec();
        ps.sort();
        ps.dedup();
        assert_eq!(ps.len(), purpose::ALL.len());
        assert!(ps.iter().all(|&v| v > 0 && v < 0x100));
        // Extremes of every field land in the purpose's own range, and decode back.
        for &pu in &purpose::ALL {
            for (rep, generation) in [(0, 0), (RUN_WIDE_REPLICATE, 0), (1, 0xFFFF_FFFF), (77, 12)] {
                let s = stream_id(pu, rep, generation);
                assert_eq!(s >> PURPOSE_SHIFT, pu);
                assert_eq!((s >> REPLICATE_SHIFT) & REPLICATE_MASK, rep as u64);
                assert_eq!(s & GENERATION_MASK, generation as u64);
            }
        }
    }

    #[test]
    fn chunks_of_packed_ids_do_not_alias_below_the_replicate_bound() {
        // Chunk c of (purpose, r, g) differs from chunk c' of (purpose, r', g) for r, r' below
        // CHUNKED_REPLICATES unless (r, c) = (r', c'): bits 32..40 carry r, bits 40..52 carry
        // c (r's bits 8..24 are zero).
        for r in [0usize, 1, 255] {
            assert!(r < CHUNKED_REPLICATES);
            for c in [0u64, 1, 255, MAX_CHUNKS - 1] {
                let s = chunk_stream(stream_id(purpose::TAIL, r, 3), c);
                assert_eq!((s >> REPLICATE_SHIFT) & 0xFF, r as u64);
                assert_eq!((s >> CHUNK_SHIFT) & (MAX_CHUNKS - 1), c);
                assert_eq!(s >> PURPOSE_SHIFT, purpose::TAIL);
            }
        }
        // At 256 replicates and beyond the aliasing exists (why the bound is documented).
        assert_eq!(
            chunk_stream(stream_id(purpose::TAIL, 0, 3), 1),
            stream_id(purpose::TAIL, 256, 3)
        );
    }

    #[test]
    fn fixed_keys_are_distinct() {
        let mut g = golden::ALL.to_vec();
        g.push(golden::LM_TOKENS);
        let n = g.len();
        g.sort_by_key(|k| (k.seed, k.stream));
        g.dedup();
        assert_eq!(g.len(), n, "two goldens share a key");
        // A golden model's own streams (weights under its seed) miss its input keys.
        for f in &FAMILIES[6..] {
            for k in [golden::VAE_IMAGES, golden::VAE_NOISE, golden::LM_TOKENS] {
                assert!(!(f.base..f.base + f.span).contains(&k.stream), "{}", f.name);
            }
        }
        let b = [
            bench::GMM_MEANS,
            bench::GMM_DATA,
            bench::SAMPLING,
            bench::VAE_PIXELS,
            bench::LM_BYTES,
            bench::LM_SAMPLE,
        ];
        let mut bs = b.to_vec();
        bs.sort_by_key(|k| (k.seed, k.stream));
        bs.dedup();
        assert_eq!(bs.len(), b.len(), "two benches share a key");
        // The VAE bench's noise (seed 2, streams 0, 1, …) is a seed no other bench key uses.
        assert!(b.iter().all(|k| k.seed != bench::VAE_NOISE_SEED));
        let mut d = drift_sweep::ALL.to_vec();
        d.sort();
        d.dedup();
        assert_eq!(d.len(), drift_sweep::ALL.len());
    }
}
