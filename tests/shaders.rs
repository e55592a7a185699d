//! Every WGSL file in `shaders/` parses and validates with naga (no device needed), is in the
//! embedded registry, and begins with the header the style guide asks for.

use std::path::{Path, PathBuf};

use collapse_kernels::gpu::shaders;

fn wgsl_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            wgsl_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "wgsl") {
            out.push(p);
        }
    }
}

fn all_shader_names() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files = Vec::new();
    wgsl_files(&root, &mut files);
    let mut names: Vec<String> = files
        .iter()
        .map(|p| {
            p.strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/")
        })
        .collect();
    names.sort();
    assert!(!names.is_empty());
    names
}

/// The registry and the folder hold the same files: nothing embedded that is not on disk (a
/// renamed or deleted shader), no file on disk left out (checked file by file below).
#[test]
fn the_registry_is_the_folder() {
    let mut registered: Vec<String> = shaders::SOURCES
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    registered.sort();
    assert_eq!(registered, all_shader_names());
}

#[test]
fn every_file_is_registered() {
    for name in all_shader_names() {
        let on_disk = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("shaders")
                .join(&name),
        )
        .unwrap();
        assert_eq!(
            shaders::source(&name).unwrap_or_else(|e| panic!("{name}: {e}")),
            on_disk,
            "{name}"
        );
    }
}

#[test]
fn every_file_validates_with_naga() {
    /// Libraries that call functions their includer defines say so and are validated through
    /// the kernels that include them.
    const TEMPLATE: &str = "validated through the kernels that include it";
    let names = all_shader_names();
    for name in &names {
        let src = shaders::compose(name).unwrap();
        if shaders::source(name)
            .unwrap()
            .replace("\n//", "")
            .contains(TEMPLATE)
        {
            let includer = names.iter().find(|n| {
                *n != name
                    && shaders::source(n)
                        .unwrap()
                        .contains(&format!("{}{name}", shaders::INCLUDE_DIRECTIVE))
            });
            assert!(
                includer.is_some(),
                "{name}: template library included by no kernel"
            );
            continue;
        }
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(&src)));
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(&src)));
    }
}

#[test]
fn every_file_has_a_header() {
    for name in all_shader_names() {
        let src = shaders::source(&name).unwrap();
        let header: String = src
            .lines()
            .take_while(|l| l.starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(header.lines().count() >= 3, "{name}: header too short");
        let lower = header.to_lowercase();
        if src.contains("@compute") {
            for word in ["binding", "layout", "workgroup"] {
                assert!(
                    lower.contains(word),
                    "{name}: header does not state its {word}"
                );
            }
        } else {
            assert!(
                lower.contains("library"),
                "{name}: a file with no entry point must say it is a library"
            );
        }
    }
}

#[test]
fn naga_rejects_a_broken_shader() {
    // The validation above can fail: a type error is caught.
    let src = "@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }";
    assert!(naga::front::wgsl::parse_str(src).is_err());
}
