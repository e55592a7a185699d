//! Running a generation's replicates together.
//!
//! Replicates are independent chains: each has its own Philox streams (see
//! [`super::stream_id`]) and its own history, so within one generation they can run at once and
//! the numbers cannot depend on how many do. Only the time does. On a GPU backend the
//! replicates' small launches (a sampling kernel, the EM passes of a 1000-point fit) are then in
//! flight on the one device together instead of one replicate's round trips after another's;
//! on the CPU backends the replicates share the cores with the backends' own parallel loops.
//!
//! This batches *submissions*, not kernels: each replicate still launches its own kernels, with
//! exactly the arithmetic of a run with `--replicate-jobs 1` (tests/driver.rs checks that the
//! metrics are byte-identical).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{Error, Result};

/// The most replicates run at once, whatever is asked (each is a thread).
pub const MAX_JOBS: usize = 256;

/// Replicates run at once when the user asks for `requested` (`0` = automatic): automatic is one
/// per thread of rayon's global pool (every core the machine reports, unless `collapse
/// --threads N` or `RAYON_NUM_THREADS` sized the pool), so one thread limit bounds both the
/// replicates and the backends' parallel loops; never more than `replicates` or [`MAX_JOBS`].
pub fn jobs(requested: usize, replicates: usize) -> usize {
    let auto = rayon::current_num_threads;
    let j = if requested == 0 { auto() } else { requested };
    j.clamp(1, replicates.clamp(1, MAX_JOBS))
}

/// `f(r)` for every replicate `r < count`, on up to `jobs` threads at once, each taking the next
/// replicate when it finishes one; the results in replicate order. After a replicate fails no
/// new one starts, and the first failure (in replicate order) is returned.
///
/// When `jobs` fits in rayon's global pool (the usual case: automatic jobs are one per pool
/// thread) the replicates run *on* the pool's workers. The backends' parallel loops (cpu32's
/// kernels, cpu64's loops, EM initialisation) then start from a worker, which runs them itself
/// and lets idle workers steal parts; called from any other thread, every such loop is a
/// hand-off to the pool and a futex wake-up and wait, which on a small fit (Shumailov's GMM:
/// 1000 points) cost more than the arithmetic. With more jobs than pool threads (GPU backends,
/// whose replicates mostly wait on the device) each job is its own thread, the calling thread
/// and `jobs − 1` others; a thread the system refuses to start only means fewer at once.
/// Either way the numbers are the same: each replicate's arithmetic does not depend on the
/// thread it runs on.
pub fn for_each<T: Send>(
    count: usize,
    jobs: usize,
    f: impl Fn(usize) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let jobs = jobs.clamp(1, count.max(1));
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<Result<T>>>> = (0..count).map(|_| Mutex::new(None)).collect();
    let work = || {
        loop {
            let r = next.fetch_add(1, Ordering::SeqCst);
            if r >= count {
                break;
            }
            let out = f(r);
            if out.is_err() {
                next.store(count, Ordering::SeqCst);
            }
            *slots[r].lock().unwrap_or_else(|e| e.into_inner()) = Some(out);
        }
    };
    if jobs <= rayon::current_num_threads() {
        // The scope's body runs on a worker (moved there when called from outside the pool);
        // the spawned loops are taken by idle workers.
        rayon::scope(|s| {
            for _ in 1..jobs {
                s.spawn(|_| work());
            }
            work();
        });
    } else {
        std::thread::scope(|s| {
            for _ in 1..jobs {
                if std::thread::Builder::new()
                    .name("replicate".into())
                    .spawn_scoped(s, work)
                    .is_err()
                {
                    break;
                }
            }
            work();
        });
    }
    // Replicates start in order, so every slot before the first failure was filled.
    slots
        .into_iter()
        .map(|s| {
            s.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .unwrap_or_else(|| {
                    Err(Error::Numerical("replicate skipped after a failure".into()))
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_replicate_order() {
        for jobs in [1, 2, 3, 8] {
            let v = for_each(7, jobs, |r| Ok(r * r)).unwrap();
            assert_eq!(v, vec![0, 1, 4, 9, 16, 25, 36]);
        }
        assert!(for_each(0, 4, Ok).unwrap().is_empty());
    }

    #[test]
    fn the_first_failure_is_returned() {
        for jobs in [1, 2, 4] {
            let e = for_each(6, jobs, |r| {
                if r >= 2 {
                    Err(Error::InvalidArgument(format!("replicate {r}")))
                } else {
                    Ok(r)
                }
            })
            .unwrap_err();
            assert!(e.to_string().contains("replicate 2"), "{e}");
        }
    }

    #[test]
    fn automatic_jobs_are_bounded_by_the_replicates() {
        assert_eq!(jobs(0, 1), 1);
        assert_eq!(jobs(5, 3), 3);
        assert_eq!(jobs(2, 10), 2);
        assert_eq!(jobs(100_000, 100_000), MAX_JOBS);
        assert!(jobs(0, 64) >= 1);
    }
}
