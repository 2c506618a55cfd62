//! The watercolor's per-pixel colour steps: the paint over white paper and the paper's tone
//! and grain. Natively each colour channel is computed in turn; in WebAssembly with SIMD128 the
//! three channels (and alpha, which is kept) are the lanes of one vector, with the same
//! floating-point operations in the same order on each, so the bytes are the same
//! (`tests/plans.rs` compares the component with its native twin byte for byte).

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
use likeness_sdk::image::to_byte;

/// Darkens colour `c` (0..1) by pigment density `d` (1: unchanged, above 1: more pigment),
/// as in Bousseau et al.'s watercolor model: `c * (1 - (1 - c) * (d - 1))`.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline]
fn pigment(c: f32, d: f32) -> f32 {
    (c * (1.0 - (1.0 - c) * (d - 1.0))).clamp(0.0, 1.0)
}

/// Paint of density `d` over white paper for the RGBA pixel `p`, darkened by the pencil's
/// `ink` and faded towards bare paper by `fade` (1: all paint); alpha stays.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline]
pub(crate) fn paint(p: &mut [u8], d: f32, ink: f32, fade: f32) {
    for c in &mut p[..3] {
        // Lighter: paint over white paper.
        let v = 0.12 + 0.88 * (*c as f32 * (1.0 / 255.0));
        let v = pigment(v, d) * ink;
        *c = to_byte(1.0 + (v - 1.0) * fade);
    }
}

/// The RGBA pixel `p` laid on paper: pigment of density `d` settled in the grain, times the
/// paper's `tone`; alpha stays.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline]
pub(crate) fn on_paper(p: &mut [u8], d: f32, tone: f32) {
    for c in &mut p[..3] {
        *c = to_byte(pigment(*c as f32 * (1.0 / 255.0), d) * tone);
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub(crate) use simd::{on_paper, paint};

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd {
    use core::arch::wasm32::*;

    /// The four bytes of `p` as `f32` lanes, each divided by 255 as `c as f32 * (1.0 / 255.0)`.
    #[inline(always)]
    fn unit(p: &[u8]) -> v128 {
        let px = u32::from_le_bytes([p[0], p[1], p[2], p[3]]);
        let bytes = u32x4_extend_low_u16x8(u16x8_extend_low_u8x16(u32x4_splat(px)));
        f32x4_mul(f32x4_convert_u32x4(bytes), f32x4_splat(1.0 / 255.0))
    }

    /// `f32::clamp(x, lo, hi)` per lane, NaN kept as it is.
    #[inline(always)]
    fn clamp(x: v128, lo: f32, hi: f32) -> v128 {
        let (lo, hi) = (f32x4_splat(lo), f32x4_splat(hi));
        let x = v128_bitselect(lo, x, f32x4_lt(x, lo));
        v128_bitselect(hi, x, f32x4_gt(x, hi))
    }

    /// `pigment` per lane.
    #[inline(always)]
    fn pigment(c: v128, d: f32) -> v128 {
        let one = f32x4_splat(1.0);
        let darker = f32x4_mul(f32x4_sub(one, c), f32x4_splat(d - 1.0));
        clamp(f32x4_mul(c, f32x4_sub(one, darker)), 0.0, 1.0)
    }

    /// `to_byte` of lanes 0 to 2 into `p[..3]`: `(v * 255 + 0.5)` clamped to `0..=255` (NaN
    /// to 0) and truncated, as `as u8` does.
    #[inline(always)]
    fn store_colour(v: v128, p: &mut [u8]) {
        let v = f32x4_add(f32x4_mul(v, f32x4_splat(255.0)), f32x4_splat(0.5));
        // pmax(0, v) is v when 0 < v, else 0 (NaN too); pmin(255, v) is v when v < 255.
        let v = f32x4_pmin(f32x4_splat(255.0), f32x4_pmax(f32x4_splat(0.0), v));
        let words = i32x4_trunc_sat_f32x4(v);
        let bytes = u8x16_narrow_i16x8(i16x8_narrow_i32x4(words, words), words);
        let px = (i32x4_extract_lane::<0>(bytes) as u32).to_le_bytes();
        p[..3].copy_from_slice(&px[..3]);
    }

    /// `paint` of the scalar path.
    #[inline]
    pub(crate) fn paint(p: &mut [u8], d: f32, ink: f32, fade: f32) {
        let v = f32x4_add(f32x4_splat(0.12), f32x4_mul(f32x4_splat(0.88), unit(p)));
        let v = f32x4_mul(pigment(v, d), f32x4_splat(ink));
        let one = f32x4_splat(1.0);
        store_colour(
            f32x4_add(one, f32x4_mul(f32x4_sub(v, one), f32x4_splat(fade))),
            p,
        );
    }

    /// `on_paper` of the scalar path.
    #[inline]
    pub(crate) fn on_paper(p: &mut [u8], d: f32, tone: f32) {
        store_colour(f32x4_mul(pigment(unit(p), d), f32x4_splat(tone)), p);
    }
}
