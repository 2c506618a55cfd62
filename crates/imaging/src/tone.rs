//! Tone and colour: brightness, contrast, saturation, posterisation, lookup tables.

use crate::{Rgba, luma_u8, to_byte};

impl Rgba {
    /// Reduces each colour channel to `levels` evenly spaced values (2..=255; fewer is flatter).
    pub fn posterize(&mut self, levels: u8) {
        let steps = levels.max(2) as u32 - 1;
        let mut lut = [0u8; 256];
        for (i, v) in lut.iter_mut().enumerate() {
            let q = (i as u32 * steps + 127) / 255;
            *v = ((q * 255 + steps / 2) / steps) as u8;
        }
        self.apply_lut(&lut);
    }

    /// Maps every colour byte through `lut`; alpha stays.
    pub fn apply_lut(&mut self, lut: &[u8; 256]) {
        for p in self.data.chunks_exact_mut(4) {
            p[0] = lut[p[0] as usize];
            p[1] = lut[p[1] as usize];
            p[2] = lut[p[2] as usize];
        }
    }

    /// Scales the saturation: 0 greys the image, 1 keeps it, above 1 strengthens colours
    /// (moving each channel away from the pixel's luma).
    pub fn saturate(&mut self, factor: f32) {
        let f = (factor.max(0.0) * 256.0) as i32;
        for p in self.data.chunks_exact_mut(4) {
            let l = luma_u8(p[0], p[1], p[2]) as i32;
            for c in &mut p[..3] {
                *c = (l + (((*c as i32 - l) * f) >> 8)).clamp(0, 255) as u8;
            }
        }
    }

    /// Brightness, contrast and saturation in one pass: each colour channel `v` (`0..=1`)
    /// becomes `(v - 0.5) * contrast + 0.5 + brightness`, clamped to `0..=1`; then each pixel
    /// moves away from its luma `l` (Rec. 601: 0.299 R + 0.587 G + 0.114 B) to
    /// `l + (v - l) * saturation`, clamped. Brightness 0, contrast 1, saturation 1 keep the
    /// image. Alpha stays.
    pub fn adjust(&mut self, brightness: f32, contrast: f32, saturation: f32) {
        let mut lut = [0.0f32; 256];
        for (i, v) in lut.iter_mut().enumerate() {
            let x = i as f32 / 255.0;
            *v = ((x - 0.5) * contrast + 0.5 + brightness).clamp(0.0, 1.0);
        }
        for p in self.data.chunks_exact_mut(4) {
            let [r, g, b] = [lut[p[0] as usize], lut[p[1] as usize], lut[p[2] as usize]];
            let l = 0.299 * r + 0.587 * g + 0.114 * b;
            p[0] = to_byte(l + (r - l) * saturation);
            p[1] = to_byte(l + (g - l) * saturation);
            p[2] = to_byte(l + (b - l) * saturation);
        }
    }
}
