//! Image buffers and filters, pure Rust, shared by the Likeness host and the style SDK.
//!
//! [`Rgba`] is an 8-bit RGBA image (straight alpha); [`Plane`] is one channel of `f32` values,
//! nominally `0.0..=1.0`, for intermediate results (luma, edges, masks, textures). The same
//! code runs inside Rust style components (`wasm32-wasip2`, through `likeness-sdk`) and in the
//! host, which runs the [`canvas`] operations on behalf of styles in any language.
//!
//! Everything is written for speed in WebAssembly as well as natively: row-major loops over
//! slices, separable filters, box filters with running sums (cost independent of the radius),
//! fixed-point arithmetic and lookup tables instead of per-pixel divisions, and no allocation
//! per pixel. Nothing here allocates more than a few buffers of the image's size.
//!
//! Borders are handled by clamping (the edge pixel repeats), except in resampling, whose
//! kernels are cut at the border and renormalised. Alpha is carried through unchanged by every
//! filter of the colour channels.

#![deny(missing_docs)]

mod blend;
pub mod canvas;
mod mask;
pub mod noise;
mod palette;
mod plane;
mod resample;
mod rgba;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd;
mod tone;

pub use blend::BlendMode;
pub use mask::ellipse_mask;
pub use palette::{Color, nearest_color};
pub use plane::Plane;
pub use resample::Filter;
pub use rgba::{Rgba, luma_u8, to_byte};

/// The larger of `a` and `b`: `a.max(b)` unless `b` is NaN (then `b`), written as a comparison.
/// In WebAssembly `f32::max`'s NaN rule compiles to a call of libm's `fmaxf` per value, which
/// also keeps the loop around it from vectorising; this is one `select`.
#[inline(always)]
pub fn max_f32(a: f32, b: f32) -> f32 {
    if a > b { a } else { b }
}

/// The smaller of `a` and `b`: `a.min(b)` unless `b` is NaN (then `b`), written as a
/// comparison (see [`max_f32`]).
#[inline(always)]
pub fn min_f32(a: f32, b: f32) -> f32 {
    if a < b { a } else { b }
}

/// A pixel buffer that does not make an image: an empty side, or a length that is not
/// `width * height * 4`. The message says which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeError(pub String);

impl std::fmt::Display for SizeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SizeError {}

#[cfg(test)]
mod tests;
