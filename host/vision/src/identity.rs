//! The identity score: how much of a person survived a generation. The faces of the output image
//! are detected again, the one where the reference face was (its box scaled by the size ratio
//! of output to photo, matched by overlap or centre distance) is embedded, and its cosine
//! similarity with the reference face's embedding is the score. One mechanism for every
//! method: the output of a diffusion method, of a style transfer and of a post-process alike.

use std::time::Instant;

use image::RgbImage;
use serde::Serialize;

use crate::detect::iou;
use crate::error::{Result, VisionError};
use crate::spread::Spread;
use crate::{AnalyzeOptions, Face, Vision, cosine};

/// The person whose identity is checked: one face of the photo and its embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    /// The face's box `[x1, y1, x2, y2]` in the photo's pixels.
    pub bbox: [f32; 4],
    /// Its L2-normalised identity embedding.
    pub embedding: Vec<f32>,
    /// The photo's width (output positions are mapped by the size ratio).
    pub width: u32,
    /// The photo's height.
    pub height: u32,
}

impl Reference {
    /// The reference box in the pixels of a `width x height` image of the same scene.
    pub fn box_in(&self, width: u32, height: u32) -> [f32; 4] {
        let sx = width as f32 / self.width.max(1) as f32;
        let sy = height as f32 / self.height.max(1) as f32;
        let b = self.bbox;
        [b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy]
    }
}

/// How the output's faces are found and matched to the reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatchOptions {
    /// The least detector score of a face in the output. Stylised faces score lower than
    /// photographed ones, and the position does the rest of the matching, so this is below the
    /// detector's own recommendation (0.95 for MTCNN).
    pub min_score: f32,
    /// A face whose box overlaps the scaled reference box by at least this IoU matches.
    pub min_overlap: f32,
    /// A face whose centre is within this share of the reference box's diagonal from the
    /// reference box's centre matches too (a detector drawing a tighter or looser box).
    pub max_centre_distance: f32,
    /// Only faces whose side is at least this share of the scaled reference box's side are
    /// looked for (MTCNN skips the pyramid levels for smaller ones, most of its work on a
    /// portrait): a box a quarter the reference's size at its place is a detail of the face,
    /// not the face. 0 looks at every size.
    pub min_face_side: f32,
}

impl Default for MatchOptions {
    fn default() -> Self {
        MatchOptions {
            min_score: 0.8,
            min_overlap: 0.3,
            max_centre_distance: 0.25,
            min_face_side: 0.25,
        }
    }
}

/// The output face matched to the reference.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MatchedFace {
    /// Its index among the output's faces (largest first).
    pub index: usize,
    /// Its box `[x1, y1, x2, y2]` in the output's pixels.
    pub bbox: [f32; 4],
    /// Its IoU with the scaled reference box.
    pub overlap: f32,
}

/// How much of the reference face's identity an output image kept.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdentityScore {
    /// Cosine similarity between the reference face and the matched output face, clamped to
    /// 0..1; 0 when no output face matched.
    pub score: f32,
    /// The output face that matched, if any.
    pub matched: Option<MatchedFace>,
    /// How many faces the output has.
    pub faces_in_output: usize,
    /// Milliseconds spent detecting the output's faces.
    pub detect_ms: f64,
    /// Milliseconds spent embedding the matched face.
    pub embed_ms: f64,
}

impl IdentityScore {
    /// Why the score is 0 without a comparison, when it is: one sentence for the client.
    pub fn unmatched_reason(&self) -> Option<String> {
        match (self.matched, self.faces_in_output) {
            (Some(_), _) => None,
            (None, 0) => Some("no face was found in the output".into()),
            (None, 1) => {
                Some("the one face in the output is not where the reference face was".into())
            }
            (None, n) => Some(format!(
                "none of the {n} faces in the output is where the reference face was"
            )),
        }
    }
}

/// The output face that best matches `reference` (a box in the output's pixels): the largest
/// overlap among the faces that overlap enough or whose centres are close enough. Returns its
/// index and overlap.
pub fn match_face(
    reference: [f32; 4],
    faces: &[[f32; 4]],
    options: &MatchOptions,
) -> Option<(usize, f32)> {
    let centre = |b: &[f32; 4]| [(b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0];
    let [rx, ry] = centre(&reference);
    let diagonal = (reference[2] - reference[0]).hypot(reference[3] - reference[1]);
    faces
        .iter()
        .enumerate()
        .filter_map(|(i, face)| {
            let overlap = iou(&reference, face);
            let [cx, cy] = centre(face);
            let near = (cx - rx).hypot(cy - ry) <= options.max_centre_distance * diagonal;
            (overlap >= options.min_overlap || near).then_some((i, overlap))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

impl Vision {
    /// The reference for `face` of `photo`: its own embedding when the analysis has one,
    /// else embedded now.
    pub fn reference(&self, photo: &RgbImage, face: &Face) -> Result<Reference> {
        let embedding = match &face.embedding {
            Some(embedding) => embedding.clone(),
            None => self
                .embed_faces(photo, &[face.landmarks])?
                .pop()
                .ok_or_else(|| VisionError::inference("embedding", "no output"))?,
        };
        Ok(Reference {
            bbox: face.bbox,
            embedding,
            width: photo.width(),
            height: photo.height(),
        })
    }

    /// Scores how much of `reference` survived in `output` (any size: positions are mapped by
    /// the size ratio). No face at the reference's place is a score of 0 with
    /// [`IdentityScore::matched`] empty, not an error. The detection's parts run through
    /// `spread`.
    pub fn identity_score(
        &self,
        reference: &Reference,
        output: &RgbImage,
        options: &MatchOptions,
        spread: &dyn Spread,
    ) -> Result<IdentityScore> {
        let started = Instant::now();
        let scaled = reference.box_in(output.width(), output.height());
        // MTCNN looks for faces of at least half the side of a square of `min_face_share`.
        let side = ((scaled[2] - scaled[0]) * (scaled[3] - scaled[1]))
            .max(0.0)
            .sqrt();
        let area = (output.width() as f32 * output.height() as f32).max(1.0);
        let min_face_share = (options.min_face_side > 0.0)
            .then(|| (2.0 * options.min_face_side * side).powi(2) / area);
        let analysis = self.analyze_until(
            output,
            &AnalyzeOptions {
                min_score: Some(options.min_score),
                min_face_share,
                ..AnalyzeOptions::default()
            },
            &|_| true,
            spread,
        )?;
        let detect_ms = started.elapsed().as_secs_f64() * 1e3;
        let boxes: Vec<[f32; 4]> = analysis.faces.iter().map(|f| f.bbox).collect();
        let Some((index, overlap)) = match_face(scaled, &boxes, options) else {
            return Ok(IdentityScore {
                score: 0.0,
                matched: None,
                faces_in_output: boxes.len(),
                detect_ms,
                embed_ms: 0.0,
            });
        };
        let started = Instant::now();
        let face = &analysis.faces[index];
        let embedding = self
            .embed_faces(output, &[face.landmarks])?
            .pop()
            .ok_or_else(|| VisionError::inference("embedding", "no output"))?;
        Ok(IdentityScore {
            score: cosine(&reference.embedding, &embedding).clamp(0.0, 1.0),
            matched: Some(MatchedFace {
                index,
                bbox: face.bbox,
                overlap,
            }),
            faces_in_output: boxes.len(),
            detect_ms,
            embed_ms: started.elapsed().as_secs_f64() * 1e3,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_face_at_the_reference_place_matches() {
        let options = MatchOptions::default();
        let reference = [100.0, 100.0, 200.0, 220.0];
        let faces = [
            [400.0, 100.0, 500.0, 220.0], // elsewhere
            [108.0, 96.0, 205.0, 215.0],  // here
        ];
        let (index, overlap) = match_face(reference, &faces, &options).expect("match");
        assert_eq!(index, 1);
        assert!(overlap > 0.8, "{overlap}");
        assert_eq!(match_face(reference, &faces[..1], &options), None);
        assert_eq!(match_face(reference, &[], &options), None);
    }

    #[test]
    fn a_tighter_box_matches_by_its_centre() {
        let options = MatchOptions::default();
        let reference = [100.0, 100.0, 300.0, 300.0];
        // IoU 0.16, but centred on the reference.
        let tight = [160.0, 160.0, 240.0, 240.0];
        assert!(iou(&reference, &tight) < options.min_overlap);
        assert_eq!(
            match_face(reference, &[tight], &options).map(|m| m.0),
            Some(0)
        );
        // As small, beside it: no match.
        let beside = [290.0, 160.0, 370.0, 240.0];
        assert_eq!(match_face(reference, &[beside], &options), None);
    }

    #[test]
    fn reference_boxes_follow_the_size_ratio() {
        let reference = Reference {
            bbox: [10.0, 20.0, 30.0, 60.0],
            embedding: vec![1.0],
            width: 100,
            height: 200,
        };
        assert_eq!(reference.box_in(200, 100), [20.0, 10.0, 60.0, 30.0]);
    }

    #[test]
    fn unmatched_scores_say_why() {
        let score = |faces_in_output| IdentityScore {
            score: 0.0,
            matched: None,
            faces_in_output,
            detect_ms: 0.0,
            embed_ms: 0.0,
        };
        assert_eq!(
            score(0).unmatched_reason().as_deref(),
            Some("no face was found in the output")
        );
        assert!(score(1).unmatched_reason().unwrap().contains("one face"));
        assert!(score(3).unmatched_reason().unwrap().contains("3 faces"));
    }
}
