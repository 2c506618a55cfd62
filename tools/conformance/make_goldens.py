#!/usr/bin/env python3
"""Conformance goldens: the engine against the reference pipelines on random-weight models.

1. Builds random-weight models of the REAL classes at reduced width, keeping SDXL's block layout
   (diffusers UNet2DConditionModel, ControlNetModel, AutoencoderKL; transformers CLIP text
   encoders; InstantID's Resampler + IP attention; PuLID's IDEncoder + ID attention), every width
   different so that a swapped concat fails on shape, the ControlNets' zero-initialised outputs
   re-randomised.
2. Saves them as a user's checkpoints (a diffusers SDXL folder, a ControlNet folder, InstantID's
   ip-adapter.bin + ControlNetModel/, PuLID's pulid_v1.bin).
3. Runs tools/export/export_pack.py on them, unmodified, once per PuLID mode.
4. Runs the reference pipelines (diffusers' StableDiffusionXLControlNetPipeline, InstantID's own
   StableDiffusionXLInstantIDPipeline, PuLID's inference: SDXL pipeline + its ID attention
   processors + DPM-Solver trailing) from the engine's own initial noise
   (likeness_diffusion::noise, ported below), and writes the goldens the Rust test compares with
   (host/diffusion/tests/conformance.rs); and PuLID's own get_id_embedding on a fixed aligned
   face through the exported EVA02-CLIP (id_cond, id_vit_hidden).

Usage (see README.md beside this file):
    python tools/conformance/make_goldens.py --instantid-repo /work/ref/InstantID \
        --pulid-repo /work/ref/PuLID --out host/diffusion/tests/conformance
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

sys.path.insert(0, os.path.join(ROOT, "tools", "export"))
from random_checkpoints import TINY, build, export_command, hidden_size  # noqa: E402

CONTEXT = TINY.context
WIDTH, HEIGHT, STEPS = 128, 64, 4
PROMPT = "a watercolor portrait of a smiling woman, soft light"
NEGATIVE = "blurry, lowres, deformed face"
MODES = {"fidelity": (8, "ORTHO_v2"), "extremely-style": (16, "ORTHO")}


# ------------------------------------------------------------------------------------------
# The engine's noise (host/diffusion/src/noise.rs): SplitMix64 -> xoshiro256++ -> Box-Muller.

M64 = (1 << 64) - 1


def _rotl(x: int, k: int) -> int:
    return ((x << k) | (x >> (64 - k))) & M64


def gaussian(seed: int, stream: int, n: int) -> np.ndarray:
    sm = (seed ^ _rotl((stream * 0x9E3779B97F4A7C15) & M64, 17)) & M64
    s = []
    for _ in range(4):
        sm = (sm + 0x9E3779B97F4A7C15) & M64
        z = sm
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        s.append(z ^ (z >> 31))
    s0, s1, s2, s3 = s
    out = np.empty(n + 1, dtype=np.float64)
    i = 0
    scale = 1.0 / (1 << 53)
    while i < n:
        u = []
        for _ in range(2):
            r = (_rotl((s0 + s3) & M64, 23) + s0) & M64
            t = (s1 << 17) & M64
            s2 ^= s0
            s3 ^= s1
            s1 ^= s2
            s0 ^= s3
            s2 ^= t
            s3 = _rotl(s3, 45)
            u.append((r >> 11) * scale)
        u1, u2 = 1.0 - u[0], u[1]
        rad = math.sqrt(-2.0 * math.log(u1))
        theta = 2.0 * math.pi * u2
        out[i] = rad * math.cos(theta)
        out[i + 1] = rad * math.sin(theta)
        i += 2
    return out[:n].astype(np.float32)


# ------------------------------------------------------------------------------------------
# Export with the project's exporter, unmodified.


def export(ck: dict, args, mode: str, out: str) -> None:
    cmd = export_command(ck, args.instantid_repo, args.pulid_repo, out, [
        "--pulid-mode", mode, "--cpu", "--sample-size", str(HEIGHT), "--name", f"conformance-{mode}",
        "--description", f"random-weight SDXL layout, PuLID {mode}", "--licence", "test data (random weights)"])
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


# ------------------------------------------------------------------------------------------
# Reference runs.


class Goldens:
    """Tensors of one case as little-endian f32 / u8 files plus an index (name -> file, shape)."""

    def __init__(self, root: str, case: str):
        self.dir = os.path.join(root, case)
        os.makedirs(self.dir, exist_ok=True)
        self.index: dict = {}

    def put(self, name: str, value, dtype=np.float32) -> None:
        a = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
        a = np.ascontiguousarray(a.astype(dtype))
        file = f"{name}.{'u8' if dtype == np.uint8 else 'f32'}"
        a.tofile(os.path.join(self.dir, file))
        self.index[name] = {"file": file, "shape": list(a.shape)}

    def write(self, meta: dict) -> None:
        with open(os.path.join(self.dir, "golden.json"), "w", encoding="utf-8") as f:
            json.dump({**meta, "tensors": self.index}, f, indent=1, sort_keys=True)
            f.write("\n")


def first_call(module, store: dict, key: str):
    """Records the inputs and output of the module's first call."""

    def hook(_m, args, kwargs, output):
        if key not in store:
            store[key] = (args, kwargs, output)

    return module.register_forward_hook(hook, with_kwargs=True)


def control_image(kind: int):
    """Deterministic condition images at the output size (no resampling on either side)."""
    from PIL import Image

    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    if kind == 0:  # canny-like edges, grey
        img = (((x // 4 + y // 4) % 2) * 255).astype(np.uint8)
        return Image.fromarray(img, "L"), img
    rgb = np.stack([(x * 7 + y * 13 + c * 50) % 97 * 255 // 96 for c in range(3)], -1).astype(np.uint8)
    return Image.fromarray(rgb, "RGB"), rgb


def run_case(torch, pipe, g: Goldens, seed: int, call: dict, meta: dict, cn_key=None) -> None:
    noise = gaussian(seed, 0, 4 * (HEIGHT // 8) * (WIDTH // 8)).reshape(1, 4, HEIGHT // 8, WIDTH // 8)
    g.put("noise", noise)
    cfg = call["guidance_scale"] > 1
    # The plan's empty negative prompt is "no negative prompt": None to diffusers, which then
    # encodes zeros under force_zeros_for_empty_prompt ("" would be encoded as text).
    neg = call.get("negative_prompt") or ""
    call = {**call, "negative_prompt": neg or None}
    # Text: the pipeline's own encode_prompt.
    pe, npe, pooled, npooled = pipe.encode_prompt(call["prompt"], device="cpu", do_classifier_free_guidance=cfg,
                                                  negative_prompt=call["negative_prompt"])
    g.put("context", torch.cat([npe, pe]) if cfg else pe)
    g.put("text_embeds", torch.cat([npooled, pooled]) if cfg else pooled)
    for key, tok in (("tokens", pipe.tokenizer), ("tokens_2", pipe.tokenizer_2)):
        ids = tok(call["prompt"], padding="max_length", max_length=77, truncation=True).input_ids
        g.put(key, np.array(ids, dtype=np.float32))
    # Scheduler tables.
    sched = pipe.scheduler
    sched.set_timesteps(STEPS)
    g.put("timesteps", sched.timesteps.double().numpy())
    g.put("sigmas", sched.sigmas.double().numpy())
    g.put("init_noise_sigma", np.array([float(sched.init_noise_sigma)]))
    store: dict = {}
    hooks = [first_call(pipe.unet, store, "unet")]
    if cn_key:
        hooks.append(first_call(pipe.controlnet, store, "controlnet"))
    with torch.no_grad():
        latents = pipe(**call, height=HEIGHT, width=WIDTH, num_inference_steps=STEPS,
                       latents=torch.from_numpy(noise), output_type="latent").images
        decoded = pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)[0]
    for h in hooks:
        h.remove()
    image = pipe.image_processor.postprocess(decoded, output_type="np")[0]
    g.put("latents", latents)
    g.put("decoded", decoded)
    g.put("image", (image * 255).round(), np.uint8)
    # One UNet step: its inputs and output at the first step.
    args, kwargs, out = store["unet"]
    g.put("unet_sample", args[0])
    g.put("unet_timestep", torch.as_tensor(args[1]).reshape(-1).float().expand(args[0].shape[0]))
    g.put("unet_context", kwargs["encoder_hidden_states"])
    g.put("unet_text_embeds", kwargs["added_cond_kwargs"]["text_embeds"])
    g.put("unet_time_ids", kwargs["added_cond_kwargs"]["time_ids"])
    if kwargs.get("down_block_additional_residuals") is not None:
        for i, r in enumerate(kwargs["down_block_additional_residuals"]):
            g.put(f"unet_down_res_{i}", r)
        g.put("unet_mid_res", kwargs["mid_block_additional_residual"])
    xa = kwargs.get("cross_attention_kwargs") or {}
    if "id_embedding" in xa:
        g.put("unet_id_embedding", xa["id_embedding"])
    g.put("unet_out", out[0])
    if cn_key:
        args, kwargs, out = store["controlnet"]
        g.put("cn_sample", args[0])
        g.put("cn_context", kwargs["encoder_hidden_states"])
        g.put("cn_cond", kwargs["controlnet_cond"])
        g.put("cn_scale", np.array([float(kwargs["conditioning_scale"])]))
        down, mid = out
        for i, r in enumerate(down):
            g.put(f"cn_down_res_{i}", r)
        g.put("cn_mid_res", mid)
    g.write({**meta, "seed": seed, "steps": STEPS, "width": WIDTH, "height": HEIGHT,
             "prompt": call["prompt"], "negative_prompt": neg, "guidance": call["guidance_scale"]})


def references(torch, ck: dict, args, out: str) -> None:
    from diffusers import ControlNetModel, DPMSolverMultistepScheduler, StableDiffusionXLControlNetPipeline, StableDiffusionXLPipeline

    torch.set_grad_enabled(False)
    root = os.path.join(out, "goldens")
    canny_pil, canny = control_image(0)
    kps_pil, kps = control_image(1)
    os.makedirs(root, exist_ok=True)
    canny.tofile(os.path.join(root, "canny.u8"))
    kps.tofile(os.path.join(root, "keypoints.u8"))

    # ControlNet, CFG on (with a negative prompt) and off.
    cn = ControlNetModel.from_pretrained(ck["canny"])
    pipe = StableDiffusionXLControlNetPipeline.from_pretrained(ck["base"], controlnet=cn, add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    for case, guidance, neg, seed in (("controlnet-cfg", 5.0, NEGATIVE, 101), ("controlnet-nocfg", 1.0, "", 102)):
        call = {"prompt": PROMPT, "negative_prompt": neg, "image": canny_pil, "guidance_scale": guidance,
                "controlnet_conditioning_scale": 0.7}
        run_case(torch, pipe, Goldens(root, case), seed, call,
                 {"method": "controlnet", "pack": "fidelity", "control": {"kind": "canny", "weight": 0.7, "image": "canny.u8"}},
                 cn_key="controlnet")

    # InstantID: its own pipeline; image projection set up as its set_image_proj_model does, with
    # the checkpoint's (tiny) Resampler sizes.
    sys.path.insert(0, args.instantid_repo)
    from ip_adapter.resampler import Resampler
    from pipeline_stable_diffusion_xl_instantid import StableDiffusionXLInstantIDPipeline

    identitynet = ControlNetModel.from_pretrained(os.path.join(ck["instantid"], "ControlNetModel"))
    pipe = StableDiffusionXLInstantIDPipeline.from_pretrained(ck["base"], controlnet=identitynet, add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    ckpt = os.path.join(ck["instantid"], "ip-adapter.bin")
    proj = Resampler(dim=TINY.resampler[0], depth=4, dim_head=TINY.resampler[1], heads=20, num_queries=16,
                     embedding_dim=512, output_dim=CONTEXT, ff_mult=4).eval()
    proj.load_state_dict(torch.load(ckpt, map_location="cpu")["image_proj"])
    pipe.image_proj_model, pipe.image_proj_model_in_features = proj, 512
    pipe.set_ip_adapter(ckpt, num_tokens=16, scale=0.8)
    face = gaussian(77, 5, 512) * 0.05
    g = Goldens(root, "instant-id")
    g.put("face_embedding", face)
    call = {"prompt": PROMPT, "negative_prompt": "", "image": kps_pil, "image_embeds": face, "guidance_scale": 5.0,
            "controlnet_conditioning_scale": 0.8, "ip_adapter_scale": 0.8}
    run_case(torch, pipe, g, 103, call,
             {"method": "instant-id", "pack": "fidelity", "identity_weight": 0.8,
              "control": {"kind": "face-keypoints", "weight": 0.8, "image": "keypoints.u8"}},
             cn_key="controlnet")

    # PuLID: PuLIDPipeline.inference (SDXL pipeline, DPM-Solver trailing, CFG 1.2, id_scale),
    # its ID attention processors on the UNet, its IDEncoder on [zeros, features], per mode as
    # its app sets NUM_ZERO / ORTHO / ORTHO_v2.
    sys.path.insert(0, args.pulid_repo)
    from pulid import attention_processor as attention
    from pulid.encoders import IDEncoder

    state = torch.load(ck["pulid"], map_location="cpu")
    id_cond = gaussian(78, 1, 1280)
    id_cond[512:] /= np.linalg.norm(id_cond[512:])  # EVA's class token is L2-normalised
    id_vit = gaussian(78, 2, 5 * 577 * 1024)
    encoder = IDEncoder(width=1280, context_dim=CONTEXT).eval()
    encoder.load_state_dict({k[len("id_adapter."):]: v for k, v in state.items() if k.startswith("id_adapter.")})
    cond = torch.from_numpy(id_cond)[None]
    vit = [torch.from_numpy(id_vit).reshape(5, 577, 1024)[i][None] for i in range(5)]
    id_embedding = torch.cat([encoder(torch.zeros_like(cond), [torch.zeros_like(v) for v in vit]), encoder(cond, vit)])
    for seed, (mode, (zeros, ortho)) in enumerate(MODES.items(), start=104):
        attention.NUM_ZERO, attention.ORTHO, attention.ORTHO_v2 = zeros, ortho == "ORTHO", ortho == "ORTHO_v2"
        pipe = StableDiffusionXLPipeline.from_pretrained(ck["base"], add_watermarker=False)
        pipe.set_progress_bar_config(disable=True)
        procs = {n: (attention.AttnProcessor2_0() if n.endswith("attn1.processor") else
                     attention.IDAttnProcessor2_0(hidden_size(pipe.unet, n), CONTEXT)) for n in pipe.unet.attn_processors}
        pipe.unet.set_attn_processor(procs)
        layers = torch.nn.ModuleList(pipe.unet.attn_processors.values())
        layers.load_state_dict({k[len("id_adapter_attn_layers."):]: v for k, v in state.items()
                                if k.startswith("id_adapter_attn_layers.")})
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing")
        g = Goldens(root, f"pulid-{mode}")
        g.put("id_cond", id_cond)
        g.put("id_embedding", id_embedding)
        call = {"prompt": PROMPT, "negative_prompt": NEGATIVE, "guidance_scale": 1.2,
                "cross_attention_kwargs": {"id_embedding": id_embedding, "id_scale": 0.8}}
        run_case(torch, pipe, g, seed, call,
                 {"method": "pulid", "pack": mode, "identity_weight": 0.8, "id_vit_hidden": {"seed": 78, "stream": 2}})


# ------------------------------------------------------------------------------------------
# PuLID's features: its own get_id_embedding on a fixed aligned face.

# facexlib's 512 template (where the aligned crop puts the five landmarks).
FFHQ_TEMPLATE = np.array([[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935],
                          [201.26117, 371.41043], [313.08905, 371.15118]], dtype=np.float32)


def aligned_face() -> np.ndarray:
    """A fixed 512 x 512 RGB face-like picture in facexlib's aligned frame: a shaded oval with
    eyes and a mouth at the template's landmarks on a coloured background (smooth, so that it
    compresses)."""
    y, x = np.mgrid[0:512, 0:512].astype(np.float32)
    r = ((x - 256) / 150) ** 2 + ((y - 290) / 205) ** 2
    skin = np.stack([205 - 45 * r, 150 - 35 * r + 12 * np.sin(x / 9), 118 + 22 * np.cos(y / 13)], -1)
    back = np.stack([40 + x / 8, 80 + y / 10, 190 - x / 12], -1)
    img = np.where((r <= 1)[..., None], skin, back)
    for cx, cy in FFHQ_TEMPLATE[:2]:
        eye = ((x - cx) / 22) ** 2 + ((y - cy) / 11) ** 2 <= 1
        img[eye] = (35, 30, 40)
    mouth = ((x - 257) / 58) ** 2 + ((y - 371) / 14) ** 2 <= 1
    img[mouth] = (150, 50, 60)
    return np.clip(img, 0, 255).round().astype(np.uint8)


def landmark_mask(landmarks: np.ndarray, size: int = 512, scale: float = 1.0) -> np.ndarray:
    """likeness_diffusion::pulid::landmark_mask in float32, the engine's substitute for face
    parsing (`scale` grows or shrinks the ellipse, to measure how much the mask matters)."""
    f = np.float32
    lm = landmarks.astype(f)
    eyes, mouth = (lm[0] + lm[1]) / f(2), (lm[3] + lm[4]) / f(2)
    eye_dist = np.hypot(lm[1, 0] - lm[0, 0], lm[1, 1] - lm[0, 1])
    down = mouth - eyes
    mouth_dist = np.hypot(down[0], down[1])
    centre = eyes + f(0.4) * down
    rx, ry = f(1.1) * eye_dist * f(scale), f(1.55) * mouth_dist * f(scale)
    angle = np.arctan2(lm[1, 1] - lm[0, 1], lm[1, 0] - lm[0, 0])
    sin, cos = np.sin(angle), np.cos(angle)
    ys, xs = np.mgrid[0:size, 0:size].astype(f)
    dx, dy = xs + f(0.5) - centre[0], ys + f(0.5) - centre[1]
    u, v = dx * cos + dy * sin, -dx * sin + dy * cos
    return (u / rx) * (u / rx) + (v / ry) * (v / ry) <= f(1)


def pulid_pipeline_class(pulid_repo: str):
    """PuLID's PuLIDPipeline class. pulid/pipeline.py imports the detectors, hubs and samplers its
    constructor uses (insightface, facexlib, torchsde); get_id_embedding uses none of them, so
    those that are not installed are stood in for by empty modules."""
    import importlib
    import importlib.machinery
    import types

    import diffusers  # noqa: F401  (first, so that its optional-package scan sees only what is installed)

    stubs = {"insightface": {}, "insightface.app": {"FaceAnalysis": None}, "facexlib": {},
             "facexlib.parsing": {"init_parsing_model": None}, "facexlib.utils": {},
             "facexlib.utils.face_restoration_helper": {"FaceRestoreHelper": None}, "torchsde": {}}
    missing = set()
    for top in {name.split(".")[0] for name in stubs}:
        try:
            importlib.import_module(top)
        except ImportError:
            missing.add(top)
    for name, attrs in stubs.items():
        if name.split(".")[0] in missing:
            module = types.ModuleType(name)
            module.__spec__ = importlib.machinery.ModuleSpec(name, None)
            module.__dict__.update(attrs)
            sys.modules[name] = module
    sys.path.insert(0, pulid_repo)
    from pulid.pipeline import PuLIDPipeline

    return PuLIDPipeline


def pulid_reference_features(torch, Pipeline, visual, face_rgb: np.ndarray, keep: np.ndarray, embedding: np.ndarray):
    """Runs PuLIDPipeline.get_id_embedding itself on an object holding what it uses: the face
    detector and aligner answer with the fixed aligned face and embedding, face parsing answers
    with `keep` (skin inside, background outside), EVA is the exported tower; the ID encoder
    records the id_cond and id_vit_hidden it is given."""
    import types

    from eva_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    bgr = np.ascontiguousarray(face_rgb[:, :, ::-1])
    logits = torch.zeros(1, 19, *keep.shape)
    logits[0, 1] = torch.from_numpy(keep.astype(np.float32))
    logits[0, 0] = 1.0 - logits[0, 1]
    seen = []

    def id_adapter(id_cond, id_vit_hidden):
        seen.append((id_cond.clone(), torch.stack(id_vit_hidden, 1).clone()))
        return torch.zeros(1, 10, 8)

    helper = types.SimpleNamespace(cropped_faces=[], clean_all=lambda: None, read_image=lambda img: None,
                                   get_face_landmarks_5=lambda **_: None, face_parse=lambda x: (logits,))
    helper.align_warp_face = lambda: helper.cropped_faces.append(bgr)
    mean = getattr(visual, "image_mean", OPENAI_DATASET_MEAN)
    std = getattr(visual, "image_std", OPENAI_DATASET_STD)
    fake = types.SimpleNamespace(
        device="cpu", debug_img_list=[], face_helper=helper, clip_vision_model=visual, id_adapter=id_adapter,
        app=types.SimpleNamespace(get=lambda img: [{"bbox": np.array([0, 0, 512, 512], np.float32), "embedding": embedding}]),
        eva_transform_mean=mean if isinstance(mean, (list, tuple)) else (mean,) * 3,
        eva_transform_std=std if isinstance(std, (list, tuple)) else (std,) * 3)
    fake.to_gray = lambda img: Pipeline.to_gray(fake, img)
    with torch.no_grad():
        Pipeline.get_id_embedding(fake, face_rgb)
    return seen[0]


def pulid_features_golden(torch, ck: dict, args, root: str) -> None:
    """The golden of PuLID's features (the engine's pulid_features with the landmark ellipse,
    since the conformance packs have no face_parsing), and how much the mask moves them."""
    sys.path.insert(0, os.path.join(ROOT, "tools", "export"))
    from export_pack import eva_visual

    Pipeline = pulid_pipeline_class(args.pulid_repo)
    visual = eva_visual(ck["eva_clip_model"], ck["eva_clip"]).eval()
    face = aligned_face()
    keep = landmark_mask(FFHQ_TEMPLATE)
    embedding = gaussian(79, 1, 512) * 20.0  # antelopev2's raw embedding has a norm of about 20-30
    id_cond, id_vit = pulid_reference_features(torch, Pipeline, visual, face, keep, embedding)
    g = Goldens(root, "pulid-features")
    for name, data in (("face", face), ("mask", keep.astype(np.uint8))):
        with open(os.path.join(g.dir, f"{name}.u8.gz"), "wb") as f:
            f.write(gzip.compress(np.ascontiguousarray(data).tobytes(), 9, mtime=0))
    g.put("landmarks", FFHQ_TEMPLATE)
    g.put("embedding", embedding)
    g.put("id_cond", id_cond)
    g.put("id_vit_hidden", id_vit)
    # The mask's effect on this random tower: the ellipse against no whitening and against an
    # ellipse 10% smaller or larger (BiSeNet's outline differs from the ellipse by about that).
    effect = {}
    for label, mask in (("no whitening", np.ones_like(keep)), ("ellipse x0.9", landmark_mask(FFHQ_TEMPLATE, scale=0.9)),
                        ("ellipse x1.1", landmark_mask(FFHQ_TEMPLATE, scale=1.1))):
        cond, vit = pulid_reference_features(torch, Pipeline, visual, face, mask, embedding)
        a, b = id_cond[0, 512:], cond[0, 512:]
        effect[label] = {"pixels_changed": int((mask != keep).sum()),
                         "class_token_1_minus_cos": float(1 - torch.dot(a, b) / (a.norm() * b.norm())),
                         "hidden_rel_l2": float((vit - id_vit).norm() / id_vit.norm())}
        print(f"mask {label}: {effect[label]}")
    g.write({"method": "pulid-features", "pack": "fidelity", "face_size": 512, "mask_effect": effect})


# ------------------------------------------------------------------------------------------


def commit_pack(src: str, dst: str, base: str | None) -> None:
    """Copies an exported pack into the test tree: graphs above 1 MiB that compress well are
    gzipped (the test unpacks them); with `base`, files identical to the base pack's are left out
    (the test overlays this pack on the base one)."""
    if os.path.exists(dst):
        shutil.rmtree(dst)
    for folder, _, names in os.walk(src):
        for name in names:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, src)
            if base and name != "pack.toml" and os.path.exists(os.path.join(base, rel)):
                with open(path, "rb") as a, open(os.path.join(base, rel), "rb") as b:
                    if a.read() == b.read():
                        continue
            target = os.path.join(dst, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            data = open(path, "rb").read()
            packed = gzip.compress(data, 9, mtime=0)
            if len(data) > 1 << 20 and len(packed) < len(data) // 2:
                with open(target + ".gz", "wb") as f:
                    f.write(packed)
            else:
                shutil.copyfile(path, target)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instantid-repo", required=True, help="checkout of instantX-research/InstantID")
    ap.add_argument("--pulid-repo", required=True, help="checkout of ToTheBeginning/PuLID")
    ap.add_argument("--out", default=os.path.join(ROOT, "host", "diffusion", "tests", "conformance"))
    ap.add_argument("--work", help="scratch folder (default: a temporary one)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    work = args.work or tempfile.mkdtemp(prefix="likeness-conformance-")
    ck = build(torch, TINY, work, args.instantid_repo, args.pulid_repo)
    packs = {}
    for mode in MODES:
        packs[mode] = os.path.join(work, f"pack-{mode}")
        export(ck, args, mode, packs[mode])
    goldens = os.path.join(args.out, "goldens")
    if os.path.exists(goldens):
        shutil.rmtree(goldens)
    references(torch, ck, args, args.out)
    pulid_features_golden(torch, ck, args, goldens)
    commit_pack(packs["fidelity"], os.path.join(args.out, "fidelity"), None)
    commit_pack(packs["extremely-style"], os.path.join(args.out, "extremely-style"), packs["fidelity"])
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
