//! Summary statistics of a group of values (a sweep group's replicates, a run's replicates at
//! one generation): n, mean, sample standard deviation and the 95% confidence interval of
//! the mean by Student's t (`mean ± t₀.₉₇₅,ₙ₋₁ · sd/√n`), which assumes the values are
//! independent draws (replicates and seeds are: each has its own Philox streams); it is exact
//! for normal data and approximate otherwise.

/// n, mean, sd (n − 1 in the denominator) and the 95% t interval of the finite values of
/// `xs`; NaN fields where undefined (no value; the sd and interval of a single value).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Finite values counted.
    pub n: usize,
    /// Their mean.
    pub mean: f64,
    /// Their sample standard deviation.
    pub sd: f64,
    /// Lower end of the 95% confidence interval of the mean.
    pub ci_low: f64,
    /// Upper end.
    pub ci_high: f64,
}

impl Summary {
    /// The summary of the finite values among `xs` (NaN and ±∞ are left out, not counted).
    pub fn of(xs: &[f64]) -> Self {
        let v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
        let n = v.len();
        if n == 0 {
            return Self {
                n,
                mean: f64::NAN,
                sd: f64::NAN,
                ci_low: f64::NAN,
                ci_high: f64::NAN,
            };
        }
        let mean = v.iter().sum::<f64>() / n as f64;
        if n == 1 {
            return Self {
                n,
                mean,
                sd: f64::NAN,
                ci_low: f64::NAN,
                ci_high: f64::NAN,
            };
        }
        let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
        let half = t_quantile(0.975, (n - 1) as f64) * sd / (n as f64).sqrt();
        Self {
            n,
            mean,
            sd,
            ci_low: mean - half,
            ci_high: mean + half,
        }
    }
}

/// The `p` quantile (0.5 < p < 1) of Student's t distribution with `df` > 0 degrees of
/// freedom, by bisection on the distribution function (to ~1e-12 relative).
pub fn t_quantile(p: f64, df: f64) -> f64 {
    // P(T ≤ t) = 1 − I_{df/(df+t²)}(df/2, 1/2) / 2 for t ≥ 0.
    let cdf = |t: f64| 1.0 - 0.5 * incomplete_beta(df / (df + t * t), df / 2.0, 0.5);
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    while cdf(hi) < p {
        hi *= 2.0;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if cdf(mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo <= 1e-13 * hi {
            break;
        }
    }
    0.5 * (lo + hi)
}

/// The regularised incomplete beta function `I_x(a, b)` (continued fraction, Lentz's method;
/// Numerical Recipes §6.4).
fn incomplete_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * beta_fraction(x, a, b) / a
    } else {
        1.0 - ln_front.exp() * beta_fraction(1.0 - x, b, a) / b
    }
}

/// The continued fraction of [`incomplete_beta`].
fn beta_fraction(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        for aa in [
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ] {
            d = 1.0 + aa * d;
            if d.abs() < TINY {
                d = TINY;
            }
            c = 1.0 + aa / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            h *= d * c;
        }
        if (d * c - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// `ln Γ(x)` for x > 0 (Lanczos, g = 7, 9 terms: ~1e-15 relative).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1 − x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let s = G[1..]
        .iter()
        .enumerate()
        .fold(G[0], |s, (i, g)| s + g / (x + i as f64 + 1.0));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + s.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_match_the_tables() {
        // Student's t, two-sided 95% (R: qt(0.975, df)).
        for (df, t) in [
            (1.0, 12.706_204_736_174_7),
            (2.0, 4.302_652_729_749_46),
            (4.0, 2.776_445_105_197_8),
            (10.0, 2.228_138_851_986_27),
            (49.0, 2.009_575_234_489_21),
            (199.0, 1.971_956_544_249_15),
            (1e6, 1.959_966_349_0),
        ] {
            let got = t_quantile(0.975, df);
            assert!((got - t).abs() < 1e-8 * t, "df {df}: {got} vs {t}");
        }
    }

    #[test]
    fn summaries_count_finite_values_only() {
        let s = Summary::of(&[1.0, 2.0, 3.0, f64::NAN, f64::INFINITY]);
        assert_eq!(s.n, 3);
        assert_eq!(s.mean, 2.0);
        assert_eq!(s.sd, 1.0);
        let half = 4.302_652_729_749_46 / 3f64.sqrt();
        assert!((s.ci_low - (2.0 - half)).abs() < 1e-9 && (s.ci_high - (2.0 + half)).abs() < 1e-9);
        let one = Summary::of(&[5.0]);
        assert_eq!((one.n, one.mean), (1, 5.0));
        assert!(one.sd.is_nan() && one.ci_low.is_nan());
        assert!(Summary::of(&[f64::NAN]).mean.is_nan());
    }
}
