//! Model packs: `models/<pack>/pack.toml` lists each model's role, file, SHA-256, tensor layout,
//! normalisation and licence. Packs are verified when loaded: a missing file or a checksum
//! mismatch is an error sentence naming the file.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Result, VisionError};

/// What a model is for. Unknown roles in a pack are kept as [`Role::Other`] and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// MTCNN proposal network.
    MtcnnPnet,
    /// MTCNN refinement network.
    MtcnnRnet,
    /// MTCNN output network (box, score, 5 landmarks).
    MtcnnOnet,
    /// BlazeFace short-range (128x128) detector.
    BlazefaceFront,
    /// BlazeFace full-range "back camera" (256x256) detector.
    BlazefaceBack,
    /// UltraFace RFB-320 detector (boxes only).
    Ultraface,
    /// SCRFD detector with 5 keypoints (e.g. antelopev2's scrfd_10g_bnkps).
    Scrfd,
    /// Face recognition embedding on 112x112 aligned crops.
    Embedding,
    /// 68-point landmark model.
    Landmarks68,
    /// Monocular depth.
    Depth,
    /// A style-transfer network with learned styles blended by weights (multistyle26).
    StyleLearned,
    /// The arbitrary-style predictor: a style picture to a style vector (Magenta).
    StylePredict,
    /// The arbitrary-style transformer: a photo and a style vector to a rendition (Magenta).
    StyleTransform,
    /// A role this version does not know.
    #[serde(other)]
    Other,
}

impl Role {
    /// The kebab-case name used in pack.toml.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::MtcnnPnet => "mtcnn-pnet",
            Role::MtcnnRnet => "mtcnn-rnet",
            Role::MtcnnOnet => "mtcnn-onet",
            Role::BlazefaceFront => "blazeface-front",
            Role::BlazefaceBack => "blazeface-back",
            Role::Ultraface => "ultraface",
            Role::Scrfd => "scrfd",
            Role::Embedding => "embedding",
            Role::Landmarks68 => "landmarks68",
            Role::Depth => "depth",
            Role::StyleLearned => "style-learned",
            Role::StylePredict => "style-predict",
            Role::StyleTransform => "style-transform",
            Role::Other => "other",
        }
    }
}

/// One model of a pack, as written in pack.toml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelEntry {
    /// What the model is for.
    pub role: Role,
    /// File name inside the pack folder.
    pub file: String,
    /// Lower-case hex SHA-256 of the file.
    pub sha256: String,
    /// Input layout, e.g. "NCHW", "NHWC" or "NWHC" (MTCNN's transposed layout).
    pub layout: String,
    /// Channel order fed to the model: "rgb" or "bgr".
    #[serde(default = "default_colour")]
    pub colour: String,
    /// Per-channel mean subtracted from 0..255 values (1 or 3 values).
    pub mean: Vec<f32>,
    /// Per-channel divisor applied after the mean (1 or 3 values).
    pub std: Vec<f32>,
    /// Fixed input size [width, height], where the model has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_size: Option<[u32; 2]>,
    /// Licence note for this file.
    #[serde(default)]
    pub licence: String,
    /// The input tensors' contracts in words (name, type, shape, range), where the pack states
    /// them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
    /// The output tensors' contracts in words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<String>,
}

fn default_colour() -> String {
    "rgb".to_string()
}

impl ModelEntry {
    /// Mean and std for channel `c` (a single value applies to all three).
    pub fn norm(&self, c: usize) -> (f32, f32) {
        let pick = |v: &[f32], d: f32| v.get(c).or_else(|| v.first()).copied().unwrap_or(d);
        let std = pick(&self.std, 1.0);
        (pick(&self.mean, 0.0), if std == 0.0 { 1.0 } else { std })
    }

    /// Whether the model takes BGR channel order.
    pub fn bgr(&self) -> bool {
        self.colour.eq_ignore_ascii_case("bgr")
    }
}

/// A pack's manifest (`pack.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackManifest {
    /// The pack's name (normally its folder name).
    pub name: String,
    /// What it is.
    #[serde(default)]
    pub description: String,
    /// Where the files came from (registry package and version).
    #[serde(default)]
    pub source: String,
    /// Licence note for the pack as a whole.
    #[serde(default)]
    pub licence: String,
    /// When several packs provide the same role, the highest priority wins (ties: folder name order).
    #[serde(default)]
    pub priority: i32,
    /// The models.
    #[serde(default, rename = "model")]
    pub models: Vec<ModelEntry>,
}

/// A verified pack on disk.
#[derive(Debug, Clone, Serialize)]
pub struct Pack {
    /// The folder holding pack.toml and the model files.
    pub dir: PathBuf,
    /// The manifest.
    pub manifest: PackManifest,
}

impl Pack {
    /// Path of a model file of this pack.
    pub fn path_of(&self, entry: &ModelEntry) -> PathBuf {
        self.dir.join(&entry.file)
    }

    /// The entry for a role, if the pack has one.
    pub fn model(&self, role: Role) -> Option<&ModelEntry> {
        self.manifest.models.iter().find(|m| m.role == role)
    }
}

/// Lower-case hex SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Lower-case hex SHA-256 of bytes.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn pack_err(dir: &Path, reason: String) -> VisionError {
    VisionError::Pack {
        pack: dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string()),
        reason,
    }
}

/// Reads `dir/pack.toml` without checking the files.
pub fn read_manifest(dir: &Path) -> Result<PackManifest> {
    let path = dir.join("pack.toml");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| pack_err(dir, format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| {
        pack_err(
            dir,
            format!("{} is not a valid pack manifest: {e}", path.display()),
        )
    })
}

/// Reads `dir/pack.toml` and verifies every listed file exists with the listed SHA-256.
pub fn load_pack(dir: &Path) -> Result<Pack> {
    let manifest = read_manifest(dir)?;
    for m in &manifest.models {
        if m.file.contains("..") || Path::new(&m.file).is_absolute() {
            return Err(pack_err(
                dir,
                format!(
                    "model file name {:?} must be a plain name inside the pack",
                    m.file
                ),
            ));
        }
        let path = dir.join(&m.file);
        if !path.is_file() {
            return Err(pack_err(
                dir,
                format!(
                    "{} ({}) is missing; fetch the pack again",
                    path.display(),
                    m.role.as_str()
                ),
            ));
        }
        let actual = sha256_file(&path)
            .map_err(|e| pack_err(dir, format!("cannot read {}: {e}", path.display())))?;
        if !actual.eq_ignore_ascii_case(m.sha256.trim()) {
            return Err(pack_err(
                dir,
                format!(
                    "{} has SHA-256 {actual} but pack.toml says {}; the file is corrupt or was replaced",
                    path.display(),
                    m.sha256
                ),
            ));
        }
    }
    Ok(Pack {
        dir: dir.to_path_buf(),
        manifest,
    })
}

/// Loads and verifies every pack under `models_dir` (each sub-folder with a pack.toml), sorted by
/// folder name. The `runtime` folder (the ONNX Runtime library) is not a pack and is skipped.
pub fn load_packs(models_dir: &Path) -> Result<Vec<Pack>> {
    let mut dirs = pack_dirs(models_dir)?;
    dirs.sort();
    dirs.iter().map(|d| load_pack(d)).collect()
}

fn pack_dirs(models_dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(models_dir).map_err(|e| {
        VisionError::io(
            format!("reading the models folder {}", models_dir.display()),
            e,
        )
    })?;
    let mut dirs = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && path.join("pack.toml").is_file() {
            dirs.push(path);
        }
    }
    Ok(dirs)
}

/// The state of one installed pack, as reported by [`check_packs`].
#[derive(Debug, Clone, Serialize)]
pub struct PackStatus {
    /// Folder name.
    pub name: String,
    /// Roles it provides.
    pub roles: Vec<Role>,
    /// `None` when every file verified, else the error sentence.
    pub problem: Option<String>,
}

/// Verifies every pack under `models_dir` and reports each one's roles and problems (never fails
/// on a bad pack; fails only when the folder cannot be listed).
pub fn check_packs(models_dir: &Path) -> Result<Vec<PackStatus>> {
    let mut dirs = pack_dirs(models_dir)?;
    dirs.sort();
    Ok(dirs
        .iter()
        .map(|d| {
            let name = d
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            match load_pack(d) {
                Ok(p) => PackStatus {
                    name,
                    roles: p.manifest.models.iter().map(|m| m.role).collect(),
                    problem: None,
                },
                Err(e) => PackStatus {
                    name,
                    roles: read_manifest(d)
                        .map(|m| m.models.iter().map(|m| m.role).collect())
                        .unwrap_or_default(),
                    problem: Some(e.to_string()),
                },
            }
        })
        .collect())
}

/// Picks the model for `role` from the highest-priority pack that has one.
pub fn find_role(packs: &[Pack], role: Role) -> Option<(&Pack, &ModelEntry)> {
    let mut best: Option<(&Pack, &ModelEntry)> = None;
    for p in packs {
        if let Some(m) = p.model(role)
            && best.is_none_or(|(b, _)| p.manifest.priority > b.manifest.priority)
        {
            best = Some((p, m));
        }
    }
    best
}
