//! `collapse metrics`: the metric dictionary (`collapse_kernels::experiment::dictionary`) as a
//! table, CSV or Markdown; and the metric list of `collapse run --help`.

use std::io::Write;

use collapse_kernels::experiment::dictionary::{self, for_model};
use collapse_kernels::{Error, Result};

/// The `--model` values the dictionary knows.
const MODELS: [&str; 5] = ["gaussian", "gmm", "vae", "lm", "task"];

/// `collapse metrics`'s flags.
#[derive(clap::Args, Debug)]
pub struct MetricsArgs {
    /// Only the columns a run of this model writes (gaussian, gmm, vae, lm): the pool columns
    /// every model writes first, then the model's own.
    #[arg(long)]
    pub model: Option<String>,
    /// Print CSV (columns metric,models,units,definition,with_data; models space-separated),
    /// the file `collapse sweep collect` writes beside its table.
    #[arg(long, conflicts_with = "markdown")]
    pub csv: bool,
    /// Print a Markdown table (the README's "Metrics" section).
    #[arg(long)]
    pub markdown: bool,
}

/// Print the dictionary.
pub fn metrics(a: &MetricsArgs) -> Result<()> {
    let model = a.model.as_deref();
    if let Some(m) = model
        && !MODELS.contains(&m)
    {
        return Err(Error::InvalidArgument(format!(
            "--model {m}: unknown model; the models are {}",
            MODELS.join(", ")
        )));
    }
    let out = if a.csv {
        dictionary::csv_text(model)?
    } else if a.markdown {
        dictionary::markdown(model)
    } else {
        let mut s = String::new();
        for d in for_model(model) {
            s.push_str(&format!(
                "{}  [{}]  ({})\n{}\n{}\n\n",
                d.name,
                d.units,
                d.models.join(", "),
                wrap(d.definition, 96, "  "),
                wrap(&format!("with --data: {}", d.with_data), 96, "  ")
            ));
        }
        s
    };
    std::io::stdout()
        .write_all(out.as_bytes())
        .map_err(|e| Error::Io(format!("stdout: {e}")))
}

/// `text` wrapped at `width` columns, every line indented by `indent`.
fn wrap(text: &str, width: usize, indent: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::from(indent);
    for word in text.split_whitespace() {
        if line.len() > indent.len() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::replace(&mut line, String::from(indent)));
        }
        if line.len() > indent.len() {
            line.push(' ');
        }
        line.push_str(word);
    }
    lines.push(line);
    lines.join("\n")
}

/// The long help after `collapse run --help`'s flags: the metric columns per model, and where
/// they are defined.
pub fn run_help() -> String {
    let mut s = String::from(
        "Metrics (the columns of metrics.csv, one row per generation and replicate; \
         `collapse metrics [--model M]` defines each: formula, units, meaning with --data):\n",
    );
    let names = |m: Option<&str>| {
        for_model(m)
            .iter()
            .filter(|d| m.is_none() || d.models.len() == 1)
            .map(|d| d.name)
            .collect::<Vec<_>>()
    };
    let pool: Vec<&str> = for_model(None)
        .iter()
        .filter(|d| d.models.len() == MODELS.len())
        .map(|d| d.name)
        .collect();
    s.push_str(&format!("  every model: {}\n", pool.join(", ")));
    for m in MODELS {
        s.push_str(&format!("  {m}: {}\n", names(Some(m)).join(", ")));
    }
    s.push_str("  (gaussian: mu, sigma for 1-D data; mu_0.., sigma_0.. per dimension for D > 1)\n");
    s
}
