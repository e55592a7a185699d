//! The crate's error type: every failure a user can cause or meet (no adapter, bad argument,
//! GPU validation error, out-of-memory, lost device) comes back as a [`Error`], never a panic.

/// Debian packages that give wgpu a (software) Vulkan device on a machine without a GPU.
pub const VULKAN_PACKAGES: &str = "mesa-vulkan-drivers libvulkan1";

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// wgpu found no adapter at all.
    #[error(
        "no GPU or software adapter found by wgpu; on Debian install `apt-get install {VULKAN_PACKAGES}` \
         (Mesa's lavapipe gives a CPU Vulkan device), or use a CPU backend (`--backend cpu32`)"
    )]
    NoAdapter,
    /// `--adapter` / `COLLAPSE_ADAPTER` named no adapter wgpu found.
    #[error("no adapter name contains {wanted:?}; adapters found: {available}")]
    AdapterNotFound {
        /// The substring asked for.
        wanted: String,
        /// Names of the adapters found, comma-separated.
        available: String,
    },
    /// The adapter refused to create a device.
    #[error("could not create a device on adapter {adapter:?}: {source}")]
    RequestDevice {
        /// Adapter name.
        adapter: String,
        /// wgpu's reason.
        source: wgpu::RequestDeviceError,
    },
    /// A wgpu validation error (a bug in a kernel or its launch, or a limit exceeded).
    #[error("GPU validation error in {what}: {message}")]
    Validation {
        /// What was being done.
        what: String,
        /// wgpu's description.
        message: String,
    },
    /// The device ran out of memory.
    #[error("GPU out of memory in {what}: {message}")]
    OutOfMemory {
        /// What was being done.
        what: String,
        /// wgpu's description.
        message: String,
    },
    /// The device was lost (driver reset, removal, or destroyed).
    #[error("GPU device lost: {0}")]
    DeviceLost(String),
    /// Mapping a buffer for readback failed.
    #[error("reading back GPU buffer failed: {0}")]
    Readback(String),
    /// cubecl reported an error.
    #[error("cubecl: {0}")]
    Cubecl(String),
    /// A backend name that is not one of cpu64, cpu32, wgsl, cube.
    #[error("unknown backend {0:?}; choose one of cpu64, cpu32, wgsl, cube")]
    UnknownBackend(String),
    /// A shader name or include that is not in the embedded shader registry.
    #[error("shader error: {0}")]
    Shader(String),
    /// A data file that cannot be read or holds values we cannot use (names file, line/row).
    #[error("bad data: {0}")]
    Data(String),
    /// A file-system error (names the file).
    #[error("I/O error: {0}")]
    Io(String),
    /// A numerical failure the caller can act on (e.g. a covariance that is not positive
    /// definite: increase `reg_covar`).
    #[error("numerical problem: {0}")]
    Numerical(String),
    /// An operation this backend does not provide (yet).
    #[error("{0}")]
    Unsupported(String),
    /// An argument outside what an operation accepts.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
