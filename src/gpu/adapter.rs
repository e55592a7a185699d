//! What an adapter is (a serialisable summary for `collapse info`) and which one we choose.

use crate::error::{Error, Result};

/// A serialisable description of one adapter: identity, the limits and the features that
/// matter to this crate's kernels.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AdapterSummary {
    /// Adapter name, e.g. `llvmpipe (LLVM 15.0.6, 256 bits)` or `NVIDIA H100 80GB HBM3`.
    pub name: String,
    /// wgpu backend: Vulkan, Metal, Dx12, Gl.
    pub backend: String,
    /// DiscreteGpu, IntegratedGpu, VirtualGpu, Cpu or Other.
    pub device_type: String,
    /// Driver name and version.
    pub driver: String,
    /// Max bytes one storage binding may cover (kernels chunk their buffers to this).
    pub max_storage_binding_bytes: u64,
    /// Max bytes of one buffer.
    pub max_buffer_bytes: u64,
    /// Bytes of workgroup (shared) memory per workgroup.
    pub max_workgroup_storage_bytes: u32,
    /// Max invocations in one workgroup.
    pub max_workgroup_invocations: u32,
    /// Smallest and largest subgroup size the adapter may use (0 when unknown).
    pub subgroup_size: (u32, u32),
    /// `enable f16;` works.
    pub f16: bool,
    /// f64 arithmetic in shaders (naga's extension).
    pub f64: bool,
    /// Subgroup operations (enabled by the device feature; do not write `enable subgroups;`).
    pub subgroups: bool,
    /// Timestamp queries (per-kernel GPU timing).
    pub timestamp_queries: bool,
    /// 64-bit integers in shaders (`SHADER_INT64`): Philox's multiply runs natively.
    pub int64: bool,
}

impl AdapterSummary {
    /// Summarise a wgpu adapter.
    pub fn of(adapter: &wgpu::Adapter) -> Self {
        let info = adapter.get_info();
        let l = adapter.limits();
        let f = adapter.features();
        Self {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_string(),
            max_storage_binding_bytes: l.max_storage_buffer_binding_size,
            max_buffer_bytes: l.max_buffer_size,
            max_workgroup_storage_bytes: l.max_compute_workgroup_storage_size,
            max_workgroup_invocations: l.max_compute_invocations_per_workgroup,
            subgroup_size: (info.subgroup_min_size, info.subgroup_max_size),
            f16: f.contains(wgpu::Features::SHADER_F16),
            f64: f.contains(wgpu::Features::SHADER_F64),
            subgroups: f.contains(wgpu::Features::SUBGROUP),
            timestamp_queries: f.contains(wgpu::Features::TIMESTAMP_QUERY),
            int64: f.contains(wgpu::Features::SHADER_INT64),
        }
    }

    /// Whether this is a software (CPU) adapter such as Mesa's lavapipe.
    pub fn is_cpu(&self) -> bool {
        self.device_type == "Cpu"
    }
}

/// The adapter chosen and why.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Choice {
    /// Index into the list of adapters.
    pub index: usize,
    /// Why, in words.
    pub reason: String,
}

fn type_rank(device_type: &str) -> u32 {
    match device_type {
        "DiscreteGpu" => 0,
        "IntegratedGpu" => 1,
        "VirtualGpu" => 2,
        "Cpu" => 3,
        _ => 4,
    }
}

fn backend_rank(backend: &str) -> u32 {
    match backend {
        "Vulkan" | "Metal" | "Dx12" => 0,
        _ => 1,
    }
}

/// Choose among `adapters`: the first whose name contains `wanted` (case-insensitive) when
/// given; otherwise a discrete GPU, then integrated, then virtual, then a CPU adapter
/// (lavapipe), preferring Vulkan/Metal/DX12 over GL within a kind. No adapter is an error that
/// names the Debian packages to install.
pub fn choose_adapter(adapters: &[AdapterSummary], wanted: Option<&str>) -> Result<Choice> {
    if adapters.is_empty() {
        return Err(Error::NoAdapter);
    }
    if let Some(w) = wanted.filter(|w| !w.is_empty()) {
        let lw = w.to_lowercase();
        return adapters
            .iter()
            .position(|a| a.name.to_lowercase().contains(&lw))
            .map(|index| Choice {
                index,
                reason: format!("its name contains {w:?} (--adapter / COLLAPSE_ADAPTER)"),
            })
            .ok_or_else(|| Error::AdapterNotFound {
                wanted: w.to_string(),
                available: adapters
                    .iter()
                    .map(|a| format!("{} ({})", a.name, a.backend))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
    }
    let index = (0..adapters.len())
        .min_by_key(|&i| {
            (
                type_rank(&adapters[i].device_type),
                backend_rank(&adapters[i].backend),
                i,
            )
        })
        .unwrap_or(0);
    let a = &adapters[index];
    let reason = match a.device_type.as_str() {
        "DiscreteGpu" => "a discrete GPU is preferred".to_string(),
        "IntegratedGpu" => "an integrated GPU (no discrete one found)".to_string(),
        "Cpu" => "no GPU found; a CPU adapter (e.g. lavapipe) is correct but slow: \
                  use it for small sizes and checks, and the cpu32 backend for big runs"
            .to_string(),
        other => format!("best available ({other})"),
    };
    Ok(Choice { index, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(name: &str, backend: &str, ty: &str) -> AdapterSummary {
        AdapterSummary {
            name: name.into(),
            backend: backend.into(),
            device_type: ty.into(),
            driver: String::new(),
            max_storage_binding_bytes: 0,
            max_buffer_bytes: 0,
            max_workgroup_storage_bytes: 0,
            max_workgroup_invocations: 0,
            subgroup_size: (0, 0),
            f16: false,
            f64: false,
            subgroups: false,
            timestamp_queries: false,
            int64: false,
        }
    }

    #[test]
    fn prefers_discrete_then_vulkan() {
        let a = [
            summary("llvmpipe", "Gl", "Cpu"),
            summary("llvmpipe", "Vulkan", "Cpu"),
            summary("Intel", "Vulkan", "IntegratedGpu"),
            summary("NVIDIA H100", "Vulkan", "DiscreteGpu"),
        ];
        assert_eq!(choose_adapter(&a, None).unwrap().index, 3);
        assert_eq!(choose_adapter(&a[..2], None).unwrap().index, 1);
        assert_eq!(choose_adapter(&a, Some("intel")).unwrap().index, 2);
        assert!(matches!(
            choose_adapter(&a, Some("amd")),
            Err(Error::AdapterNotFound { .. })
        ));
        let e = choose_adapter(&[], None).unwrap_err().to_string();
        assert!(e.contains("mesa-vulkan-drivers libvulkan1"), "{e}");
    }
}
