//! What crosses Redis, serialised in this one place: a job's request (all but the photo, which
//! has its own key), its stage, and its outcome (a [`Finished`] result with its image, a
//! [`Failure`], or a cancel).

use axum::http::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::jobs::{Failure, Outcome};
use crate::output::OutputFormat;
use crate::pipeline::Stage;
use crate::server::views::{Finished, GenerationView};
use crate::service::GenerationRequest;
use crate::style::canary::Routing;

/// The headers that route a request between a style's current version and its canary.
const ROUTING_HEADERS: [&str; 2] = ["x-request-id", "x-likeness-canary"];

/// A job's request as stored in its Redis hash (field `request`), without the photo.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestRecord {
    /// The style to run.
    pub style: String,
    /// The client's options, in the order sent.
    pub options: Vec<(String, String)>,
    /// The result's format (`png`, `jpeg`, `webp`).
    pub format: String,
    /// The canary-routing headers of the request (name, value).
    pub routing: Vec<(String, String)>,
    /// The sha256 of the style's component serving when the API node accepted the job.
    pub digest: Option<String>,
}

impl RequestRecord {
    /// The record of `request`, whose routing came from `headers`.
    pub fn of(request: &GenerationRequest, headers: &HeaderMap, digest: Option<String>) -> Self {
        RequestRecord {
            style: request.style.clone(),
            options: request.options.clone(),
            format: request.format.name().to_string(),
            routing: ROUTING_HEADERS
                .iter()
                .filter_map(|name| {
                    let value = headers.get(*name)?.to_str().ok()?;
                    Some((name.to_string(), value.to_string()))
                })
                .collect(),
            digest,
        }
    }

    /// The request again, with its photo, for job `id`.
    pub fn into_request(self, id: String, photo: Vec<u8>) -> GenerationRequest {
        let mut headers = HeaderMap::new();
        for (name, value) in &self.routing {
            if let (Some(name), Ok(value)) = (
                ROUTING_HEADERS.iter().find(|known| **known == name),
                HeaderValue::from_str(value),
            ) {
                headers.insert(*name, value);
            }
        }
        GenerationRequest {
            id,
            style: self.style,
            photo,
            options: self.options,
            format: OutputFormat::parse(&self.format).unwrap_or_default(),
            canary: Routing::from_headers(&headers),
        }
    }
}

/// A stage as stored in a job's hash: its name, with `:k:n` for a diffusion step.
pub fn stage_field(stage: Stage) -> String {
    match stage {
        Stage::Step { k, n } => format!("step:{k}:{n}"),
        other => other.name().to_string(),
    }
}

/// The stage a [`stage_field`] names.
pub fn parse_stage(field: &str) -> Option<Stage> {
    let mut parts = field.split(':');
    match parts.next()? {
        "analysing" => Some(Stage::Analysing),
        "planning" => Some(Stage::Planning),
        "post-processing" => Some(Stage::PostProcessing),
        "step" => Some(Stage::Step {
            k: parts.next()?.parse().ok()?,
            n: parts.next()?.parse().ok()?,
        }),
        _ => None,
    }
}

/// The JSON head of a stored outcome; a succeeded one's image follows it.
#[derive(Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
enum Head {
    Succeeded {
        view: Box<GenerationView>,
        facts: Vec<(String, String)>,
        format: String,
    },
    Failed {
        error: Failure,
    },
    Canceled,
}

/// An outcome as one Redis value: a line of JSON, then (when it succeeded) the image's bytes.
pub fn encode_outcome(outcome: &Outcome) -> Vec<u8> {
    let (head, image) = match outcome {
        Outcome::Succeeded(finished) => (
            Head::Succeeded {
                view: Box::new(finished.view.clone()),
                facts: finished.facts.clone(),
                format: finished.format.name().to_string(),
            },
            finished.bytes.as_slice(),
        ),
        Outcome::Failed(failure) => (
            Head::Failed {
                error: failure.clone(),
            },
            &[][..],
        ),
        Outcome::Canceled => (Head::Canceled, &[][..]),
    };
    // serde_json escapes newlines inside strings, so the first one ends the head.
    let mut bytes = serde_json::to_vec(&head).expect("an outcome serialises");
    bytes.push(b'\n');
    bytes.extend_from_slice(image);
    bytes
}

/// The outcome an [`encode_outcome`] value holds.
pub fn decode_outcome(bytes: &[u8]) -> Result<Outcome, String> {
    let end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("a stored outcome has no head")?;
    let head: Head = serde_json::from_slice(&bytes[..end])
        .map_err(|e| format!("a stored outcome is malformed: {e}"))?;
    Ok(match head {
        Head::Succeeded {
            view,
            facts,
            format,
        } => Outcome::Succeeded(std::sync::Arc::new(Finished {
            view: *view,
            facts,
            format: OutputFormat::parse(&format).ok_or("a stored outcome has an unknown format")?,
            bytes: bytes[end + 1..].to_vec(),
        })),
        Head::Failed { error } => Outcome::Failed(error),
        Head::Canceled => Outcome::Canceled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_and_failures_round_trip() {
        for stage in [
            Stage::Analysing,
            Stage::Planning,
            Stage::Step { k: 3, n: 20 },
            Stage::PostProcessing,
        ] {
            assert_eq!(parse_stage(&stage_field(stage)), Some(stage));
        }
        assert_eq!(parse_stage("step:x:1"), None);
        let failure = Failure {
            code: "poison_job".into(),
            message: "line one\nline two".into(),
            style: Some("anime".into()),
            status: 500,
        };
        match decode_outcome(&encode_outcome(&Outcome::Failed(failure.clone()))).unwrap() {
            Outcome::Failed(back) => assert_eq!(back, failure),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decode_outcome(&encode_outcome(&Outcome::Canceled)).unwrap(),
            Outcome::Canceled
        ));
        assert!(decode_outcome(b"{}").is_err());
    }
}
