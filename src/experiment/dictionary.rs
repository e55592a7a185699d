//! The metric dictionary: every column `metrics.csv` can hold, for every model, defined once
//! (what it measures, its units, its formula, and what it means when `--data FILE` replaces a
//! built-in truth). `collapse metrics` prints it, `collapse run --help` points to it, the
//! README's "Metrics" section is generated from it, and `collapse sweep collect` writes it
//! beside its table ([`write_dictionary_csv`]).
//!
//! The formulas are the code's: [`super::metrics`] (gaussian, gmm), [`super::vae`],
//! [`super::lm`], and [`super::generations::POOL_COLUMNS`] with [`super::pool`] (the pool
//! columns every model writes first).

use std::path::Path;

use crate::error::{Error, Result};

/// One column of `metrics.csv`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MetricDefinition {
    /// The column name; `mu_i` and `sigma_i` stand for `mu_0, mu_1, …` and `sigma_0, …` (the
    /// per-dimension columns of a D-dimensional Gaussian, D > 1).
    pub name: &'static str,
    /// The `--model` values whose runs write this column.
    pub models: &'static [&'static str],
    /// Units of the value (`nats`, `data units`, `count`, `1` for dimensionless, `text`).
    pub units: &'static str,
    /// What the value is, as a formula in words / ASCII math.
    pub definition: &'static str,
    /// What the value means when `--data FILE` replaces a built-in truth (or, for models that
    /// always read a file, what it is computed on).
    pub with_data: &'static str,
}

const ALL: &[&str] = &["gaussian", "gmm", "vae", "lm", "task"];
const GAUSSIAN: &[&str] = &["gaussian"];
const GMM: &[&str] = &["gmm"];
const VAE: &[&str] = &["vae"];
const LM: &[&str] = &["lm"];
const TASK: &[&str] = &["task"];

static DEFINITIONS: [MetricDefinition; 28] = [
    MetricDefinition {
        name: "generation",
        models: ALL,
        units: "count",
        definition: "Generation n of the chain: 0 fits the real data; n >= 1 fits the pool \
                     formed (by --policy) from samples of generation n-1's model.",
        with_data: "Same: generation 0 fits the file's training split.",
    },
    MetricDefinition {
        name: "replicate",
        models: ALL,
        units: "count",
        definition: "Index r in 0..R-1 of an independent chain: its own Philox streams \
                     (seed, stream_id(purpose, r, generation)) for real data, samples, mixing and \
                     fit initialisation.",
        with_data: "Same; without --real-rows every replicate's generation 0 fits the same \
                    training rows (chains differ from generation 1 on), with --real-rows each \
                    replicate draws its own subset.",
    },
    MetricDefinition {
        name: "pool_size",
        models: ALL,
        units: "count",
        definition: "Rows in the generation's training pool (points, images or byte windows): \
                     --samples M at generation 0 and under replace, mix, fresh and verify; \
                     under accumulate the real rows plus M per earlier generation (real + n*M at \
                     generation n).",
        with_data: "Generation 0 (and accumulate's real part) is the file's whole training \
                    split (about 80% of its rows), or --real-rows rows.",
    },
    MetricDefinition {
        name: "pool_real_fraction",
        models: ALL,
        units: "1",
        definition: "Share of the pool's rows that are real (origin real or fresh): 1 at \
                     generation 0, 0 under replace and verify, round(F*M)/M under mix:F and \
                     fresh:F, real/(real + n*M) under accumulate.",
        with_data: "Same; real rows are rows of the file's training split (fresh:F draws them \
                    with replacement from the whole split).",
    },
    MetricDefinition {
        name: "pool_composition",
        models: ALL,
        units: "text",
        definition: "Provenance of the pool, 'origin:count|origin:count...' in pool order: real \
                     (the real training rows), fresh (new real data), gJ (sampled from \
                     generation J's model); consecutive generations are one entry \
                     'gA..gB:total' so the field stays constant-size under accumulate.",
        with_data: "Same.",
    },
    MetricDefinition {
        name: "mu",
        models: GAUSSIAN,
        units: "data units",
        definition: "Fitted mean of 1-D data: the maximum-likelihood mean of the pool, \
                     mu = (1/M) sum_i x_i.",
        with_data: "The mean fitted to the file's (single) column.",
    },
    MetricDefinition {
        name: "sigma",
        models: GAUSSIAN,
        units: "data units",
        definition: "Fitted standard deviation of 1-D data: sqrt of the maximum-likelihood \
                     variance (1/M) sum_i (x_i - mu)^2 (divisor M, no regularisation, so it can \
                     reach exactly 0: the absorbing state of the collapse).",
        with_data: "The standard deviation fitted to the file's column.",
    },
    MetricDefinition {
        name: "mu_i",
        models: GAUSSIAN,
        units: "data units",
        definition: "Columns mu_0 .. mu_{D-1} of D-dimensional data (D > 1): the fitted mean \
                     of dimension i, (1/M) sum_rows x_i.",
        with_data: "The mean of the file's column i (0-based).",
    },
    MetricDefinition {
        name: "sigma_i",
        models: GAUSSIAN,
        units: "data units",
        definition: "Columns sigma_0 .. sigma_{D-1} (D > 1): sqrt of the maximum-likelihood \
                     variance of dimension i (the Gaussian is diagonal; divisor M, no \
                     regularisation).",
        with_data: "The standard deviation of the file's column i.",
    },
    MetricDefinition {
        name: "w2_to_truth",
        models: GAUSSIAN,
        units: "data units",
        definition: "2-Wasserstein distance from the fitted Gaussian to the reference, exact for \
                     diagonal Gaussians: sqrt( sum_i (mu_i - mu*_i)^2 + (sigma_i - \
                     sigma*_i)^2 ); the reference is the built-in truth (normal: mu* = 0, \
                     sigma* = 1).",
        with_data: "A file has no known density: the reference is replicate 0's generation-0 \
                    fit (the file's training split, on the run's backend), so this is the \
                    distance travelled from that fit, 0 for replicate 0 at generation 0 (and \
                    for every replicate there without --real-rows).",
    },
    MetricDefinition {
        name: "heldout_ll",
        models: GMM,
        units: "nats per point",
        definition: "Mean log-likelihood of held-out real data under the fitted mixture, \
                     (1/N) sum_j log p(y_j) with p(y) = sum_k w_k N(y | mu_k, Sigma_k) (per-row \
                     log-sum-exp, pairwise sum, f64); the held-out set is 10 000 draws of the \
                     built-in truth (one set per run seed, shared by the replicates). Falls as \
                     the model forgets the data. NaN when a covariance is not positive \
                     definite.",
        with_data: "The held-out set is the file's 20% split (a Philox uniform per row picks \
                    it): the log-likelihood of real rows the chain never trained on.",
    },
    MetricDefinition {
        name: "l2_to_truth",
        models: GMM,
        units: "density units (data units^(-D/2))",
        definition: "L2 distance between the fitted and the reference densities, \
                     ||p - p*||_2 = sqrt( int p^2 - 2 int p p* + int p*^2 ), in closed form: \
                     int p q = sum_ij w_i v_j N(mu_i | nu_j, Sigma_i + S_j). The reference is \
                     the built-in truth.",
        with_data: "A file has no known density: the reference is replicate 0's generation-0 \
                    mixture (fitted to the file's training split on the run's backend). So it \
                    measures how far each fit has moved from that first fit, not the distance \
                    to the data's unknown density: 0 for replicate 0 at generation 0, and for \
                    the other replicates the difference of their own generation-0 EM fits \
                    (other initialisations) from it.",
    },
    MetricDefinition {
        name: "weight_entropy",
        models: GMM,
        units: "nats",
        definition: "Entropy of the mixture weights, -sum_{k: w_k > 0} w_k ln w_k: ln K for \
                     equal weights, 0 when one component holds all the mass; falls as \
                     components starve.",
        with_data: "Same (the weights of the fit to the file's data).",
    },
    MetricDefinition {
        name: "tail_coverage",
        models: GMM,
        units: "1 (probability)",
        definition: "Probability the fitted model p gives the truth's outer 1% region T = { x : \
                     log p*(x) < q }, q the 1% quantile of log p*(X) over 100 000 draws X ~ p* \
                     (0.01 for the truth itself). Estimated as sum_k w_k * (share of component \
                     k's draws mu_k + L_k z in T), L_k L_k^T = Sigma_k, with 20 000 standard \
                     normals z fixed for the run (split evenly over components, the same every \
                     generation and replicate). The region is fixed by the truth and only the \
                     model moves, so this is not 'the tails are kept': it rises above 0.01 \
                     whenever the fitted model's spread or position leaves the truth's (under \
                     replace the components' means wander and their covariances shrink or \
                     spread unevenly, so the model's mass lands where the truth is thin: \
                     outside its bulk or between its modes), and falls below 0.01 only while \
                     the model contracts inside the truth's bulk. NaN when a covariance has no \
                     Cholesky factor.",
        with_data: "T is the outer 1% region of replicate 0's generation-0 fit (the reference \
                    density, see l2_to_truth): the share of mass each fit puts where the first \
                    fit to the file was thin; 0.01 (up to Monte Carlo error) for that fit.",
    },
    MetricDefinition {
        name: "heldout_neg_elbo",
        models: VAE,
        units: "nats per image",
        definition: "Mean negative ELBO of the first <= 1000 held-out real images, \
                     (1/N) sum_j [ BCE(x_j, decode(z_j)) + KL(q(z | x_j) || N(0, I)) ] with one \
                     reparameterised draw z_j per image from a fixed stream (VAE_EVAL); \
                     computed on cpu64 from the f64 weights, so every backend is measured \
                     alike. Lower is better; rises as the model forgets the data.",
        with_data: "The VAE always reads --data: held-out images are the file's 20% split.",
    },
    MetricDefinition {
        name: "sample_diversity",
        models: VAE,
        units: "pixel units (pixels in [0, 1])",
        definition: "Mean pairwise Euclidean distance between 128 decoded samples, \
                     (2/(n(n-1))) sum_{i<j} ||s_i - s_j||_2, samples s = sigmoid(decoder \
                     logits) at 128 latents fixed per replicate (the same every generation), on \
                     cpu64. Falls as the samples collapse onto a few images; summary.json's \
                     reference gives it for 128 held-out real images.",
        with_data: "Same (the VAE always reads --data).",
    },
    MetricDefinition {
        name: "pixel_std",
        models: VAE,
        units: "pixel units",
        definition: "Per-pixel standard deviation (divisor n) of the same 128 samples, averaged \
                     over pixels: (1/D) sum_p sqrt( (1/n) sum_i (s_ip - mean_p)^2 ). Falls as \
                     samples lose variety; reference in summary.json.",
        with_data: "Same (the VAE always reads --data).",
    },
    MetricDefinition {
        name: "val_loss",
        models: LM,
        units: "nats per byte",
        definition: "Mean next-byte cross-entropy of the model on up to 64 held-out windows \
                     evenly spaced over the validation text, -(1/T) sum_t ln p(b_t | b_<t), on \
                     the run's backend; summary.json's reference gives the unigram baseline.",
        with_data: "Held-out windows come from the validation part of the file's text (the \
                    corpus's fixed train/validation split).",
    },
    MetricDefinition {
        name: "val_ppl",
        models: LM,
        units: "per byte",
        definition: "Perplexity per byte, exp(val_loss).",
        with_data: "As val_loss.",
    },
    MetricDefinition {
        name: "distinct_1",
        models: LM,
        units: "1",
        definition: "Distinct-1 of 32 samples drawn from the same stream every generation (the \
                     run's temperature and top-k): unique words / all words, words split at \
                     whitespace; NaN when the samples hold no word. Falls as the text \
                     repeats itself.",
        with_data: "Same; summary.json's reference gives it for 32 held-out windows of the file.",
    },
    MetricDefinition {
        name: "distinct_2",
        models: LM,
        units: "1",
        definition: "Distinct-2 of the same 32 samples: unique word bigrams / all word bigrams \
                     (bigrams do not cross samples); NaN when there are none.",
        with_data: "Same; reference for 32 held-out windows of the file.",
    },
    MetricDefinition {
        name: "heldout_accuracy",
        models: TASK,
        units: "1",
        definition: "Fraction of --task-eval held-out problems (a fixed Philox set, the same every \
                     generation and replicate) the model answers correctly by the task's oracle, \
                     decoding greedily (the likeliest byte each step) until the end byte; \
                     eval/gNNNN-rR.tsv lists every prediction.",
        with_data: "Not applicable: task runs draw their own problems.",
    },
    MetricDefinition {
        name: "answer_loss",
        models: TASK,
        units: "nats per byte",
        definition: "Mean cross-entropy of the true answers of the held-out problems, over the \
                     answer bytes and the end byte only (the prompt is not scored), on the run's \
                     backend.",
        with_data: "Not applicable: task runs draw their own problems.",
    },
    MetricDefinition {
        name: "pool_label_error",
        models: TASK,
        units: "1",
        definition: "Fraction of the training pool's rows whose answer the oracle calls wrong \
                     (real pairs are right), measured whatever --verifier kept them; NaN for an \
                     empty pool. pools/gNNNN-rR.tsv lists every row.",
        with_data: "Not applicable: task runs draw their own problems.",
    },
    MetricDefinition {
        name: "kept_fraction",
        models: TASK,
        units: "1",
        definition: "Of the --samples problems posed to generation n-1 (the newest synthetic set), \
                     the fraction whose answer the verifier kept; NaN at generation 0.",
        with_data: "Not applicable: task runs draw their own problems.",
    },
    MetricDefinition {
        name: "verifier_precision",
        models: TASK,
        units: "1",
        definition: "Of the judged candidates of the newest set the verifier kept, the fraction \
                     the oracle calls correct (TP / (TP + FP)); NaN when nothing was kept or at \
                     generation 0. A judged candidate is one the verifier gave a verdict on \
                     (none: each problem's first; confidence:F: each problem's likeliest).",
        with_data: "Not applicable: task runs draw their own problems.",
    },
    MetricDefinition {
        name: "verifier_recall",
        models: TASK,
        units: "1",
        definition: "Of the judged candidates of the newest set the oracle calls correct, the \
                     fraction the verifier kept (TP / (TP + FN)); NaN when none was correct or at \
                     generation 0.",
        with_data: "Not applicable: task runs draw their own problems.",
    },
    MetricDefinition {
        name: "mean_attempts",
        models: TASK,
        units: "count",
        definition: "Sampling rounds per posed problem of the newest set: 1, plus the --retries \
                     rounds a problem used after all its candidates were rejected (each round \
                     draws --best-of candidates); NaN at generation 0.",
        with_data: "Not applicable: task runs draw their own problems.",
    },
];

/// Every column `metrics.csv` can hold, pool columns first, then each model's in
/// `metrics.csv` order.
pub fn definitions() -> &'static [MetricDefinition] {
    &DEFINITIONS
}

/// The definitions of `--model model`'s columns (pool columns first), or every one for `None`.
pub fn for_model(model: Option<&str>) -> Vec<&'static MetricDefinition> {
    definitions()
        .iter()
        .filter(|d| model.is_none_or(|m| d.models.contains(&m)))
        .collect()
}

/// The definition of a `metrics.csv` column (`mu_3` and `sigma_0` find `mu_i` and `sigma_i`).
pub fn lookup(column: &str) -> Option<&'static MetricDefinition> {
    let generic = |prefix: &str| {
        column
            .strip_prefix(prefix)
            .filter(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
            .is_some()
    };
    let name = if generic("mu_") {
        "mu_i"
    } else if generic("sigma_") {
        "sigma_i"
    } else {
        column
    };
    definitions().iter().find(|d| d.name == name)
}

/// The definitions of `model`'s columns (every column for `None`) as CSV (columns
/// `metric,models,units,definition,with_data`; `models` space-separated), read by pandas as it
/// is: what `collapse metrics --csv` prints and [`write_dictionary_csv`] writes.
pub fn csv_text(model: Option<&str>) -> Result<String> {
    let io = |e: &dyn std::fmt::Display| Error::Io(format!("metric dictionary CSV: {e}"));
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["metric", "models", "units", "definition", "with_data"])
        .map_err(|e| io(&e))?;
    for d in for_model(model) {
        w.write_record([
            d.name,
            &d.models.join(" "),
            d.units,
            d.definition,
            d.with_data,
        ])
        .map_err(|e| io(&e))?;
    }
    let bytes = w.into_inner().map_err(|e| io(&e))?;
    String::from_utf8(bytes).map_err(|e| io(&e))
}

/// Write the whole dictionary as CSV ([`csv_text`]) to `path`.
pub fn write_dictionary_csv(path: &Path) -> Result<()> {
    crate::io::write_atomic(path, csv_text(None)?.as_bytes())
}

/// The dictionary as a Markdown table (what the README's "Metrics" section holds), one row
/// per definition of [`for_model`]`(model)`.
pub fn markdown(model: Option<&str>) -> String {
    let cell = |s: &str| s.replace('|', "\\|");
    let mut out = String::from(
        "| metric | models | units | definition | with `--data` |\n|---|---|---|---|---|\n",
    );
    for d in for_model(model) {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            d.name,
            d.models.join(", "),
            cell(d.units),
            cell(d.definition),
            cell(d.with_data)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_every_field_is_filled() {
        let defs = definitions();
        for (i, d) in defs.iter().enumerate() {
            assert!(
                defs[..i].iter().all(|e| e.name != d.name),
                "{} twice",
                d.name
            );
            assert!(!d.models.is_empty() && !d.units.is_empty(), "{}", d.name);
            assert!(
                d.definition.len() > 20 && !d.with_data.is_empty(),
                "{}",
                d.name
            );
        }
    }

    #[test]
    fn lookup_maps_per_dimension_columns() {
        assert_eq!(lookup("mu_12").map(|d| d.name), Some("mu_i"));
        assert_eq!(lookup("sigma_0").map(|d| d.name), Some("sigma_i"));
        assert_eq!(lookup("mu").map(|d| d.name), Some("mu"));
        assert!(lookup("mu_").is_none());
        assert!(lookup("mu_x").is_none());
        assert!(lookup("nothing").is_none());
        assert_eq!(for_model(Some("lm")).len(), 5 + 4);
    }
}
