//! The Rust loop on the tiny pack against the NumPy + onnxruntime reference
//! (tools/tiny-pack/reference.py) on the same pack with the same noise, for every method with
//! guidance on and off, every sampler, img2img and an fp16 pack.

mod common;

use std::path::Path;

use likeness_diffusion::noise::gaussian;
use likeness_diffusion::{
    CancelToken, ControlImage, ControlKind, ControlMap, GenerationInput, Image, Img2Img, Method,
    PulidFeatures, SamplerKind, Size, Spacing,
};
use serde_json::json;

const TOLERANCE: f64 = 1e-4;

struct Case {
    name: &'static str,
    method: Method,
    guidance: f32,
    steps: u32,
    sampler: SamplerKind,
    spacing: Spacing,
    maps: Vec<ControlMap>,
    negative: &'static str,
    size: (u32, u32),
    img2img: Option<f32>,
}

fn map(kind: ControlKind, weight: f32, start: f32, end: f32) -> ControlMap {
    ControlMap {
        kind,
        weight,
        start,
        end,
    }
}

fn spacing_name(s: Spacing) -> &'static str {
    match s {
        Spacing::Leading => "leading",
        Spacing::Trailing => "trailing",
        Spacing::Linspace => "linspace",
    }
}

/// Deterministic test images at `w` x `h`: a pattern per kind.
fn pattern(kind: u8, w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            for c in 0..3u32 {
                let v = match kind {
                    0 => (((x / 4 + y / 4) % 2) * 255) as u8, // canny-like checker
                    1 => ((x * 255 / w.max(1) + y * 64 / h.max(1)) % 256) as u8, // depth gradient
                    2 => (((x * 7 + y * 13 + c * 50) % 97) * 255 / 96) as u8, // keypoints-ish
                    _ => ((x * 3 + y * 5 + c * 70) % 256) as u8, // photo
                };
                out.push(v);
            }
        }
    }
    out
}

fn grey_of(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks_exact(3).map(|p| p[0]).collect()
}

fn run_case(dtype: &str, case: &Case, tolerance: f64) {
    let engine = common::engine(dtype);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("ref-{dtype}-{}", case.name));
    std::fs::create_dir_all(&dir).unwrap();
    let (w, h) = case.size;
    let seed = 1234 + case.name.len() as u64;
    let latent_len = (4 * (h / 8) * (w / 8)) as usize;

    let mut input = GenerationInput::new(
        case.method,
        "a watercolor portrait of a smiling woman, soft light",
        case.steps,
        case.guidance,
        seed,
    );
    input.settings.negative_prompt = case.negative.to_string();
    input.settings.size = Some(Size {
        width: w,
        height: h,
    });
    input.settings.identity_weight = 0.7;
    input.settings.control_maps = case.maps.clone();
    input.scheduler = Some(case.sampler);
    input.timestep_spacing = Some(case.spacing);

    let mut maps_json = Vec::new();
    for m in &case.maps {
        let (kind_idx, grey) = match m.kind {
            ControlKind::Canny => (0, true),
            ControlKind::Depth => (1, true),
            ControlKind::FaceKeypoints => (2, false),
            ControlKind::Pose => (3, false),
        };
        let rgb = pattern(kind_idx, w, h);
        let file = dir.join(format!("{}.u8", m.kind.name()));
        std::fs::write(&file, &rgb).unwrap();
        let image = if grey {
            Image::grey(w, h, grey_of(&rgb)).unwrap()
        } else {
            Image::rgb(w, h, rgb).unwrap()
        };
        input.control_images.push(ControlImage {
            kind: m.kind,
            image,
        });
        maps_json.push(json!({
            "kind": m.kind.name(), "weight": f64::from(m.weight), "start": f64::from(m.start),
            "end": f64::from(m.end), "image": file,
        }));
    }
    let mut case_json = json!({
        "pack": common::tiny_pack(dtype), "method": case.method.name(), "prompt": input.settings.prompt,
        "negative_prompt": input.settings.negative_prompt, "steps": case.steps, "guidance": f64::from(case.guidance),
        "width": w, "height": h, "identity_weight": f64::from(input.settings.identity_weight),
        "scheduler": case.sampler.name(), "timestep_spacing": spacing_name(case.spacing),
        "control_maps": maps_json,
        "noise": dir.join("noise.f32"), "out_latents": dir.join("ref_latents.f32"), "out_image": dir.join("ref_image.f32"),
    });
    common::write_f32(&dir.join("noise.f32"), &gaussian(seed, 0, latent_len));
    if case.sampler == SamplerKind::EulerAncestral {
        let all: Vec<f32> = (0..case.steps as u64)
            .flat_map(|k| gaussian(seed, k + 1, latent_len))
            .collect();
        common::write_f32(&dir.join("step_noise.f32"), &all);
        case_json["step_noise"] = json!(dir.join("step_noise.f32"));
    }
    if case.method == Method::InstantId {
        let emb: Vec<f32> = gaussian(77, 5, 512).iter().map(|v| v * 0.05).collect();
        common::write_f32(&dir.join("face.f32"), &emb);
        input.face_embedding = Some(emb);
        case_json["face_embedding"] = json!(dir.join("face.f32"));
    }
    if case.method == Method::Pulid {
        let feats = PulidFeatures {
            id_cond: gaussian(78, 1, 544),
            id_vit_hidden: gaussian(78, 2, 5 * 16 * 24),
        };
        common::write_f32(&dir.join("id_cond.f32"), &feats.id_cond);
        common::write_f32(&dir.join("id_vit.f32"), &feats.id_vit_hidden);
        input.pulid = Some(feats);
        case_json["id_cond"] = json!(dir.join("id_cond.f32"));
        case_json["id_vit_hidden"] = json!(dir.join("id_vit.f32"));
    }
    if let Some(strength) = case.img2img {
        let photo = pattern(3, w, h);
        std::fs::write(dir.join("photo.u8"), &photo).unwrap();
        input.img2img = Some(Img2Img {
            photo: Image::rgb(w, h, photo).unwrap(),
            strength,
        });
        case_json["photo"] = json!(dir.join("photo.u8"));
        case_json["strength"] = json!(f64::from(strength));
    }
    let case_file = dir.join("case.json");
    std::fs::write(&case_file, serde_json::to_vec_pretty(&case_json).unwrap()).unwrap();
    common::run_reference(&case_file);

    let steps_seen = std::sync::Mutex::new(Vec::new());
    let generated = engine
        .generate_detailed(
            &input,
            &|k, n| steps_seen.lock().unwrap().push((k, n)),
            &CancelToken::new(),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", case.name));
    let ref_latents = common::read_f32(&dir.join("ref_latents.f32"));
    let ref_image = common::read_f32(&dir.join("ref_image.f32"));
    let lat_err = common::max_rel_err(&generated.latents.data, &ref_latents);
    let img_err = common::max_rel_err(&generated.decoded.data, &ref_image);
    let spread = ref_image
        .iter()
        .map(|v| f64::from(*v))
        .fold(f64::NEG_INFINITY, f64::max)
        - ref_image
            .iter()
            .map(|v| f64::from(*v))
            .fold(f64::INFINITY, f64::min);
    println!(
        "{dtype} {:<28} steps {} latents rel err {lat_err:.2e}, image rel err {img_err:.2e} (image range {spread:.2})",
        case.name, generated.steps
    );
    assert!(
        spread > 0.1,
        "{}: the reference image is flat; the case tests nothing",
        case.name
    );
    assert!(
        lat_err < tolerance,
        "{}: latents differ from the reference by {lat_err:e}",
        case.name
    );
    assert!(
        img_err < tolerance,
        "{}: the image differs from the reference by {img_err:e}",
        case.name
    );
    let seen = steps_seen.into_inner().unwrap();
    let n = generated.steps;
    assert_eq!(
        seen,
        (1..=n).map(|k| (k, n)).collect::<Vec<_>>(),
        "progress calls"
    );
    assert_eq!(generated.image.data.len(), (w * h * 3) as usize);
}

fn cases() -> Vec<Case> {
    use ControlKind::{Canny, Depth, FaceKeypoints};
    let base = |name, method, guidance| Case {
        name,
        method,
        guidance,
        steps: 4,
        sampler: SamplerKind::Euler,
        spacing: Spacing::Leading,
        maps: Vec::new(),
        negative: "",
        size: (64, 64),
        img2img: None,
    };
    vec![
        Case {
            maps: vec![map(Canny, 0.9, 0.0, 1.0), map(Depth, 0.5, 0.25, 0.75)],
            negative: "blurry, lowres",
            ..base("controlnet-cfg", Method::Controlnet, 5.0)
        },
        Case {
            maps: vec![map(Canny, 0.8, 0.0, 1.0)],
            spacing: Spacing::Trailing,
            ..base("controlnet-nocfg", Method::Controlnet, 1.0)
        },
        Case {
            maps: vec![map(FaceKeypoints, 0.8, 0.0, 1.0), map(Canny, 0.4, 0.0, 0.5)],
            negative: "deformed face",
            ..base("instant-id-cfg", Method::InstantId, 5.0)
        },
        Case {
            maps: vec![map(FaceKeypoints, 0.8, 0.0, 1.0)],
            sampler: SamplerKind::DpmPp2m,
            spacing: Spacing::Trailing,
            ..base("instant-id-nocfg", Method::InstantId, 1.0)
        },
        Case {
            sampler: SamplerKind::DpmPp2m,
            spacing: Spacing::Trailing,
            ..base("pulid-cfg", Method::Pulid, 1.2)
        },
        Case {
            sampler: SamplerKind::EulerAncestral,
            ..base("pulid-nocfg-ancestral", Method::Pulid, 0.0)
        },
        Case {
            maps: vec![map(Depth, 0.7, 0.0, 1.0)],
            img2img: Some(0.6),
            steps: 5,
            ..base("controlnet-img2img", Method::Controlnet, 4.0)
        },
        Case {
            maps: vec![map(Canny, 1.0, 0.0, 0.8), map(Depth, 0.3, 0.2, 1.0)],
            sampler: SamplerKind::DpmPp2m,
            spacing: Spacing::Leading,
            steps: 6,
            size: (96, 64),
            ..base("controlnet-dpm-96x64", Method::Controlnet, 3.0)
        },
    ]
}

#[test]
fn loop_equals_reference_for_every_method_with_and_without_guidance() {
    for case in cases() {
        run_case("fp32", &case, TOLERANCE);
    }
}

#[test]
fn fp16_pack_equals_reference() {
    // The fp16 pack casts at the same graph boundaries in both implementations.
    let all = cases();
    for name in ["controlnet-cfg", "instant-id-cfg", "pulid-cfg"] {
        let case = all.iter().find(|c| c.name == name).unwrap();
        run_case("fp16", case, 1e-3);
    }
}
