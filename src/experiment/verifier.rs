//! The verifiers of `--model task` (`--verifier`): who decides which of a generation's answers
//! its successor trains on (Feng et al. 2024: pruning with a verifier; Llama 3.1: execution
//! feedback), and the counts that measure them against the oracle.
//!
//! - `none`: keep every answer.
//! - `oracle`: the task's exact check ([`crate::tasks::Task::is_correct`]).
//! - `noisy:P`: the oracle's verdict flipped with probability P, an independent Philox draw per
//!   judged candidate (stream `VERIFIER` of the set; candidate `c` of round `a` of problem `i`
//!   reads word `(a·problems + i)·K + c`): verifier quality as a dial.
//! - `confidence:F`: no ground truth: keep the fraction F of the problems whose answer the
//!   generating model finds most likely (the log-probability of its bytes).
//!
//! With `--best-of K` each problem gets K candidates per round; `oracle` and `noisy:P` keep the
//! first candidate they accept, `none` the first, `confidence:F` the most likely. With
//! `--retries R` (oracle and noisy:P) a problem whose candidates were all rejected is sampled
//! again, up to R more rounds. Unlike Llama 3.1's repair loop, the small model sees no
//! checker output: a retry is a fresh sample of the same prompt.
//!
//! The likelihood verifiers of the other models (`gen0:F`, `heldout:F`: keep the best of
//! ⌈M/F⌉ candidates by the verifier's log-likelihood) are also accepted as `--verifier`, as
//! another spelling of `--policy verify:MODE:F`.

pub use super::config::TaskVerifier;
use crate::error::{Error, Result};

/// What `--verifier` names: a task verifier, or a likelihood verifier of the other models.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum VerifierSpec {
    /// For `--model task`.
    Task(TaskVerifier),
    /// `gen0:F` / `heldout:F`: `--policy verify:MODE:F`.
    Likelihood(super::config::Verifier, f64),
}

fn fraction(flag_value: &str, v: &str, what: &str) -> Result<f64> {
    let f: f64 = v.parse().map_err(|_| {
        Error::InvalidArgument(format!(
            "--verifier {flag_value}: {what} {v:?} is not a number"
        ))
    })?;
    if (0.0..=1.0).contains(&f) {
        Ok(f)
    } else {
        Err(Error::InvalidArgument(format!(
            "--verifier {flag_value}: {what} {f} is not in [0, 1]"
        )))
    }
}

impl std::str::FromStr for VerifierSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        use super::config::Verifier;
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        let need = |what: &str| {
            arg.ok_or_else(|| {
                Error::InvalidArgument(format!("--verifier {s}: expected {name}:{what}"))
            })
        };
        let none_after = || -> Result<()> {
            match arg {
                None => Ok(()),
                Some(_) => Err(Error::InvalidArgument(format!(
                    "--verifier {s}: {name} takes no argument"
                ))),
            }
        };
        Ok(match name {
            "none" => {
                none_after()?;
                VerifierSpec::Task(TaskVerifier::None)
            }
            "oracle" => {
                none_after()?;
                VerifierSpec::Task(TaskVerifier::Oracle)
            }
            "noisy" => VerifierSpec::Task(TaskVerifier::Noisy(fraction(s, need("P")?, "P")?)),
            "confidence" => {
                let f = fraction(s, need("F")?, "F")?;
                if f == 0.0 {
                    return Err(Error::InvalidArgument(format!(
                        "--verifier {s}: F must be > 0 (it keeps the fraction F)"
                    )));
                }
                VerifierSpec::Task(TaskVerifier::Confidence(f))
            }
            "gen0" | "heldout" => {
                let f = fraction(s, need("F")?, "F")?;
                if f == 0.0 {
                    return Err(Error::InvalidArgument(format!(
                        "--verifier {s}: F must be > 0"
                    )));
                }
                let mode = if name == "gen0" {
                    Verifier::Gen0
                } else {
                    Verifier::HeldOut
                };
                VerifierSpec::Likelihood(mode, f)
            }
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "unknown --verifier {s:?}: use none, oracle, noisy:P or confidence:F (--model \
                     task), or gen0:F / heldout:F (the likelihood verifiers of the other models)"
                )));
            }
        })
    }
}

/// How one generation's answers fared (the posed problems of the newest synthetic set):
/// the counts behind `kept_fraction`, `verifier_precision`, `verifier_recall` and
/// `mean_attempts`. A *judged* candidate is one the verifier gave a verdict on (`none` judges
/// each problem's first candidate; `confidence:F` each problem's most likely one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VerifyStats {
    /// Problems posed.
    pub problems: usize,
    /// Problems whose answer was kept.
    pub kept: usize,
    /// Judged candidates the oracle calls correct and the verifier kept (true positives).
    pub kept_correct: usize,
    /// Judged candidates the oracle calls wrong and the verifier kept (false positives).
    pub kept_wrong: usize,
    /// Judged candidates the oracle calls correct and the verifier rejected (false negatives).
    pub rejected_correct: usize,
    /// Judged candidates the oracle calls wrong and the verifier rejected (true negatives).
    pub rejected_wrong: usize,
    /// Sampling rounds, summed over problems (1 + the retries each used).
    pub rounds: usize,
}

impl VerifyStats {
    /// `kept / problems`.
    pub fn kept_fraction(&self) -> f64 {
        self.kept as f64 / self.problems as f64
    }
    /// Of the kept, the fraction correct (NaN when nothing was kept).
    pub fn precision(&self) -> f64 {
        self.kept_correct as f64 / (self.kept_correct + self.kept_wrong) as f64
    }
    /// Of the correct judged candidates, the fraction kept (NaN when none was correct).
    pub fn recall(&self) -> f64 {
        self.kept_correct as f64 / (self.kept_correct + self.rejected_correct) as f64
    }
    /// Judged candidates.
    pub fn judged(&self) -> usize {
        self.kept_correct + self.kept_wrong + self.rejected_correct + self.rejected_wrong
    }
    /// Mean sampling rounds per problem.
    pub fn mean_attempts(&self) -> f64 {
        self.rounds as f64 / self.problems as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_strings_parse_and_bad_ones_are_clear() {
        let p = |s: &str| s.parse::<VerifierSpec>();
        assert_eq!(p("none").unwrap(), VerifierSpec::Task(TaskVerifier::None));
        assert_eq!(
            p("oracle").unwrap(),
            VerifierSpec::Task(TaskVerifier::Oracle)
        );
        assert_eq!(
            p("noisy:0.1").unwrap(),
            VerifierSpec::Task(TaskVerifier::Noisy(0.1))
        );
        assert_eq!(
            p("confidence:0.5").unwrap(),
            VerifierSpec::Task(TaskVerifier::Confidence(0.5))
        );
        assert!(matches!(
            p("gen0:0.5").unwrap(),
            VerifierSpec::Likelihood(super::super::config::Verifier::Gen0, _)
        ));
        for (bad, says) in [
            ("oracle:0.5", "takes no argument"),
            ("noisy", "expected noisy:P"),
            ("noisy:x", "\"x\" is not a number"),
            ("noisy:1.5", "not in [0, 1]"),
            ("confidence:0", "must be > 0"),
            ("judge", "unknown --verifier \"judge\""),
        ] {
            let e = p(bad).unwrap_err().to_string();
            assert!(e.contains(says) && !e.contains('\n'), "{bad}: {e}");
        }
        for v in [
            TaskVerifier::None,
            TaskVerifier::Oracle,
            TaskVerifier::Noisy(0.25),
            TaskVerifier::Confidence(0.5),
        ] {
            assert_eq!(p(&v.to_string()).unwrap(), VerifierSpec::Task(v));
        }
    }
}
