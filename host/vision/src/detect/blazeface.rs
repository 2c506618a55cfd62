//! MediaPipe BlazeFace (Barracuda ONNX export): RGB NHWC square input scaled `x/127.5 - 1`,
//! 896 anchors (16x16 cells x 2, then 8x8 cells x 6), sigmoid scores, NMS.
//!
//! BlazeFace gives eyes, nose and the mouth centre; the two mouth corners reported are estimated
//! from the mouth centre and the eye line (the ArcFace template's corner spacing), which is enough
//! for alignment but less precise than MTCNN's.

use image::RgbImage;

use super::{Detection, DetectorKind, FaceDetector, letterbox, nms, sigmoid};
use crate::error::{Result, VisionError};
use crate::onnx::SessionPool;
use crate::spread::Spread;

/// BlazeFace settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlazeFaceConfig {
    /// Minimum score (0.75).
    pub min_score: f32,
    /// NMS IoU threshold (0.3).
    pub nms: f32,
}

impl Default for BlazeFaceConfig {
    fn default() -> Self {
        BlazeFaceConfig {
            min_score: 0.75,
            nms: 0.3,
        }
    }
}

/// BlazeFace on one session (front 128 or back 256).
#[derive(Debug)]
pub struct BlazeFace {
    net: SessionPool,
    size: u32,
    config: BlazeFaceConfig,
}

const INPUT: &str = "input:0";
const OUTPUTS: [&str; 4] = ["Identity:0", "Identity_2:0", "Identity_1:0", "Identity_3:0"];

impl BlazeFace {
    /// Wraps a session; the input size is read from the model (128 or 256).
    pub fn new(net: SessionPool, config: BlazeFaceConfig) -> Result<BlazeFace> {
        net.expect(INPUT, &OUTPUTS)?;
        let size = net
            .inputs()
            .first()
            .and_then(|i| i.shape.get(1).copied())
            .filter(|s| *s > 0)
            .ok_or_else(|| VisionError::Model {
                file: net.file().to_path_buf(),
                reason: "the input has no fixed size".into(),
            })? as u32;
        Ok(BlazeFace { net, size, config })
    }
}

impl FaceDetector for BlazeFace {
    fn kind(&self) -> DetectorKind {
        DetectorKind::Blazeface
    }

    fn min_score(&self) -> f32 {
        self.config.min_score
    }

    fn detect(&self, img: &RgbImage, _spread: &dyn Spread) -> Result<Vec<Detection>> {
        if img.width() == 0 || img.height() == 0 {
            return Ok(Vec::new());
        }
        let s = self.size as usize;
        let lb = letterbox(img, self.size, true);
        let data: Vec<f32> = lb
            .pixels
            .iter()
            .map(|&v| f32::from(v) / 127.5 - 1.0)
            .collect();
        let out = self.net.run(INPUT, &[1, s, s, 3], data, &OUTPUTS)?;
        let mut dets = Vec::new();
        for (scores, regs, cells, anchors) in [
            (&out[0], &out[1], 16usize, 2usize),
            (&out[2], &out[3], 8, 6),
        ] {
            let n = cells * cells * anchors;
            if scores.data.len() < n || regs.data.len() < n * 16 {
                return Err(VisionError::inference("blazeface", "short output"));
            }
            for i in 0..n {
                let score = sigmoid(scores.data[i]);
                if score < self.config.min_score {
                    continue;
                }
                let cell = i / anchors;
                let (row, col) = (cell / cells, cell % cells);
                let cx = (col as f32 + 0.5) / cells as f32 * s as f32;
                let cy = (row as f32 + 0.5) / cells as f32 * s as f32;
                let r = &regs.data[i * 16..i * 16 + 16];
                let (bx, by, bw, bh) = (cx + r[0], cy + r[1], r[2], r[3]);
                let p0 = lb.unmap([bx - bw / 2.0, by - bh / 2.0]);
                let p1 = lb.unmap([bx + bw / 2.0, by + bh / 2.0]);
                let kp = |k: usize| lb.unmap([cx + r[4 + 2 * k], cy + r[5 + 2 * k]]);
                let (mut le, mut re) = (kp(0), kp(1));
                if le[0] > re[0] {
                    std::mem::swap(&mut le, &mut re);
                }
                let nose = kp(2);
                let mouth = kp(3);
                // ArcFace template: mouth corners are 0.828 of the eye distance apart.
                let half = [(re[0] - le[0]) * 0.414, (re[1] - le[1]) * 0.414];
                dets.push(Detection {
                    bbox: [
                        p0[0].clamp(0.0, img.width() as f32),
                        p0[1].clamp(0.0, img.height() as f32),
                        p1[0].clamp(0.0, img.width() as f32),
                        p1[1].clamp(0.0, img.height() as f32),
                    ],
                    score,
                    landmarks: [
                        le,
                        re,
                        nose,
                        [mouth[0] - half[0], mouth[1] - half[1]],
                        [mouth[0] + half[0], mouth[1] + half[1]],
                    ],
                });
            }
        }
        Ok(nms(dets, self.config.nms))
    }
}
