//! Sweeps: many `collapse run`s over a grid of settings (seeds × policies × sizes × backends),
//! planned once into a directory and run locally, or as a Slurm job array, then collected into
//! tidy tables.
//!
//! A sweep directory holds the manifest ([`manifest`]: the spec, every job's index, axis values
//! and `collapse run` arguments), one run directory per job (`jobs/NNNNN/`, an ordinary run
//! directory with its lock, checkpoint and resume), the jobs' states ([`status`]: markers in
//! `status/`, logs in `logs/`), and what [`collect`] writes. The jobs' arithmetic is
//! `collapse run`'s: a job run by `sweep run`, by a Slurm task or by hand gives the same bytes.

pub mod collect;
pub mod manifest;
pub mod plot;
pub mod slurm;
pub mod spec;
pub mod status;

pub use manifest::{JobEntry, Manifest, PlanReport, plan};
pub use spec::{Job, Spec};
pub use status::JobState;
