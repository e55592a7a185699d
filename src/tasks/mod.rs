//! Checkable tasks: problems whose answers a program can check exactly, for the verifiers of
//! the generational loop (issue 20; Feng et al. 2024 prune wrong eigenvalue predictions, Llama
//! 3.1 keeps code that passes its tests).
//!
//! A task draws problems from Philox ([`draw`]), writes each as the bytes a byte-level language
//! model reads (a *prompt* ending in `=`, then an *answer*, then [`END`]), checks an answer
//! (the *oracle*: [`Task::is_correct`]) and shows both in human-readable form for the audit
//! files. One module per task: [`add`] (`add:N`), [`eigen`] (`eigen:N`). A new task is a module
//! implementing [`Task`] and one arm in [`parse`].
//!
//! A training sequence is `prompt ‖ answer ‖ END`, padded with [`END`] to
//! [`Task::sequence_len`] bytes ([`Task::sequence`]); the loss counts the answer bytes and the
//! first `END` only ([`Task::answer_mask`]).

pub mod add;
pub mod eigen;

use crate::error::{Error, Result};
use crate::rng::StreamKey;

/// The byte that ends an answer (and pads a sequence).
pub const END: u8 = b'\n';

/// One problem: the task's integers (`add`: the two operands; `eigen`: the upper triangle of
/// the matrix in tenths, row-major).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The values, as the task defines them.
    pub values: Vec<i64>,
}

/// A checkable task (see the module documentation).
pub trait Task: Send + Sync + std::fmt::Debug {
    /// The task as typed: `add:3`, `eigen:2`.
    fn spec(&self) -> String;
    /// Philox words (u32) one problem draws.
    fn words(&self) -> u64;
    /// Values of a [`Problem`] of this task.
    fn values(&self) -> usize;
    /// The problem made of `w` (`words()` uniform u32 values).
    fn problem(&self, w: &[u32]) -> Problem;
    /// The bytes the model reads before answering (ends with `=`), always [`Task::max_prompt`]
    /// of them, so a batch of prompts decodes position by position.
    fn prompt(&self, p: &Problem) -> Vec<u8>;
    /// The true answer in the model's encoding, without [`END`].
    fn answer(&self, p: &Problem) -> Vec<u8>;
    /// The oracle: whether `answer` (the model's bytes, without [`END`]) answers `p`
    /// correctly. Malformed answers are wrong.
    fn is_correct(&self, p: &Problem, answer: &[u8]) -> bool;
    /// The problem in human-readable form (`123+456`; a matrix as a JSON array of rows).
    fn problem_text(&self, p: &Problem) -> String;
    /// An answer in human-readable form (`579`; eigenvalues as a JSON array); a malformed
    /// answer is shown as its bytes (escaped).
    fn answer_text(&self, p: &Problem, answer: &[u8]) -> String;
    /// The longest prompt, in bytes.
    fn max_prompt(&self) -> usize;
    /// The longest answer, in bytes (without [`END`]).
    fn max_answer(&self) -> usize;

    /// Bytes of a training sequence: the longest prompt and answer, and [`END`].
    fn sequence_len(&self) -> usize {
        self.max_prompt() + self.max_answer() + 1
    }

    /// `prompt ‖ answer ‖ END`, padded with [`END`] to [`Task::sequence_len`] bytes.
    fn sequence(&self, p: &Problem, answer: &[u8]) -> Vec<u8> {
        let mut s = self.prompt(p);
        s.extend_from_slice(answer);
        s.push(END);
        s.resize(self.sequence_len().max(s.len()), END);
        s
    }

    /// Which target positions of [`Task::sequence`] count in the loss (`sequence_len − 1`
    /// entries, 0 or 1: target position `t` is byte `t + 1`): the answer's bytes and its
    /// [`END`], not the prompt, not the padding (every prompt is [`Task::max_prompt`] bytes).
    fn answer_mask(&self, answer_len: usize) -> Vec<u8> {
        let start = self.max_prompt();
        (0..self.sequence_len() - 1)
            .map(|t| u8::from(t + 1 >= start && t < start + answer_len))
            .collect()
    }
}

/// The task of a spec: `add:N` (N digits, 1 ≤ N ≤ 18) or `eigen:N` (N×N, 2 ≤ N ≤ 9) with
/// tolerance `tol` (eigen only; see [`eigen`]). A one-line error names the spec and what is
/// wrong.
pub fn parse(spec: &str, tol: f64) -> Result<Box<dyn Task>> {
    let bad = |why: &str| {
        Error::InvalidArgument(format!(
            "--task {spec:?}: {why} (tasks: add:N with N digits 1..=18, eigen:N for N×N \
             matrices, N 2..=9)"
        ))
    };
    let (name, arg) = spec.split_once(':').ok_or_else(|| bad("expected NAME:N"))?;
    let n: usize = arg
        .parse()
        .map_err(|_| bad(&format!("{arg:?} is not a whole number")))?;
    match name {
        "add" => Ok(Box::new(add::Add::new(n).map_err(|e| bad(&e))?)),
        "eigen" => Ok(Box::new(eigen::Eigen::new(n, tol).map_err(|e| bad(&e))?)),
        other => Err(bad(&format!("unknown task {other:?}"))),
    }
}

/// `count` problems of `task` from Philox stream `key`, problem `i` from the `words()` counters
/// starting at `(first + i)·words()`: a problem is a pure function of its key and index, so any
/// subset is drawn identically.
pub fn draw(task: &dyn Task, key: StreamKey, first: u64, count: usize) -> Vec<Problem> {
    let w = task.words();
    let mut buf = vec![0u32; w as usize];
    (0..count as u64)
        .map(|i| {
            let base = (first + i) * w;
            for (j, v) in buf.iter_mut().enumerate() {
                *v = key.u32_at(base + j as u64);
            }
            task.problem(&buf)
        })
        .collect()
}

/// A uniform integer in `lo..=hi` from one Philox word (`⌊u·(hi − lo + 1)⌋ + lo`, `u` in
/// `[0, 1)`): each value gets `⌊2³²/span⌋` or one more of the 2³² words, a relative bias below
/// `span/2³²` (5·10⁻⁸ for `eigen`'s 201 entry values).
pub(crate) fn uniform_int(w: u32, lo: i64, hi: i64) -> i64 {
    let span = (hi - lo + 1) as f64;
    lo + ((crate::rng::unit_f64(w) * span) as i64).min(hi - lo)
}

/// Bytes shown in an audit file: printable ASCII as is, anything else (and `\`) escaped.
pub fn escape(b: &[u8]) -> String {
    b.iter()
        .flat_map(|&c| std::ascii::escape_default(c))
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_are_clear() {
        assert_eq!(parse("add:3", 0.05).unwrap().spec(), "add:3");
        assert_eq!(parse("eigen:2", 0.05).unwrap().spec(), "eigen:2");
        for (bad, says) in [
            ("add", "NAME:N"),
            ("add:x", "\"x\" is not a whole number"),
            ("add:0", "1..=18"),
            ("add:19", "1..=18"),
            ("eigen:1", "2..=9"),
            ("sort:3", "unknown task \"sort\""),
        ] {
            let e = parse(bad, 0.05).unwrap_err().to_string();
            assert!(
                e.contains(says) && e.contains(bad) && !e.contains('\n'),
                "{bad}: {e}"
            );
        }
        let e = parse("eigen:2", -1.0).unwrap_err().to_string();
        assert!(e.contains("--task-tol"), "{e}");
    }

    /// Every task: true answers are correct, their sequence has the declared length, the mask
    /// covers exactly the answer and its END, and problems depend on their index only.
    #[test]
    fn sequences_masks_and_draws() {
        for spec in ["add:1", "add:3", "add:18", "eigen:2", "eigen:3", "eigen:5"] {
            let t = parse(spec, 0.05).unwrap();
            let key = StreamKey::new(5, 77);
            let ps = draw(t.as_ref(), key, 0, 200);
            assert_eq!(draw(t.as_ref(), key, 150, 50), ps[150..].to_vec(), "{spec}");
            assert!(
                ps.windows(2).any(|w| w[0] != w[1]),
                "{spec}: all problems equal"
            );
            for p in &ps {
                let a = t.answer(p);
                assert!(t.is_correct(p, &a), "{spec}: {p:?} {}", escape(&a));
                assert!(a.len() <= t.max_answer() && t.prompt(p).len() == t.max_prompt());
                assert_eq!(p.values.len(), t.values());
                let s = t.sequence(p, &a);
                assert_eq!(s.len(), t.sequence_len(), "{spec}");
                let m = t.answer_mask(a.len());
                assert_eq!(m.len(), s.len() - 1);
                let counted: Vec<u8> = (0..m.len())
                    .filter(|&i| m[i] == 1)
                    .map(|i| s[i + 1])
                    .collect();
                let mut want = a.clone();
                want.push(END);
                assert_eq!(counted, want, "{spec}");
                assert!(!t.is_correct(p, b""), "{spec}: the empty answer passed");
                assert!(!t.is_correct(p, b"\xff=junk"), "{spec}");
            }
        }
    }
}
