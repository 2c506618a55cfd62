//! Loading and verifying a model pack: `pack.toml` parsed, every file present with its SHA-256,
//! every graph's signature read from the ONNX file and checked against the contract of its role
//! (docs/model-packs.md). A pack that passes can run; sessions are built later, at first use.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub use likeness_vision::packs::sha256_file;

use crate::error::PackError;
use crate::manifest::{Dtype, GraphEntry, Manifest};
use crate::onnx::{ElemType, Signature, TensorSig, read_signature};

/// What a graph is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// CLIP ViT-L text encoder.
    TextEncoder,
    /// OpenCLIP ViT-bigG text encoder with projection.
    TextEncoder2,
    /// The denoising UNet.
    Unet,
    /// VAE decoder.
    VaeDecoder,
    /// VAE encoder (img2img).
    VaeEncoder,
    /// Canny ControlNet.
    ControlnetCanny,
    /// Depth ControlNet.
    ControlnetDepth,
    /// Pose ControlNet.
    ControlnetPose,
    /// InstantID's IdentityNet (a ControlNet on the face-keypoint image).
    Identitynet,
    /// InstantID's image projection (Resampler).
    InstantidImageProj,
    /// PuLID's ID encoder.
    PulidIdEncoder,
    /// PuLID's EVA02-CLIP-L-14-336 visual tower: the aligned, background-whitened face in, the
    /// L2-normalised class token and the 5 hidden states PuLID takes out.
    PulidEvaClip,
    /// Face parsing (facexlib's BiSeNet) of the aligned face, which PuLID whitens the
    /// background with; optional (without it the host whitens outside a landmark ellipse).
    FaceParsing,
    /// Face recogniser (antelopev2-style 512-d embedding of an aligned 112x112 face).
    FaceRecognizer,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 14] = [
        Role::TextEncoder,
        Role::TextEncoder2,
        Role::Unet,
        Role::VaeDecoder,
        Role::VaeEncoder,
        Role::ControlnetCanny,
        Role::ControlnetDepth,
        Role::ControlnetPose,
        Role::Identitynet,
        Role::InstantidImageProj,
        Role::PulidIdEncoder,
        Role::PulidEvaClip,
        Role::FaceParsing,
        Role::FaceRecognizer,
    ];

    /// Roles every pack must have.
    pub const REQUIRED: [Role; 4] = [
        Role::TextEncoder,
        Role::TextEncoder2,
        Role::Unet,
        Role::VaeDecoder,
    ];

    /// The key under `[graphs]` in pack.toml.
    pub fn key(&self) -> &'static str {
        match self {
            Role::TextEncoder => "text_encoder",
            Role::TextEncoder2 => "text_encoder_2",
            Role::Unet => "unet",
            Role::VaeDecoder => "vae_decoder",
            Role::VaeEncoder => "vae_encoder",
            Role::ControlnetCanny => "controlnet_canny",
            Role::ControlnetDepth => "controlnet_depth",
            Role::ControlnetPose => "controlnet_pose",
            Role::Identitynet => "identitynet",
            Role::InstantidImageProj => "instantid_image_proj",
            Role::PulidIdEncoder => "pulid_id_encoder",
            Role::PulidEvaClip => "pulid_eva_clip",
            Role::FaceParsing => "face_parsing",
            Role::FaceRecognizer => "face_recognizer",
        }
    }

    fn from_key(key: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.key() == key)
    }

    /// Whether this role is a ControlNet (same signature as the canny one).
    pub fn is_controlnet(&self) -> bool {
        matches!(
            self,
            Role::ControlnetCanny
                | Role::ControlnetDepth
                | Role::ControlnetPose
                | Role::Identitynet
        )
    }
}

/// Kind of value a contract tensor holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Floats in the graph's dtype.
    Float,
    /// int64 (or int32) token ids.
    Int,
    /// A timestep: float (any width) or integer.
    Timestep,
}

/// One tensor the contract names: its name, kind and allowed ranks.
struct Want {
    name: String,
    kind: Kind,
    ranks: &'static [usize],
}

fn want(name: &str, kind: Kind, ranks: &'static [usize]) -> Want {
    Want {
        name: name.to_string(),
        kind,
        ranks,
    }
}

/// A verified graph of the pack.
#[derive(Debug, Clone)]
pub struct GraphInfo {
    /// Its role.
    pub role: Role,
    /// The `.onnx` file.
    pub path: PathBuf,
    /// Its float dtype.
    pub dtype: Dtype,
    /// Its signature, as read from the file.
    pub signature: Signature,
    /// The manifest entry.
    pub entry: GraphEntry,
}

/// A loaded, verified pack.
#[derive(Debug, Clone)]
pub struct Pack {
    /// The pack folder.
    pub dir: PathBuf,
    /// The parsed manifest.
    pub manifest: Manifest,
    /// Its graphs by role.
    pub graphs: BTreeMap<Role, GraphInfo>,
    /// Number of down-block residuals the UNet takes (0: it takes none).
    pub down_residuals: usize,
}

fn inside(dir: &Path, manifest: &Path, name: &str) -> Result<PathBuf, PackError> {
    let p = Path::new(name);
    if name.is_empty()
        || p.is_absolute()
        || p.components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(PackError::Manifest {
            file: manifest.to_path_buf(),
            reason: format!("file name {name:?} must be a relative path inside the pack"),
        });
    }
    Ok(dir.join(p))
}

fn verify_file(path: &Path, expected: &str) -> Result<(), PackError> {
    if !path.is_file() {
        return Err(PackError::Io {
            file: path.to_path_buf(),
            reason: "is listed in pack.toml but missing; copy or export the pack again".into(),
        });
    }
    let actual = sha256_file(path).map_err(|e| PackError::Io {
        file: path.to_path_buf(),
        reason: format!("cannot be read ({e})"),
    })?;
    if !actual.eq_ignore_ascii_case(expected.trim()) {
        return Err(PackError::Checksum {
            file: path.to_path_buf(),
            expected: expected.trim().to_string(),
            actual,
        });
    }
    Ok(())
}

impl Pack {
    /// Reads `dir/pack.toml` and verifies the whole pack. Every failure is one sentence naming
    /// the file and the problem.
    pub fn load(dir: &Path) -> Result<Pack, PackError> {
        let manifest_path = dir.join("pack.toml");
        let text = std::fs::read_to_string(&manifest_path).map_err(|e| PackError::Io {
            file: manifest_path.clone(),
            reason: format!("cannot be read ({e}); is {} a model pack?", dir.display()),
        })?;
        let manifest: Manifest = toml::from_str(&text).map_err(|e| PackError::Manifest {
            file: manifest_path.clone(),
            reason: format!("is not a valid pack manifest: {}", e.to_string().trim()),
        })?;
        let bad = |reason: String| PackError::Manifest {
            file: manifest_path.clone(),
            reason,
        };
        if manifest.format != 1 {
            return Err(bad(format!(
                "has format {}, but this engine reads format 1",
                manifest.format
            )));
        }
        if manifest.family != "sdxl" {
            return Err(bad(format!(
                "is for family {:?}, but this engine runs \"sdxl\"",
                manifest.family
            )));
        }
        let lat = &manifest.latent;
        if lat.channels == 0
            || lat.vae_scale_factor == 0
            || lat.size_multiple == 0
            || lat.max_side == 0
        {
            return Err(bad("[latent] sizes must be positive".into()));
        }
        if !lat.size_multiple.is_multiple_of(lat.vae_scale_factor) {
            return Err(bad(
                "[latent] size_multiple must be a multiple of vae_scale_factor".into(),
            ));
        }
        for key in manifest.graphs.keys() {
            if Role::from_key(key).is_none() {
                let known: Vec<&str> = Role::ALL.iter().map(Role::key).collect();
                return Err(bad(format!(
                    "names an unknown role [graphs.{key}] (known roles: {})",
                    known.join(", ")
                )));
            }
        }
        for role in Role::REQUIRED {
            if !manifest.graphs.contains_key(role.key()) {
                return Err(PackError::MissingRole {
                    file: manifest_path.clone(),
                    role: role.key().to_string(),
                });
            }
        }
        for tok in [&manifest.tokenizer, &manifest.tokenizer_2] {
            verify_file(&inside(dir, &manifest_path, &tok.vocab)?, &tok.vocab_sha256)?;
            verify_file(
                &inside(dir, &manifest_path, &tok.merges)?,
                &tok.merges_sha256,
            )?;
        }
        let mut graphs = BTreeMap::new();
        for (key, entry) in &manifest.graphs {
            let role = Role::from_key(key).ok_or_else(|| bad(format!("unknown role {key}")))?;
            let path = inside(dir, &manifest_path, &entry.file)?;
            verify_file(&path, &entry.sha256)?;
            for data in &entry.external_data {
                verify_file(&inside(dir, &manifest_path, &data.file)?, &data.sha256)?;
            }
            let signature = read_signature(&path).map_err(|reason| PackError::Signature {
                file: path.clone(),
                reason,
            })?;
            let dtype = entry.dtype.unwrap_or(manifest.dtype);
            graphs.insert(
                role,
                GraphInfo {
                    role,
                    path,
                    dtype,
                    signature,
                    entry: entry.clone(),
                },
            );
        }
        let mut pack = Pack {
            dir: dir.to_path_buf(),
            manifest,
            graphs,
            down_residuals: 0,
        };
        pack.down_residuals = pack.check_contract()?;
        Ok(pack)
    }

    /// The graph of `role`, if the pack has one.
    pub fn graph(&self, role: Role) -> Option<&GraphInfo> {
        self.graphs.get(&role)
    }

    /// Whether the pack has a graph for `role`.
    pub fn has(&self, role: Role) -> bool {
        self.graphs.contains_key(&role)
    }

    /// Whether the UNet takes the InstantID inputs (`ip_scale` + face tokens in its context).
    pub fn unet_has_ip(&self) -> bool {
        self.graphs[&Role::Unet]
            .signature
            .input("ip_scale")
            .is_some()
    }

    /// Whether the UNet takes PuLID's `id_embedding` and `id_scale`.
    pub fn unet_has_id(&self) -> bool {
        self.graphs[&Role::Unet]
            .signature
            .input("id_embedding")
            .is_some()
    }

    fn manifest_err(&self, reason: String) -> PackError {
        PackError::Manifest {
            file: self.dir.join("pack.toml"),
            reason,
        }
    }

    /// Checks every graph against its role's contract; returns the number of down residuals.
    fn check_contract(&self) -> Result<usize, PackError> {
        let unet = &self.graphs[&Role::Unet];
        let residuals = (0..)
            .take_while(|i| {
                unet.signature
                    .input(&format!("down_block_res_{i}"))
                    .is_some()
            })
            .count();
        if residuals > 0 {
            let Some(ctl) = &self.manifest.control else {
                return Err(self.manifest_err(
                    "lacks the [control] section, which a UNet taking ControlNet residuals needs"
                        .into(),
                ));
            };
            if ctl.down_channels.len() != residuals || ctl.down_strides.len() != residuals {
                return Err(self.manifest_err(format!(
                    "[control] lists {} down channels and {} strides, but the UNet takes {residuals} down residuals",
                    ctl.down_channels.len(),
                    ctl.down_strides.len()
                )));
            }
            if ctl
                .down_strides
                .iter()
                .chain([&ctl.mid_stride])
                .any(|s| *s == 0)
            {
                return Err(self.manifest_err("[control] strides must be positive".into()));
            }
        }
        if unet.signature.input("ip_scale").is_some() && self.manifest.instantid.is_none() {
            return Err(self.manifest_err(
                "lacks the [instantid] section, which a UNet taking ip_scale needs".into(),
            ));
        }
        if unet.signature.input("id_embedding").is_some() && self.manifest.pulid.is_none() {
            return Err(self.manifest_err(
                "lacks the [pulid] section, which a UNet taking id_embedding needs".into(),
            ));
        }
        for info in self.graphs.values() {
            let (inputs, outputs, optional) = self.contract(info, residuals)?;
            check_graph(info, &inputs, &outputs, &optional)?;
        }
        // Residual channels must agree with [control] where the graphs fix them.
        if let Some(ctl) = &self.manifest.control {
            for info in self
                .graphs
                .values()
                .filter(|g| g.role == Role::Unet || g.role.is_controlnet())
            {
                let list: Vec<(String, usize)> = ctl
                    .down_channels
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (format!("down_block_res_{i}"), *c))
                    .chain([("mid_block_res".to_string(), ctl.mid_channels)])
                    .collect();
                for (name, channels) in list {
                    let sig = info
                        .signature
                        .input(&name)
                        .or_else(|| info.signature.output(&name));
                    if let Some(fixed) = sig.and_then(|s| s.fixed(1))
                        && fixed != channels as i64
                    {
                        return Err(PackError::Signature {
                            file: info.path.clone(),
                            reason: format!(
                                "`{name}` has {fixed} channels but pack.toml's [control] says {channels}"
                            ),
                        });
                    }
                }
            }
        }
        Ok(residuals)
    }

    /// (required inputs, required outputs, optional inputs) of a graph's role.
    #[allow(clippy::type_complexity)]
    fn contract(
        &self,
        info: &GraphInfo,
        residuals: usize,
    ) -> Result<(Vec<Want>, Vec<Want>, Vec<Want>), PackError> {
        use Kind::{Float, Int, Timestep};
        let res_outputs = || {
            let mut v: Vec<Want> = (0..residuals)
                .map(|i| want(&format!("down_block_res_{i}"), Float, &[4]))
                .collect();
            v.push(want("mid_block_res", Float, &[4]));
            v
        };
        let scalar: &'static [usize] = &[0, 1];
        Ok(match info.role {
            Role::TextEncoder | Role::TextEncoder2 => {
                let missing = |field: &str| PackError::Manifest {
                    file: self.dir.join("pack.toml"),
                    reason: format!(
                        "[graphs.{}] lacks `{field}`, the name of the output to use",
                        info.role.key()
                    ),
                };
                let hidden = info
                    .entry
                    .hidden_state
                    .as_deref()
                    .ok_or_else(|| missing("hidden_state"))?;
                let pooled = info
                    .entry
                    .pooled
                    .as_deref()
                    .ok_or_else(|| missing("pooled"))?;
                (
                    vec![want("input_ids", Int, &[2])],
                    vec![want(hidden, Float, &[3]), want(pooled, Float, &[2])],
                    vec![],
                )
            }
            Role::Unet => {
                let mut optional: Vec<Want> = (0..residuals)
                    .map(|i| want(&format!("down_block_res_{i}"), Float, &[4]))
                    .collect();
                if residuals > 0 {
                    optional.push(want("mid_block_res", Float, &[4]));
                }
                optional.push(want("ip_scale", Float, scalar));
                optional.push(want("id_embedding", Float, &[3]));
                optional.push(want("id_scale", Float, scalar));
                let sig = &info.signature;
                if residuals > 0 && sig.input("mid_block_res").is_none() {
                    return Err(sig_err(
                        info,
                        "takes down_block_res_* but not mid_block_res".into(),
                    ));
                }
                if sig.input("id_embedding").is_some() != sig.input("id_scale").is_some() {
                    return Err(sig_err(
                        info,
                        "must take both id_embedding and id_scale, or neither".into(),
                    ));
                }
                (
                    vec![
                        want("sample", Float, &[4]),
                        want("timestep", Timestep, &[0, 1]),
                        want("encoder_hidden_states", Float, &[3]),
                        want("text_embeds", Float, &[2]),
                        want("time_ids", Float, &[2]),
                    ],
                    vec![want("out_sample", Float, &[4])],
                    optional,
                )
            }
            Role::VaeDecoder => (
                vec![want("latent_sample", Float, &[4])],
                vec![want("sample", Float, &[4])],
                vec![],
            ),
            Role::VaeEncoder => (
                vec![want("sample", Float, &[4])],
                vec![want("latent_sample", Float, &[4])],
                vec![],
            ),
            Role::ControlnetCanny
            | Role::ControlnetDepth
            | Role::ControlnetPose
            | Role::Identitynet => {
                if residuals == 0 {
                    return Err(sig_err(
                        &self.graphs[&Role::Unet],
                        format!(
                            "takes no down_block_res_* inputs, so the pack's {} cannot be used; export the UNet with ControlNet residual inputs or drop the ControlNet",
                            info.role.key()
                        ),
                    ));
                }
                (
                    vec![
                        want("sample", Float, &[4]),
                        want("timestep", Timestep, &[0, 1]),
                        want("encoder_hidden_states", Float, &[3]),
                        want("controlnet_cond", Float, &[4]),
                        want("conditioning_scale", Float, scalar),
                        want("text_embeds", Float, &[2]),
                        want("time_ids", Float, &[2]),
                    ],
                    res_outputs(),
                    vec![],
                )
            }
            Role::InstantidImageProj => (
                vec![want("image_embeds", Float, &[3])],
                vec![want("image_prompt_embeds", Float, &[3])],
                vec![],
            ),
            Role::PulidIdEncoder => (
                vec![
                    want("id_cond", Float, &[2]),
                    want("id_vit_hidden", Float, &[4]),
                ],
                vec![want("id_embedding", Float, &[3])],
                vec![],
            ),
            Role::PulidEvaClip => (
                vec![want("face", Float, &[4])],
                vec![
                    want("id_cond_vit", Float, &[2]),
                    want("id_vit_hidden", Float, &[4]),
                ],
                vec![],
            ),
            Role::FaceParsing => (
                vec![want("face", Float, &[4])],
                vec![want("parsing", Float, &[4])],
                vec![],
            ),
            Role::FaceRecognizer => (
                vec![want("face", Float, &[4])],
                vec![want("embedding", Float, &[2])],
                vec![],
            ),
        })
    }
}

fn sig_err(info: &GraphInfo, reason: String) -> PackError {
    PackError::Signature {
        file: info.path.clone(),
        reason: format!("the {} graph {reason}", info.role.key()),
    }
}

fn names(list: &[TensorSig]) -> String {
    list.iter()
        .map(|t| t.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_graph(
    info: &GraphInfo,
    inputs: &[Want],
    outputs: &[Want],
    optional: &[Want],
) -> Result<(), PackError> {
    let sig = &info.signature;
    let key = info.role.key();
    let declared_in: BTreeSet<&str> = info.entry.inputs.iter().map(String::as_str).collect();
    let declared_out: BTreeSet<&str> = info.entry.outputs.iter().map(String::as_str).collect();
    // pack.toml and the graph must agree exactly.
    for (declared, actual, what) in [
        (&declared_in, &sig.inputs, "input"),
        (&declared_out, &sig.outputs, "output"),
    ] {
        for d in declared.iter() {
            if !actual.iter().any(|t| t.name == *d) {
                return Err(PackError::Signature {
                    file: info.path.clone(),
                    reason: format!(
                        "pack.toml declares {what} `{d}` for [graphs.{key}], but the graph has no such {what} (its {what}s: {})",
                        names(actual)
                    ),
                });
            }
        }
        for t in actual {
            if !declared.contains(t.name.as_str()) {
                return Err(PackError::Signature {
                    file: info.path.clone(),
                    reason: format!(
                        "the graph has {what} `{}`, which pack.toml does not declare for [graphs.{key}]",
                        t.name
                    ),
                });
            }
        }
    }
    // Every graph input must be one the engine feeds.
    for t in &sig.inputs {
        if !inputs.iter().chain(optional).any(|w| w.name == t.name) {
            return Err(PackError::Signature {
                file: info.path.clone(),
                reason: format!(
                    "the graph has input `{}`, which the {key} contract does not know (expected {})",
                    t.name,
                    inputs
                        .iter()
                        .map(|w| w.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    }
    for (wants, actual, what) in [
        (inputs, &sig.inputs, "input"),
        (outputs, &sig.outputs, "output"),
    ] {
        for w in wants {
            let Some(t) = actual.iter().find(|t| t.name == w.name) else {
                return Err(PackError::Signature {
                    file: info.path.clone(),
                    reason: format!(
                        "the graph lacks {what} `{}`, which the {key} contract requires (its {what}s: {})",
                        w.name,
                        names(actual)
                    ),
                });
            };
            check_tensor(info, t, w, what)?;
        }
    }
    for w in optional {
        if let Some(t) = sig.input(&w.name) {
            check_tensor(info, t, w, "input")?;
        }
    }
    Ok(())
}

fn check_tensor(info: &GraphInfo, t: &TensorSig, w: &Want, what: &str) -> Result<(), PackError> {
    let err = |reason: String| PackError::Signature {
        file: info.path.clone(),
        reason,
    };
    if let Some(rank) = t.rank()
        && !w.ranks.contains(&rank)
    {
        return Err(err(format!(
            "{what} `{}` has rank {rank}, but the contract says {:?}",
            t.name, w.ranks
        )));
    }
    let Some(elem) = t.elem else { return Ok(()) };
    let expected = match info.dtype {
        Dtype::Fp32 => ElemType::F32,
        Dtype::Fp16 => ElemType::F16,
    };
    let ok = match w.kind {
        Kind::Float => elem == expected,
        Kind::Int => matches!(elem, ElemType::I64 | ElemType::I32),
        Kind::Timestep => elem.is_float() || matches!(elem, ElemType::I64 | ElemType::I32),
    };
    if !ok {
        let wanted = match w.kind {
            Kind::Float => info.dtype.name().to_string(),
            Kind::Int => "int64".into(),
            Kind::Timestep => "a float or integer type".into(),
        };
        return Err(err(format!(
            "{what} `{}` is {} but should be {wanted} (the graph's dtype in pack.toml is {})",
            t.name,
            elem.name(),
            info.dtype.name()
        )));
    }
    Ok(())
}
