//! Layering two images: blend modes with opacity (the W3C compositing formulas, source-over
//! with straight alpha) and masked composition.

use crate::{Rgba, SizeError, luma_u8, to_byte};

/// How [`Rgba::blend_layer`] mixes a layer's colour `s` with the backdrop's `b` (both `0..=1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlendMode {
    /// `s`.
    Normal,
    /// `b * s`: darkens.
    Multiply,
    /// `b + s - b * s`: lightens.
    Screen,
    /// Multiply where the backdrop is dark, screen where it is light: more contrast.
    Overlay,
    /// A gentle overlay: the W3C soft-light formula.
    SoftLight,
}

impl BlendMode {
    /// The mode's result for backdrop `b` and source `s`.
    #[inline]
    fn mix(self, b: f32, s: f32) -> f32 {
        match self {
            BlendMode::Normal => s,
            BlendMode::Multiply => b * s,
            BlendMode::Screen => b + s - b * s,
            BlendMode::Overlay => {
                if b <= 0.5 {
                    2.0 * b * s
                } else {
                    1.0 - 2.0 * (1.0 - b) * (1.0 - s)
                }
            }
            BlendMode::SoftLight => {
                if s <= 0.5 {
                    b - (1.0 - 2.0 * s) * b * (1.0 - b)
                } else {
                    let d = if b <= 0.25 {
                        ((16.0 * b - 12.0) * b + 4.0) * b
                    } else {
                        b.sqrt()
                    };
                    b + (2.0 * s - 1.0) * (d - b)
                }
            }
        }
    }
}

fn same_size(a: &Rgba, b: &Rgba, what: &str) -> Result<(), SizeError> {
    if (a.width, a.height) == (b.width, b.height) {
        Ok(())
    } else {
        Err(SizeError(format!(
            "the {what} is {} x {} but the image is {} x {}",
            b.width, b.height, a.width, a.height
        )))
    }
}

impl Rgba {
    /// `top` laid over this image with `mode`, its alpha scaled by `opacity` (`0..=1`): the
    /// W3C compositing model, `Cs' = (1 - ab) Cs + ab B(Cb, Cs)` then source-over. With opaque
    /// images this is `b + opacity * (B(b, s) - b)` per channel.
    pub fn blend_layer(
        &self,
        top: &Rgba,
        mode: BlendMode,
        opacity: f32,
    ) -> Result<Rgba, SizeError> {
        same_size(self, top, "layer")?;
        let opacity = if opacity.is_nan() {
            0.0
        } else {
            opacity.clamp(0.0, 1.0)
        };
        let unit = |v: u8| v as f32 * (1.0 / 255.0);
        let mut out = self.clone();
        for (o, t) in out.data.chunks_exact_mut(4).zip(top.data.chunks_exact(4)) {
            let ab = unit(o[3]);
            let a_s = unit(t[3]) * opacity;
            if a_s == 0.0 {
                continue;
            }
            let ao = a_s + ab * (1.0 - a_s);
            for c in 0..3 {
                let (b, s) = (unit(o[c]), unit(t[c]));
                let mixed = (1.0 - ab) * s + ab * mode.mix(b, s);
                o[c] = to_byte((a_s * mixed + ab * b * (1.0 - a_s)) / ao);
            }
            o[3] = to_byte(ao);
        }
        Ok(out)
    }

    /// `top` where `mask`'s luma is white, this image where it is black, in between in
    /// proportion (every channel, alpha included; rounded). All three the same size.
    pub fn composite(&self, top: &Rgba, mask: &Rgba) -> Result<Rgba, SizeError> {
        same_size(self, top, "top image")?;
        same_size(self, mask, "mask")?;
        let mut out = self.clone();
        for ((o, t), m) in out
            .data
            .chunks_exact_mut(4)
            .zip(top.data.chunks_exact(4))
            .zip(mask.data.chunks_exact(4))
        {
            let m = luma_u8(m[0], m[1], m[2]) as u32;
            for c in 0..4 {
                o[c] = ((t[c] as u32 * m + o[c] as u32 * (255 - m) + 127) / 255) as u8;
            }
        }
        Ok(out)
    }
}
