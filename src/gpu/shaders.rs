//! The embedded WGSL sources and the one mechanism that composes them.
//!
//! Every file under `shaders/` is compiled into the binary through [`SOURCES`] (so the binary
//! runs from any directory). A kernel file pulls shared code in with a line of the form
//!
//! ```text
//! //!include common/philox.wgsl
//! ```
//!
//! which [`compose`] replaces with that file's (recursively composed) text. Each file is
//! included at most once per composed module, so two includes of the same library are harmless;
//! an include of a name not in [`SOURCES`] is an error. Nothing else is rewritten: what you read
//! in `shaders/` is what naga sees.

use crate::error::{Error, Result};

/// Every WGSL file of the crate, by its path relative to `shaders/`.
pub const SOURCES: &[(&str, &str)] = &[
    (
        "common/philox.wgsl",
        include_str!("../../shaders/common/philox.wgsl"),
    ),
    (
        "common/philox_mulhi.wgsl",
        include_str!("../../shaders/common/philox_mulhi.wgsl"),
    ),
    (
        "common/philox_mulhi_u64.wgsl",
        include_str!("../../shaders/common/philox_mulhi_u64.wgsl"),
    ),
    (
        "common/matmul_core.wgsl",
        include_str!("../../shaders/common/matmul_core.wgsl"),
    ),
    (
        "categorical.wgsl",
        include_str!("../../shaders/categorical.wgsl"),
    ),
    ("gmm.wgsl", include_str!("../../shaders/gmm.wgsl")),
    ("colsum.wgsl", include_str!("../../shaders/colsum.wgsl")),
    ("lm.wgsl", include_str!("../../shaders/lm.wgsl")),
    ("matmul.wgsl", include_str!("../../shaders/matmul.wgsl")),
    (
        "matmul_f16.wgsl",
        include_str!("../../shaders/matmul_f16.wgsl"),
    ),
    (
        "matmul_vec4.wgsl",
        include_str!("../../shaders/matmul_vec4.wgsl"),
    ),
    ("probe.wgsl", include_str!("../../shaders/probe.wgsl")),
    ("rng.wgsl", include_str!("../../shaders/rng.wgsl")),
    ("sampling.wgsl", include_str!("../../shaders/sampling.wgsl")),
    ("vae.wgsl", include_str!("../../shaders/vae.wgsl")),
];

/// The directive that [`compose`] expands.
pub const INCLUDE_DIRECTIVE: &str = "//!include ";

/// The raw text of shader `name` (a path relative to `shaders/`).
pub fn source(name: &str) -> Result<&'static str> {
    SOURCES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| *s)
        .ok_or_else(|| Error::Shader(format!("no shader named {name:?} in the registry")))
}

/// Library substitutions for adapters with `SHADER_INT64`: Philox's high-half multiply as one
/// native `u64` product instead of four 16-bit ones (same bits; tests/rng.rs checks both).
pub const NATIVE_INT64: &[(&str, &str)] =
    &[("common/philox_mulhi.wgsl", "common/philox_mulhi_u64.wgsl")];

/// The composed WGSL of shader `name`: its text with every `//!include` expanded.
pub fn compose(name: &str) -> Result<String> {
    compose_with(name, &[])
}

/// [`compose`] with library substitutions: an include of `from` pulls in `to` instead, for each
/// `(from, to)` of `subs`. How a device-specific variant of a library (the native-`u64` Philox
/// multiply) replaces the portable one without any text rewriting inside a file.
pub fn compose_with(name: &str, subs: &[(&str, &str)]) -> Result<String> {
    let mut seen = Vec::new();
    let mut out = String::new();
    compose_into(name, subs, &mut seen, &mut out)?;
    Ok(out)
}

fn compose_into(
    name: &str,
    subs: &[(&str, &str)],
    seen: &mut Vec<String>,
    out: &mut String,
) -> Result<()> {
    if seen.iter().any(|s| s == name) {
        return Ok(());
    }
    seen.push(name.to_string());
    for line in source(name)?.lines() {
        match line.trim_start().strip_prefix(INCLUDE_DIRECTIVE) {
            Some(inc) => {
                let inc = inc.trim();
                let inc = subs
                    .iter()
                    .find(|(from, _)| *from == inc)
                    .map_or(inc, |(_, to)| *to);
                out.push_str(&format!("// ---- begin {inc} (included by {name})\n"));
                compose_into(inc, subs, seen, out)?;
                out.push_str(&format!("// ---- end {inc}\n"));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_is_expanded_once() {
        let s = compose("rng.wgsl").unwrap();
        assert_eq!(s.matches("fn philox4x32_10(").count(), 1);
        assert!(!s.contains("\n//!include"));
    }

    #[test]
    fn substitution_swaps_the_philox_multiply() {
        let portable = compose("rng.wgsl").unwrap();
        let native = compose_with("rng.wgsl", NATIVE_INT64).unwrap();
        assert!(portable.contains("let a_lo = a & 0xFFFFu;"));
        assert!(!native.contains("let a_lo = a & 0xFFFFu;"));
        assert!(native.contains("u64(a) * u64(b)"));
        assert_eq!(native.matches("fn philox_mulhi(").count(), 1);
    }

    #[test]
    fn unknown_shader_is_an_error() {
        assert!(compose("nope.wgsl").is_err());
    }
}
