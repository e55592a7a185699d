//! `eigen:N`: the eigenvalues of a symmetric N×N matrix (Charton's LAWT setting, which Feng et
//! al. 2024 verify; smaller N so a byte-level model on two cores can learn it).
//!
//! A problem is the upper triangle of the matrix, row-major, each entry uniform over
//! `{−10.0, −9.9, …, 10.0}` (one decimal; stored in tenths). Prompt: each upper-triangle entry
//! as a sign and three digits of tenths (`+034` for 3.4, `-100` for −10.0), then `=`. Answer:
//! the eigenvalues in descending order with 3 significant digits, each as a sign, three
//! mantissa digits, `e`, a signed one-digit exponent (`+123e-1` for 12.3, `-456e-3` for
//! −0.456; LAWT's P10 encoding written in bytes), values below 10⁻⁷ in magnitude as
//! `+000e+0`. The truth is the f64 cyclic Jacobi method
//! ([`crate::num::linalg::symmetric_eigenvalues`]).
//!
//! Correct (LAWT, Feng et al.): the answer parses as N values and
//! `Σ|pred − true| / Σ|true| < tol` against the exact eigenvalues (default 0.05,
//! `--task-tol`). The audit files show the matrix as a JSON array of rows and the eigenvalues
//! as a JSON array.

use super::{Problem, Task, escape, uniform_int};
use crate::num::linalg::symmetric_eigenvalues;

/// Bytes of one encoded eigenvalue (`+123e-1`).
const VALUE_BYTES: usize = 7;

/// The `eigen:N` task.
#[derive(Debug, Clone, Copy)]
pub struct Eigen {
    n: usize,
    tol: f64,
}

impl Eigen {
    /// `eigen:n` (2 ≤ n ≤ 9) with relative L1 tolerance `tol` (finite, > 0).
    pub fn new(n: usize, tol: f64) -> Result<Self, String> {
        if !(2..=9).contains(&n) {
            return Err(format!("eigen takes 2..=9 rows, got {n}"));
        }
        if !(tol.is_finite() && tol > 0.0) {
            return Err(format!("--task-tol must be finite and > 0, got {tol}"));
        }
        Ok(Self { n, tol })
    }

    fn entries(&self) -> usize {
        self.n * (self.n + 1) / 2
    }

    /// The full matrix (`[n][n]`, row-major) of `p`, in units.
    pub fn matrix(&self, p: &Problem) -> Vec<f64> {
        let n = self.n;
        let mut a = vec![0.0; n * n];
        let mut k = 0;
        for i in 0..n {
            for j in i..n {
                let v = p.values[k] as f64 / 10.0;
                a[i * n + j] = v;
                a[j * n + i] = v;
                k += 1;
            }
        }
        a
    }

    /// The exact eigenvalues of `p`, descending.
    pub fn eigenvalues(&self, p: &Problem) -> Vec<f64> {
        symmetric_eigenvalues(&self.matrix(p), self.n).expect("finite by construction")
    }

    /// The N values of an answer, or `None` when it is not N well-formed values.
    pub fn parse_answer(&self, answer: &[u8]) -> Option<Vec<f64>> {
        if answer.len() != self.n * VALUE_BYTES {
            return None;
        }
        answer.chunks(VALUE_BYTES).map(decode).collect()
    }
}

/// `v` with 3 significant digits as `±MMMe±E` (see the module documentation).
pub fn encode(v: f64) -> Vec<u8> {
    let sign = if v < 0.0 { '-' } else { '+' };
    let a = v.abs();
    if a < 1e-7 {
        return b"+000e+0".to_vec();
    }
    let mut e = a.log10().floor() as i32 - 2;
    let mut m = (a / 10f64.powi(e)).round() as i64;
    if m >= 1000 {
        m = 100;
        e += 1;
    }
    if m < 100 {
        // log10 rounded down past a power of ten.
        m = (a / 10f64.powi(e - 1)).round() as i64;
        e -= 1;
    }
    let es = if e < 0 { '-' } else { '+' };
    format!("{sign}{m:03}e{es}{}", e.abs()).into_bytes()
}

/// One `±MMMe±E` value, or `None`.
pub fn decode(b: &[u8]) -> Option<f64> {
    if b.len() != VALUE_BYTES || b[4] != b'e' {
        return None;
    }
    let sign = match b[0] {
        b'+' => 1.0,
        b'-' => -1.0,
        _ => return None,
    };
    let digit = |c: u8| c.is_ascii_digit().then(|| f64::from(c - b'0'));
    let m = digit(b[1])? * 100.0 + digit(b[2])? * 10.0 + digit(b[3])?;
    let es = match b[5] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let e = es * digit(b[6])? as i32;
    // Dividing by an exact power of ten rounds once, so 102e-1 is the f64 nearest 10.2 (and
    // prints as 10.2), not 102 · 0.1.
    Some(if e < 0 {
        sign * m / 10f64.powi(-e)
    } else {
        sign * m * 10f64.powi(e)
    })
}

/// A JSON array of numbers, shortest round-trip form.
fn json_array(v: &[f64]) -> String {
    let items: Vec<String> = v.iter().map(|x| format!("{x}")).collect();
    format!("[{}]", items.join(","))
}

impl Task for Eigen {
    fn spec(&self) -> String {
        format!("eigen:{}", self.n)
    }

    fn words(&self) -> u64 {
        self.entries() as u64
    }

    fn values(&self) -> usize {
        self.entries()
    }

    fn problem(&self, w: &[u32]) -> Problem {
        Problem {
            values: w.iter().map(|&x| uniform_int(x, -100, 100)).collect(),
        }
    }

    fn prompt(&self, p: &Problem) -> Vec<u8> {
        let mut s = String::new();
        for v in &p.values {
            let sign = if *v < 0 { '-' } else { '+' };
            s.push_str(&format!("{sign}{:03}", v.abs()));
        }
        s.push('=');
        s.into_bytes()
    }

    fn answer(&self, p: &Problem) -> Vec<u8> {
        self.eigenvalues(p)
            .iter()
            .flat_map(|v| encode(*v))
            .collect()
    }

    fn is_correct(&self, p: &Problem, answer: &[u8]) -> bool {
        let Some(pred) = self.parse_answer(answer) else {
            return false;
        };
        let truth = self.eigenvalues(p);
        let err: f64 = pred.iter().zip(&truth).map(|(a, b)| (a - b).abs()).sum();
        let norm: f64 = truth.iter().map(|b| b.abs()).sum();
        // The zero matrix: only an exact answer is right.
        if norm == 0.0 {
            return err == 0.0;
        }
        err / norm < self.tol
    }

    fn problem_text(&self, p: &Problem) -> String {
        let a = self.matrix(p);
        let rows: Vec<String> = a.chunks(self.n).map(json_array).collect();
        format!("[{}]", rows.join(","))
    }

    fn answer_text(&self, _p: &Problem, answer: &[u8]) -> String {
        match self.parse_answer(answer) {
            Some(v) => json_array(&v),
            None => escape(answer),
        }
    }

    fn max_prompt(&self) -> usize {
        4 * self.entries() + 1
    }

    fn max_answer(&self) -> usize {
        VALUE_BYTES * self.n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_encode_with_three_significant_digits() {
        for (v, s) in [
            (12.3, "+123e-1"),
            (-0.456, "-456e-3"),
            (5.0, "+500e-2"),
            (99.96, "+100e+0"),
            (999.4, "+999e+0"),
            (0.0, "+000e+0"),
            (1e-9, "+000e+0"),
            (-10.0, "-100e-1"),
        ] {
            assert_eq!(String::from_utf8(encode(v)).unwrap(), s, "{v}");
        }
        let mut z = vec![0.0; 2000];
        crate::rng::host_normals_f64(crate::rng::StreamKey::new(3, 1), 0, &mut z);
        for x in &z {
            let v = x * 10f64.powi((x * 3.0) as i32);
            let d = decode(&encode(v)).unwrap();
            assert!((d - v).abs() <= 5e-3 * v.abs() + 1e-7, "{v} -> {d}");
        }
        for bad in [
            &b"+12e-1"[..],
            b"*123e-1",
            b"+123x-1",
            b"+123e*1",
            b"+1a3e-1",
        ] {
            assert!(decode(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn the_oracle_applies_the_relative_l1_tolerance() {
        let t = Eigen::new(2, 0.05).unwrap();
        // [[2, 1], [1, 2]]: eigenvalues 3 and 1.
        let p = Problem {
            values: vec![20, 10, 20],
        };
        assert_eq!(t.prompt(&p), b"+020+010+020=");
        assert_eq!(t.answer(&p), b"+300e-2+100e-2");
        assert_eq!(t.problem_text(&p), "[[2,1],[1,2]]");
        assert_eq!(t.answer_text(&p, b"+300e-2+100e-2"), "[3,1]");
        assert_eq!(t.answer_text(&p, b"+102e-1-837e-2"), "[10.2,-8.37]");
        // Σ|err| / Σ|true| = 0.19 / 4 < 0.05; 0.21 / 4 > 0.05.
        assert!(t.is_correct(&p, b"+319e-2+100e-2"));
        assert!(!t.is_correct(&p, b"+321e-2+100e-2"));
        assert!(!t.is_correct(&p, b"+300e-2"));
        assert!(!t.is_correct(&p, b"+300e-2+100e-2+100e-2"));
        let strict = Eigen::new(2, 0.01).unwrap();
        assert!(!strict.is_correct(&p, b"+319e-2+100e-2"));
        assert!(Eigen::new(2, f64::INFINITY).is_err());
        assert!(Eigen::new(10, 0.05).is_err());
    }

    /// Entries cover −10.0 ..= 10.0 in tenths, and true answers of random problems are within
    /// the tolerance of the exact eigenvalues (3 significant digits lose at most 0.5%).
    #[test]
    fn entries_are_uniform_and_answers_correct() {
        let t = Eigen::new(3, 0.005).unwrap();
        let ps = super::super::draw(&t, crate::rng::StreamKey::new(9, 4), 0, 3000);
        let mut seen = vec![false; 201];
        for p in &ps {
            for v in &p.values {
                assert!((-100..=100).contains(v));
                seen[(v + 100) as usize] = true;
            }
            assert!(t.is_correct(p, &t.answer(p)), "{p:?}");
        }
        assert!(seen.iter().all(|s| *s));
    }
}
