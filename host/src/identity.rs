//! The identity check of a generation: how much of the person in the photo survived in the
//! image the client gets, for every method alike. The reference face (the plan's, else the
//! dominant one) is embedded from the photo; the finished image's faces are detected again and
//! the one at the reference's place is compared (`likeness_vision::identity`). The plan's gate,
//! when it has one, judges the score (`crate::execute`).

use image::RgbImage;
use likeness_vision::{IdentityScore, MatchOptions, Reference, Spread, Vision};

use crate::wasm::Image;

/// The face whose identity a generation keeps.
#[derive(Debug, Clone)]
pub struct ReferenceFace {
    /// Its index among the analysis's faces.
    pub index: u32,
    /// Its box and embedding.
    pub reference: Reference,
}

/// What a response says about identity.
#[derive(Debug, Clone, PartialEq)]
pub enum Identity {
    /// The output was scored.
    Scored(IdentityReport),
    /// No score: why (no face in the photo, no embedding model, the scoring failed).
    Unscored(String),
}

/// The score of the answered image.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityReport {
    /// Cosine similarity of the reference face and the output's face there, 0..1 (0 when the
    /// output has no face at the reference's place).
    pub score: f32,
    /// The reference face's index among the photo's faces.
    pub reference_face: u32,
    /// The gate's threshold, when the plan has a gate.
    pub threshold: Option<f32>,
    /// Whether the score reached the threshold; none without a gate.
    pub passed: Option<bool>,
    /// How many images were made and scored for this answer.
    pub attempts: u32,
    /// The matched face's box in the output, `[x1, y1, x2, y2]`.
    pub output_face: Option<[f32; 4]>,
    /// Why the score is 0 without a comparison, when it is.
    pub note: Option<String>,
}

impl IdentityReport {
    /// The report of one image's `score` for `reference`, not yet judged by a gate.
    pub fn new(score: &IdentityScore, reference: &ReferenceFace) -> Self {
        IdentityReport {
            score: score.score,
            reference_face: reference.index,
            threshold: None,
            passed: None,
            attempts: 1,
            output_face: score.matched.map(|m| m.bbox),
            note: score.unmatched_reason(),
        }
    }
}

impl Identity {
    /// The score, when there is one.
    pub fn report(&self) -> Option<&IdentityReport> {
        match self {
            Identity::Scored(report) => Some(report),
            Identity::Unscored(_) => None,
        }
    }

    /// The `X-Likeness-Identity` header's value: `score=0.712; reference-face=0`, then
    /// `; threshold=0.600; passed=true` with a gate, `; attempts=N`, and `; note=...` when no
    /// face matched; or `none; reason=...`.
    pub fn header(&self) -> String {
        match self {
            Identity::Scored(r) => {
                let mut value =
                    format!("score={:.3}; reference-face={}", r.score, r.reference_face);
                if let (Some(threshold), Some(passed)) = (r.threshold, r.passed) {
                    value.push_str(&format!("; threshold={threshold:.3}; passed={passed}"));
                }
                value.push_str(&format!("; attempts={}", r.attempts));
                if let Some(note) = &r.note {
                    value.push_str(&format!("; note={note}"));
                }
                value
            }
            Identity::Unscored(reason) => format!("none; reason={reason}"),
        }
    }
}

/// The reference face of a generation: face `planned` of the analysis, else the dominant one,
/// embedded from `photo`. `Err` says why there is none (no face, no embedding model, a failed
/// embedding); the generation goes on without a score.
pub fn reference_face(
    vision: &Vision,
    photo: &RgbImage,
    analysis: &likeness_vision::Analysis,
    planned: Option<u32>,
) -> Result<ReferenceFace, String> {
    let index = planned.unwrap_or(0);
    let Some(face) = analysis.faces.get(index as usize) else {
        return Err(match analysis.faces.len() {
            0 => "the photo has no face to compare the output with".into(),
            n => format!("the plan's reference face {index} is not among the photo's {n} faces"),
        });
    };
    if vision.embedder().is_none() {
        return Err("this host has no face embedding model".into());
    }
    let reference = vision
        .reference(photo, face)
        .map_err(|error| format!("embedding the reference face failed: {error}"))?;
    Ok(ReferenceFace { index, reference })
}

/// Scores `output` against `reference` (blocking: detection, its parts through `spread`, and
/// embedding).
pub fn score(
    vision: &Vision,
    reference: &ReferenceFace,
    output: &Image,
    spread: &dyn Spread,
) -> Result<IdentityScore, likeness_vision::VisionError> {
    vision.identity_score(
        &reference.reference,
        &to_rgb(output),
        &MatchOptions::default(),
        spread,
    )
}

/// An RGBA result as RGB (alpha dropped).
fn to_rgb(image: &Image) -> RgbImage {
    let rgb = image
        .rgba
        .chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    RgbImage::from_raw(image.width, image.height, rgb).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use likeness_vision::identity::MatchedFace;

    fn reference() -> ReferenceFace {
        ReferenceFace {
            index: 1,
            reference: Reference {
                bbox: [0.0, 0.0, 10.0, 10.0],
                embedding: vec![1.0],
                width: 20,
                height: 20,
            },
        }
    }

    fn scored(score: f32, matched: bool) -> IdentityScore {
        IdentityScore {
            score,
            matched: matched.then_some(MatchedFace {
                index: 0,
                bbox: [1.0, 2.0, 3.0, 4.0],
                overlap: 0.9,
            }),
            faces_in_output: usize::from(matched),
            detect_ms: 1.0,
            embed_ms: 1.0,
        }
    }

    #[test]
    fn the_header_says_the_score_and_the_gate_verdict() {
        let pass = IdentityReport {
            threshold: Some(0.5),
            passed: Some(true),
            ..IdentityReport::new(&scored(0.71, true), &reference())
        };
        assert_eq!(pass.output_face, Some([1.0, 2.0, 3.0, 4.0]));
        assert_eq!(
            Identity::Scored(pass).header(),
            "score=0.710; reference-face=1; threshold=0.500; passed=true; attempts=1"
        );
        let fail = IdentityReport {
            threshold: Some(0.5),
            passed: Some(false),
            attempts: 2,
            ..IdentityReport::new(&scored(0.0, false), &reference())
        };
        assert!(
            Identity::Scored(fail)
                .header()
                .ends_with("passed=false; attempts=2; note=no face was found in the output")
        );
        let ungated = IdentityReport::new(&scored(0.3, true), &reference());
        assert_eq!((ungated.threshold, ungated.passed), (None, None));
        assert_eq!(
            Identity::Scored(ungated).header(),
            "score=0.300; reference-face=1; attempts=1"
        );
        assert_eq!(
            Identity::Unscored("no face".into()).header(),
            "none; reason=no face"
        );
    }

    #[test]
    fn rgba_results_lose_only_their_alpha() {
        let image = Image {
            width: 2,
            height: 1,
            rgba: vec![1, 2, 3, 4, 5, 6, 7, 8],
        };
        assert_eq!(to_rgb(&image).into_raw(), vec![1, 2, 3, 5, 6, 7]);
    }
}
