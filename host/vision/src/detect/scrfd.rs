//! InsightFace SCRFD (e.g. antelopev2's `scrfd_10g_bnkps.onnx`), for user-supplied packs:
//! letterboxed square input (top-left), `(x - 127.5) / 128`, NCHW; per stride 8/16/32 a score map,
//! distance boxes and 5 distance keypoints on a grid of anchor centres (2 anchors per cell).
//!
//! Outputs are recognised by shape (last dimension 1, 4 or 10; anchor count gives the stride), so
//! exports with and without a batch dimension both work. Not exercised by the default packs: the
//! antelopev2 weights are non-commercial and not on the registries.

use image::RgbImage;

use super::{Detection, DetectorKind, FaceDetector, letterbox, nms};
use crate::error::{Result, VisionError};
use crate::onnx::SessionPool;
use crate::packs::ModelEntry;
use crate::spread::Spread;

/// SCRFD settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScrfdConfig {
    /// Square input size (640).
    pub size: u32,
    /// Minimum score (0.5).
    pub min_score: f32,
    /// NMS IoU threshold (0.4).
    pub nms: f32,
}

impl Default for ScrfdConfig {
    fn default() -> Self {
        ScrfdConfig {
            size: 640,
            min_score: 0.5,
            nms: 0.4,
        }
    }
}

/// SCRFD on one session.
#[derive(Debug)]
pub struct Scrfd {
    net: SessionPool,
    input: String,
    outputs: Vec<String>,
    mean: [f32; 3],
    std: [f32; 3],
    bgr: bool,
    config: ScrfdConfig,
}

impl Scrfd {
    /// Wraps a session; normalisation and colour order come from the pack entry.
    pub fn new(net: SessionPool, entry: &ModelEntry, mut config: ScrfdConfig) -> Result<Scrfd> {
        let input = net
            .inputs()
            .first()
            .map(|i| i.name.clone())
            .ok_or_else(|| VisionError::Model {
                file: net.file().to_path_buf(),
                reason: "no input".into(),
            })?;
        if let Some([w, _]) = entry.input_size {
            config.size = w;
        }
        let outputs = net.outputs().iter().map(|o| o.name.clone()).collect();
        let norm = |c| entry.norm(c);
        Ok(Scrfd {
            input,
            outputs,
            mean: [norm(0).0, norm(1).0, norm(2).0],
            std: [norm(0).1, norm(1).1, norm(2).1],
            bgr: entry.bgr(),
            net,
            config,
        })
    }
}

impl FaceDetector for Scrfd {
    fn kind(&self) -> DetectorKind {
        DetectorKind::Scrfd
    }

    fn min_score(&self) -> f32 {
        self.config.min_score
    }

    fn detect(&self, img: &RgbImage, _spread: &dyn Spread) -> Result<Vec<Detection>> {
        if img.width() == 0 || img.height() == 0 {
            return Ok(Vec::new());
        }
        let s = self.config.size as usize;
        let lb = letterbox(img, self.config.size, false);
        let mut data = vec![0f32; 3 * s * s];
        for (i, px) in lb.pixels.chunks_exact(3).enumerate() {
            for c in 0..3 {
                let src = if self.bgr { 2 - c } else { c };
                data[c * s * s + i] = (f32::from(px[src]) - self.mean[c]) / self.std[c];
            }
        }
        let names: Vec<&str> = self.outputs.iter().map(String::as_str).collect();
        let outs = self.net.run(&self.input, &[1, 3, s, s], data, &names)?;
        let mut dets = Vec::new();
        for stride in [8usize, 16, 32] {
            let cells = (s / stride) * (s / stride);
            let find = |last: usize| {
                outs.iter().find(|o| {
                    o.shape.last() == Some(&last)
                        && (o.data.len() / last).is_multiple_of(cells)
                        && o.data.len() / last / cells >= 1
                        && {
                            let anchors = o.data.len() / last / cells;
                            (1..=3).contains(&anchors)
                        }
                })
            };
            let (Some(scores), Some(boxes)) = (find(1), find(4)) else {
                continue;
            };
            let kps = find(10);
            let anchors = scores.data.len() / cells;
            for i in 0..cells * anchors {
                let score = scores.data[i];
                if score < self.config.min_score {
                    continue;
                }
                let cell = i / anchors;
                let cx = ((cell % (s / stride)) * stride) as f32;
                let cy = ((cell / (s / stride)) * stride) as f32;
                let st = stride as f32;
                let b = &boxes.data[i * 4..i * 4 + 4];
                let p0 = lb.unmap([cx - b[0] * st, cy - b[1] * st]);
                let p1 = lb.unmap([cx + b[2] * st, cy + b[3] * st]);
                let mut landmarks = [[0f32; 2]; 5];
                if let Some(k) = kps {
                    let k = &k.data[i * 10..i * 10 + 10];
                    for (j, l) in landmarks.iter_mut().enumerate() {
                        *l = lb.unmap([cx + k[2 * j] * st, cy + k[2 * j + 1] * st]);
                    }
                }
                dets.push(Detection {
                    bbox: [
                        p0[0].clamp(0.0, img.width() as f32),
                        p0[1].clamp(0.0, img.height() as f32),
                        p1[0].clamp(0.0, img.width() as f32),
                        p1[1].clamp(0.0, img.height() as f32),
                    ],
                    score,
                    landmarks,
                });
            }
        }
        Ok(nms(dets, self.config.nms))
    }
}
