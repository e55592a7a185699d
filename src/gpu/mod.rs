//! Everything that knows wgpu: adapter choice, the one shared device/queue, buffers, the
//! pipeline cache, per-kernel timing, and the handle cubecl uses to share our device.
//!
//! Set-up follows wgpu's `hello_compute` example, one step at a time: Instance → adapters →
//! choice → Device with the features that matter → error handlers. Every failure the device can
//! report (validation, out-of-memory, loss) is caught with error scopes or the loss callback and
//! returned as an [`Error`]; nothing here panics on a device problem.

pub mod adapter;
pub mod binding;
pub mod shaders;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use wgpu::util::DeviceExt;

pub use adapter::{AdapterSummary, Choice, choose_adapter};
pub use binding::{Bindable, BufferRange, VIEW_ALIGN_BYTES};

use crate::error::{Error, Result};

/// The bit pattern written into output buffers before a kernel runs when poisoning is on: a
/// quiet NaN as f32, so an element a kernel forgot to write fails every comparison.
pub const POISON_WORD: u32 = 0x7FC0_0000;

/// Workgroups per dispatch dimension that every adapter accepts (WebGPU's minimum limit).
pub const MAX_WORKGROUPS_PER_DIM: u32 = 65_535;

/// Options for creating the shared GPU context.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Pick the first adapter whose name contains this (case-insensitive); `None` lets
    /// [`choose_adapter`] rank them (env `COLLAPSE_ADAPTER` is read by the CLI, not here).
    pub adapter: Option<String>,
    /// Fill output buffers with [`POISON_WORD`] before each kernel. Tests turn it on; it costs an
    /// upload per output buffer, so it is off for runs and benches unless `COLLAPSE_POISON=1`.
    pub poison: bool,
    /// Cap on the bytes of one storage binding, below the adapter's own limit. Tests set it
    /// small so the chunking paths run at small sizes; `None` uses the adapter's limit.
    pub binding_limit: Option<u64>,
    /// Record kernels without waiting for them and without timing them, up to
    /// [`MAX_PENDING_PASSES`] per command buffer (training and generational runs, which read
    /// results back only when they need them; every read-back submits what is pending first,
    /// the queue keeps the order, and errors surface at the next submission). Off for benches
    /// and tests, which time every kernel and check it at once.
    pub queued: bool,
    /// Compile shader modules with naga's runtime checks (every index clamped, every loop given
    /// an extra bounding counter) instead of as trusted modules. Off by default: every kernel
    /// guards its own bounds (an invocation past its range returns; loops run to uniform
    /// counts), and Vulkan's robust buffer access still keeps a stray access inside its
    /// binding. The checks can stop a driver from unrolling loops and keeping the matmul's
    /// accumulators in registers; `COLLAPSE_CHECKED_SHADERS=1` (read by the CLI) turns them
    /// back on, so a run on a card can A/B the two.
    pub checked_shaders: bool,
    /// Use the 16-bit-split emulation of Philox's 32×32→64 multiply even where the adapter has
    /// `SHADER_INT64` (where it does, the native `u64` product is the default; both give the
    /// same bits). `COLLAPSE_PHILOX_EMULATED=1` (read by the CLI) sets it.
    pub emulated_int64: bool,
}

/// Where a kernel time came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum TimingSource {
    /// GPU timestamp queries around the compute pass: device time only.
    GpuTimestamp,
    /// Host wall clock around submit + wait (the adapter has no timestamp queries): includes
    /// submission and synchronisation overhead.
    WallClock,
    /// Not timed: the context queues kernels without waiting ([`GpuOptions::queued`]); the
    /// time is 0.
    Queued,
}

/// The time one kernel dispatch took.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KernelTime {
    /// Kernel label (`shader:entry`).
    pub kernel: String,
    /// Seconds.
    pub seconds: f64,
    /// How it was measured.
    pub source: TimingSource,
}

/// How many kernels a context has dispatched and how many times the host has waited for the
/// device, since it was created or last [`GpuContext::reset_counts`]: what the structure tests
/// count (an EM iteration's waits, an LM step's dispatches) and the benches print.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct GpuCounts {
    /// Compute dispatches (WGSL kernels through [`GpuContext::dispatch`]; cubecl's launches are
    /// not seen here).
    pub dispatches: u64,
    /// Host waits for the queue to go idle ([`GpuContext::wait`]: a read-back waits once, a
    /// timed dispatch twice, for the kernel and for its timestamps; a queued dispatch never).
    pub waits: u64,
}

/// The one wgpu device of the process, shared by the WGSL kernels and by cubecl.
pub struct GpuContext {
    /// The wgpu instance the adapter came from.
    pub instance: wgpu::Instance,
    /// The chosen adapter.
    pub adapter: wgpu::Adapter,
    /// The logical device.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
    /// What the adapter says about itself.
    pub info: wgpu::AdapterInfo,
    /// Why this adapter was chosen.
    pub choice_reason: String,
    poison: bool,
    binding_limit: Option<u64>,
    lost: Arc<Mutex<Option<String>>>,
    uncaptured: Arc<Mutex<Vec<String>>>,
    pipelines: Mutex<HashMap<(String, String), Arc<wgpu::ComputePipeline>>>,
    timings: Mutex<Vec<KernelTime>>,
    dispatches: AtomicU64,
    waits: AtomicU64,
    /// Submit kernels without waiting or timing them ([`GpuOptions::queued`]).
    queued: bool,
    checked_shaders: bool,
    emulated_int64: bool,
    /// A queued context's kernels recorded but not yet submitted (see [`GpuContext::flush`]).
    pending: Mutex<Pending>,
    cube: OnceLock<std::result::Result<cubecl::wgpu::WgpuDevice, String>>,
}

/// Compute passes a queued context records into one command buffer before it submits them.
pub const MAX_PENDING_PASSES: usize = 256;

/// Kernels a queued context has recorded and not yet submitted: one command encoder, one compute
/// pass per kernel.
#[derive(Default)]
struct Pending {
    encoder: Option<wgpu::CommandEncoder>,
    passes: usize,
    last: String,
}

/// Record one compute pass into `enc`: `pipeline` with `bind_group` at group 0 over a `groups`
/// grid, timestamps written around it when given.
fn encode_pass(
    enc: &mut wgpu::CommandEncoder,
    kernel: &str,
    pipeline: &wgpu::ComputePipeline,
    bind_group: &wgpu::BindGroup,
    groups: (u32, u32, u32),
    timestamp_writes: Option<wgpu::ComputePassTimestampWrites<'_>>,
) {
    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some(kernel),
        timestamp_writes,
    });
    pass.set_pipeline(pipeline);
    pass.set_bind_group(0, bind_group, &[]);
    pass.dispatch_workgroups(groups.0, groups.1, groups.2);
}

/// The features this crate uses where the adapter has them.
pub fn wanted_features() -> wgpu::Features {
    wgpu::Features::SHADER_F16
        | wgpu::Features::SHADER_F64
        | wgpu::Features::SHADER_INT64
        | wgpu::Features::SUBGROUP
        | wgpu::Features::SUBGROUP_BARRIER
        | wgpu::Features::TIMESTAMP_QUERY
        | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS
}

/// A wgpu instance over the primary native backends (Vulkan, Metal, DX12), or those named by
/// `WGPU_BACKEND` (e.g. `vulkan`, `gl`). The GL/EGL backend is left out by default: probing it
/// costs start-up time (and EGL warnings) on every command, and no adapter it finds is ever
/// preferred over the same device's Vulkan one.
pub fn new_instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY);
    wgpu::Instance::new(desc)
}

/// Every adapter the instance finds, with a summary of each.
pub fn list_adapters(instance: &wgpu::Instance) -> Vec<(wgpu::Adapter, AdapterSummary)> {
    let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    adapters
        .into_iter()
        .map(|a| {
            let s = AdapterSummary::of(&a);
            (a, s)
        })
        .collect()
}

impl GpuContext {
    /// Create the shared context: find the adapters, choose one, open a device on it.
    pub fn new(options: &GpuOptions) -> Result<Arc<Self>> {
        // 1. Instance and adapters.
        let instance = new_instance();
        let found = list_adapters(&instance);
        let summaries: Vec<AdapterSummary> = found.iter().map(|(_, s)| s.clone()).collect();
        // 2. Choice: a named adapter, else discrete > integrated > virtual > CPU.
        let choice = choose_adapter(&summaries, options.adapter.as_deref())?;
        let adapter = found[choice.index].0.clone();
        let info = adapter.get_info();
        // 3. The device, with every feature we can use and the adapter's full limits.
        let features = adapter.features() & wanted_features();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("collapse-kernels"),
            required_features: features,
            required_limits: adapter.limits(),
            ..Default::default()
        }))
        .map_err(|source| Error::RequestDevice {
            adapter: info.name.clone(),
            source,
        })?;
        // 4. Device loss and errors outside any scope are recorded, not panicked on.
        let lost = Arc::new(Mutex::new(None));
        let lost_cb = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            *lost_cb.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("{reason:?}: {msg}"));
        });
        let uncaptured = Arc::new(Mutex::new(Vec::new()));
        let unc = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            unc.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(e.to_string());
        }));
        Ok(Arc::new(Self {
            instance,
            adapter,
            device,
            queue,
            info,
            choice_reason: choice.reason,
            poison: options.poison,
            binding_limit: options.binding_limit,
            queued: options.queued,
            checked_shaders: options.checked_shaders,
            emulated_int64: options.emulated_int64,
            pending: Mutex::new(Pending::default()),
            lost,
            uncaptured,
            pipelines: Mutex::new(HashMap::new()),
            timings: Mutex::new(Vec::new()),
            dispatches: AtomicU64::new(0),
            waits: AtomicU64::new(0),
            cube: OnceLock::new(),
        }))
    }

    /// The device's features (those of [`wanted_features`] the adapter has).
    pub fn features(&self) -> wgpu::Features {
        self.device.features()
    }

    /// The device's limits.
    pub fn limits(&self) -> wgpu::Limits {
        self.device.limits()
    }

    /// Whether output buffers are poisoned before kernels.
    pub fn poisoning(&self) -> bool {
        self.poison
    }

    /// Whether shader modules are compiled with naga's runtime checks
    /// ([`GpuOptions::checked_shaders`]); `false`: trusted modules.
    pub fn checked_shaders(&self) -> bool {
        self.checked_shaders
    }

    /// Whether Philox's high-half multiply uses the native `u64` product (the adapter has
    /// `SHADER_INT64` and [`GpuOptions::emulated_int64`] is off) rather than 16-bit halves.
    pub fn native_int64(&self) -> bool {
        !self.emulated_int64 && self.features().contains(wgpu::Features::SHADER_INT64)
    }

    /// The library substitutions [`shaders::compose_with`] applies on this device: the
    /// native-`u64` Philox multiply in place of the emulated one where [`Self::native_int64`].
    pub fn shader_substitutions(&self) -> &'static [(&'static str, &'static str)] {
        if self.native_int64() {
            shaders::NATIVE_INT64
        } else {
            &[]
        }
    }

    /// Whether kernel times come from GPU timestamps.
    pub fn has_timestamps(&self) -> bool {
        self.features().contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// The largest number of `elem_bytes`-sized elements one storage binding may hold here
    /// (and at most 2²⁸, so element indices ×4 stay inside u32 in the kernels). Kernels chunk
    /// their outputs to this.
    pub fn max_binding_elements(&self, elem_bytes: u64) -> u64 {
        let l = self.limits();
        let bytes = l
            .max_storage_buffer_binding_size
            .min(l.max_buffer_size)
            .min(self.binding_limit.unwrap_or(u64::MAX));
        (bytes / elem_bytes).min(1 << 28)
    }

    /// A `(x, y)` workgroup grid covering `groups` workgroups with x ≤ 65535.
    pub fn grid(groups: u32) -> (u32, u32) {
        let x = groups.clamp(1, MAX_WORKGROUPS_PER_DIM);
        (x, groups.div_ceil(x).max(1))
    }

    /// Fail with [`Error::DeviceLost`] if the device is gone, or with the first error that
    /// escaped every error scope.
    pub fn check_health(&self) -> Result<()> {
        if let Some(why) = self.lost.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Err(Error::DeviceLost(why));
        }
        let mut unc = self.uncaptured.lock().unwrap_or_else(|e| e.into_inner());
        if !unc.is_empty() {
            let msg = unc.drain(..).collect::<Vec<_>>().join("; ");
            return Err(Error::Validation {
                what: "an earlier GPU operation".into(),
                message: msg,
            });
        }
        Ok(())
    }

    /// Run `f` inside validation and out-of-memory error scopes and turn what they catch into
    /// errors naming `what`.
    pub fn scoped<T>(&self, what: &str, f: impl FnOnce() -> T) -> Result<T> {
        self.check_health()?;
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let v = pollster::block_on(val.pop());
        let o = pollster::block_on(oom.pop());
        if let Some(e) = o {
            return Err(Error::OutOfMemory {
                what: what.into(),
                message: e.to_string(),
            });
        }
        if let Some(e) = v {
            return Err(Error::Validation {
                what: what.into(),
                message: e.to_string(),
            });
        }
        self.check_health()?;
        Ok(out)
    }

    /// The compute pipeline of `entry` in the composed shader `shader` (cached).
    pub fn pipeline(&self, shader: &str, entry: &str) -> Result<Arc<wgpu::ComputePipeline>> {
        self.pipeline_with(shader, entry, &[])
    }

    /// The compute pipeline of `entry` in the composed shader `shader` with its
    /// pipeline-overridable constants (`override` declarations) set to `constants` (cached per
    /// set of values): how the matmul kernels get their per-adapter tile shape.
    pub fn pipeline_with(
        &self,
        shader: &str,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> Result<Arc<wgpu::ComputePipeline>> {
        let mut name = entry.to_string();
        for (k, v) in constants {
            name += &format!(" {k}={v}");
        }
        let key = (shader.to_string(), name);
        if let Some(p) = self
            .pipelines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(p.clone());
        }
        let src = shaders::compose_with(shader, self.shader_substitutions())?;
        let p = Arc::new(self.pipeline_from_source_with(shader, &src, entry, constants)?);
        self.pipelines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, p.clone());
        Ok(p)
    }

    /// Compile WGSL `src` and build the pipeline of `entry` (uncached; errors come back).
    pub fn pipeline_from_source(
        &self,
        label: &str,
        src: &str,
        entry: &str,
    ) -> Result<wgpu::ComputePipeline> {
        self.pipeline_from_source_with(label, src, entry, &[])
    }

    /// [`GpuContext::pipeline_from_source`] with pipeline-overridable constants.
    pub fn pipeline_from_source_with(
        &self,
        label: &str,
        src: &str,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> Result<wgpu::ComputePipeline> {
        self.scoped(&format!("compiling {label}:{entry}"), || {
            let desc = wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            };
            let module = if self.checked_shaders {
                self.device.create_shader_module(desc)
            } else {
                // SAFETY: wgpu's contract for trusted modules is that the shader neither
                // indexes outside its bindings nor loops forever. Every kernel of this crate
                // returns for invocations past its range, indexes only below the uniform
                // counts it is given (the host checks those against the buffer sizes before
                // binding), and runs loops to uniform bounds; on Vulkan the driver's robust
                // buffer access keeps even a stray access inside its binding. Tests run the
                // trusted modules with poisoned outputs against the f64 references.
                unsafe {
                    self.device
                        .create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
                }
            };
            self.device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(&format!("{label}:{entry}")),
                    layout: None,
                    module: &module,
                    entry_point: Some(entry),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants,
                        ..Default::default()
                    },
                    cache: None,
                })
        })
    }

    /// A storage buffer of `bytes` bytes that kernels write and the host can read back
    /// (`STORAGE | COPY_SRC | COPY_DST`), poisoned with [`POISON_WORD`] when poisoning is on.
    pub fn output_buffer(&self, label: &str, bytes: u64) -> Result<wgpu::Buffer> {
        let max = self.limits().max_buffer_size;
        if bytes > max {
            return Err(Error::InvalidArgument(format!(
                "buffer {label} of {bytes} bytes exceeds the adapter's max buffer size {max}"
            )));
        }
        let buf = self.scoped(&format!("allocating {label}"), || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes.max(4),
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })?;
        if self.poison {
            let words = vec![POISON_WORD; (bytes.max(4) / 4) as usize];
            self.queue
                .write_buffer(&buf, 0, bytemuck::cast_slice(&words));
        }
        Ok(buf)
    }

    /// A storage buffer initialised from `data` (`STORAGE | COPY_SRC | COPY_DST`).
    pub fn input_buffer(&self, label: &str, data: &[u8]) -> Result<wgpu::Buffer> {
        self.scoped(&format!("uploading {label}"), || {
            self.device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents: data,
                    usage: wgpu::BufferUsages::STORAGE
                        | wgpu::BufferUsages::COPY_SRC
                        | wgpu::BufferUsages::COPY_DST,
                })
        })
    }

    /// A uniform buffer holding `data`.
    pub fn uniform_buffer(&self, label: &str, data: &[u8]) -> Result<wgpu::Buffer> {
        self.scoped(&format!("uploading {label}"), || {
            self.device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents: data,
                    usage: wgpu::BufferUsages::UNIFORM,
                })
        })
    }

    /// Bind `buffers` in order to bindings 0.. of group 0 of `pipeline`.
    pub fn bind(
        &self,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[&dyn Bindable],
    ) -> Result<wgpu::BindGroup> {
        let numbered: Vec<(u32, &dyn Bindable)> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| (i as u32, *b))
            .collect();
        self.bind_at(pipeline, &numbered)
    }

    /// Bind each `(binding, buffer)` in group 0 of `pipeline` (for modules whose entry points
    /// use different subsets of the bindings).
    pub fn bind_at(
        &self,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[(u32, &dyn Bindable)],
    ) -> Result<wgpu::BindGroup> {
        self.scoped("binding buffers", || {
            let entries: Vec<wgpu::BindGroupEntry> = buffers
                .iter()
                .map(|(i, b)| wgpu::BindGroupEntry {
                    binding: *i,
                    resource: b.resource(),
                })
                .collect();
            self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            })
        })
    }

    /// Dispatch `pipeline` over a `groups` grid, wait for it, and return (and record) its time:
    /// from GPU timestamps where the adapter has them, else wall clock. A queued context
    /// ([`GpuOptions::queued`]) submits and returns at once, recording nothing.
    pub fn dispatch(
        &self,
        kernel: &str,
        pipeline: &wgpu::ComputePipeline,
        bind_group: &wgpu::BindGroup,
        groups: (u32, u32),
    ) -> Result<KernelTime> {
        self.dispatch3(kernel, pipeline, bind_group, (groups.0, groups.1, 1))
    }

    /// [`GpuContext::dispatch`] over a three-dimensional grid.
    pub fn dispatch3(
        &self,
        kernel: &str,
        pipeline: &wgpu::ComputePipeline,
        bind_group: &wgpu::BindGroup,
        groups: (u32, u32, u32),
    ) -> Result<KernelTime> {
        self.dispatches.fetch_add(1, Ordering::Relaxed);
        if self.queued {
            return self.record(kernel, pipeline, bind_group, groups);
        }
        let stamps = self.has_timestamps();
        let start = Instant::now();
        let staging = self.scoped(&format!("dispatching {kernel}"), || {
            let mut enc = self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some(kernel),
                });
            let query = stamps.then(|| {
                let set = self.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("kernel timestamps"),
                    ty: wgpu::QueryType::Timestamp,
                    count: 2,
                });
                let resolve = self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("timestamp resolve"),
                    size: 16,
                    usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                });
                let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("timestamp staging"),
                    size: 16,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                (set, resolve, staging)
            });
            let stamps = query
                .as_ref()
                .map(|(set, _, _)| wgpu::ComputePassTimestampWrites {
                    query_set: set,
                    beginning_of_pass_write_index: Some(0),
                    end_of_pass_write_index: Some(1),
                });
            encode_pass(&mut enc, kernel, pipeline, bind_group, groups, stamps);
            if let Some((set, resolve, staging)) = &query {
                enc.resolve_query_set(set, 0..2, resolve, 0);
                enc.copy_buffer_to_buffer(resolve, 0, staging, 0, 16);
            }
            self.queue.submit([enc.finish()]);
            query.map(|(_, _, staging)| staging)
        })?;
        self.wait()?;
        let wall = start.elapsed().as_secs_f64();
        let time = match staging {
            Some(staging) => {
                let t: Vec<u64> = self.read_mappable(&staging, 2)?;
                let ns =
                    t[1].saturating_sub(t[0]) as f64 * self.queue.get_timestamp_period() as f64;
                KernelTime {
                    kernel: kernel.into(),
                    seconds: ns * 1e-9,
                    source: TimingSource::GpuTimestamp,
                }
            }
            None => KernelTime {
                kernel: kernel.into(),
                seconds: wall,
                source: TimingSource::WallClock,
            },
        };
        self.timings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(time.clone());
        Ok(time)
    }

    /// A queued context's dispatch: record a compute pass into the pending command buffer,
    /// submitted by [`GpuContext::flush`] once it holds [`MAX_PENDING_PASSES`] passes or when
    /// anything reads back or waits. One submission per step instead of one per kernel: the
    /// queue keeps the order either way.
    fn record(
        &self,
        kernel: &str,
        pipeline: &wgpu::ComputePipeline,
        bind_group: &wgpu::BindGroup,
        groups: (u32, u32, u32),
    ) -> Result<KernelTime> {
        self.check_health()?;
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let enc = p.encoder.get_or_insert_with(|| {
            self.device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("queued kernels"),
                })
        });
        encode_pass(enc, kernel, pipeline, bind_group, groups, None);
        p.passes += 1;
        p.last = kernel.to_string();
        if p.passes >= MAX_PENDING_PASSES {
            self.submit_pending(&mut p)?;
        }
        Ok(KernelTime {
            kernel: kernel.into(),
            seconds: 0.0,
            source: TimingSource::Queued,
        })
    }

    /// Submit the kernels a queued context has recorded (nothing when there are none). Every
    /// read-back and wait flushes first, so the host never sees a result before its kernel ran.
    /// An encoding error (a bad binding, say) surfaces here, naming the last kernel recorded.
    pub fn flush(&self) -> Result<()> {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        self.submit_pending(&mut p)
    }

    fn submit_pending(&self, p: &mut Pending) -> Result<()> {
        let Some(enc) = p.encoder.take() else {
            return Ok(());
        };
        let what = format!(
            "submitting {} queued kernels (the last {})",
            std::mem::take(&mut p.passes),
            p.last
        );
        self.scoped(&what, || {
            self.queue.submit([enc.finish()]);
        })
    }

    /// Block until the queue is idle.
    pub fn wait(&self) -> Result<()> {
        self.flush()?;
        self.waits.fetch_add(1, Ordering::Relaxed);
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| match self.check_health() {
                Err(lost) => lost,
                Ok(()) => Error::Readback(e.to_string()),
            })?;
        self.check_health()
    }

    /// Copy the first `count` elements of `buf` (a `COPY_SRC` buffer, or a range of one) back
    /// to the host.
    pub fn read_buffer<T: bytemuck::Pod>(
        &self,
        buf: &dyn Bindable,
        count: usize,
    ) -> Result<Vec<T>> {
        let bytes = (count * std::mem::size_of::<T>()) as u64;
        if count == 0 {
            return Ok(Vec::new());
        }
        self.flush()?;
        let staging = self.scoped("copying for readback", || {
            let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback staging"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let mut enc = self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
            enc.copy_buffer_to_buffer(buf.buffer(), buf.offset(), &staging, 0, bytes);
            self.queue.submit([enc.finish()]);
            staging
        })?;
        self.read_mappable(&staging, count)
    }

    /// Map a `MAP_READ` buffer and copy its first `count` elements out.
    fn read_mappable<T: bytemuck::Pod>(
        &self,
        staging: &wgpu::Buffer,
        count: usize,
    ) -> Result<Vec<T>> {
        let bytes = (count * std::mem::size_of::<T>()) as u64;
        let slice = staging.slice(0..bytes);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        rx.recv()
            .map_err(|e| Error::Readback(e.to_string()))?
            .map_err(|e| Error::Readback(e.to_string()))?;
        let out = {
            let view = slice
                .get_mapped_range()
                .map_err(|e| Error::Readback(e.to_string()))?;
            bytemuck::pod_collect_to_vec(&view)
        };
        staging.unmap();
        Ok(out)
    }

    /// Dispatches and waits since creation or the last [`GpuContext::reset_counts`].
    pub fn counts(&self) -> GpuCounts {
        GpuCounts {
            dispatches: self.dispatches.load(Ordering::Relaxed),
            waits: self.waits.load(Ordering::Relaxed),
        }
    }

    /// Set the dispatch and wait counters to zero (before the work a test or bench counts).
    pub fn reset_counts(&self) {
        self.dispatches.store(0, Ordering::Relaxed);
        self.waits.store(0, Ordering::Relaxed);
    }

    /// Kernel times recorded since the last call (and clear them).
    pub fn take_timings(&self) -> Vec<KernelTime> {
        std::mem::take(&mut *self.timings.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The cubecl device registered on this context's wgpu device (registered once, on first
    /// use), so cubecl kernels run on the same device and queue as the WGSL kernels.
    pub fn cube_device(&self) -> Result<cubecl::wgpu::WgpuDevice> {
        self.cube
            .get_or_init(|| {
                cubecl::wgpu::try_init_device(
                    cubecl::wgpu::WgpuSetup {
                        instance: self.instance.clone(),
                        adapter: self.adapter.clone(),
                        device: self.device.clone(),
                        queue: self.queue.clone(),
                        backend: self.info.backend,
                    },
                    Default::default(),
                )
                .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(Error::Cubecl)
    }

    /// A cubecl compute client on the shared device.
    pub fn cube_client(&self) -> Result<cubecl::prelude::Client> {
        Ok(cubecl::Device::Wgpu(self.cube_device()?).client())
    }
}
