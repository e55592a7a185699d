//! `collapse info`: the adapters wgpu finds, which one is chosen and why, its limits and
//! features.

use collapse_kernels::Result;
use collapse_kernels::gpu::{self, GpuOptions};

use crate::common::adapter_summaries;

/// `collapse info`'s flags.
#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// List every adapter, the choice (`--adapter` or the automatic one) and its limits and
/// features, as text or JSON; errors when no adapter can be chosen.
pub fn info(options: &GpuOptions, a: &InfoArgs) -> Result<()> {
    let found = adapter_summaries();
    let choice = gpu::choose_adapter(&found, options.adapter.as_deref());
    if a.json {
        let v = serde_json::json!({
            "adapters": found,
            "chosen": choice.as_ref().ok(),
            "error": choice.as_ref().err().map(|e| e.to_string()),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&v).expect("JSON of plain data")
        );
        return choice.map(|_| ());
    }
    println!("adapters found by wgpu: {}", found.len());
    for (i, a) in found.iter().enumerate() {
        println!(
            "  [{i}] {} | backend {} | type {} | driver {}",
            a.name, a.backend, a.device_type, a.driver
        );
    }
    let choice = choice?;
    let a = &found[choice.index];
    println!(
        "\nchosen: [{}] {} — {}",
        choice.index, a.name, choice.reason
    );
    println!("limits:");
    println!(
        "  max storage binding    {:>14} bytes ({} MiB)",
        a.max_storage_binding_bytes,
        a.max_storage_binding_bytes >> 20
    );
    println!("  max buffer             {:>14} bytes", a.max_buffer_bytes);
    println!(
        "  workgroup storage      {:>14} bytes",
        a.max_workgroup_storage_bytes
    );
    println!(
        "  max workgroup size     {:>14} invocations",
        a.max_workgroup_invocations
    );
    println!(
        "  subgroup size          {:>14}",
        format!("{}..{}", a.subgroup_size.0, a.subgroup_size.1)
    );
    let yn = |b: bool| if b { "yes" } else { "no" };
    println!("features:");
    println!("  f16 (SHADER_F16)       {}", yn(a.f16));
    println!("  f64 (SHADER_F64)       {}", yn(a.f64));
    println!("  subgroups (SUBGROUP)   {}", yn(a.subgroups));
    println!("  timestamp queries      {}", yn(a.timestamp_queries));
    println!("  int64 (SHADER_INT64)   {}", yn(a.int64));
    println!("shaders:");
    println!(
        "  runtime checks         {}",
        if options.checked_shaders {
            "on (COLLAPSE_CHECKED_SHADERS=1: naga clamps every index, bounds every loop)"
        } else {
            "off (trusted modules; COLLAPSE_CHECKED_SHADERS=1 turns them on)"
        }
    );
    println!(
        "  Philox multiply        {}",
        if !a.int64 {
            "16-bit halves (no SHADER_INT64)"
        } else if options.emulated_int64 {
            "16-bit halves (COLLAPSE_PHILOX_EMULATED=1)"
        } else {
            "native u64 (COLLAPSE_PHILOX_EMULATED=1 for 16-bit halves)"
        }
    );
    if a.is_cpu() {
        println!(
            "\nnote: this is a software adapter; it is correct but roughly 300x slower than the \
             cpu32 backend. Use it for checks at small sizes; use --backend cpu32 for big runs."
        );
    }
    Ok(())
}
