//! Runs a style's `style-transfer` plan on the vision engine's style-transfer networks
//! (`likeness_vision::transfer`): the learned styles blended by the plan's weights at its
//! working side, or the style picture from the package's read-only `assets/` (its style vector
//! computed once per picture and cached); the rendition scaled to the output size, blended
//! with the photo by `strength`, and lighter inside every face by `face-preservation` (the
//! face-preserving composite), so the person stays recognisable.

use std::collections::HashMap;
use std::path::{Component, Path};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use image::RgbImage;
use likeness_contract::{Face, Transfer, TransferCapabilities};
use likeness_imaging::ellipse_mask;
use likeness_vision::transfer::{LEARNED_STYLES, learned_style_index};
use likeness_vision::{StyleTransfer, Vision, VisionError, ingest};
use sha2::{Digest, Sha256};

use crate::pipeline::GenerateError;
use crate::wasm::Image;

/// The largest working long side a plan may ask for (the output's long side is at most 1280).
pub const MAX_WORKING_SIDE: u32 = 1280;
/// The working long side when the plan leaves it to the host: the learned network takes
/// ~0.6 s at 768² on 2 cores (~1.2-1.5 s at 1024²), so that a 1024 px photo stays near 1.5 s
/// with analysis, the composite and the post-process.
pub const DEFAULT_WORKING_SIDE: u32 = 768;
/// The largest style picture read from a package, in bytes.
const PICTURE_MAX_BYTES: u64 = 16 << 20;
/// Style vectors kept; the cache starts over when full.
const VECTORS_KEPT: usize = 256;

/// What the installed style-transfer networks offer a plan; `None` without the pack.
pub fn capabilities(vision: &Vision) -> Option<TransferCapabilities> {
    vision.transfer().map(|transfer| TransferCapabilities {
        learned_styles: transfer.learned_styles(),
        style_pictures: transfer.style_pictures(),
        max_side: MAX_WORKING_SIDE,
    })
}

/// The style vectors of the style pictures seen so far, by the SHA-256 of the picture's bytes
/// (so once per picture of a package version, and again only when a redeploy changes the
/// picture), with the count of vectors computed.
#[derive(Debug, Default)]
pub struct StyleVectors {
    vectors: Mutex<HashMap<String, Arc<Vec<f32>>>>,
    computed: AtomicU64,
}

impl StyleVectors {
    /// How many style vectors were computed (cache misses) since start.
    pub fn computed(&self) -> u64 {
        self.computed.load(Ordering::Relaxed)
    }

    /// The style vector of the picture `bytes` (`name` for errors), computed on a miss.
    fn get(
        &self,
        transfer: &StyleTransfer,
        name: &str,
        bytes: &[u8],
    ) -> Result<Arc<Vec<f32>>, GenerateError> {
        let key = hex::encode(Sha256::digest(bytes));
        if let Some(vector) = self.lock().get(&key) {
            return Ok(vector.clone());
        }
        let picture = ingest::decode(bytes, &ingest::Limits::default()).map_err(|error| {
            unusable(format!(
                "the style picture '{name}' is not a usable image: {error}"
            ))
        })?;
        let vector = Arc::new(transfer.style_vector(&picture.image).map_err(failed)?);
        self.computed.fetch_add(1, Ordering::Relaxed);
        let mut vectors = self.lock();
        if vectors.len() >= VECTORS_KEPT {
            vectors.clear();
        }
        vectors.insert(key, vector.clone());
        Ok(vector)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Vec<f32>>>> {
        self.vectors.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Renders `photo` (already at the output size) as `settings` say, with the faces of
/// `faces` (in `photo`'s pixels) lighter by `settings.face_preservation`. `package` is the
/// style's package folder, whose `assets/` holds its style pictures. Blocking: run it on a
/// blocking thread.
pub fn run(
    vision: &Vision,
    vectors: &StyleVectors,
    package: &Path,
    photo: &RgbImage,
    faces: &[Face],
    settings: &Transfer,
) -> Result<Image, GenerateError> {
    let transfer = vision.transfer().ok_or_else(|| {
        GenerateError::Transfer("this host has no style-transfer pack installed".into())
    })?;
    let (width, height) = photo.dimensions();
    let rendition = match &settings.style_picture {
        Some(name) => {
            let bytes = read_picture(package, name)?;
            let vector = vectors.get(transfer, name, &bytes)?;
            transfer.stylize_with(photo, &vector).map_err(failed)?
        }
        None => {
            let weights = learned_weights(&settings.learned_styles)?;
            let side = settings
                .working_side
                .unwrap_or(DEFAULT_WORKING_SIDE)
                .clamp(16, MAX_WORKING_SIDE);
            let (small, _) = ingest::bounded(photo, side);
            transfer.stylize_learned(&small, &weights).map_err(failed)?
        }
    };
    let rendition = ingest::resize(&rendition, width, height);
    Ok(composite(
        photo,
        &rendition,
        faces,
        settings.strength,
        settings.face_preservation,
    ))
}

/// One weight per learned style from the plan's `(name, weight)` pairs.
fn learned_weights(styles: &[(String, f32)]) -> Result<Vec<f32>, GenerateError> {
    let mut weights = vec![0.0; LEARNED_STYLES];
    for (name, weight) in styles {
        let index = learned_style_index(name)
            .ok_or_else(|| unusable(format!("there is no learned style '{name}'")))?;
        weights[index] += weight.max(0.0);
    }
    if weights.iter().sum::<f32>() <= 0.0 {
        return Err(unusable(
            "the plan names neither a style picture nor a learned style with a weight above 0"
                .into(),
        ));
    }
    Ok(weights)
}

/// The bytes of the style picture `name` inside `package/assets/`: a relative path of plain
/// components that, with symlinks resolved, stays inside `assets/`.
fn read_picture(package: &Path, name: &str) -> Result<Vec<u8>, GenerateError> {
    let refuse = |why: &str| unusable(format!("the style picture '{name}' {why}"));
    let relative = Path::new(name);
    if name.is_empty()
        || !relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(refuse(
            "must be a relative path inside the package's assets/ (no '..', no root)",
        ));
    }
    let assets = package
        .join("assets")
        .canonicalize()
        .map_err(|_| refuse("cannot be read: the package has no assets/ folder"))?;
    let path = assets
        .join(relative)
        .canonicalize()
        .map_err(|_| refuse("is not in the package's assets/"))?;
    if !path.starts_with(&assets) {
        return Err(refuse("leads outside the package's assets/"));
    }
    let size = std::fs::metadata(&path)
        .map_err(|e| refuse(&format!("cannot be read ({e})")))?
        .len();
    if !path.is_file() || size > PICTURE_MAX_BYTES {
        return Err(refuse(&format!(
            "must be a file of at most {PICTURE_MAX_BYTES} bytes"
        )));
    }
    std::fs::read(&path).map_err(|e| refuse(&format!("cannot be read ({e})")))
}

/// The feathered mask of the faces: 1 inside each face's ellipse (its box widened to take in
/// the forehead, cheeks and chin), a smooth ramp a quarter of the face wide at the edge, 0
/// elsewhere.
fn face_mask(width: u32, height: u32, faces: &[Face]) -> Vec<f32> {
    let mut mask = vec![0f32; width as usize * height as usize];
    for face in faces {
        let b = &face.bbox;
        let (cx, cy) = ((b.x1 + b.x2) * 0.5, (b.y1 + b.y2) * 0.5);
        let (hw, hh) = ((b.x2 - b.x1) * 0.6, (b.y2 - b.y1) * 0.65);
        let ellipse = ellipse_mask(
            width,
            height,
            [cx - hw, cy - hh, cx + hw, cy + hh],
            hw.min(hh) * 0.5,
        );
        for (m, e) in mask.iter_mut().zip(ellipse.data) {
            *m = m.max(e);
        }
    }
    mask
}

/// The face-preserving composite: `photo` moved towards `rendition` by `strength`, and by
/// `strength * (1 - preservation)` inside the faces (a second, lighter pass there).
fn composite(
    photo: &RgbImage,
    rendition: &RgbImage,
    faces: &[Face],
    strength: f32,
    preservation: f32,
) -> Image {
    let (width, height) = photo.dimensions();
    let mask = face_mask(width, height, faces);
    let (strength, preservation) = (strength.clamp(0.0, 1.0), preservation.clamp(0.0, 1.0));
    let mut rgba = Vec::with_capacity(mask.len() * 4);
    for ((p, r), m) in photo.pixels().zip(rendition.pixels()).zip(&mask) {
        let s = strength * (1.0 - preservation * m);
        for c in 0..3 {
            let (p, r) = (f32::from(p[c]), f32::from(r[c]));
            rgba.push((p + s * (r - p)).round().clamp(0.0, 255.0) as u8);
        }
        rgba.push(255);
    }
    Image {
        width,
        height,
        rgba,
    }
}

fn unusable(message: String) -> GenerateError {
    GenerateError::Transfer(message)
}

fn failed(error: VisionError) -> GenerateError {
    GenerateError::Transfer(format!("the style-transfer network failed: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use likeness_contract::{Landmarks, Rect};

    fn face(x1: f32, y1: f32, x2: f32, y2: f32) -> Face {
        Face {
            bbox: Rect { x1, y1, x2, y2 },
            score: 0.99,
            landmarks: Landmarks::from_array([[0.0; 2]; 5]),
            share: 0.1,
            dominant: true,
        }
    }

    #[test]
    fn the_composite_is_lighter_inside_each_face() {
        let photo = RgbImage::from_pixel(80, 40, image::Rgb([0, 0, 0]));
        let rendition = RgbImage::from_pixel(80, 40, image::Rgb([200, 200, 200]));
        let faces = [face(5.0, 5.0, 25.0, 35.0), face(50.0, 5.0, 70.0, 35.0)];
        let out = composite(&photo, &rendition, &faces, 1.0, 0.75);
        let at = |x: usize, y: usize| out.rgba[(y * 80 + x) * 4];
        assert_eq!(at(40, 20), 200, "the background is fully styled");
        assert_eq!(
            at(15, 20),
            50,
            "the first face keeps a quarter of the styling"
        );
        assert_eq!(at(60, 20), 50, "so does the second");
        let half = composite(&photo, &rendition, &[], 0.5, 1.0);
        assert_eq!(half.rgba[0], 100, "strength blends with the photo");
    }

    #[test]
    fn a_style_picture_stays_inside_assets() {
        let dir = tempfile::tempdir().unwrap();
        let package = dir.path().join("style");
        std::fs::create_dir_all(package.join("assets/pictures")).unwrap();
        std::fs::write(package.join("assets/pictures/a.png"), b"png").unwrap();
        std::fs::write(dir.path().join("secret.png"), b"secret").unwrap();
        std::os::unix::fs::symlink(
            dir.path().join("secret.png"),
            package.join("assets/escape.png"),
        )
        .unwrap();
        assert_eq!(read_picture(&package, "pictures/a.png").unwrap(), b"png");
        for bad in [
            "../secret.png",
            "/etc/passwd",
            "pictures/../../secret.png",
            "escape.png",
            "missing.png",
            "",
        ] {
            let error = read_picture(&package, bad).unwrap_err().to_string();
            assert!(error.contains("style picture"), "{bad}: {error}");
        }
    }

    #[test]
    fn learned_weights_name_the_unknown_style() {
        let weights =
            learned_weights(&[("style-03".into(), 0.5), ("style-12".into(), 0.5)]).unwrap();
        assert_eq!((weights[3], weights[12]), (0.5, 0.5));
        let error = learned_weights(&[("mosaic".into(), 1.0)])
            .unwrap_err()
            .to_string();
        assert!(error.contains("'mosaic'"), "{error}");
        assert!(learned_weights(&[]).is_err());
    }
}
