//! Face detectors behind one trait: MTCNN (default, best recall, 5 landmarks), BlazeFace (light,
//! large faces only), SCRFD (from a user-supplied antelopev2 pack).

pub mod blazeface;
pub mod mtcnn;
pub mod scrfd;

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::spread::Spread;

/// One detected face in the detector's input image pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Detection {
    /// Box `[x1, y1, x2, y2]`.
    pub bbox: [f32; 4],
    /// Confidence in 0..1.
    pub score: f32,
    /// Left eye, right eye, nose, left mouth corner, right mouth corner (image left/right).
    pub landmarks: [[f32; 2]; 5],
}

impl Detection {
    /// Box area in square pixels.
    pub fn area(&self) -> f32 {
        (self.bbox[2] - self.bbox[0]).max(0.0) * (self.bbox[3] - self.bbox[1]).max(0.0)
    }
}

/// Which detector to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DetectorKind {
    /// MTCNN (P-Net/R-Net/O-Net cascade).
    Mtcnn,
    /// MediaPipe BlazeFace.
    Blazeface,
    /// InsightFace SCRFD (antelopev2).
    Scrfd,
}

/// A face detector. Implementations are `Send + Sync` and share their sessions across threads.
pub trait FaceDetector: Send + Sync {
    /// Which detector this is.
    fn kind(&self) -> DetectorKind;
    /// The minimum final score this detector recommends (applied by [`crate::Vision`] unless the
    /// caller asks for another).
    fn min_score(&self) -> f32;
    /// Detects faces in `img`, returning boxes and 5 landmarks in `img`'s pixels. May return
    /// candidates below [`min_score`](FaceDetector::min_score) (down to the detector's internal
    /// thresholds); order unspecified. A detector made of independent parts runs them through
    /// `spread`.
    fn detect(&self, img: &RgbImage, spread: &dyn Spread) -> Result<Vec<Detection>>;
    /// [`detect`](FaceDetector::detect) where faces whose shorter side is under `min_side`
    /// pixels may be left out, for a cheaper run (the default: the detector has one input size
    /// and finds what it finds, as [`detect`](FaceDetector::detect)).
    fn detect_from(
        &self,
        img: &RgbImage,
        min_side: f32,
        spread: &dyn Spread,
    ) -> Result<Vec<Detection>> {
        let _ = min_side;
        self.detect(img, spread)
    }
    /// [`detect_from`](FaceDetector::detect_from), then, when `again` says so of what it
    /// found, every face, as [`detect`](FaceDetector::detect) finds them (the default runs
    /// `detect`; MTCNN widens the same run to the pyramid levels and boxes it has not done, see
    /// [`mtcnn::Scan`]).
    fn detect_from_or_all(
        &self,
        img: &RgbImage,
        min_side: f32,
        again: &mut dyn FnMut(&[Detection]) -> bool,
        spread: &dyn Spread,
    ) -> Result<Vec<Detection>> {
        let found = self.detect_from(img, min_side, spread)?;
        if again(&found) {
            self.detect(img, spread)
        } else {
            Ok(found)
        }
    }
}

/// Intersection over union of two `[x1,y1,x2,y2]` boxes (continuous coordinates).
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let ua = (a[2] - a[0]).max(0.0) * (a[3] - a[1]).max(0.0)
        + (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0)
        - inter;
    if ua <= 0.0 { 0.0 } else { inter / ua }
}

/// Greedy non-maximum suppression on detections (continuous IoU); returns survivors, best first.
pub fn nms(mut dets: Vec<Detection>, threshold: f32) -> Vec<Detection> {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut keep: Vec<Detection> = Vec::with_capacity(dets.len());
    for d in dets {
        if keep.iter().all(|k| iou(&k.bbox, &d.bbox) <= threshold) {
            keep.push(d);
        }
    }
    keep
}

/// Sigmoid, clamped against overflow.
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x.clamp(-80.0, 80.0)).exp())
}

/// A square letterboxed copy of `img` for fixed-size detectors: the image scaled to fit `size`,
/// centred on black. Returns the RGB pixels (`size*size*3`, 0..255), the scale and the offset, so
/// that `image = (letterboxed - offset) / scale`.
pub(crate) struct Letterbox {
    pub pixels: Vec<u8>,
    pub scale: f32,
    pub offset: [f32; 2],
}

pub(crate) fn letterbox(img: &RgbImage, size: u32, centred: bool) -> Letterbox {
    let (w, h) = img.dimensions();
    let scale = size as f32 / w.max(h).max(1) as f32;
    let nw = ((w as f32 * scale).round() as u32).clamp(1, size);
    let nh = ((h as f32 * scale).round() as u32).clamp(1, size);
    let small = crate::ingest::resize(img, nw, nh);
    let (ox, oy) = if centred {
        ((size - nw) / 2, (size - nh) / 2)
    } else {
        (0, 0)
    };
    let s = size as usize;
    let mut pixels = vec![0u8; s * s * 3];
    let row = nw as usize * 3;
    for y in 0..nh as usize {
        let src = &small.as_raw()[y * row..(y + 1) * row];
        let d = ((y + oy as usize) * s + ox as usize) * 3;
        pixels[d..d + row].copy_from_slice(src);
    }
    Letterbox {
        pixels,
        scale: nw as f32 / w.max(1) as f32,
        offset: [ox as f32, oy as f32],
    }
}

impl Letterbox {
    pub(crate) fn unmap(&self, p: [f32; 2]) -> [f32; 2] {
        [
            (p[0] - self.offset[0]) / self.scale,
            (p[1] - self.offset[1]) / self.scale,
        ]
    }
}
