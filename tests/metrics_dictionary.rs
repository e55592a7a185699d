//! The metric dictionary (issue 19): every column any model's run writes is defined, for that
//! model; `collapse metrics` prints it (table, CSV, Markdown); `collapse run --help` lists the
//! metrics per model; the README's "Metrics" section names every metric.

mod common;

use collapse_kernels::experiment::dictionary::{self, definitions, lookup};
use collapse_kernels::experiment::generations::POOL_COLUMNS;
use collapse_kernels::experiment::{lm, task, vae};

use common::cli::{collapse, fails, ok};
use common::table::Table;
use common::tmpdir;

/// Assert that every column of `header` is defined for `model`.
fn all_defined(header: &[&str], model: &str) {
    for c in header {
        let d = lookup(c).unwrap_or_else(|| panic!("{model}: column {c} is not defined"));
        assert!(
            d.models.contains(&model),
            "{model}: column {c} is defined for {:?} only",
            d.models
        );
    }
}

#[test]
fn every_column_of_every_model_is_defined() {
    let cases: [(&str, &[&str]); 3] = [
        ("gaussian", &["--truth", "normal"]),
        ("gaussian", &["--truth", "normal:3"]),
        ("gmm", &["--truth", "shumailov-gmm", "--k", "2"]),
    ];
    for (i, (model, extra)) in cases.iter().enumerate() {
        let dir = tmpdir(&format!("dict-{i}"));
        let out = dir.join("run");
        ok(&collapse(
            [
                &[
                    "run",
                    "--model",
                    model,
                    "--generations",
                    "1",
                    "--samples",
                    "20",
                    "--replicates",
                    "2",
                    "--backend",
                    "cpu64",
                    "--out",
                    out.to_str().unwrap(),
                ][..],
                extra,
            ]
            .concat(),
        ));
        let t = Table::metrics(&out);
        assert_eq!(&t.header()[..POOL_COLUMNS.len()], POOL_COLUMNS);
        all_defined(&t.header(), model);
    }
    // The trained models' columns (their runs are not cheap): the pool's, then their own.
    let with_pool = |own: &[&'static str]| [&POOL_COLUMNS[..], own].concat();
    all_defined(&with_pool(&vae::METRIC_COLUMNS), "vae");
    all_defined(&with_pool(&lm::METRIC_COLUMNS), "lm");
    all_defined(&with_pool(&task::METRIC_COLUMNS), "task");
    // And nothing is defined for a model that does not write it.
    for d in definitions() {
        for m in d.models {
            let ok = match *m {
                "vae" => POOL_COLUMNS.contains(&d.name) || vae::METRIC_COLUMNS.contains(&d.name),
                "lm" => POOL_COLUMNS.contains(&d.name) || lm::METRIC_COLUMNS.contains(&d.name),
                "task" => POOL_COLUMNS.contains(&d.name) || task::METRIC_COLUMNS.contains(&d.name),
                "gaussian" | "gmm" => true,
                other => panic!("{}: unknown model {other}", d.name),
            };
            assert!(ok, "{} is defined for {m}, which does not write it", d.name);
        }
    }
}

#[test]
fn dictionary_csv_is_one_row_per_definition() {
    let dir = tmpdir("dict-csv");
    let path = dir.join("metrics_dictionary.csv");
    dictionary::write_dictionary_csv(&path).unwrap();
    let t = Table::read(&path);
    assert_eq!(
        t.header(),
        ["metric", "models", "units", "definition", "with_data"]
    );
    assert_eq!(t.len(), definitions().len());
    for (row, d) in t.rows().zip(definitions()) {
        assert_eq!(row.str("metric"), d.name);
        assert_eq!(row.str("models"), d.models.join(" "));
        assert_eq!(row.str("definition"), d.definition);
        assert_eq!(row.str("with_data"), d.with_data);
    }
    // The CLI prints the same bytes.
    let printed = ok(&collapse(["metrics", "--csv"]));
    assert_eq!(printed.as_bytes(), std::fs::read(&path).unwrap());
}

#[test]
fn metrics_command_filters_by_model_and_rejects_unknown_ones() {
    let dir = tmpdir("dict-model");
    let path = dir.join("gmm.csv");
    std::fs::write(&path, ok(&collapse(["metrics", "--model", "gmm", "--csv"]))).unwrap();
    let names = Table::read(&path)
        .strs("metric")
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    let want: Vec<String> = POOL_COLUMNS
        .iter()
        .chain(&[
            "heldout_ll",
            "l2_to_truth",
            "weight_entropy",
            "tail_coverage",
        ])
        .map(|s| s.to_string())
        .collect();
    assert_eq!(names, want);
    let table = ok(&collapse(["metrics", "--model", "lm"]));
    assert!(
        table.contains("val_ppl") && !table.contains("tail_coverage"),
        "{table}"
    );
    assert!(table.contains("with --data:"), "{table}");
    fails(
        &collapse(["metrics", "--model", "gpt"]),
        "--model gpt",
        "unknown model",
    );
}

#[test]
fn run_help_lists_every_metric_and_points_to_the_dictionary() {
    let help = ok(&collapse(["run", "--help"]));
    assert!(help.contains("collapse metrics"), "{help}");
    for d in definitions() {
        assert!(help.contains(d.name), "run --help lacks {}", d.name);
    }
    assert!(help.contains("--threads"), "{help}");
}

#[test]
fn readme_metrics_section_names_every_metric() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let start = readme
        .find("\n## Metrics")
        .expect("README has a ## Metrics section");
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    for d in definitions() {
        assert!(
            section.contains(&format!("`{}`", d.name)),
            "README's Metrics section lacks `{}`",
            d.name
        );
    }
    // Generated from the dictionary: the section holds its Markdown table as it is.
    assert!(
        section.contains(&dictionary::markdown(None)),
        "README's Metrics table differs from `collapse metrics --markdown`: regenerate it"
    );
}
