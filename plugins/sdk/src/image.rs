//! Image buffers and the filters styles build their looks from: the host's own imaging crate
//! (`likeness-imaging`, the code behind the `canvas` operations), re-exported, and what ties
//! it to the WIT types.
//!
//! [`Rgba`] is an 8-bit RGBA image (the WIT [`Image`], checked); [`Plane`] is one channel of
//! `f32` values, nominally `0.0..=1.0`, for intermediate results (luma, edges, masks, textures).
//! Everything is pure Rust and written for speed in WebAssembly as well as natively.

pub use likeness_imaging::{
    BlendMode, Color, Filter, Plane, Rgba, SizeError, ellipse_mask, luma_u8, max_f32, min_f32,
    nearest_color, to_byte,
};

use crate::{Analysis, Image, StyleError};

/// A soft mask of the faces of `analysis`, drawn on a `width` x `height` image (coordinates
/// scale from the analysed size): 1 inside an ellipse a little larger than each face box,
/// fading to 0 over a third of the box size. Styles use it to treat faces more gently.
pub fn face_mask(width: u32, height: u32, analysis: &Analysis) -> Plane {
    let mut mask = Plane::new(width, height, 0.0);
    if analysis.width == 0 || analysis.height == 0 {
        return mask;
    }
    let (sx, sy) = (
        width as f32 / analysis.width as f32,
        height as f32 / analysis.height as f32,
    );
    for face in &analysis.faces {
        let b = &face.bbox;
        let (cx, cy) = ((b.x1 + b.x2) * 0.5 * sx, (b.y1 + b.y2) * 0.5 * sy);
        // Semi-axes: the box grown by 15%, with hair and chin.
        let ax = ((b.x2 - b.x1) * 0.5 * sx * 1.15).max(1.0);
        let ay = ((b.y2 - b.y1) * 0.5 * sy * 1.15).max(1.0);
        let fade = 1.35f32; // the mask reaches 0 at 1.35 times the semi-axes
        let y0 = ((cy - ay * fade).floor().max(0.0) as u32).min(height);
        let y1 = ((cy + ay * fade).ceil().max(0.0) as u32).min(height);
        let x0 = ((cx - ax * fade).floor().max(0.0) as u32).min(width);
        let x1 = ((cx + ax * fade).ceil().max(0.0) as u32).min(width);
        for y in y0..y1 {
            let dy = (y as f32 + 0.5 - cy) / ay;
            let row = &mut mask.data[(y * width) as usize..][..width as usize];
            for (x, m) in row
                .iter_mut()
                .enumerate()
                .take(x1 as usize)
                .skip(x0 as usize)
            {
                let dx = (x as f32 + 0.5 - cx) / ax;
                let d = (dx * dx + dy * dy).sqrt();
                let t = ((fade - d) / (fade - 1.0)).clamp(0.0, 1.0);
                *m = max_f32(*m, t * t * (3.0 - 2.0 * t));
            }
        }
    }
    mask
}

impl From<SizeError> for StyleError {
    fn from(error: SizeError) -> StyleError {
        StyleError::UnusableInput(error.0)
    }
}

impl TryFrom<Image> for Rgba {
    type Error = StyleError;

    fn try_from(image: Image) -> Result<Self, StyleError> {
        Ok(Rgba::from_raw(image.width, image.height, image.rgba)?)
    }
}

impl From<Rgba> for Image {
    fn from(rgba: Rgba) -> Image {
        Image {
            width: rgba.width,
            height: rgba.height,
            rgba: rgba.data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_validation() {
        let ok = Image {
            width: 2,
            height: 3,
            rgba: vec![0; 24],
        };
        let rgba = Rgba::try_from(ok).unwrap();
        assert_eq!((rgba.width, rgba.height), (2, 3));
        let back: Image = rgba.into();
        assert_eq!(back.rgba.len(), 24);
        for (w, h, len) in [
            (0, 3, 0),
            (2, 0, 0),
            (2, 3, 23),
            (2, 3, 25),
            (u32::MAX, u32::MAX, 4),
        ] {
            match Rgba::from_image(Image {
                width: w,
                height: h,
                rgba: vec![0; len],
            }) {
                Err(StyleError::UnusableInput(m)) => assert!(!m.is_empty()),
                other => panic!("{w}x{h} {len}: {other:?}"),
            }
        }
    }

    #[test]
    fn face_mask_covers_faces_softly() {
        use crate::testing::portrait;
        let analysis = portrait(300, 300); // face box 100..200
        let mask = face_mask(600, 600, &analysis); // twice the analysed size
        assert_eq!(mask.get(300, 300), 1.0);
        assert_eq!(mask.get(300, 200), 1.0);
        assert_eq!(mask.get(0, 0), 0.0);
        assert_eq!(mask.get(300, 560), 0.0);
        let edge = mask.get(300, 160);
        assert!(edge > 0.0 && edge < 1.0, "{edge}");
        let none = face_mask(
            10,
            10,
            &crate::Analysis {
                width: 10,
                height: 10,
                faces: Vec::new(),
            },
        );
        assert!(none.data.iter().all(|&v| v == 0.0));
    }
}
