//! The float type the CPU backends are generic over: `cpu64` instantiates their shared code with
//! f64, `cpu32` with f32, so the two differ only in precision, never in algorithm or order.

use crate::rng;

/// f32 or f64 as the CPU kernels need them.
pub trait Real:
    Copy + Send + Sync + std::ops::Add<Output = Self> + std::ops::Mul<Output = Self> + 'static
{
    /// Round an f64 to this type.
    fn from_f64(v: f64) -> Self;
    /// Widen (exactly) to f64.
    fn to_f64(self) -> f64;
    /// The four Box–Muller normals of one Philox block, in this precision.
    fn normals(block: [u32; 4]) -> [Self; 4];
}

impl Real for f64 {
    fn from_f64(v: f64) -> Self {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn normals(block: [u32; 4]) -> [Self; 4] {
        rng::normals_f64(block)
    }
}

impl Real for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn normals(block: [u32; 4]) -> [Self; 4] {
        rng::normals_f32(block)
    }
}

/// What the categorical sampler needs beyond [`Real`]: ordering, exp, division, and the
/// uniform conversion of this precision.
pub trait RealCat:
    Real + PartialOrd + std::ops::Sub<Output = Self> + std::ops::Div<Output = Self>
{
    /// e^self.
    fn exp(self) -> Self;
    /// The uniform in `[0, 1)` of a raw draw, as [`crate::rng`] defines it for this precision.
    fn unit(x: u32) -> Self;
}

impl RealCat for f64 {
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn unit(x: u32) -> Self {
        rng::unit_f64(x)
    }
}

impl RealCat for f32 {
    fn exp(self) -> Self {
        f32::exp(self)
    }
    fn unit(x: u32) -> Self {
        rng::unit_f32(x)
    }
}
