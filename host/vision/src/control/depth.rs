//! Depth control map from a user-supplied monocular depth model (role `depth` in a pack, e.g. a
//! MiDaS or Depth-Anything ONNX export). No such model is on the registries, so the default packs
//! have none and [`crate::Vision::has_depth`] is false.

use image::{GrayImage, RgbImage};

use crate::error::{Result, VisionError};
use crate::onnx::SessionPool;
use crate::packs::ModelEntry;

/// A depth model: NCHW input of a fixed square size with per-channel normalisation from the pack;
/// output `[1, H, W]` or `[1, 1, H, W]` relative (inverse) depth, larger = nearer.
#[derive(Debug)]
pub struct DepthEstimator {
    net: SessionPool,
    input: String,
    output: String,
    mean: [f32; 3],
    std: [f32; 3],
    size: u32,
}

impl DepthEstimator {
    /// Wraps a session; size from the pack's `input_size` or the model's fixed input shape (else 518).
    pub fn new(net: SessionPool, entry: &ModelEntry) -> Result<DepthEstimator> {
        let input = net.inputs().first().map(|i| i.name.clone());
        let output = net.outputs().first().map(|o| o.name.clone());
        let (Some(input), Some(output)) = (input, output) else {
            return Err(VisionError::Model {
                file: net.file().to_path_buf(),
                reason: "a depth model needs one input and one output".into(),
            });
        };
        let from_model = net
            .inputs()
            .first()
            .and_then(|i| i.shape.get(3).copied())
            .filter(|d| *d > 0)
            .map(|d| d as u32);
        let size = entry.input_size.map(|s| s[0]).or(from_model).unwrap_or(518);
        Ok(DepthEstimator {
            input,
            output,
            mean: [entry.norm(0).0, entry.norm(1).0, entry.norm(2).0],
            std: [entry.norm(0).1, entry.norm(1).1, entry.norm(2).1],
            size,
            net,
        })
    }

    /// Estimates depth for `img`: a grey map of the image's size, 255 = nearest, min-max stretched.
    pub fn estimate(&self, img: &RgbImage) -> Result<GrayImage> {
        let s = self.size as usize;
        let small = crate::ingest::resize(img, self.size, self.size);
        let plane = s * s;
        let mut data = vec![0f32; 3 * plane];
        for (i, px) in small.as_raw().chunks_exact(3).enumerate() {
            for c in 0..3 {
                data[c * plane + i] = (f32::from(px[c]) - self.mean[c]) / self.std[c];
            }
        }
        let out = self
            .net
            .run(&self.input, &[1, 3, s, s], data, &[self.output.as_str()])?;
        let o = &out[0];
        let dims: Vec<usize> = o.shape.iter().copied().filter(|d| *d > 1).collect();
        let [oh, ow] = dims[..] else {
            return Err(VisionError::inference(
                "depth",
                format!("unexpected output shape {:?}", o.shape),
            ));
        };
        let (lo, hi) = o
            .data
            .iter()
            .filter(|v| v.is_finite())
            .fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
        let range = if hi > lo { hi - lo } else { 1.0 };
        let grey: Vec<u8> = o
            .data
            .iter()
            .map(|v| {
                if v.is_finite() {
                    ((v - lo) / range * 255.0).round().clamp(0.0, 255.0) as u8
                } else {
                    0
                }
            })
            .collect();
        let map = GrayImage::from_raw(ow as u32, oh as u32, grey)
            .ok_or_else(|| VisionError::inference("depth", "output size mismatch"))?;
        Ok(resize_gray(&map, img.width(), img.height()))
    }
}

fn resize_gray(img: &GrayImage, w: u32, h: u32) -> GrayImage {
    use fast_image_resize as fr;
    let Ok(src) =
        fr::images::ImageRef::new(img.width(), img.height(), img.as_raw(), fr::PixelType::U8)
    else {
        return img.clone();
    };
    let mut dst = fr::images::Image::new(w, h, fr::PixelType::U8);
    let options =
        fr::ResizeOptions::new().resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Bilinear));
    if fr::Resizer::new().resize(&src, &mut dst, &options).is_err() {
        return img.clone();
    }
    GrayImage::from_raw(w, h, dst.into_vec()).unwrap_or_else(|| img.clone())
}
