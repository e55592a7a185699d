//! `add:N`: two uniform integers of up to N digits (each in `0 ..= 10ᴺ − 1`) and their sum.
//!
//! Prompt `123+456=`, the operands in the usual order and zero-padded to N digits (`007+456=`),
//! so every prompt has one length; answer the sum's N + 1 digits, zero-padded, **least-significant
//! first** (`9750` for 579), then [`super::END`]. Reversing the answer is the
//! known trick (Lee et al. 2023, "Teaching arithmetic to small transformers") that lets a small
//! causal model produce each digit from the operands' digits and the carry of the digit it has
//! just written, instead of having to foresee every carry; it is decided here, not a flag. The
//! audit files show the sum in the usual order without padding (`579`). Correct means the exact
//! N + 1 digits.

use super::{Problem, Task, escape};

/// The `add:N` task.
#[derive(Debug, Clone, Copy)]
pub struct Add {
    digits: usize,
}

impl Add {
    /// `add:digits`, 1 ≤ digits ≤ 18 (the sum stays inside i64).
    pub fn new(digits: usize) -> Result<Self, String> {
        if !(1..=18).contains(&digits) {
            return Err(format!("add takes 1..=18 digits, got {digits}"));
        }
        Ok(Self { digits })
    }

    fn max(&self) -> i64 {
        10i64.pow(self.digits as u32) - 1
    }

    fn sum(p: &Problem) -> i64 {
        p.values[0] + p.values[1]
    }
}

/// The decimal digits of `v ≥ 0` zero-padded to `width`, least-significant first.
fn reversed_digits(v: i64, width: usize) -> Vec<u8> {
    let mut d: Vec<u8> = format!("{v:0width$}").into_bytes();
    d.reverse();
    d
}

impl Task for Add {
    fn spec(&self) -> String {
        format!("add:{}", self.digits)
    }

    /// Two words per operand (one 64-bit uniform value each).
    fn words(&self) -> u64 {
        4
    }

    fn values(&self) -> usize {
        2
    }

    fn problem(&self, w: &[u32]) -> Problem {
        // ⌊x·10ᴺ / 2⁶⁴⌋ of a uniform 64-bit x: each value has ⌊2⁶⁴/10ᴺ⌋ or one more of the
        // 2⁶⁴ words, a relative bias below 10ᴺ/2⁶⁴ (5·10⁻¹¹ for N = 9, 1/18 for N = 18).
        let span = self.max() as u128 + 1;
        let operand = |hi: u32, lo: u32| {
            let x = (u64::from(hi) << 32) | u64::from(lo);
            ((x as u128 * span) >> 64) as i64
        };
        Problem {
            values: vec![operand(w[0], w[1]), operand(w[2], w[3])],
        }
    }

    fn prompt(&self, p: &Problem) -> Vec<u8> {
        let n = self.digits;
        format!("{:0n$}+{:0n$}=", p.values[0], p.values[1]).into_bytes()
    }

    fn answer(&self, p: &Problem) -> Vec<u8> {
        reversed_digits(Self::sum(p), self.digits + 1)
    }

    fn is_correct(&self, p: &Problem, answer: &[u8]) -> bool {
        answer == self.answer(p).as_slice()
    }

    fn problem_text(&self, p: &Problem) -> String {
        format!("{}+{}", p.values[0], p.values[1])
    }

    /// The digits back in the usual order without leading zeros when the answer is all digits,
    /// else its bytes.
    fn answer_text(&self, _p: &Problem, answer: &[u8]) -> String {
        if !answer.is_empty() && answer.iter().all(u8::is_ascii_digit) {
            let mut a = answer.to_vec();
            a.reverse();
            let s = String::from_utf8(a).expect("ASCII digits");
            let t = s.trim_start_matches('0');
            if t.is_empty() { "0".into() } else { t.into() }
        } else {
            escape(answer)
        }
    }

    fn max_prompt(&self) -> usize {
        2 * self.digits + 2
    }

    fn max_answer(&self) -> usize {
        self.digits + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_reversed_and_exact() {
        let t = Add::new(3).unwrap();
        let p = Problem {
            values: vec![123, 456],
        };
        assert_eq!(t.prompt(&p), b"123+456=");
        assert_eq!(t.answer(&p), b"9750");
        assert_eq!(t.answer_text(&p, b"9750"), "579");
        assert_eq!(t.problem_text(&p), "123+456");
        assert!(t.is_correct(&p, b"9750"));
        for wrong in [&b"579"[..], b"975", b"0579", b"97500", b"9760", b"97a0"] {
            assert!(!t.is_correct(&p, wrong), "{wrong:?}");
        }
        let p = Problem {
            values: vec![999, 1],
        };
        assert_eq!(t.answer(&p), b"0001");
        assert_eq!(t.answer_text(&p, b"0001"), "1000");
        let z = Problem { values: vec![0, 7] };
        assert_eq!(t.prompt(&z), b"000+007=");
        assert_eq!(t.answer(&z), b"7000");
        assert_eq!(t.answer_text(&z, b"7000"), "7");
        assert_eq!(t.answer_text(&z, b"0000"), "0");
        assert_eq!(t.problem_text(&z), "0+7");
    }

    /// Operands cover their range: over 20 000 draws of add:2 every value 0..=99 appears, and
    /// the mean is near 49.5.
    #[test]
    fn operands_are_uniform_over_the_range() {
        for digits in [2usize, 12] {
            let t = Add::new(digits).unwrap();
            let ps = super::super::draw(&t, crate::rng::StreamKey::new(1, 2), 0, 20_000);
            let max = t.max();
            assert!(
                ps.iter()
                    .all(|p| p.values.iter().all(|v| (0..=max).contains(v)))
            );
            let mean = ps.iter().map(|p| p.values[0] as f64).sum::<f64>() / ps.len() as f64;
            let half = max as f64 / 2.0;
            // sd of the mean: (max/√12)/√20000 ≈ 0.002·max.
            assert!((mean - half).abs() < 0.01 * max as f64, "{digits}: {mean}");
            if digits == 2 {
                let mut seen = [false; 100];
                for p in &ps {
                    seen[p.values[1] as usize] = true;
                }
                assert!(seen.iter().all(|s| *s));
            }
        }
    }
}
