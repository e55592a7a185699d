//! Measurement: timed benchmarks ([`bench`]), their flat JSON records ([`records`]) and the
//! golden fingerprints `collapse check` compares every kernel with ([`goldens`]).

pub mod bench;
pub mod goldens;
pub mod records;
