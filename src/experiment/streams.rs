//! The Philox streams of a generational run: every draw of replicate `r` at generation `n` for
//! one purpose comes from stream `stream_id(purpose, r, n)`, so replicate chains are independent
//! and every generation is reproducible on its own.

/// Philox stream purposes.
pub mod purpose {
    /// Real data: a built-in truth's draws, a file's per-replicate rows, `fresh` data.
    pub const REAL: u64 = 1;
    /// Samples of the previous generation's model.
    pub const SYNTHETIC: u64 = 2;
    /// `mix:F`'s choice of real rows.
    pub const MIX: u64 = 3;
    /// A fit's initialisation (EM's k-means++, a network's weights).
    pub const EM_INIT: u64 = 4;
    /// The held-out split and held-out draws.
    pub const HELD_OUT: u64 = 5;
    /// Metrics' own draws (tail coverage, fixed latents, fixed sampling streams).
    pub const TAIL: u64 = 6;
}

/// The stream of `purpose` for `replicate` at `generation`.
pub fn stream_id(purpose: u64, replicate: usize, generation: usize) -> u64 {
    (purpose << 56) | ((replicate as u64 & 0xFF_FFFF) << 32) | (generation as u64 & 0xFFFF_FFFF)
}
