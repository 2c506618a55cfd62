//! Face recognition embeddings on aligned 112x112 crops: normalisation and layout from the pack,
//! batched when the model takes batches, L2-normalised output.

use image::RgbImage;

use crate::align::align_face;
use crate::error::{Result, VisionError};
use crate::onnx::SessionPool;
use crate::packs::ModelEntry;
use crate::similarity::l2_normalize;

/// An embedding model (e.g. the faceplugin `fr_feature` for development, antelopev2's glintr100
/// for production).
#[derive(Debug)]
pub struct Embedder {
    net: SessionPool,
    input: String,
    output: String,
    mean: [f32; 3],
    std: [f32; 3],
    bgr: bool,
    size: u32,
    name: String,
}

impl Embedder {
    /// Wraps a session; normalisation, colour order and size come from the pack entry.
    pub fn new(net: SessionPool, entry: &ModelEntry) -> Result<Embedder> {
        let input = net.inputs().first().map(|i| i.name.clone());
        let output = net.outputs().first().map(|o| o.name.clone());
        let (Some(input), Some(output)) = (input, output) else {
            return Err(VisionError::Model {
                file: net.file().to_path_buf(),
                reason: "an embedding model needs one input and one output".into(),
            });
        };
        let size = entry.input_size.map(|s| s[0]).unwrap_or(112);
        Ok(Embedder {
            input,
            output,
            mean: [entry.norm(0).0, entry.norm(1).0, entry.norm(2).0],
            std: [entry.norm(0).1, entry.norm(1).1, entry.norm(2).1],
            bgr: entry.bgr(),
            size,
            name: entry.file.clone(),
            net,
        })
    }

    /// The model file's name (reported with analyses).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The aligned crop size the model takes (112).
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Aligns each face of `img` given its five landmarks.
    pub fn align(&self, img: &RgbImage, landmarks: &[[f32; 2]; 5]) -> RgbImage {
        align_face(img, landmarks, self.size)
    }

    /// Embeds aligned crops (each `size x size`), batched where the model allows; each result is
    /// L2-normalised.
    pub fn embed(&self, crops: &[RgbImage]) -> Result<Vec<Vec<f32>>> {
        let mut out = self.embed_raw(crops)?;
        out.iter_mut().for_each(|v| l2_normalize(v));
        Ok(out)
    }

    /// [`Embedder::embed`] as the model returns it, not normalised (insightface's `embedding`,
    /// which PuLID's `id_cond` takes).
    pub fn embed_raw(&self, crops: &[RgbImage]) -> Result<Vec<Vec<f32>>> {
        let s = self.size as usize;
        let plane = s * s;
        let batch = if self.net.dynamic_batch() { 32 } else { 1 };
        let mut out = Vec::with_capacity(crops.len());
        for chunk in crops.chunks(batch) {
            let mut data = vec![0f32; chunk.len() * 3 * plane];
            for (n, crop) in chunk.iter().enumerate() {
                if crop.width() as usize != s || crop.height() as usize != s {
                    return Err(VisionError::inference(
                        &self.name,
                        format!("crop is not {s}x{s}"),
                    ));
                }
                let base = n * 3 * plane;
                for (i, px) in crop.as_raw().chunks_exact(3).enumerate() {
                    for c in 0..3 {
                        let v = f32::from(px[if self.bgr { 2 - c } else { c }]);
                        data[base + c * plane + i] = (v - self.mean[c]) / self.std[c];
                    }
                }
            }
            let res = self.net.run(
                &self.input,
                &[chunk.len(), 3, s, s],
                data,
                &[self.output.as_str()],
            )?;
            let o = &res[0];
            let dim = o.data.len() / chunk.len().max(1);
            for n in 0..chunk.len() {
                out.push(o.data[n * dim..(n + 1) * dim].to_vec());
            }
        }
        Ok(out)
    }
}
