//! The denoising loop, one function per stage: validate the request (`frame`), build the
//! schedule (`schedule`), encode the text (`encode_text`), prepare the identity tokens
//! (`identity_tokens`), the UNet's constant inputs (`unet_constants`) and the ControlNets
//! (`control_units`), draw the seeded noise or noise the photo's latents for img2img
//! (`initial_latents`), then per step (`denoise`): cancel check, scaled latents (doubled under
//! guidance), ControlNet residuals, UNet, guidance, sampler step, progress; finally the VAE
//! decode (`decode`).

use crate::control::{self, ControlKind, ControlUnit};
use crate::engine::{CancelToken, DiffusionEngine, Generated, GenerationInput, Method};
use crate::error::DiffusionError;
use crate::graph::{Graph, HostTensor};
use crate::image::RgbImage;
use crate::noise::gaussian;
use crate::pack::Role;
use crate::scheduler::Schedule;
use crate::text::{TextConditioning, TextEncoders};
use crate::unet::{self, UnetConstants};
use crate::{instantid, pulid, vae};

/// Most steps a request may ask for.
pub const MAX_STEPS: u32 = 200;

fn invalid(msg: impl Into<String>) -> DiffusionError {
    DiffusionError::Invalid(msg.into())
}

fn output_size(e: &DiffusionEngine, input: &GenerationInput) -> Result<(u32, u32), DiffusionError> {
    let lat = &e.pack.manifest.latent;
    let (w, h) = match input.settings.size {
        None => (lat.default_size[0], lat.default_size[1]),
        Some(size) => (size.width, size.height),
    };
    for (v, what) in [(w, "width"), (h, "height")] {
        if v == 0 || !v.is_multiple_of(lat.size_multiple) || v > lat.max_side {
            return Err(invalid(format!(
                "{what} {v} must be a positive multiple of {} up to {}",
                lat.size_multiple, lat.max_side
            )));
        }
    }
    Ok((w, h))
}

fn check_numbers(input: &GenerationInput) -> Result<(), DiffusionError> {
    if input.settings.steps == 0 || input.settings.steps > MAX_STEPS {
        return Err(invalid(format!(
            "steps must be 1..={MAX_STEPS}, not {}",
            input.settings.steps
        )));
    }
    if !input.settings.guidance.is_finite()
        || input.settings.guidance < 0.0
        || input.settings.guidance > 50.0
    {
        return Err(invalid(format!(
            "guidance must be 0..=50, not {}",
            input.settings.guidance
        )));
    }
    if !input.settings.identity_weight.is_finite()
        || !(0.0..=2.0).contains(&input.settings.identity_weight)
    {
        return Err(invalid(format!(
            "identity weight must be 0..=2, not {}",
            input.settings.identity_weight
        )));
    }
    for m in &input.settings.control_maps {
        let ok = m.weight.is_finite()
            && (0.0..=2.0).contains(&m.weight)
            && (0.0..=1.0).contains(&m.start)
            && (0.0..=1.0).contains(&m.end)
            && m.start <= m.end;
        if !ok {
            return Err(invalid(format!(
                "the {} control map needs weight 0..=2 and 0 <= start <= end <= 1 (got {}, {}..{})",
                m.kind.name(),
                m.weight,
                m.start,
                m.end
            )));
        }
    }
    Ok(())
}

fn scalar(v: f32) -> HostTensor {
    HostTensor {
        shape: vec![1],
        data: vec![v],
    }
}

/// The sizes one generation runs at.
#[derive(Debug, Clone, Copy)]
struct Frame {
    /// Output width in pixels.
    width: u32,
    /// Output height in pixels.
    height: u32,
    /// Classifier-free guidance is on: every batch is `[uncond, cond]`.
    guidance: bool,
    /// Batch of the UNet and ControlNet calls: 2 under guidance, else 1.
    batch: usize,
    /// Latent channels.
    channels: usize,
    /// Latent height.
    lh: usize,
    /// Latent width.
    lw: usize,
}

impl Frame {
    /// Values in one latent image, `channels * lh * lw`.
    fn latent_len(&self) -> usize {
        self.channels * self.lh * self.lw
    }
}

/// The schedule and where in it the run begins (0, or later for img2img).
struct Steps {
    schedule: Schedule,
    /// First schedule index run.
    begin: usize,
}

impl Steps {
    /// Steps actually run.
    fn count(&self) -> usize {
        self.schedule.len() - self.begin
    }
}

/// The text conditioning and the SDXL size conditioning shared by the UNet and ControlNets.
struct Conditioning {
    text: TextConditioning,
    /// `time_ids` `[B, 6]`: original size, crop, target size.
    time_ids: HostTensor,
}

impl Conditioning {
    /// Width of the text context's tokens.
    fn width(&self) -> usize {
        self.text.context.shape[2]
    }
}

/// The identity tokens of the method: InstantID's face tokens or PuLID's ID tokens.
struct IdentityTokens {
    /// InstantID's face tokens `[B, tokens, C]`.
    face: Option<HostTensor>,
    /// PuLID's ID tokens `[B, tokens, C]`.
    id: Option<HostTensor>,
}

/// The networks of the loop, with their inputs that stay the same at every step.
struct Networks<'e> {
    /// The UNet.
    unet: &'e Graph,
    /// Its constant inputs.
    constants: UnetConstants,
    /// The ControlNets of the run.
    controls: Vec<ControlUnit<'e>>,
}

/// Runs one generation (the caller holds a slot).
pub(crate) fn run(
    e: &DiffusionEngine,
    input: &GenerationInput,
    progress: &dyn Fn(u32, u32),
    cancel: &CancelToken,
) -> Result<Generated, DiffusionError> {
    let frame = frame(e, input)?;
    let steps = schedule(e, input)?;
    let cond = encode_text(e, input, &frame)?;
    let identity = identity_tokens(e, input, &frame, &cond)?;
    let unet = e.graph(Role::Unet)?;
    let nets = Networks {
        unet,
        constants: unet_constants(e, unet, input, &frame, &cond, &identity)?,
        controls: control_units(e, input, &frame, &cond, &identity)?,
    };
    let latents = initial_latents(e, input, &frame, &steps)?;
    let latents = denoise(&nets, input, &frame, &steps, latents, progress, cancel)?;
    decode(e, &frame, latents, steps.count())
}

/// Checks the request's numbers, size and method, and derives the sizes of the run.
fn frame(e: &DiffusionEngine, input: &GenerationInput) -> Result<Frame, DiffusionError> {
    check_numbers(input)?;
    let (width, height) = output_size(e, input)?;
    let caps = e.capabilities();
    if !caps.methods.contains(&input.method) {
        return Err(DiffusionError::Unsupported(format!(
            "method {} (the pack can run: {})",
            input.method.name(),
            caps.methods
                .iter()
                .map(|m| m.name())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let lat = &e.pack.manifest.latent;
    let guidance = input.settings.guidance > 1.0;
    let f = lat.vae_scale_factor;
    Ok(Frame {
        width,
        height,
        guidance,
        batch: if guidance { 2 } else { 1 },
        channels: lat.channels,
        lh: (height / f) as usize,
        lw: (width / f) as usize,
    })
}

/// The sampler and schedule (the request's, else `[methods.NAME]`'s, else `[scheduler]`'s) and,
/// for img2img, the step the run begins at.
fn schedule(e: &DiffusionEngine, input: &GenerationInput) -> Result<Steps, DiffusionError> {
    let m = &e.pack.manifest;
    let defaults = m.methods.get(input.method.name());
    let kind = input
        .scheduler
        .or(defaults.and_then(|d| d.scheduler))
        .unwrap_or(m.scheduler.kind);
    let spacing = input
        .timestep_spacing
        .or(defaults.and_then(|d| d.timestep_spacing))
        .unwrap_or(m.scheduler.timestep_spacing);
    let schedule = Schedule::new(
        m.scheduler.config(kind, spacing),
        input.settings.steps as usize,
    )
    .map_err(invalid)?;
    let steps = schedule.len();
    let begin = match &input.img2img {
        None => 0,
        Some(i2i) => {
            if !(i2i.strength > 0.0 && i2i.strength <= 1.0) {
                return Err(invalid(format!(
                    "img2img strength must be in (0, 1], not {}",
                    i2i.strength
                )));
            }
            i2i.photo.validate("the img2img photo").map_err(invalid)?;
            let init = ((steps as f64 * f64::from(i2i.strength)).floor() as usize).min(steps);
            if init == 0 {
                return Err(invalid("img2img strength is too low: no step would run"));
            }
            steps - init
        }
    };
    Ok(Steps { schedule, begin })
}

/// Both text encoders on the prompts, and the size conditioning.
fn encode_text(
    e: &DiffusionEngine,
    input: &GenerationInput,
    frame: &Frame,
) -> Result<Conditioning, DiffusionError> {
    let encoders = TextEncoders {
        first: (e.graph(Role::TextEncoder)?, &e.tokenizer),
        second: (e.graph(Role::TextEncoder2)?, &e.tokenizer_2),
        zeros_for_empty_negative: e.pack.manifest.force_zeros_for_empty_prompt,
    };
    let text = encoders.encode(
        &input.settings.prompt,
        &input.settings.negative_prompt,
        frame.guidance,
    )?;
    let (h, w) = (frame.height as f32, frame.width as f32);
    let ids = [h, w, 0.0, 0.0, h, w];
    let time_ids = HostTensor {
        shape: vec![frame.batch, 6],
        data: ids.repeat(frame.batch),
    };
    Ok(Conditioning { text, time_ids })
}

/// The method's identity tokens, checked against the pack's token count and the text width.
fn identity_tokens(
    e: &DiffusionEngine,
    input: &GenerationInput,
    frame: &Frame,
    cond: &Conditioning,
) -> Result<IdentityTokens, DiffusionError> {
    let m = &e.pack.manifest;
    let face = if input.method == Method::InstantId {
        Some(instantid_tokens(e, input, frame)?)
    } else {
        None
    };
    let id = if input.method == Method::Pulid {
        Some(pulid_tokens(e, input, frame)?)
    } else {
        None
    };
    let expected_tokens = [
        (
            &face,
            m.instantid.as_ref().map(|c| c.tokens),
            "instantid_image_proj",
        ),
        (&id, m.pulid.as_ref().map(|c| c.tokens), "pulid_id_encoder"),
    ];
    for (tokens, expected, graph) in expected_tokens {
        if let (Some(t), Some(n)) = (tokens, expected)
            && t.shape[1] != n
        {
            return Err(DiffusionError::inference(
                graph,
                format!("returned {} tokens but pack.toml says {n}", t.shape[1]),
            ));
        }
    }
    let width_ctx = cond.width();
    for t in face.iter().chain(&id) {
        if t.shape[2] != width_ctx {
            return Err(DiffusionError::inference(
                "unet",
                format!(
                    "identity tokens are {} wide but the text context is {width_ctx}",
                    t.shape[2]
                ),
            ));
        }
    }
    Ok(IdentityTokens { face, id })
}

/// InstantID's face tokens from the given embedding, or from the aligned face embedded here.
fn instantid_tokens(
    e: &DiffusionEngine,
    input: &GenerationInput,
    frame: &Frame,
) -> Result<HostTensor, DiffusionError> {
    let emb = match (&input.face_embedding, &input.aligned_face) {
        (Some(v), _) => v.clone(),
        (None, Some(face)) => {
            face.validate("the aligned face").map_err(invalid)?;
            instantid::embed_face(e.graph(Role::FaceRecognizer)?, face)?
        }
        (None, None) => {
            return Err(invalid(
                "instant-id needs a face embedding or an aligned face",
            ));
        }
    };
    let cfg = e
        .pack
        .manifest
        .instantid
        .as_ref()
        .ok_or_else(|| invalid("the pack has no [instantid] section"))?;
    if emb.len() != cfg.embedding_dim || emb.iter().any(|v| !v.is_finite()) {
        return Err(invalid(format!(
            "the face embedding must be {} finite values (got {})",
            cfg.embedding_dim,
            emb.len()
        )));
    }
    instantid::face_tokens(e.graph(Role::InstantidImageProj)?, &emb, frame.guidance)
}

/// PuLID's ID tokens from the identity features.
fn pulid_tokens(
    e: &DiffusionEngine,
    input: &GenerationInput,
    frame: &Frame,
) -> Result<HostTensor, DiffusionError> {
    let cfg = e
        .pack
        .manifest
        .pulid
        .as_ref()
        .ok_or_else(|| invalid("the pack has no [pulid] section"))?;
    let feats = input
        .pulid
        .as_ref()
        .ok_or_else(|| invalid("pulid needs the identity features"))?;
    let vit_len: usize = cfg.vit_hidden_shape.iter().product();
    if feats.id_cond.len() != cfg.id_cond_dim || feats.id_vit_hidden.len() != vit_len {
        return Err(invalid(format!(
            "pulid features must be {} + {vit_len} values (got {} + {})",
            cfg.id_cond_dim,
            feats.id_cond.len(),
            feats.id_vit_hidden.len()
        )));
    }
    pulid::id_tokens(
        e.graph(Role::PulidIdEncoder)?,
        feats,
        cfg.vit_hidden_shape,
        frame.guidance,
    )
}

/// The UNet inputs that stay the same at every step: the context (with the face tokens or zeros
/// where the UNet takes `ip_scale`), the identity inputs and the zero residuals.
fn unet_constants(
    e: &DiffusionEngine,
    unet_graph: &Graph,
    input: &GenerationInput,
    frame: &Frame,
    cond: &Conditioning,
    identity: &IdentityTokens,
) -> Result<UnetConstants, DiffusionError> {
    let m = &e.pack.manifest;
    let (b, width_ctx) = (frame.batch, cond.width());
    let text = &cond.text;
    let mut context = text.context.clone();
    let mut extras = Vec::new();
    if e.pack.unet_has_ip() {
        let tokens = m.instantid.as_ref().map_or(0, |c| c.tokens);
        let zeros = HostTensor::zeros(&[b, tokens, width_ctx]);
        let tail = identity.face.as_ref().unwrap_or(&zeros);
        context = HostTensor::concat1(&[&text.context, tail]);
        let w = if identity.face.is_some() {
            input.settings.identity_weight
        } else {
            0.0
        };
        extras.push((
            "ip_scale".to_string(),
            unet_graph.prepare("ip_scale", &scalar(w))?,
        ));
    }
    if e.pack.unet_has_id() {
        let tokens = m.pulid.as_ref().map_or(0, |c| c.tokens);
        let zeros = HostTensor::zeros(&[b, tokens, width_ctx]);
        let w = if identity.id.is_some() {
            input.settings.identity_weight
        } else {
            0.0
        };
        let emb = identity.id.as_ref().unwrap_or(&zeros);
        extras.push((
            "id_embedding".to_string(),
            unet_graph.prepare("id_embedding", emb)?,
        ));
        extras.push((
            "id_scale".to_string(),
            unet_graph.prepare("id_scale", &scalar(w))?,
        ));
    }
    let mut residual_names: Vec<String> = (0..e.pack.down_residuals)
        .map(|i| format!("down_block_res_{i}"))
        .collect();
    let mut zero_residuals = Vec::new();
    if let (true, Some(ctl)) = (e.pack.down_residuals > 0, &m.control) {
        residual_names.push("mid_block_res".into());
        let shapes = ctl
            .down_channels
            .iter()
            .zip(&ctl.down_strides)
            .chain([(&ctl.mid_channels, &ctl.mid_stride)]);
        for ((c, s), name) in shapes.zip(&residual_names) {
            let z = HostTensor::zeros(&[b, *c, frame.lh.div_ceil(*s), frame.lw.div_ceil(*s)]);
            zero_residuals.push(unet_graph.prepare(name, &z)?);
        }
    }
    Ok(UnetConstants {
        context: unet_graph.prepare("encoder_hidden_states", &context)?,
        text_embeds: unet_graph.prepare("text_embeds", &text.pooled)?,
        time_ids: unet_graph.prepare("time_ids", &cond.time_ids)?,
        extras,
        residual_names,
        zero_residuals,
    })
}

/// One ControlNet per control map (plus IdentityNet under InstantID when the plan has no
/// face-keypoints map), each with its condition image and constant inputs.
fn control_units<'e>(
    e: &'e DiffusionEngine,
    input: &GenerationInput,
    frame: &Frame,
    cond: &Conditioning,
    identity: &IdentityTokens,
) -> Result<Vec<ControlUnit<'e>>, DiffusionError> {
    let (width, height) = (frame.width, frame.height);
    let text = &cond.text;
    let cn_context = identity.face.as_ref().unwrap_or(&text.context);
    let mut maps = input.settings.control_maps.clone();
    if input.method == Method::InstantId
        && !maps.iter().any(|c| c.kind == ControlKind::FaceKeypoints)
    {
        maps.push(crate::engine::ControlMap {
            kind: ControlKind::FaceKeypoints,
            weight: input.settings.identity_weight,
            start: 0.0,
            end: 1.0,
        });
    }
    let mut units = Vec::with_capacity(maps.len());
    for map in &maps {
        let role = match map.kind {
            ControlKind::Canny => Role::ControlnetCanny,
            ControlKind::Depth => Role::ControlnetDepth,
            ControlKind::Pose => Role::ControlnetPose,
            ControlKind::FaceKeypoints if input.method == Method::InstantId => Role::Identitynet,
            ControlKind::FaceKeypoints => {
                return Err(invalid(
                    "a face-keypoints control map needs method instant-id",
                ));
            }
        };
        let graph: &Graph = e.graph(role).map_err(|_| {
            DiffusionError::Unsupported(format!(
                "the pack has no ControlNet for {}",
                map.kind.name()
            ))
        })?;
        let image = input
            .control_images
            .iter()
            .find(|c| c.kind == map.kind)
            .ok_or_else(|| {
                invalid(format!(
                    "the plan uses a {} map but no {} image was given",
                    map.kind.name(),
                    map.kind.name()
                ))
            })?;
        image
            .image
            .validate(&format!("the {} image", map.kind.name()))
            .map_err(invalid)?;
        let planar: Vec<f32> = image
            .image
            .to_planar(width, height)
            .into_iter()
            .map(|v| v / 255.0)
            .collect();
        let cond_image = HostTensor {
            shape: vec![1, 3, height as usize, width as usize],
            data: planar,
        }
        .repeat0(frame.batch);
        units.push(ControlUnit {
            graph,
            kind: map.kind,
            weight: map.weight,
            start: map.start,
            end: map.end,
            cond: graph.prepare("controlnet_cond", &cond_image)?,
            context: graph.prepare("encoder_hidden_states", cn_context)?,
            text_embeds: graph.prepare("text_embeds", &text.pooled)?,
            time_ids: graph.prepare("time_ids", &cond.time_ids)?,
        });
    }
    Ok(units)
}

/// The seeded noise scaled to the schedule, or for img2img the photo's latents noised to the
/// step the run begins at.
fn initial_latents(
    e: &DiffusionEngine,
    input: &GenerationInput,
    frame: &Frame,
    steps: &Steps,
) -> Result<Vec<f32>, DiffusionError> {
    let len = frame.latent_len();
    let noise = gaussian(input.settings.seed.unwrap_or(0), 0, len);
    Ok(match &input.img2img {
        Some(i2i) => {
            let encoded = vae::encode(
                e.graph(Role::VaeEncoder).map_err(|_| {
                    DiffusionError::Unsupported("img2img needs a vae_encoder graph".into())
                })?,
                &i2i.photo,
                frame.width,
                frame.height,
                e.pack.manifest.latent.scaling_factor,
            )?;
            if encoded.data.len() != len {
                return Err(DiffusionError::inference(
                    "vae_encoder",
                    "returned latents of an unexpected size",
                ));
            }
            steps.schedule.add_noise(&encoded.data, &noise, steps.begin)
        }
        None => {
            let s = steps.schedule.init_noise_sigma();
            noise.iter().map(|v| (f64::from(*v) * s) as f32).collect()
        }
    })
}

/// The loop: per step a cancel check, the scaled latents (doubled under guidance), the
/// ControlNet residuals, the UNet, guidance, the sampler step and progress; a last cancel check
/// before the decode.
fn denoise(
    nets: &Networks<'_>,
    input: &GenerationInput,
    frame: &Frame,
    steps: &Steps,
    mut latents: Vec<f32>,
    progress: &dyn Fn(u32, u32),
    cancel: &CancelToken,
) -> Result<Vec<f32>, DiffusionError> {
    let schedule = &steps.schedule;
    let n = steps.count();
    let b = frame.batch;
    let len = frame.latent_len();
    let mut sampler = schedule.sampler();
    let shape = vec![b, frame.channels, frame.lh, frame.lw];
    for (k, i) in (steps.begin..schedule.len()).enumerate() {
        if cancel.is_canceled() {
            return Err(DiffusionError::Canceled {
                completed: k as u32,
                total: n as u32,
            });
        }
        let scale = schedule.input_scale(i);
        let one: Vec<f32> = latents
            .iter()
            .map(|v| (f64::from(*v) * scale) as f32)
            .collect();
        let sample = HostTensor {
            shape: shape.clone(),
            data: one.repeat(b),
        };
        let timestep = HostTensor {
            shape: vec![b],
            data: vec![schedule.timesteps[i] as f32; b],
        };
        let names = &nets.constants.residual_names;
        let residuals = control::residuals(&nets.controls, k, n, &sample, &timestep, names)?;
        let out = unet::predict(nets.unet, &nets.constants, &sample, &timestep, &residuals)?;
        let eps: Vec<f32> = if frame.guidance {
            let g = f64::from(input.settings.guidance);
            let (u, c) = out.data.split_at(len);
            u.iter()
                .zip(c)
                .map(|(u, c)| (f64::from(*u) + g * (f64::from(*c) - f64::from(*u))) as f32)
                .collect()
        } else {
            out.data
        };
        let step_noise = sampler
            .needs_noise()
            .then(|| gaussian(input.settings.seed.unwrap_or(0), k as u64 + 1, len));
        latents = sampler.step(&eps, i, &latents, step_noise.as_deref());
        progress(k as u32 + 1, n as u32);
    }
    if cancel.is_canceled() {
        return Err(DiffusionError::Canceled {
            completed: n as u32,
            total: n as u32,
        });
    }
    Ok(latents)
}

/// The VAE decode of the final latents into the picture.
fn decode(
    e: &DiffusionEngine,
    frame: &Frame,
    latents: Vec<f32>,
    steps: usize,
) -> Result<Generated, DiffusionError> {
    let (width, height) = (frame.width, frame.height);
    let latents = HostTensor {
        shape: vec![1, frame.channels, frame.lh, frame.lw],
        data: latents,
    };
    let decoded = vae::decode(
        e.graph(Role::VaeDecoder)?,
        &latents,
        e.pack.manifest.latent.scaling_factor,
    )?;
    let expected = 3 * width as usize * height as usize;
    if decoded.data.len() != expected {
        return Err(DiffusionError::inference(
            "vae_decoder",
            format!("returned {:?}, not a {width}x{height} image", decoded.shape),
        ));
    }
    let image = RgbImage::from_decoded(width, height, &decoded.data);
    Ok(Generated {
        image,
        latents,
        decoded,
        steps: steps as u32,
    })
}
