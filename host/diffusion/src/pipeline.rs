//! The denoising loop: validate the request, encode the text, prepare the identity inputs and the
//! ControlNets, draw the seeded noise (or noise the photo's latents for img2img), then per step:
//! cancel check, scaled latents (doubled under guidance), ControlNet residuals, UNet, guidance,
//! sampler step, progress; finally the VAE decode.

use crate::control::{self, ControlKind, ControlUnit};
use crate::engine::{DiffusionEngine, Generated, GenerationInput, Method};
use crate::error::DiffusionError;
use crate::graph::{Graph, HostTensor};
use crate::image::RgbImage;
use crate::noise::gaussian;
use crate::pack::Role;
use crate::scheduler::Schedule;
use crate::text::TextEncoders;
use crate::unet::{self, UnetConstants};
use crate::{instantid, pulid, vae};

/// Most steps a request may ask for.
pub const MAX_STEPS: u32 = 200;

fn invalid(msg: impl Into<String>) -> DiffusionError {
    DiffusionError::Invalid(msg.into())
}

fn output_size(e: &DiffusionEngine, input: &GenerationInput) -> Result<(u32, u32), DiffusionError> {
    let lat = &e.pack.manifest.latent;
    let (w, h) = if input.width == 0 && input.height == 0 {
        (lat.default_size[0], lat.default_size[1])
    } else {
        (input.width, input.height)
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
    if input.steps == 0 || input.steps > MAX_STEPS {
        return Err(invalid(format!(
            "steps must be 1..={MAX_STEPS}, not {}",
            input.steps
        )));
    }
    if !input.guidance.is_finite() || input.guidance < 0.0 || input.guidance > 50.0 {
        return Err(invalid(format!(
            "guidance must be 0..=50, not {}",
            input.guidance
        )));
    }
    if !input.identity_weight.is_finite() || !(0.0..=2.0).contains(&input.identity_weight) {
        return Err(invalid(format!(
            "identity weight must be 0..=2, not {}",
            input.identity_weight
        )));
    }
    for m in &input.control_maps {
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

/// Runs one generation (the caller holds a slot).
pub(crate) fn run(
    e: &DiffusionEngine,
    input: &GenerationInput,
    progress: &dyn Fn(u32, u32),
    cancel: &crate::engine::CancelToken,
) -> Result<Generated, DiffusionError> {
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
    let m = &e.pack.manifest;
    let guidance = input.guidance > 1.0;
    let b = if guidance { 2 } else { 1 };
    let f = m.latent.vae_scale_factor;
    let (lh, lw, ch) = (
        (height / f) as usize,
        (width / f) as usize,
        m.latent.channels,
    );

    // Sampler and schedule.
    let defaults = m.methods.get(input.method.name());
    let kind = input
        .scheduler
        .or(defaults.and_then(|d| d.scheduler))
        .unwrap_or(m.scheduler.kind);
    let spacing = input
        .timestep_spacing
        .or(defaults.and_then(|d| d.timestep_spacing))
        .unwrap_or(m.scheduler.timestep_spacing);
    let schedule =
        Schedule::new(m.scheduler.config(kind, spacing), input.steps as usize).map_err(invalid)?;
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
    let n = steps - begin;

    // Text.
    let encoders = TextEncoders {
        first: (e.graph(Role::TextEncoder)?, &e.tokenizer),
        second: (e.graph(Role::TextEncoder2)?, &e.tokenizer_2),
        zeros_for_empty_negative: m.force_zeros_for_empty_prompt,
    };
    let text = encoders.encode(&input.prompt, &input.negative_prompt, guidance)?;
    let width_ctx = text.context.shape[2];
    let ids = [
        height as f32,
        width as f32,
        0.0,
        0.0,
        height as f32,
        width as f32,
    ];
    let time_ids = HostTensor {
        shape: vec![b, 6],
        data: ids.repeat(b),
    };

    // Identity.
    let face_tokens = if input.method == Method::InstantId {
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
        let cfg = m
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
        Some(instantid::face_tokens(
            e.graph(Role::InstantidImageProj)?,
            &emb,
            guidance,
        )?)
    } else {
        None
    };
    let id_tokens = if input.method == Method::Pulid {
        let cfg = m
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
        Some(pulid::id_tokens(
            e.graph(Role::PulidIdEncoder)?,
            feats,
            cfg.vit_hidden_shape,
            guidance,
        )?)
    } else {
        None
    };
    let expected_tokens = [
        (
            &face_tokens,
            m.instantid.as_ref().map(|c| c.tokens),
            "instantid_image_proj",
        ),
        (
            &id_tokens,
            m.pulid.as_ref().map(|c| c.tokens),
            "pulid_id_encoder",
        ),
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
    for t in face_tokens.iter().chain(&id_tokens) {
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

    // UNet constants.
    let unet_graph = e.graph(Role::Unet)?;
    let mut context = text.context.clone();
    let mut extras = Vec::new();
    if e.pack.unet_has_ip() {
        let tokens = m.instantid.as_ref().map_or(0, |c| c.tokens);
        let zeros = HostTensor::zeros(&[b, tokens, width_ctx]);
        let tail = face_tokens.as_ref().unwrap_or(&zeros);
        context = HostTensor::concat1(&[&text.context, tail]);
        let w = if face_tokens.is_some() {
            input.identity_weight
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
        let w = if id_tokens.is_some() {
            input.identity_weight
        } else {
            0.0
        };
        let emb = id_tokens.as_ref().unwrap_or(&zeros);
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
            let z = HostTensor::zeros(&[b, *c, lh.div_ceil(*s), lw.div_ceil(*s)]);
            zero_residuals.push(unet_graph.prepare(name, &z)?);
        }
    }
    let constants = UnetConstants {
        context: unet_graph.prepare("encoder_hidden_states", &context)?,
        text_embeds: unet_graph.prepare("text_embeds", &text.pooled)?,
        time_ids: unet_graph.prepare("time_ids", &time_ids)?,
        extras,
        residual_names,
        zero_residuals,
    };

    // ControlNets.
    let cn_context = face_tokens.as_ref().unwrap_or(&text.context);
    let mut maps = input.control_maps.clone();
    if input.method == Method::InstantId
        && !maps.iter().any(|c| c.kind == ControlKind::FaceKeypoints)
    {
        maps.push(crate::engine::ControlMap {
            kind: ControlKind::FaceKeypoints,
            weight: input.identity_weight,
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
        let cond = HostTensor {
            shape: vec![1, 3, height as usize, width as usize],
            data: planar,
        }
        .repeat0(b);
        units.push(ControlUnit {
            graph,
            kind: map.kind,
            weight: map.weight,
            start: map.start,
            end: map.end,
            cond: graph.prepare("controlnet_cond", &cond)?,
            context: graph.prepare("encoder_hidden_states", cn_context)?,
            text_embeds: graph.prepare("text_embeds", &text.pooled)?,
            time_ids: graph.prepare("time_ids", &time_ids)?,
        });
    }

    // Initial latents.
    let len = ch * lh * lw;
    let noise = gaussian(input.seed, 0, len);
    let mut latents: Vec<f32> = match &input.img2img {
        Some(i2i) => {
            let encoded = vae::encode(
                e.graph(Role::VaeEncoder).map_err(|_| {
                    DiffusionError::Unsupported("img2img needs a vae_encoder graph".into())
                })?,
                &i2i.photo,
                width,
                height,
                m.latent.scaling_factor,
            )?;
            if encoded.data.len() != len {
                return Err(DiffusionError::inference(
                    "vae_encoder",
                    "returned latents of an unexpected size",
                ));
            }
            schedule.add_noise(&encoded.data, &noise, begin)
        }
        None => {
            let s = schedule.init_noise_sigma();
            noise.iter().map(|v| (f64::from(*v) * s) as f32).collect()
        }
    };

    // The loop.
    let mut sampler = schedule.sampler();
    let shape = vec![b, ch, lh, lw];
    for (k, i) in (begin..steps).enumerate() {
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
        let residuals =
            control::residuals(&units, k, n, &sample, &timestep, &constants.residual_names)?;
        let out = unet::predict(unet_graph, &constants, &sample, &timestep, &residuals)?;
        let eps: Vec<f32> = if guidance {
            let g = f64::from(input.guidance);
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
            .then(|| gaussian(input.seed, k as u64 + 1, len));
        latents = sampler.step(&eps, i, &latents, step_noise.as_deref());
        progress(k as u32 + 1, n as u32);
    }
    if cancel.is_canceled() {
        return Err(DiffusionError::Canceled {
            completed: n as u32,
            total: n as u32,
        });
    }
    let latents = HostTensor {
        shape: vec![1, ch, lh, lw],
        data: latents,
    };
    let decoded = vae::decode(
        e.graph(Role::VaeDecoder)?,
        &latents,
        m.latent.scaling_factor,
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
        steps: n as u32,
    })
}
