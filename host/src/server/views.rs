//! The JSON bodies of the API (their OpenAPI schemas are derived from these types).

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ErrorDetail;
use crate::identity::{Identity, IdentityReport};
use crate::jobs::{Outcome, Snapshot};
use crate::output::{OutputFormat, Rendered};
use likeness_contract::{Diffusion, Method, Options, Plan, Transfer, Value};

/// One face, in the oriented photo's pixels.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FaceView {
    /// The face's box `[x1, y1, x2, y2]`.
    #[serde(rename = "box")]
    #[schema(value_type = Vec<f32>, min_items = 4, max_items = 4)]
    pub bbox: [f32; 4],
    /// Detector confidence, 0..1.
    pub score: f32,
    /// Left eye, right eye, nose, left and right mouth corners, each `[x, y]` (left and right
    /// as seen in the image).
    #[schema(value_type = Vec<Vec<f32>>, min_items = 5, max_items = 5)]
    pub landmarks: [[f32; 2]; 5],
    /// The box's share of the image's area.
    pub share: f32,
    /// Whether this is the largest face (the one identity methods use).
    pub dominant: bool,
    /// The L2-normalised identity embedding (only with `?embedding=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
}

impl FaceView {
    fn of(face: &likeness_vision::Face) -> FaceView {
        FaceView {
            bbox: face.bbox,
            score: face.score,
            landmarks: face.landmarks,
            share: face.share,
            dominant: face.dominant,
            embedding: face.embedding.clone(),
        }
    }

    /// The faces of an analysis, largest first.
    pub fn all(analysis: &likeness_vision::Analysis) -> Vec<FaceView> {
        analysis.faces.iter().map(FaceView::of).collect()
    }
}

/// What the host saw in a photo.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AnalysisView {
    /// Width after EXIF orientation, in pixels.
    pub width: u32,
    /// Height after EXIF orientation, in pixels.
    pub height: u32,
    /// The face detector used.
    pub detector: String,
    /// The embedding model, when embeddings were asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding_model: Option<String>,
    /// The faces, largest first.
    pub faces: Vec<FaceView>,
}

impl From<&likeness_vision::Analysis> for AnalysisView {
    fn from(analysis: &likeness_vision::Analysis) -> Self {
        AnalysisView {
            width: analysis.width,
            height: analysis.height,
            detector: serde_json::to_value(analysis.detector)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            embedding_model: analysis.embedding_model.clone(),
            faces: FaceView::all(analysis),
        }
    }
}

/// A style and the version of it that ran.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StyleRef {
    /// The style's id.
    pub id: String,
    /// Its version (unknown until a job has succeeded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The sha256 of the component that ran (with the version; two builds of one version differ
    /// here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl StyleRef {
    /// The style, version and digest that made `rendered`.
    fn of(rendered: &Rendered) -> StyleRef {
        StyleRef {
            id: rendered.style_id.clone(),
            version: Some(rendered.style_version.clone()),
            digest: Some(rendered.style_digest.clone()),
        }
    }
}

/// One ControlNet condition of a plan.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ControlMapView {
    /// `canny`, `depth`, `face-keypoints` or `pose`.
    pub kind: String,
    /// Conditioning scale.
    pub weight: f32,
    /// Share of the steps where it starts to apply.
    pub start: f32,
    /// Share of the steps where it stops.
    pub end: f32,
}

/// An output size.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SizeView {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// One learned style of a style transfer and its blend weight.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LearnedStyleView {
    /// The learned style's name.
    pub name: String,
    /// Its blend weight.
    pub weight: f32,
}

/// A method and its settings; the settings of the diffusion methods (`instant-id`, `pulid`,
/// `controlnet`) or of `style-transfer`, none for `none`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MethodView {
    /// `instant-id`, `pulid`, `controlnet`, `style-transfer` or `none`.
    pub method: String,
    /// The prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// The negative prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    /// ControlNet conditions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_maps: Option<Vec<ControlMapView>>,
    /// Identity strength.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_weight: Option<f32>,
    /// Denoising steps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<u32>,
    /// Classifier-free guidance scale.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guidance: Option<f32>,
    /// Output size (the one that ran, for the method that ran).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<SizeView>,
    /// Noise seed, if the style chose one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// The learned styles blended by a style transfer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learned_styles: Option<Vec<LearnedStyleView>>,
    /// The style picture of a style transfer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub style_picture: Option<String>,
    /// How much of a style transfer's rendition replaces the photo.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strength: Option<f32>,
    /// A style transfer's working long side.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_side: Option<u32>,
    /// How much lighter a style transfer is inside the faces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub face_preservation: Option<f32>,
}

impl MethodView {
    fn bare(method: &Method) -> MethodView {
        MethodView {
            method: method.kind().name().into(),
            prompt: None,
            negative_prompt: None,
            control_maps: None,
            identity_weight: None,
            steps: None,
            guidance: None,
            size: None,
            seed: None,
            learned_styles: None,
            style_picture: None,
            strength: None,
            working_side: None,
            face_preservation: None,
        }
    }
}

impl From<&Method> for MethodView {
    fn from(method: &Method) -> Self {
        let view = MethodView::bare(method);
        match method {
            Method::InstantId(d) | Method::Pulid(d) | Method::Controlnet(d) => {
                let Diffusion {
                    prompt,
                    negative_prompt,
                    control_maps,
                    identity_weight,
                    steps,
                    guidance,
                    size,
                    seed,
                } = d;
                MethodView {
                    prompt: Some(prompt.clone()),
                    negative_prompt: Some(negative_prompt.clone()),
                    control_maps: Some(
                        control_maps
                            .iter()
                            .map(|map| ControlMapView {
                                kind: map.kind.name().into(),
                                weight: map.weight,
                                start: map.start,
                                end: map.end,
                            })
                            .collect(),
                    ),
                    identity_weight: Some(*identity_weight),
                    steps: Some(*steps),
                    guidance: Some(*guidance),
                    size: size.map(|s| SizeView {
                        width: s.width,
                        height: s.height,
                    }),
                    seed: *seed,
                    ..view
                }
            }
            Method::StyleTransfer(Transfer {
                learned_styles,
                style_picture,
                strength,
                working_side,
                face_preservation,
            }) => MethodView {
                learned_styles: Some(
                    learned_styles
                        .iter()
                        .map(|(name, weight)| LearnedStyleView {
                            name: name.clone(),
                            weight: *weight,
                        })
                        .collect(),
                ),
                style_picture: style_picture.clone(),
                strength: Some(*strength),
                working_side: *working_side,
                face_preservation: Some(*face_preservation),
                ..view
            },
            Method::None => view,
        }
    }
}

/// The identity check of a plan.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IdentityGateView {
    /// The least cosine similarity between the reference face and the output's face.
    pub threshold: f32,
    /// Most attempts before the fallbacks.
    pub attempts: u32,
}

/// The style's plan for a generation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PlanView {
    /// The method that ran and its settings.
    #[serde(flatten)]
    pub method: MethodView,
    /// What would run instead, in order, if the method could not.
    pub fallbacks: Vec<MethodView>,
    /// Indexes of the faces whose identity is kept (empty: the dominant face).
    pub reference_faces: Vec<u32>,
    /// The identity check, if the style asked for one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_gate: Option<IdentityGateView>,
    /// Why this method.
    pub reason: String,
}

impl From<&Plan> for PlanView {
    fn from(plan: &Plan) -> Self {
        PlanView {
            method: MethodView::from(&plan.method),
            fallbacks: plan.fallbacks.iter().map(MethodView::from).collect(),
            reference_faces: plan.reference_faces.clone(),
            identity_gate: plan.identity_gate.map(|gate| IdentityGateView {
                threshold: gate.threshold,
                attempts: gate.attempts,
            }),
            reason: plan.reason.clone(),
        }
    }
}

/// The options a style got, checked and with its defaults applied: name -> value.
pub fn options_view(options: &Options) -> BTreeMap<String, serde_json::Value> {
    options
        .iter()
        .map(|(name, value)| {
            let value = match value {
                Value::Text(text) => serde_json::Value::from(text.as_str()),
                Value::Integer(n) => serde_json::Value::from(*n),
                Value::Number(x) => serde_json::Value::from(*x),
                Value::Boolean(b) => serde_json::Value::from(*b),
            };
            (name.clone(), value)
        })
        .collect()
}

/// The generated image.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OutputView {
    /// `png`, `jpeg` or `webp`.
    pub format: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The image as a `data:` URL (base64).
    pub data_url: String,
}

/// How much of the person in the photo the result kept.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IdentityView {
    /// Cosine similarity between the reference face in the photo and the result's face at its
    /// place, 0..1; 0 when the result has no face there (`note` says so).
    pub score: f32,
    /// Index into `faces` of the reference face.
    pub reference_face: u32,
    /// The style's threshold, when its plan has an identity gate.
    pub threshold: Option<f32>,
    /// Whether `score` reached `threshold`; null without a gate.
    pub passed: Option<bool>,
    /// How many images were made and scored for this answer.
    pub attempts: u32,
    /// The matched face's box `[x1, y1, x2, y2]` in the result's pixels.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<f32>>, min_items = 4, max_items = 4)]
    pub output_face: Option<[f32; 4]>,
    /// Why the score is 0 without a comparison (e.g. "no face was found in the output").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl From<&IdentityReport> for IdentityView {
    fn from(report: &IdentityReport) -> Self {
        IdentityView {
            score: report.score,
            reference_face: report.reference_face,
            threshold: report.threshold,
            passed: report.passed,
            attempts: report.attempts,
            output_face: report.output_face,
            note: report.note.clone(),
        }
    }
}

/// A finished generation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GenerationView {
    /// The generation's id.
    pub id: String,
    /// The style and version that ran.
    pub style: StyleRef,
    /// The method that ran: the planned one, or a fallback when it could not run or did not
    /// pass the identity gate.
    pub method: String,
    /// The method the style planned.
    pub planned: String,
    /// Why the style chose it (one sentence for people), followed by what happened at run time
    /// (fallbacks, the identity gate's retries) when anything did.
    pub reason: String,
    /// The style's whole plan.
    pub plan: PlanView,
    /// The options the style got: the request's, checked, with the style's defaults applied.
    #[schema(schema_with = super::upload::options_schema)]
    pub options: BTreeMap<String, serde_json::Value>,
    /// The faces the host saw, largest first.
    pub faces: Vec<FaceView>,
    /// How much of the reference face's identity the result kept; null when there is no score
    /// (`identity_reason` says why, e.g. the photo has no face).
    pub identity: Option<IdentityView>,
    /// Why there is no identity score, when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_reason: Option<String>,
    /// The result.
    pub output: OutputView,
    /// Milliseconds per stage.
    pub timings: BTreeMap<String, f64>,
}

impl GenerationView {
    /// The view of `rendered` with an empty `output.data_url`.
    fn without_image(rendered: &Rendered) -> Self {
        GenerationView {
            id: rendered.id.clone(),
            style: StyleRef::of(rendered),
            method: rendered.plan.method.kind().name().into(),
            planned: rendered.planned.name().into(),
            reason: rendered.plan.reason.clone(),
            plan: PlanView::from(&rendered.plan),
            options: options_view(&rendered.options),
            faces: FaceView::all(&rendered.analysis),
            identity: rendered.identity.report().map(IdentityView::from),
            identity_reason: match &rendered.identity {
                Identity::Unscored(reason) => Some(reason.clone()),
                Identity::Scored(_) => None,
            },
            output: OutputView {
                format: rendered.format.name().into(),
                width: rendered.width,
                height: rendered.height,
                data_url: String::new(),
            },
            timings: timings(&rendered.timings),
        }
    }
}

/// Stage timings as a JSON object, milliseconds rounded to 0.01.
fn timings(stages: &[(&'static str, f64)]) -> BTreeMap<String, f64> {
    stages
        .iter()
        .map(|(stage, ms)| (stage.to_string(), (ms * 100.0).round() / 100.0))
        .collect()
}

/// Where to follow and cancel a job.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobLinks {
    /// The job (`GET`).
    #[serde(rename = "self")]
    pub self_: String,
    /// Its progress events (`GET`, server-sent events).
    pub events: String,
    /// Cancels it (`DELETE`).
    pub cancel: String,
}

/// An asynchronous generation.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    /// The job's id.
    pub id: String,
    /// `queued`, `running`, `succeeded`, `failed` or `canceled`.
    pub status: String,
    /// The style (and, once succeeded, the version and digest that ran).
    pub style: StyleRef,
    /// The stage it is in, or ended in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// When it was created, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// When it finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<u64>,
    /// When its result (or error) will be deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
    /// Where to follow and cancel it.
    pub links: JobLinks,
    /// The result, once succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<GenerationView>,
    /// The error, once failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

impl JobView {
    /// The view of the job in `snapshot`; `ttl_ms` is how long finished jobs are kept.
    pub fn of(snapshot: &Snapshot, ttl_ms: u64) -> JobView {
        let base = format!("/v1/jobs/{}", snapshot.id);
        let unknown = || StyleRef {
            id: snapshot.style_id.clone(),
            version: None,
            digest: None,
        };
        let (result, error, style) = match &snapshot.outcome {
            Some(Outcome::Succeeded(finished)) => {
                (Some(finished.view()), None, finished.view.style.clone())
            }
            Some(Outcome::Failed(failure)) => (None, Some(ErrorDetail::from(failure)), unknown()),
            Some(Outcome::Canceled) | None => (None, None, unknown()),
        };
        JobView {
            id: snapshot.id.clone(),
            status: snapshot.status.as_str().into(),
            style,
            stage: snapshot.stage.map(|stage| stage.name().to_string()),
            created_at_ms: snapshot.created_at_ms,
            finished_at_ms: snapshot.finished_at_ms,
            expires_at_ms: snapshot
                .finished_at_ms
                .filter(|_| snapshot.status.is_finished())
                .map(|at| at + ttl_ms),
            links: JobLinks {
                events: format!("{base}/events"),
                cancel: base.clone(),
                self_: base,
            },
            result,
            error,
        }
    }
}

/// A succeeded generation as every client sees it, whichever process ran it: the JSON view
/// (its `output.data_url` left empty; [`Finished::view`] fills it), the facts of the
/// `X-Likeness-*` headers in order, and the encoded image. This is what crosses a Redis queue
/// from a worker to an API node (`crate::queue::wire` serialises it).
#[derive(Debug, Clone)]
pub struct Finished {
    /// The generation's JSON view, without the image.
    pub view: GenerationView,
    /// The facts for the `X-Likeness-*` headers: lower-case header name and value (unencoded,
    /// uncut), in order.
    pub facts: Vec<(String, String)>,
    /// The image's format.
    pub format: OutputFormat,
    /// The encoded image.
    pub bytes: Vec<u8>,
}

impl Finished {
    /// The JSON view with the image as a data URL.
    pub fn view(&self) -> GenerationView {
        let data = base64::engine::general_purpose::STANDARD.encode(&self.bytes);
        let mut view = self.view.clone();
        view.output.data_url = format!("data:{};base64,{data}", self.format.mime());
        view
    }
}

impl Finished {
    /// The answer of a simulated worker (`--simulate-work MS`, a benchmark aid): a one-pixel
    /// image of `format` and a plan `none` whose reason says it was simulated.
    pub fn simulated(id: &str, style: &str, format: OutputFormat, ms: u64) -> Finished {
        let image = crate::wasm::Image {
            width: 1,
            height: 1,
            rgba: vec![128, 128, 128, 255],
        };
        let bytes = format.encode(&image).unwrap_or_default();
        let reason = format!("simulated work of {ms} ms (a benchmark worker)");
        let plan = Plan::none(reason.clone());
        let view = GenerationView {
            id: id.to_string(),
            style: StyleRef {
                id: style.to_string(),
                version: None,
                digest: None,
            },
            method: "none".into(),
            planned: "none".into(),
            reason: reason.clone(),
            plan: PlanView::from(&plan),
            options: BTreeMap::new(),
            faces: Vec::new(),
            identity: None,
            identity_reason: Some("simulated".into()),
            output: OutputView {
                format: format.name().into(),
                width: 1,
                height: 1,
                data_url: String::new(),
            },
            timings: BTreeMap::from([("simulated".to_string(), ms as f64)]),
        };
        Finished {
            view,
            facts: vec![
                ("x-likeness-id".into(), id.to_string()),
                ("x-likeness-reason".into(), reason),
            ],
            format,
            bytes,
        }
    }
}

impl From<Rendered> for Finished {
    fn from(rendered: Rendered) -> Self {
        let timings = rendered
            .timings
            .iter()
            .map(|(stage, ms)| format!("{stage};dur={ms:.2}"))
            .collect::<Vec<_>>()
            .join(", ");
        let facts = [
            ("x-likeness-id", rendered.id.clone()),
            ("x-likeness-style", rendered.style_id.clone()),
            ("x-likeness-style-version", rendered.style_version.clone()),
            ("x-likeness-style-digest", rendered.style_digest.clone()),
            (
                "x-likeness-method",
                rendered.plan.method.kind().name().to_string(),
            ),
            ("x-likeness-planned", rendered.planned.name().to_string()),
            ("x-likeness-reason", rendered.plan.reason.clone()),
            ("x-likeness-identity", rendered.identity.header()),
            ("x-likeness-timings", timings),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect();
        Finished {
            view: GenerationView::without_image(&rendered),
            facts,
            format: rendered.format,
            bytes: rendered.bytes,
        }
    }
}
