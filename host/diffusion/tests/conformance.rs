//! The engine against the reference pipelines (diffusers 0.36.0, InstantID's own pipeline,
//! PuLID's own classes) on random-weight models of the real architectures, exported by
//! tools/export unmodified. The packs and goldens under tests/conformance/ are written by
//! tools/conformance/make_goldens.py (`make conformance`); this test needs no torch.
//!
//! Each case checks, stage by stage: the engine's initial noise is the one the reference ran from,
//! the tokens, the text conditioning, the scheduler tables, the identity tokens, one ControlNet
//! call and one UNet call on the reference's own inputs, then the whole generation (final latents,
//! decoded image, 8-bit image). It prints a table (stage, max abs, mean abs, tolerance, verdict)
//! and fails if any stage is outside its tolerance.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use likeness_diffusion::control::{self, ControlUnit, Residuals};
use likeness_diffusion::graph::Graph;
use likeness_diffusion::noise::gaussian;
use likeness_diffusion::scheduler::Schedule;
use likeness_diffusion::text::TextEncoders;
use likeness_diffusion::tokenizer::ClipTokenizer;
use likeness_diffusion::unet::{self, UnetConstants};
use likeness_diffusion::{
    CancelToken, ControlImage, ControlKind, ControlMap, DiffusionEngine, EngineOptions,
    GenerationInput, HostTensor, Image, Method, PulidFeatures, Role, Size, instantid, pulid,
};
use serde_json::Value;

/// fp32 tolerances (max abs) per stage. The reference runs torch on the CPU, the engine ONNX
/// Runtime: the same maths in another order, so differences are rounding, growing with depth.
const TOKENS: f64 = 0.0;
const NOISE: f64 = 0.0;
const SCHEDULE: f64 = 1e-5;
const TENSOR: f64 = 1e-4;
const LATENTS: f64 = 1e-3;
/// Levels of 255 in the 8-bit image (a value on a rounding edge may flip by one).
const IMAGE_LEVELS: f64 = 1.0;

fn conformance_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance")
}

/// A committed pack made loadable in target/: gzipped graphs unpacked, and a pack that holds only
/// what differs from `fidelity` (the other PuLID mode's UNet) laid over a copy of it.
fn pack(name: &str) -> PathBuf {
    static MADE: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut made = MADE.lock().unwrap_or_else(|p| p.into_inner());
    let dst = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("conformance-{name}"));
    if !made.iter().any(|m| m == name) {
        let _ = std::fs::remove_dir_all(&dst);
        let src = conformance_dir();
        unpack(&src.join("fidelity"), &dst);
        if name != "fidelity" {
            unpack(&src.join(name), &dst);
        }
        made.push(name.to_string());
    }
    dst
}

fn unpack(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap().flatten() {
        let p = entry.path();
        let name = entry.file_name().into_string().unwrap();
        if p.is_dir() {
            unpack(&p, &dst.join(&name));
        } else if let Some(plain) = name.strip_suffix(".gz") {
            let mut out = std::fs::File::create(dst.join(plain)).unwrap();
            let mut gz = flate2::read::GzDecoder::new(std::fs::File::open(&p).unwrap());
            std::io::copy(&mut gz, &mut out).unwrap();
        } else {
            std::fs::copy(&p, dst.join(&name)).unwrap();
        }
    }
}

/// One case's goldens: golden.json (facts + tensor index) and the tensor files beside it.
struct Golden {
    dir: PathBuf,
    meta: Value,
}

impl Golden {
    fn load(case: &str) -> Golden {
        let dir = conformance_dir().join("goldens").join(case);
        let text = std::fs::read_to_string(dir.join("golden.json"))
            .unwrap_or_else(|e| panic!("{}: {e} (run `make conformance`)", dir.display()));
        Golden {
            meta: serde_json::from_str(&text).unwrap(),
            dir,
        }
    }

    fn tensor(&self, name: &str) -> HostTensor {
        let t = &self.meta["tensors"][name];
        let file = t["file"]
            .as_str()
            .unwrap_or_else(|| panic!("no golden {name}"));
        let shape: Vec<usize> = serde_json::from_value(t["shape"].clone()).unwrap();
        let data = common::read_f32(&self.dir.join(file));
        assert_eq!(data.len(), shape.iter().product::<usize>(), "{name}");
        HostTensor { shape, data }
    }

    fn bytes(&self, name: &str) -> Vec<u8> {
        let file = self.meta["tensors"][name]["file"].as_str().unwrap();
        std::fs::read(self.dir.join(file)).unwrap()
    }

    fn f(&self, key: &str) -> f64 {
        self.meta[key].as_f64().unwrap()
    }

    fn s(&self, key: &str) -> &str {
        self.meta[key].as_str().unwrap_or("")
    }
}

/// One row of the conformance table.
struct Row {
    stage: String,
    max_abs: f64,
    mean_abs: f64,
    tolerance: f64,
}

impl Row {
    fn ok(&self) -> bool {
        self.max_abs <= self.tolerance && self.max_abs.is_finite()
    }
}

#[derive(Default)]
struct Table(Vec<Row>);

impl Table {
    fn compare(&mut self, stage: String, got: &[f32], want: &[f32], tolerance: f64) {
        assert_eq!(got.len(), want.len(), "{stage}: lengths differ");
        let diffs = got
            .iter()
            .zip(want)
            .map(|(a, b)| (f64::from(*a) - f64::from(*b)).abs());
        let (mut max, mut sum) = (0.0f64, 0.0f64);
        for d in diffs {
            max = if d.is_nan() { f64::NAN } else { max.max(d) };
            sum += d;
        }
        self.0.push(Row {
            stage,
            max_abs: max,
            mean_abs: sum / want.len().max(1) as f64,
            tolerance,
        });
    }

    fn print(&self) {
        println!("\n| stage | max abs | mean abs | tolerance | verdict |\n|---|---|---|---|---|");
        for r in &self.0 {
            println!(
                "| {} | {:.3e} | {:.3e} | {:.0e} | {} |",
                r.stage,
                r.max_abs,
                r.mean_abs,
                r.tolerance,
                if r.ok() { "match" } else { "MISMATCH" }
            );
        }
    }
}

fn graph(engine: &DiffusionEngine, role: Role) -> Graph {
    let info = engine.pack().graph(role).expect("role in the pack").clone();
    Graph::new(info, common::runtime())
}

fn scalar(v: f32) -> HostTensor {
    HostTensor {
        shape: vec![1],
        data: vec![v],
    }
}

/// The image of a control golden (grey for canny, RGB otherwise) at the case's size.
fn control_image(kind: ControlKind, w: u32, h: u32) -> Image {
    let name = if kind == ControlKind::Canny {
        "canny.u8"
    } else {
        "keypoints.u8"
    };
    let data = std::fs::read(conformance_dir().join("goldens").join(name)).unwrap();
    if kind == ControlKind::Canny {
        Image::grey(w, h, data).unwrap()
    } else {
        Image::rgb(w, h, data).unwrap()
    }
}

fn method(name: &str) -> Method {
    match name {
        "instant-id" => Method::InstantId,
        "pulid" => Method::Pulid,
        _ => Method::Controlnet,
    }
}

/// Runs every stage of one case into `table`, on the case's pack or on `other_pack`.
fn check_case(case: &str, other_pack: Option<&str>, table: &mut Table) {
    let g = Golden::load(case);
    let dir = pack(other_pack.unwrap_or(g.s("pack")));
    let engine = DiffusionEngine::load(&dir, common::runtime(), EngineOptions::default())
        .expect("the conformance pack loads");
    let m = &engine.pack().manifest;
    let (w, h) = (g.f("width") as u32, g.f("height") as u32);
    let (steps, seed) = (g.f("steps") as u32, g.f("seed") as u64);
    let guidance = g.f("guidance") as f32;
    let cfg = guidance > 1.0;
    let method = method(g.s("method"));
    let weight = g.meta["identity_weight"].as_f64().unwrap_or(0.0) as f32;
    let latent_len = 4 * (w as usize / 8) * (h as usize / 8);
    let row = |stage: &str| format!("{case}: {stage}");

    // The reference ran from the engine's own noise.
    let noise = gaussian(seed, 0, latent_len);
    table.compare(row("initial noise"), &noise, &g.tensor("noise").data, NOISE);

    // Tokens and text.
    let tok = |e: &likeness_diffusion::manifest::TokenizerEntry| {
        ClipTokenizer::load(
            &dir.join(&e.vocab),
            &dir.join(&e.merges),
            e.max_length,
            &e.pad_token,
        )
        .unwrap()
    };
    let (tok1, tok2) = (tok(&m.tokenizer), tok(&m.tokenizer_2));
    for (t, name) in [(&tok1, "tokens"), (&tok2, "tokens_2")] {
        let ids: Vec<f32> = t.encode(g.s("prompt")).iter().map(|v| *v as f32).collect();
        table.compare(row(name), &ids, &g.tensor(name).data, TOKENS);
    }
    let (te1, te2) = (
        graph(&engine, Role::TextEncoder),
        graph(&engine, Role::TextEncoder2),
    );
    let text = TextEncoders {
        first: (&te1, &tok1),
        second: (&te2, &tok2),
        zeros_for_empty_negative: m.force_zeros_for_empty_prompt,
    }
    .encode(g.s("prompt"), g.s("negative_prompt"), cfg)
    .unwrap();
    for (stage, got, name) in [
        ("text context", &text.context, "context"),
        ("text_embeds", &text.pooled, "text_embeds"),
    ] {
        table.compare(row(stage), &got.data, &g.tensor(name).data, TENSOR);
    }

    // Scheduler tables, with the sampler the engine picks for the method.
    let defaults = m.methods.get(method.name());
    let kind = defaults
        .and_then(|d| d.scheduler)
        .unwrap_or(m.scheduler.kind);
    let spacing = defaults
        .and_then(|d| d.timestep_spacing)
        .unwrap_or(m.scheduler.timestep_spacing);
    let schedule = Schedule::new(m.scheduler.config(kind, spacing), steps as usize).unwrap();
    let as32 = |v: &[f64]| v.iter().map(|x| *x as f32).collect::<Vec<_>>();
    table.compare(
        row(&format!("timesteps ({})", kind.name())),
        &as32(&schedule.timesteps),
        &g.tensor("timesteps").data,
        SCHEDULE,
    );
    table.compare(
        row("sigmas"),
        &as32(&schedule.sigmas),
        &g.tensor("sigmas").data,
        SCHEDULE,
    );
    table.compare(
        row("init noise sigma"),
        &[schedule.init_noise_sigma() as f32],
        &g.tensor("init_noise_sigma").data,
        SCHEDULE,
    );

    // Identity tokens.
    let mut input = GenerationInput::new(method, g.s("prompt"), steps, guidance, seed);
    input.settings.negative_prompt = g.s("negative_prompt").to_string();
    input.settings.size = Some(Size {
        width: w,
        height: h,
    });
    input.settings.identity_weight = weight;
    let b = if cfg { 2 } else { 1 };
    let ctx_w = text.context.shape[2];
    let ip_tokens = m.instantid.as_ref().map_or(0, |c| c.tokens);
    let mut unet_context = g.tensor("unet_context");
    let mut id_embedding = HostTensor::zeros(&[b, m.pulid.as_ref().map_or(0, |c| c.tokens), ctx_w]);
    let (mut ip_scale, mut id_scale) = (0.0, 0.0);
    match method {
        Method::InstantId => {
            let face = g.tensor("face_embedding").data;
            let proj = graph(&engine, Role::InstantidImageProj);
            let tokens = instantid::face_tokens(&proj, &face, cfg).unwrap();
            let want: Vec<f32> = unet_context
                .data
                .chunks(ctx_w)
                .enumerate()
                .filter(|(i, _)| i % (77 + ip_tokens) >= 77)
                .flat_map(|(_, c)| c.to_vec())
                .collect();
            table.compare(row("face tokens"), &tokens.data, &want, TENSOR);
            input.face_embedding = Some(face);
            ip_scale = weight;
        }
        Method::Pulid => {
            let id_cond = g.tensor("id_cond").data;
            let vit = &g.meta["id_vit_hidden"];
            let feats = PulidFeatures {
                id_cond,
                id_vit_hidden: gaussian(
                    vit["seed"].as_u64().unwrap(),
                    vit["stream"].as_u64().unwrap(),
                    m.pulid.as_ref().unwrap().vit_hidden_shape.iter().product(),
                ),
            };
            let enc = graph(&engine, Role::PulidIdEncoder);
            let shape = m.pulid.as_ref().unwrap().vit_hidden_shape;
            let tokens = pulid::id_tokens(&enc, &feats, shape, cfg).unwrap();
            table.compare(
                row("ID tokens"),
                &tokens.data,
                &g.tensor("id_embedding").data,
                TENSOR,
            );
            id_embedding = g.tensor("unet_id_embedding");
            input.pulid = Some(feats);
            id_scale = weight;
        }
        Method::Controlnet => {}
        Method::StyleTransfer | Method::None => {
            unreachable!("the goldens hold diffusion methods only")
        }
    }
    if method != Method::InstantId {
        // The engine's UNet takes InstantID's trailing tokens always: zeros when unused.
        let zeros = HostTensor::zeros(&[b, ip_tokens, ctx_w]);
        unet_context = HostTensor::concat1(&[&unet_context, &zeros]);
    }

    // One ControlNet call on the reference's inputs.
    let names: Vec<String> = (0..engine.pack().down_residuals)
        .map(|i| format!("down_block_res_{i}"))
        .chain(["mid_block_res".to_string()])
        .collect();
    let mut residuals = Residuals::None;
    if let Some(ctl) = g.meta.get("control") {
        let kind = match ctl["kind"].as_str().unwrap() {
            "canny" => ControlKind::Canny,
            _ => ControlKind::FaceKeypoints,
        };
        let cweight = ctl["weight"].as_f64().unwrap() as f32;
        let image = control_image(kind, w, h);
        let cond: Vec<f32> = image.to_planar(w, h).iter().map(|v| v / 255.0).collect();
        let cond = HostTensor {
            shape: vec![1, 3, h as usize, w as usize],
            data: cond,
        }
        .repeat0(b);
        table.compare(
            row("controlnet_cond"),
            &cond.data,
            &g.tensor("cn_cond").data,
            TENSOR,
        );
        let role = if kind == ControlKind::Canny {
            Role::ControlnetCanny
        } else {
            Role::Identitynet
        };
        let cn = graph(&engine, role);
        let t = g.tensor("unet_timestep");
        let unit = ControlUnit {
            graph: &cn,
            kind,
            weight: cweight,
            start: 0.0,
            end: 1.0,
            cond: cn.prepare("controlnet_cond", &cond).unwrap(),
            context: cn
                .prepare("encoder_hidden_states", &g.tensor("cn_context"))
                .unwrap(),
            text_embeds: cn
                .prepare("text_embeds", &g.tensor("unet_text_embeds"))
                .unwrap(),
            time_ids: cn.prepare("time_ids", &g.tensor("unet_time_ids")).unwrap(),
        };
        let out = control::residuals(
            &[unit],
            0,
            steps as usize,
            &g.tensor("cn_sample"),
            &t,
            &names,
        )
        .unwrap();
        let Residuals::Device(values) = out else {
            panic!("one ControlNet gives device residuals")
        };
        let host: Vec<HostTensor> = values.iter().map(|v| cn.to_host(v).unwrap()).collect();
        for (i, r) in host.iter().enumerate() {
            let name = if i + 1 == host.len() {
                "cn_mid_res".to_string()
            } else {
                format!("cn_down_res_{i}")
            };
            let label = if i + 1 == host.len() {
                "ControlNet mid residual".to_string()
            } else {
                format!("ControlNet down residual {i}")
            };
            table.compare(row(&label), &r.data, &g.tensor(&name).data, TENSOR);
        }
        // The UNet call below takes the reference's residuals (the same, within the above).
        residuals = Residuals::Host(
            (0..host.len())
                .map(|i| {
                    if i + 1 == host.len() {
                        g.tensor("unet_mid_res")
                    } else {
                        g.tensor(&format!("unet_down_res_{i}"))
                    }
                })
                .collect(),
        );
        input.settings.control_maps.push(ControlMap {
            kind,
            weight: cweight,
            start: 0.0,
            end: 1.0,
        });
        input.control_images.push(ControlImage { kind, image });
    }

    // One UNet call on the reference's inputs.
    let un = graph(&engine, Role::Unet);
    let mut extras = Vec::new();
    if un.has_input("ip_scale") {
        extras.push((
            "ip_scale".to_string(),
            un.prepare("ip_scale", &scalar(ip_scale)).unwrap(),
        ));
    }
    if un.has_input("id_embedding") {
        extras.push((
            "id_embedding".to_string(),
            un.prepare("id_embedding", &id_embedding).unwrap(),
        ));
        extras.push((
            "id_scale".to_string(),
            un.prepare("id_scale", &scalar(id_scale)).unwrap(),
        ));
    }
    let sample = g.tensor("unet_sample");
    let ctl = m.control.as_ref().unwrap();
    let zero_residuals = ctl
        .down_channels
        .iter()
        .zip(&ctl.down_strides)
        .chain([(&ctl.mid_channels, &ctl.mid_stride)])
        .zip(&names)
        .map(|((c, s), name)| {
            let z = HostTensor::zeros(&[
                b,
                *c,
                sample.shape[2].div_ceil(*s),
                sample.shape[3].div_ceil(*s),
            ]);
            un.prepare(name, &z).unwrap()
        })
        .collect();
    let constants = UnetConstants {
        context: un.prepare("encoder_hidden_states", &unet_context).unwrap(),
        text_embeds: un
            .prepare("text_embeds", &g.tensor("unet_text_embeds"))
            .unwrap(),
        time_ids: un.prepare("time_ids", &g.tensor("unet_time_ids")).unwrap(),
        extras,
        residual_names: names.clone(),
        zero_residuals,
    };
    let out = unet::predict(
        &un,
        &constants,
        &sample,
        &g.tensor("unet_timestep"),
        &residuals,
    )
    .unwrap();
    table.compare(
        row("UNet step"),
        &out.data,
        &g.tensor("unet_out").data,
        TENSOR,
    );

    // The whole generation.
    let done = engine
        .generate_detailed(&input, &|_, _| {}, &CancelToken::new())
        .unwrap();
    for (stage, got, name) in [
        ("final latents", &done.latents, "latents"),
        ("decoded image", &done.decoded, "decoded"),
    ] {
        table.compare(row(stage), &got.data, &g.tensor(name).data, LATENTS);
    }
    let levels = |v: &[u8]| v.iter().map(|x| f32::from(*x)).collect::<Vec<_>>();
    table.compare(
        row("image (levels of 255)"),
        &levels(&done.image.data),
        &levels(&g.bytes("image")),
        IMAGE_LEVELS,
    );
}

#[test]
fn engine_matches_the_reference_pipelines() {
    let cases = [
        "controlnet-cfg",
        "controlnet-nocfg",
        "instant-id",
        "pulid-fidelity",
        "pulid-extremely-style",
    ];
    let mut table = Table::default();
    for case in cases {
        check_case(case, None, &mut table);
    }
    table.print();
    let bad: Vec<&str> = table
        .0
        .iter()
        .filter(|r| !r.ok())
        .map(|r| r.stage.as_str())
        .collect();
    assert!(bad.is_empty(), "outside tolerance: {bad:?}");
}

#[test]
fn pulid_features_match_pulids_own_get_id_embedding() {
    // PuLIDPipeline.get_id_embedding itself ran on a fixed aligned face, whitened with the
    // engine's landmark ellipse (the conformance packs have no face_parsing), through the exported
    // EVA02-CLIP (reduced width, the real layout: 336 px, 577 tokens, 21 blocks).
    let g = Golden::load("pulid-features");
    let gunzip = |name: &str| {
        let mut out = Vec::new();
        let file = std::fs::File::open(g.dir.join(name)).unwrap();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(file), &mut out).unwrap();
        out
    };
    let side = pulid::FACE_SIZE;
    let face = Image::rgb(side, side, gunzip("face.u8.gz")).unwrap();
    let points = g.tensor("landmarks").data;
    let landmarks: [[f32; 2]; 5] = std::array::from_fn(|i| [points[2 * i], points[2 * i + 1]]);
    let mask = pulid::landmark_mask(side, &landmarks);
    let differing = mask
        .iter()
        .zip(gunzip("mask.u8.gz"))
        .filter(|(a, b)| **a != (*b != 0))
        .count();
    assert_eq!(
        differing, 0,
        "the engine's ellipse differs from the golden's"
    );

    let engine = DiffusionEngine::load(
        &pack("fidelity"),
        common::runtime(),
        EngineOptions::default(),
    )
    .expect("the conformance pack loads");
    let features = engine
        .pulid_features(&face, &landmarks, &g.tensor("embedding").data)
        .unwrap();
    let mut table = Table::default();
    table.compare(
        "pulid features: id_cond".into(),
        &features.id_cond,
        &g.tensor("id_cond").data,
        TENSOR,
    );
    table.compare(
        "pulid features: id_vit_hidden".into(),
        &features.id_vit_hidden,
        &g.tensor("id_vit_hidden").data,
        TENSOR,
    );
    table.print();
    assert!(table.0.iter().all(Row::ok), "outside tolerance");
}

#[test]
fn the_goldens_tell_the_pulid_modes_apart() {
    // The fidelity goldens on the extremely-style pack: PuLID's other zero tokens and projection
    // must show in the UNet step and the final latents, or the comparison could not catch a
    // wrong mode (the exporter once dropped the zero tokens, a 3% change of the UNet output).
    let mut table = Table::default();
    check_case("pulid-fidelity", Some("extremely-style"), &mut table);
    table.print();
    for stage in ["UNet step", "final latents"] {
        let row = table.0.iter().find(|r| r.stage.ends_with(stage)).unwrap();
        assert!(!row.ok(), "{stage} matches on the wrong mode's pack");
    }
    // Everything before the UNet is the same in both modes.
    let ids = table
        .0
        .iter()
        .find(|r| r.stage.ends_with("ID tokens"))
        .unwrap();
    assert!(ids.ok());
}

#[test]
fn the_committed_packs_are_what_the_exporter_writes() {
    // Every mode's pack loads, offers every method, and says what PuLID's code gives.
    for name in ["fidelity", "extremely-style"] {
        let engine =
            DiffusionEngine::load(&pack(name), common::runtime(), EngineOptions::default())
                .expect("the conformance pack loads");
        let caps = engine.capabilities();
        assert_eq!(
            caps.methods,
            vec![Method::InstantId, Method::Pulid, Method::Controlnet]
        );
        let m = &engine.pack().manifest;
        assert_eq!(
            m.pulid.as_ref().unwrap().tokens,
            10,
            "PuLID v1's IDEncoder gives 10 tokens"
        );
        assert_eq!(m.latent.scaling_factor, 0.2, "read from the VAE's config");
        assert_eq!(
            m.scheduler.beta_end, 0.013,
            "read from the scheduler's config"
        );
    }
}
