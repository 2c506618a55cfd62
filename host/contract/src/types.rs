//! The contract's data, as the host holds it (see `wit/style.wit` for each field's meaning).

/// A point in image pixels (origin top-left).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Point {
    /// Pixels from the left.
    pub x: f32,
    /// Pixels from the top.
    pub y: f32,
}

/// An axis-aligned box in image pixels: top-left (x1, y1) to bottom-right (x2, y2).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rect {
    /// Left.
    pub x1: f32,
    /// Top.
    pub y1: f32,
    /// Right.
    pub x2: f32,
    /// Bottom.
    pub y2: f32,
}

impl Rect {
    /// Width (0 for an inverted box).
    pub fn width(&self) -> f32 {
        (self.x2 - self.x1).max(0.0)
    }

    /// Height (0 for an inverted box).
    pub fn height(&self) -> f32 {
        (self.y2 - self.y1).max(0.0)
    }

    /// Area in square pixels (0 for an inverted box).
    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }
}

/// The five facial landmarks, in image pixels; left and right as seen in the image.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Landmarks {
    /// Left eye.
    pub left_eye: Point,
    /// Right eye.
    pub right_eye: Point,
    /// Nose tip.
    pub nose: Point,
    /// Left mouth corner.
    pub mouth_left: Point,
    /// Right mouth corner.
    pub mouth_right: Point,
}

impl Landmarks {
    /// The landmarks as `[x, y]` pairs in the order left eye, right eye, nose, left mouth
    /// corner, right mouth corner.
    pub fn to_array(&self) -> [[f32; 2]; 5] {
        [
            self.left_eye,
            self.right_eye,
            self.nose,
            self.mouth_left,
            self.mouth_right,
        ]
        .map(|p| [p.x, p.y])
    }

    /// The landmarks from `[x, y]` pairs in [`Landmarks::to_array`]'s order.
    pub fn from_array(points: [[f32; 2]; 5]) -> Landmarks {
        let [left_eye, right_eye, nose, mouth_left, mouth_right] =
            points.map(|[x, y]| Point { x, y });
        Landmarks {
            left_eye,
            right_eye,
            nose,
            mouth_left,
            mouth_right,
        }
    }
}

/// One detected face.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Face {
    /// The face's box.
    pub bbox: Rect,
    /// Detector confidence, 0..1.
    pub score: f32,
    /// The five landmarks.
    pub landmarks: Landmarks,
    /// The box's area as a share of the image's area, 0..1.
    pub share: f32,
    /// True for the one face the identity methods use by default (the largest).
    pub dominant: bool,
}

/// What the host saw in the photo (after EXIF orientation).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Analysis {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Largest first.
    pub faces: Vec<Face>,
}

impl Analysis {
    /// The analysis in the coordinates of an image scaled by `(sx, sy)` to `width` x `height`.
    pub fn scaled(&self, (sx, sy): (f32, f32), width: u32, height: u32) -> Analysis {
        let mut scaled = self.clone();
        scaled.width = width;
        scaled.height = height;
        for face in &mut scaled.faces {
            let r = &mut face.bbox;
            (r.x1, r.y1, r.x2, r.y2) = (r.x1 * sx, r.y1 * sy, r.x2 * sx, r.y2 * sy);
            face.landmarks =
                Landmarks::from_array(face.landmarks.to_array().map(|[x, y]| [x * sx, y * sy]));
        }
        scaled
    }
}

/// The kinds of method the host can run; a plan's [`Method`] says which one and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MethodKind {
    /// Face embedding + keypoint ControlNet (IdentityNet): one clear face.
    InstantId,
    /// ID tokens through cross-attention: heavily stylised looks.
    Pulid,
    /// Structure only (canny / depth / pose), no identity.
    Controlnet,
    /// A neural style-transfer network on the CPU.
    StyleTransfer,
    /// No neural network: the style's post-process renders the look from the photo.
    None,
}

impl MethodKind {
    /// The name as the WIT contract and the HTTP API spell it (also the key of a diffusion
    /// pack's `[methods.NAME]`).
    pub fn name(self) -> &'static str {
        match self {
            MethodKind::InstantId => "instant-id",
            MethodKind::Pulid => "pulid",
            MethodKind::Controlnet => "controlnet",
            MethodKind::StyleTransfer => "style-transfer",
            MethodKind::None => "none",
        }
    }

    /// Whether the method runs the diffusion pack.
    pub fn is_diffusion(self) -> bool {
        matches!(
            self,
            MethodKind::InstantId | MethodKind::Pulid | MethodKind::Controlnet
        )
    }
}

/// A conditioning image the host can derive from the photo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ControlKind {
    /// Canny edges.
    Canny,
    /// A depth map.
    Depth,
    /// InstantID's face keypoints (IdentityNet).
    FaceKeypoints,
    /// Body pose.
    Pose,
}

impl ControlKind {
    /// Every kind, in the contract's order.
    pub const ALL: [ControlKind; 4] = [
        ControlKind::Canny,
        ControlKind::Depth,
        ControlKind::FaceKeypoints,
        ControlKind::Pose,
    ];

    /// The name as the WIT contract, the HTTP API and a pack manifest spell it.
    pub fn name(self) -> &'static str {
        match self {
            ControlKind::Canny => "canny",
            ControlKind::Depth => "depth",
            ControlKind::FaceKeypoints => "face-keypoints",
            ControlKind::Pose => "pose",
        }
    }
}

/// An output size in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Size {
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

/// The sizes a diffusion pack runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeLimits {
    /// Both sides are multiples of this (at least 1).
    pub multiple: u32,
    /// The smallest side.
    pub min_side: u32,
    /// The largest side.
    pub max_side: u32,
    /// The long side the host uses when a plan sets no size.
    pub default_side: u32,
}

impl SizeLimits {
    /// Whether the pack runs `size`.
    pub fn contains(&self, size: Size) -> bool {
        let multiple = self.multiple.max(1);
        [size.width, size.height]
            .iter()
            .all(|&side| (self.min_side..=self.max_side).contains(&side) && side % multiple == 0)
    }

    /// The size the host uses for a `width` x `height` photo when a plan sets none: the long
    /// side [`SizeLimits::default_side`], the short side as the aspect ratio gives it, each side
    /// rounded to the nearest multiple and kept within the limits; orientation kept.
    pub fn default_for(&self, width: u32, height: u32) -> Size {
        let multiple = self.multiple.max(1);
        let snap = |side: f64| {
            let lo = self.min_side.div_ceil(multiple) * multiple;
            let hi = (self.max_side / multiple) * multiple;
            let rounded = ((side / f64::from(multiple)).round() as u32).saturating_mul(multiple);
            rounded.clamp(lo.min(hi), hi.max(lo))
        };
        let long = snap(f64::from(self.default_side));
        let (w, h) = (width.max(1), height.max(1));
        let short = snap(f64::from(long) * f64::from(w.min(h)) / f64::from(w.max(h)));
        if w >= h {
            Size {
                width: long,
                height: short,
            }
        } else {
            Size {
                width: short,
                height: long,
            }
        }
    }
}

/// What the host's style-transfer networks offer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TransferCapabilities {
    /// The learned styles, by name, that a transfer plan may blend.
    pub learned_styles: Vec<String>,
    /// Whether a style picture from the package's `assets/` may be used as the style.
    pub style_pictures: bool,
    /// The largest working long side.
    pub max_side: u32,
}

/// What this host can run right now, in full: a plan outside this is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// The methods that can run; `none` is always among them.
    pub methods: Vec<MethodKind>,
    /// The control maps the diffusion methods may use.
    pub control_maps: Vec<ControlKind>,
    /// The diffusion pack's sizes; `None` without a diffusion pack.
    pub diffusion_sizes: Option<SizeLimits>,
    /// The style-transfer networks; `None` when their pack is missing.
    pub transfer: Option<TransferCapabilities>,
}

impl Capabilities {
    /// A host without any model pack: nothing but method `none`.
    pub fn none() -> Capabilities {
        Capabilities {
            methods: vec![MethodKind::None],
            control_maps: Vec::new(),
            diffusion_sizes: None,
            transfer: None,
        }
    }

    /// Every diffusion method and control map, with an SDXL pack's sizes (multiples of 64,
    /// sides 512..=1536, 1024 by default): what a style's plans are dry-run against. (Style
    /// transfer is left out: with these methods offered a style plans diffusion.)
    pub fn all() -> Capabilities {
        Capabilities {
            methods: vec![
                MethodKind::InstantId,
                MethodKind::Pulid,
                MethodKind::Controlnet,
                MethodKind::None,
            ],
            control_maps: ControlKind::ALL.to_vec(),
            diffusion_sizes: Some(SizeLimits {
                multiple: 64,
                min_side: 512,
                max_side: 1536,
                default_side: 1024,
            }),
            transfer: None,
        }
    }

    /// Whether `method` can run (`none` always can).
    pub fn offers(&self, method: MethodKind) -> bool {
        method == MethodKind::None || self.methods.contains(&method)
    }

    /// Whether the control map `kind` can be drawn.
    pub fn draws(&self, kind: ControlKind) -> bool {
        self.control_maps.contains(&kind)
    }
}

/// A typed option value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Text.
    Text(String),
    /// A whole number.
    Integer(i64),
    /// A number.
    Number(f64),
    /// Yes or no.
    Boolean(bool),
}

impl Value {
    /// The value written as a client would write it (how 0.1 styles receive options).
    pub fn to_text(&self) -> String {
        match self {
            Value::Text(text) => text.clone(),
            Value::Integer(n) => n.to_string(),
            Value::Number(x) => x.to_string(),
            Value::Boolean(b) => b.to_string(),
        }
    }
}

/// A request's options: every parameter the style declared (in declaration order, checked,
/// defaults applied); a parameter without a default is absent when unset.
pub type Options = Vec<(String, Value)>;

/// One ControlNet condition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ControlMap {
    /// Which condition.
    pub kind: ControlKind,
    /// Conditioning scale.
    pub weight: f32,
    /// Share of the denoising steps where the condition starts to apply, 0..1.
    pub start: f32,
    /// Share of the denoising steps where it stops, `start..=1`.
    pub end: f32,
}

/// The settings of a diffusion method.
#[derive(Debug, Clone, PartialEq)]
pub struct Diffusion {
    /// The prompt.
    pub prompt: String,
    /// What to avoid.
    pub negative_prompt: String,
    /// ControlNet conditions.
    pub control_maps: Vec<ControlMap>,
    /// Identity strength (InstantID adapter scale, PuLID id scale), 0..2.
    pub identity_weight: f32,
    /// Denoising steps, at least 1.
    pub steps: u32,
    /// Classifier-free guidance scale; `<= 1` disables CFG.
    pub guidance: f32,
    /// The output size; `None`: the host's default for the photo's aspect ratio.
    pub size: Option<Size>,
    /// Noise seed; `None` lets the host choose.
    pub seed: Option<u64>,
}

/// The settings of a neural style transfer.
#[derive(Debug, Clone, PartialEq)]
pub struct Transfer {
    /// Learned styles and their blend weights.
    pub learned_styles: Vec<(String, f32)>,
    /// A style picture inside the package's `assets/`, used instead of the learned styles.
    pub style_picture: Option<String>,
    /// How much of the stylised rendition replaces the photo, 0..1.
    pub strength: f32,
    /// The working long side; `None`: the host's default.
    pub working_side: Option<u32>,
    /// How much lighter the stylisation is inside the faces, 0..1.
    pub face_preservation: f32,
}

/// A method and its settings.
#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    /// InstantID.
    InstantId(Diffusion),
    /// PuLID.
    Pulid(Diffusion),
    /// ControlNet, structure only.
    Controlnet(Diffusion),
    /// A neural style transfer.
    StyleTransfer(Transfer),
    /// No neural network: `post-process` gets the photo.
    None,
}

impl Method {
    /// Which kind of method this is.
    pub fn kind(&self) -> MethodKind {
        match self {
            Method::InstantId(_) => MethodKind::InstantId,
            Method::Pulid(_) => MethodKind::Pulid,
            Method::Controlnet(_) => MethodKind::Controlnet,
            Method::StyleTransfer(_) => MethodKind::StyleTransfer,
            Method::None => MethodKind::None,
        }
    }

    /// The diffusion settings, for the diffusion methods.
    pub fn diffusion(&self) -> Option<&Diffusion> {
        match self {
            Method::InstantId(d) | Method::Pulid(d) | Method::Controlnet(d) => Some(d),
            Method::StyleTransfer(_) | Method::None => None,
        }
    }

    /// A diffusion method of `kind` with `settings`; `None` for a kind that is not diffusion.
    pub fn with_diffusion(kind: MethodKind, settings: Diffusion) -> Option<Method> {
        match kind {
            MethodKind::InstantId => Some(Method::InstantId(settings)),
            MethodKind::Pulid => Some(Method::Pulid(settings)),
            MethodKind::Controlnet => Some(Method::Controlnet(settings)),
            MethodKind::StyleTransfer | MethodKind::None => None,
        }
    }
}

/// The identity check after the image is made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IdentityGate {
    /// The least cosine similarity between the reference face and the output's face, 0..1.
    pub threshold: f32,
    /// Most attempts (new seeds) before the host moves on to the fallbacks, at least 1.
    pub attempts: u32,
}

/// What the host should make, decided by the style.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The method to run.
    pub method: Method,
    /// What to run instead, in order, when the method cannot run for this request.
    pub fallbacks: Vec<Method>,
    /// Indexes into the analysis's faces of the people whose identity is kept; empty: the
    /// dominant face.
    pub reference_faces: Vec<u32>,
    /// The identity check; `None`: the host only reports the score.
    pub identity_gate: Option<IdentityGate>,
    /// One sentence for the client: why this method.
    pub reason: String,
}

impl Plan {
    /// A plan for method `none` with `reason`.
    pub fn none(reason: impl Into<String>) -> Plan {
        Plan {
            method: Method::None,
            fallbacks: Vec::new(),
            reference_faces: Vec::new(),
            identity_gate: None,
            reason: reason.into(),
        }
    }

    /// The face whose identity is kept: the first reference face, else the analysis's
    /// dominant face, else the largest.
    pub fn reference_face<'a>(&self, analysis: &'a Analysis) -> Option<&'a Face> {
        match self.reference_faces.first() {
            Some(&i) => analysis.faces.get(i as usize),
            None => crate::policy::dominant_face(analysis).map(|i| &analysis.faces[i]),
        }
    }
}

/// The type of a style parameter, with its bounds.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamKind {
    /// Free text, at most this many characters.
    Text(u32),
    /// A whole number within `min..=max`.
    Integer {
        /// Smallest value.
        min: i64,
        /// Largest value.
        max: i64,
    },
    /// A number within `min..=max`.
    Number {
        /// Smallest value.
        min: f64,
        /// Largest value.
        max: f64,
    },
    /// Yes or no.
    Boolean,
    /// One of these values (a text option).
    Choice(Vec<String>),
}

impl ParamKind {
    /// The kind's name as the WIT contract spells it.
    pub fn name(&self) -> &'static str {
        match self {
            ParamKind::Text(_) => "text",
            ParamKind::Integer { .. } => "integer",
            ParamKind::Number { .. } => "number",
            ParamKind::Boolean => "boolean",
            ParamKind::Choice(_) => "choice",
        }
    }
}

/// A parameter that clients may set through the request options.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    /// The option's name.
    pub name: String,
    /// One sentence for clients.
    pub description: String,
    /// Its type and bounds.
    pub kind: ParamKind,
    /// The value used when the client sets none; `None`: optional, absent when unset.
    pub default_value: Option<Value>,
}

/// Who the style is and which options it takes.
#[derive(Debug, Clone, PartialEq)]
pub struct StyleInfo {
    /// The style id.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// The version.
    pub version: String,
    /// One sentence for clients.
    pub description: String,
    /// The parameters.
    pub params: Vec<ParamSpec>,
}

/// A style's own, expected failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StyleError {
    /// The options break a rule their specs cannot express.
    InvalidOptions(String),
    /// The input cannot be styled.
    UnusableInput(String),
    /// A bug or broken asset in the style; the text goes to the log only.
    Internal(Option<String>),
}

impl std::fmt::Display for StyleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StyleError::InvalidOptions(message) => write!(f, "invalid options: {message}"),
            StyleError::UnusableInput(message) => write!(f, "unusable input: {message}"),
            StyleError::Internal(_) => f.write_str("the style failed internally"),
        }
    }
}

impl std::error::Error for StyleError {}
