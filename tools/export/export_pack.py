#!/usr/bin/env python3
"""Exports SDXL (or SDXL-Lightning) + ControlNets + InstantID + PuLID to a Likeness diffusion
model pack with exactly the contract of docs/model-packs.md.

Run it where the weights are (a machine with torch, diffusers and the checkpoints); copy the
output folder to the service. See README.md beside this file for the inputs and examples.

Nothing is downloaded from a hub unless you pass hub ids yourself; every path may be local.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

import onnx

# PuLID's modes as its app sets them (app.py: attention.NUM_ZERO / ORTHO / ORTHO_v2): zero tokens
# appended to the ID tokens before the ID key/value projections, and the projection used.
PULID_MODES = {"fidelity": (8, "ORTHO_v2"), "extremely-style": (16, "ORTHO")}
# EVA02-CLIP-L-14-336's hidden states as PuLID takes them: 5 layers, 577 tokens, 1024 wide.
EVA_HIDDEN = (5, 577, 1024)
# Scheduler classes of the base model the engine implements (docs/model-packs.md, Samplers).
SCHEDULER_KINDS = {
    "EulerDiscreteScheduler": "euler",
    "EulerAncestralDiscreteScheduler": "euler-ancestral",
    "DPMSolverMultistepScheduler": "dpmpp-2m",
}


# ------------------------------------------------------------------------------------------
# Small helpers (no torch needed)


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def io_names(path: str) -> tuple[list[str], list[str]]:
    model = onnx.load(path, load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in inits], [o.name for o in model.graph.output]


def toml_list(items) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def resampler_sizes(state: dict, heads: int) -> dict:
    """InstantID's Resampler arguments read from its weights (InstantID's pipeline hard-codes
    dim 1280, depth 4, 20 heads of 64, 16 queries, 512 -> 2048, ff_mult 4); only the head count
    cannot be read from the shapes."""
    _, queries, dim = state["latents"].shape
    inner = state["layers.0.0.to_q.weight"].shape[0]
    if inner % heads:
        raise SystemExit(f"the Resampler's attention is {inner} wide, not a multiple of --instantid-heads {heads}")
    depth = len({k.split(".")[1] for k in state if k.startswith("layers.")})
    return {
        "dim": int(dim), "depth": depth, "dim_head": inner // heads, "heads": heads, "num_queries": int(queries),
        "embedding_dim": int(state["proj_in.weight"].shape[1]), "output_dim": int(state["proj_out.weight"].shape[0]),
        "ff_mult": state["layers.0.1.1.weight"].shape[0] // int(dim),
    }


def scheduler_lines(config: dict, trailing: bool) -> list[str]:
    """`[scheduler]` from the base model's scheduler config; refuses settings the engine does not
    implement rather than exporting a pack that samples differently from the model's own."""
    name = config.get("_class_name", "")
    kind = SCHEDULER_KINDS.get(name)
    if kind is None:
        print(f"warning: the base's scheduler {name or '(none)'} is not one the engine runs; "
              f"its noise schedule is kept and the default sampler is euler", file=sys.stderr)
        kind = "euler"
    unsupported = {
        "use_karras_sigmas": True, "use_exponential_sigmas": True, "use_beta_sigmas": True,
        "rescale_betas_zero_snr": True, "thresholding": True,
    }
    for key, bad in unsupported.items():
        if config.get(key) == bad:
            raise SystemExit(f"the base's scheduler sets {key} = {bad}, which the engine does not implement")
    if config.get("trained_betas") is not None:
        raise SystemExit("the base's scheduler has trained_betas, which the engine does not implement")
    if kind == "dpmpp-2m" and (config.get("algorithm_type", "dpmsolver++") != "dpmsolver++" or config.get("solver_order", 2) != 2):
        raise SystemExit("the base's DPM-Solver is not dpmsolver++ of order 2, which is what the engine runs")
    schedule = config.get("beta_schedule", "linear")
    prediction = config.get("prediction_type", "epsilon")
    spacing = "trailing" if trailing else config.get("timestep_spacing", "linspace")
    checks = (("beta_schedule", schedule, ("scaled_linear", "linear")),
              ("prediction_type", prediction, ("epsilon", "v_prediction")),
              ("timestep_spacing", spacing, ("leading", "trailing", "linspace")))
    for key, value, allowed in checks:
        if value not in allowed:
            raise SystemExit(f"the base's scheduler has {key} = {value!r}; the engine runs {', '.join(allowed)}")
    return [
        "[scheduler]",
        f"num_train_timesteps = {int(config.get('num_train_timesteps', 1000))}",
        f"beta_start = {float(config.get('beta_start', 0.0001))!r}",
        f"beta_end = {float(config.get('beta_end', 0.02))!r}",
        f'beta_schedule = "{schedule}"',
        f'prediction_type = "{prediction}"',
        f'timestep_spacing = "{spacing}"',
        f"steps_offset = {int(config.get('steps_offset', 0))}",
        f'kind = "{kind}"',
        "",
    ]


def rename_io(src: str, dst: str, inputs: dict[str, str], outputs: dict[str, str]) -> None:
    """Copies an ONNX model renaming graph inputs/outputs (e.g. glintr100's input.1 -> face)."""
    model = onnx.load(src)
    mapping = {**inputs, **outputs}
    for v in list(model.graph.input) + list(model.graph.output):
        if v.name in mapping:
            v.name = mapping[v.name]
    for node in model.graph.node:
        node.input[:] = [mapping.get(n, n) for n in node.input]
        node.output[:] = [mapping.get(n, n) for n in node.output]
    onnx.save(model, dst)


# ------------------------------------------------------------------------------------------
# Torch part (imported lazily so that --help works without torch)


def export_all(args) -> dict:
    import torch
    from diffusers import ControlNetModel, StableDiffusionXLPipeline

    dev = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    dtype = torch.float16 if args.fp16 else torch.float32
    out = args.out
    os.makedirs(out, exist_ok=True)
    pipe = StableDiffusionXLPipeline.from_pretrained(args.base, torch_dtype=dtype)
    if args.lightning_unet:
        from safetensors.torch import load_file

        pipe.unet.load_state_dict(load_file(args.lightning_unet))
    pipe.to(dev)
    opset = args.opset
    B, S, H, W = 2, 77, args.sample_size // 8, args.sample_size // 8
    graphs: dict[str, dict] = {}

    def export(module, name, dummy: tuple, inputs, outputs, dynamic, external=False, **extra):
        path = os.path.join(out, f"{name}.onnx")
        with torch.inference_mode():
            torch.onnx.export(
                module, dummy, path, input_names=inputs, output_names=outputs, dynamic_axes=dynamic,
                opset_version=opset, do_constant_folding=True, dynamo=False,
            )
        data = []
        if external or os.path.getsize(path) > 1_800_000_000:
            model = onnx.load(path)
            onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location=f"{name}.onnx.data")
            data.append(f"{name}.onnx.data")
        graphs[name] = {"file": f"{name}.onnx", "data": data, **extra}
        print(f"exported {name}")

    # Text encoders: every hidden state named hidden_states.N, plus the pooled output.
    class TextEncoder(torch.nn.Module):
        def __init__(self, enc, projection: bool):
            super().__init__()
            self.enc, self.projection = enc, projection

        def forward(self, input_ids):
            o = self.enc(input_ids, output_hidden_states=True, return_dict=True)
            first = o.text_embeds if self.projection else o.pooler_output
            return (o.last_hidden_state, first, *o.hidden_states)

    ids = torch.zeros((1, S), dtype=torch.int64, device=dev)
    for name, enc, proj in (("text_encoder", pipe.text_encoder, False), ("text_encoder_2", pipe.text_encoder_2, True)):
        n = enc.config.num_hidden_layers + 1
        pooled = "text_embeds" if proj else "pooler_output"
        outs = ["last_hidden_state", pooled] + [f"hidden_states.{i}" for i in range(n)]
        dyn = {"input_ids": {0: "batch"}, **{o: {0: "batch"} for o in outs}}
        export(TextEncoder(enc, proj), name, (ids,), ["input_ids"], outs, dyn,
               hidden_state=f"hidden_states.{n - 2}", pooled=pooled)

    # Identity modules.
    ip_tokens = id_tokens = 0
    unet = pipe.unet
    processors = {}
    if args.instantid or args.pulid:
        processors = install_identity_processors(unet, args, dev, dtype)
        ip_tokens = processors.get("ip_tokens", 0)
        id_tokens = processors["id_tokens"]

    res_channels, res_strides, mid_channels, mid_stride = residual_layout(unet)

    class Unet(torch.nn.Module):
        def __init__(self, unet):
            super().__init__()
            self.unet = unet

        def forward(self, sample, timestep, encoder_hidden_states, text_embeds, time_ids, *rest):
            rest = list(rest)
            n = len(res_channels)
            down, mid = tuple(rest[:n]), rest[n]
            rest = rest[n + 1:]
            kwargs = {}
            if args.instantid:
                ip_scale = rest.pop(0)
                for p in processors["ip"]:
                    p.scale = ip_scale
            if args.pulid:
                kwargs = {"id_embedding": rest.pop(0), "id_scale": rest.pop(0)}
            return self.unet(
                sample, timestep, encoder_hidden_states,
                added_cond_kwargs={"text_embeds": text_embeds, "time_ids": time_ids},
                down_block_additional_residuals=down, mid_block_additional_residual=mid,
                cross_attention_kwargs=kwargs or None, return_dict=False,
            )[0]

    t = lambda *s, dt=dtype: torch.zeros(s, dtype=dt, device=dev)  # noqa: E731
    C = unet.config.cross_attention_dim
    P = pipe.text_encoder_2.config.projection_dim
    dummy = [t(B, 4, H, W), torch.full((B,), 999.0, dtype=torch.float32, device=dev), t(B, S + ip_tokens, C), t(B, P), t(B, 6)]
    names = ["sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids"]
    for i, (c, s) in enumerate(zip(res_channels, res_strides)):
        dummy.append(t(B, c, H // s, W // s))
        names.append(f"down_block_res_{i}")
    dummy.append(t(B, mid_channels, H // mid_stride, W // mid_stride))
    names.append("mid_block_res")
    if args.instantid:
        dummy.append(t(1))
        names.append("ip_scale")
    if args.pulid:
        dummy += [t(B, id_tokens, C), t(1)]
        names += ["id_embedding", "id_scale"]
    dyn = {n: {0: "batch"} for n in names if n not in ("ip_scale", "id_scale")}
    dyn["sample"] = {0: "batch", 2: "height", 3: "width"}
    dyn["encoder_hidden_states"] = {0: "batch", 1: "sequence"}
    for i in range(len(res_channels)):
        dyn[f"down_block_res_{i}"] = {0: "batch", 2: f"h{i}", 3: f"w{i}"}
    dyn["mid_block_res"] = {0: "batch", 2: "hm", 3: "wm"}
    dyn["out_sample"] = {0: "batch", 2: "height", 3: "width"}
    export(Unet(unet), "unet", tuple(dummy), names, ["out_sample"], dyn, external=True)

    # VAE (fp32 unless --vae-fp16: the SDXL VAE overflows in fp16 without the fp16-fix weights).
    vae = pipe.vae.to(torch.float16 if args.vae_fp16 else torch.float32)
    vdt = torch.float16 if args.vae_fp16 else torch.float32

    class VaeDecoder(torch.nn.Module):
        def __init__(self, vae):
            super().__init__()
            self.vae = vae

        def forward(self, latent_sample):
            return self.vae.decode(latent_sample, return_dict=False)[0]

    class VaeEncoder(torch.nn.Module):
        def __init__(self, vae):
            super().__init__()
            self.vae = vae

        def forward(self, sample):
            return self.vae.encode(sample).latent_dist.mean

    vdyn = {0: "batch", 2: "height", 3: "width"}
    vae_dtype = "fp16" if args.vae_fp16 else "fp32"
    export(VaeDecoder(vae), "vae_decoder", (t(1, 4, H, W, dt=vdt),), ["latent_sample"], ["sample"],
           {"latent_sample": vdyn, "sample": vdyn}, dtype=vae_dtype)
    export(VaeEncoder(vae), "vae_encoder", (t(1, 3, H * 8, W * 8, dt=vdt),), ["sample"], ["latent_sample"],
           {"sample": vdyn, "latent_sample": vdyn}, dtype=vae_dtype)

    # ControlNets (IdentityNet is InstantID's ControlNetModel).
    class ControlNet(torch.nn.Module):
        def __init__(self, cn):
            super().__init__()
            self.cn = cn

        def forward(self, sample, timestep, encoder_hidden_states, controlnet_cond, conditioning_scale, text_embeds, time_ids):
            down, mid = self.cn(
                sample, timestep, encoder_hidden_states, controlnet_cond, conditioning_scale,
                added_cond_kwargs={"text_embeds": text_embeds, "time_ids": time_ids}, return_dict=False,
            )
            return (*down, mid)

    cn_inputs = ["sample", "timestep", "encoder_hidden_states", "controlnet_cond", "conditioning_scale", "text_embeds", "time_ids"]
    cn_outputs = [f"down_block_res_{i}" for i in range(len(res_channels))] + ["mid_block_res"]
    cn_dyn = {n: {0: "batch"} for n in cn_inputs if n != "conditioning_scale"}
    cn_dyn["sample"] = dyn["sample"]
    cn_dyn["encoder_hidden_states"] = {0: "batch", 1: "sequence"}
    cn_dyn["controlnet_cond"] = {0: "batch", 2: "image_height", 3: "image_width"}
    for o in cn_outputs:
        cn_dyn[o] = dyn[o]
    controlnets = [("controlnet_canny", args.controlnet_canny), ("controlnet_depth", args.controlnet_depth),
                   ("controlnet_pose", args.controlnet_pose)]
    if args.instantid:
        controlnets.append(("identitynet", os.path.join(args.instantid, "ControlNetModel")))
    for role, src in controlnets:
        if not src:
            continue
        cn = ControlNetModel.from_pretrained(src, torch_dtype=dtype).to(dev)
        ctx_len = ip_tokens if role == "identitynet" or args.instantid else S
        d = (t(B, 4, H, W), dummy[1], t(B, ctx_len, C), t(B, 3, H * 8, W * 8), t(1), t(B, P), t(B, 6))
        export(ControlNet(cn), role, d, cn_inputs, cn_outputs, cn_dyn)

    if args.instantid:
        class ImageProj(torch.nn.Module):
            def __init__(self, proj):
                super().__init__()
                self.proj = proj

            def forward(self, image_embeds):
                return self.proj(image_embeds)

        export(ImageProj(processors["image_proj"]), "instantid_image_proj", (t(1, 1, processors["embedding_dim"]),), ["image_embeds"],
               ["image_prompt_embeds"], {"image_embeds": {0: "batch"}, "image_prompt_embeds": {0: "batch"}})
    if args.pulid:
        class IdEncoder(torch.nn.Module):
            def __init__(self, enc):
                super().__init__()
                self.enc = enc

            def forward(self, id_cond, id_vit_hidden):
                return self.enc(id_cond, [id_vit_hidden[:, i] for i in range(id_vit_hidden.shape[1])])

        export(IdEncoder(processors["id_encoder"]), "pulid_id_encoder", (t(1, processors["id_cond_dim"]), t(1, *EVA_HIDDEN)),
               ["id_cond", "id_vit_hidden"], ["id_embedding"],
               {"id_cond": {0: "batch"}, "id_vit_hidden": {0: "batch"}, "id_embedding": {0: "batch"}})

    if args.pulid_eva:
        export_pulid_features(args, export, t, dev, dtype)

    if args.antelopev2:
        rename_io(os.path.join(args.antelopev2, "glintr100.onnx"), os.path.join(out, "face_recognizer.onnx"),
                  {"input.1": "face"}, {"683": "embedding"})
        graphs["face_recognizer"] = {"file": "face_recognizer.onnx", "data": [], "dtype": "fp32"}

    # Tokenizers: the pipeline's own files.
    for sub in ("tokenizer", "tokenizer_2"):
        tok = getattr(pipe, sub)
        os.makedirs(os.path.join(out, sub), exist_ok=True)
        tok.save_vocabulary(os.path.join(out, sub))
    return {
        "graphs": graphs,
        "res_channels": res_channels,
        "res_strides": res_strides,
        "mid": (mid_channels, mid_stride),
        "ip_tokens": ip_tokens,
        "id_tokens": id_tokens,
        "pads": (pipe.tokenizer.pad_token, pipe.tokenizer_2.pad_token),
        # A tokenizer saved without model_max_length reports a huge one: the encoder's positions bound it.
        "max_lengths": tuple(min(tok.model_max_length, enc.config.max_position_embeddings) for tok, enc in
                             ((pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2))),
        "force_zeros": bool(pipe.config.get("force_zeros_for_empty_prompt", True)),
        "scheduler": dict(pipe.scheduler.config),
        "latent_channels": int(unet.config.in_channels),
        "vae_scale_factor": 2 ** (len(vae.config.block_out_channels) - 1),
        "scaling_factor": float(vae.config.scaling_factor),
        "embedding_dim": processors.get("embedding_dim", 512),
        "id_cond_dim": processors.get("id_cond_dim", 0),
    }


# PuLID's face crop (facexlib's FaceRestoreHelper face_size), the input of both feature graphs.
FACE_SIZE = 512


def export_pulid_features(args, export, t, dev, dtype) -> None:
    """`pulid_eva_clip` and, with --face-parsing, `face_parsing`: what PuLID's get_id_embedding
    runs on the aligned 512 face (pulid/pipeline.py).

    pulid_eva_clip: the background-whitened grey face [B,3,512,512] in 0..1 -> torchvision's
    bicubic resize to the tower's image_size (PuLID's call, baked in as the two constant matrices
    it equals, since it is linear), normalised with the tower's image_mean/std, through eva_clip's
    visual tower (return_hidden=True) -> `id_cond_vit` (the class token, L2-normalised) and
    `id_vit_hidden` (the 5 hidden states stacked, [B,5,tokens,width]).

    face_parsing: the aligned face [B,3,512,512] RGB in 0..1 -> ImageNet normalisation (PuLID's
    call) -> facexlib's BiSeNet -> its first output, `parsing` logits [B,19,512,512]."""
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.functional import resize

    sys.path.insert(0, args.pulid_repo)
    from eva_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD  # PuLID repo

    visual = eva_visual(args.pulid_eva_model, args.pulid_eva).to(dev, dtype).eval()

    def per_channel(value):
        value = value if isinstance(value, (list, tuple)) else (value,) * 3
        return torch.tensor(value, dtype=dtype, device=dev).view(1, 3, 1, 1)

    size = visual.image_size if isinstance(visual.image_size, int) else visual.image_size[0]
    # resize() is linear and separable: it maps the rows of the identity onto its matrix.
    basis = torch.eye(FACE_SIZE, dtype=torch.float64).view(FACE_SIZE, 1, 1, FACE_SIZE)
    matrix = resize(basis, [1, size], InterpolationMode.BICUBIC).view(FACE_SIZE, size).T.contiguous()

    class EvaClip(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.visual = visual
            self.register_buffer("resize", matrix.to(dev, dtype))
            self.register_buffer("mean", per_channel(getattr(visual, "image_mean", OPENAI_DATASET_MEAN)))
            self.register_buffer("std", per_channel(getattr(visual, "image_std", OPENAI_DATASET_STD)))

        def forward(self, face):
            # R X R^T, written (R (R X)^T)^T so that the graph holds R once.
            x = torch.matmul(self.resize, torch.matmul(self.resize, face).transpose(-1, -2)).transpose(-1, -2)
            x = (x - self.mean) / self.std
            cls, hidden = self.visual(x, return_all_features=False, return_hidden=True, shuffle=False)
            return cls / torch.norm(cls, 2, 1, True), torch.stack(hidden, dim=1)

    export(EvaClip().eval(), "pulid_eva_clip", (t(1, 3, FACE_SIZE, FACE_SIZE),), ["face"], ["id_cond_vit", "id_vit_hidden"],
           {"face": {0: "batch"}, "id_cond_vit": {0: "batch"}, "id_vit_hidden": {0: "batch"}})

    if args.face_parsing:
        bisenet = load_bisenet(args.facexlib_dir)(num_class=19)
        bisenet.load_state_dict(torch.load(args.face_parsing, map_location="cpu"))
        bisenet = bisenet.to(dev, dtype).eval()

        class FaceParsing(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.net = bisenet
                self.register_buffer("mean", per_channel([0.485, 0.456, 0.406]))
                self.register_buffer("std", per_channel([0.229, 0.224, 0.225]))

            def forward(self, face):
                return self.net((face - self.mean) / self.std)[0]

        export(FaceParsing().eval(), "face_parsing", (t(1, 3, FACE_SIZE, FACE_SIZE),), ["face"], ["parsing"],
               {"face": {0: "batch"}, "parsing": {0: "batch"}})


def eva_visual(model: str, checkpoint: str):
    """eva_clip's visual tower of `model` (a model name, or a model-config .json) with the
    `visual.*` weights of an EVA-CLIP checkpoint, as PuLID builds it (`create_model_and_transforms(
    'EVA02-CLIP-L-14-336', 'eva_clip', force_custom_clip=True)`, then `.visual`). Needs the PuLID
    repo on sys.path."""
    import torch
    from eva_clip import add_model_config, create_model  # PuLID repo

    if model.endswith(".json"):
        add_model_config(model)
        model = os.path.splitext(os.path.basename(model))[0]
    visual = create_model(model, force_custom_clip=True).visual
    ckpt = torch.load(checkpoint, map_location="cpu")
    for key in ("model", "module", "state_dict"):
        if isinstance(ckpt, dict) and key in ckpt:
            ckpt = ckpt[key]
    visual.load_state_dict({k[len("visual."):]: v for k, v in ckpt.items() if k.startswith("visual.")})
    return visual


def load_bisenet(root: str | None):
    """facexlib's BiSeNet class from its package folder (default: the installed facexlib), loaded
    without facexlib's __init__, which imports its detectors and their dependencies."""
    import importlib.util
    import types

    if root is None:
        spec = importlib.util.find_spec("facexlib")
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("--face-parsing needs facexlib (pip install facexlib --no-deps) or --facexlib-dir")
        root = list(spec.submodule_search_locations)[0]
    package = types.ModuleType("likeness_facexlib_parsing")
    package.__path__ = [os.path.join(root, "parsing")]
    sys.modules[package.__name__] = package
    for name in ("resnet", "bisenet"):
        spec = importlib.util.spec_from_file_location(f"{package.__name__}.{name}", os.path.join(root, "parsing", f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    bisenet = sys.modules[f"{package.__name__}.bisenet"]
    bisenet.F = _GlobalPoolFunctional()
    return bisenet.BiSeNet


class _GlobalPoolFunctional:
    """torch.nn.functional for BiSeNet's module, with its `avg_pool2d(x, x.size()[2:])` (a global
    average whose traced kernel size ONNX cannot take) as `adaptive_avg_pool2d(x, 1)`, the same."""

    def __getattr__(self, name):
        import torch.nn.functional as F

        return getattr(F, name)

    @staticmethod
    def avg_pool2d(x, kernel_size, *rest, **kwargs):
        import torch.nn.functional as F

        if rest or kwargs or tuple(int(k) for k in kernel_size) != tuple(x.shape[2:]):
            return F.avg_pool2d(x, kernel_size, *rest, **kwargs)
        return F.adaptive_avg_pool2d(x, 1)


def residual_layout(unet):
    """(down channels, down strides, mid channels, mid stride) of the UNet's ControlNet residuals:
    conv_in, each resnet and each downsampler of the down blocks, as diffusers' ControlNet returns
    them (SDXL: 9 down residuals, [320]*4 + [640]*3 + [1280]*2, strides [1]*3 + [2]*3 + [4]*3)."""
    widths = unet.config.block_out_channels
    channels, strides = [widths[0]], [1]
    stride = 1
    for i, block in enumerate(unet.down_blocks):
        for _ in block.resnets:
            channels.append(widths[i])
            strides.append(stride)
        if block.downsamplers:
            stride *= 2
            channels.append(widths[i])
            strides.append(stride)
    return channels, strides, widths[-1], stride


def install_identity_processors(unet, args, dev, dtype) -> dict:
    """Replaces the UNet's attention processors by ones computing text attention plus, where
    enabled, InstantID's IP attention (scale = a traced tensor) and PuLID's ID attention.

    InstantID: the Resampler and `to_k_ip`/`to_v_ip` weights from ip-adapter.bin (InstantID repo's
    ip_adapter/resampler.py). PuLID: IDEncoder and `id_to_k`/`id_to_v` from the PuLID checkpoint
    (PuLID repo's pulid/encoders.py and attention_processor.py). Both repos must be importable
    (--instantid-repo, --pulid-repo). Check the attention maths against the upstream version you
    export: these processors follow InstantID's IPAttnProcessor2_0 and PuLID's
    IDAttnProcessor2_0 with the mode's zero tokens and projection (PULID_MODES, --pulid-mode)."""
    import torch
    import torch.nn.functional as F

    result = {"ip": [], "id_tokens": 0}
    zero_tokens, ortho = PULID_MODES[args.pulid_mode]
    ip_tokens = 0
    if args.instantid:
        ip_state_all = torch.load(os.path.join(args.instantid, "ip-adapter.bin"), map_location="cpu")
        ip_tokens = int(ip_state_all["image_proj"]["latents"].shape[1])
    if args.instantid_repo:
        sys.path.insert(0, args.instantid_repo)
    if args.pulid_repo:
        sys.path.insert(0, args.pulid_repo)

    class LikenessAttn(torch.nn.Module):
        def __init__(self, hidden, cross, ip: bool, pulid: bool):
            super().__init__()
            self.scale = 1.0
            self.num_tokens = ip_tokens
            self.ip = ip and cross is not None
            self.pulid = pulid and cross is not None
            if self.ip:
                self.to_k_ip = torch.nn.Linear(cross, hidden, bias=False)
                self.to_v_ip = torch.nn.Linear(cross, hidden, bias=False)
            if self.pulid:
                self.id_to_k = torch.nn.Linear(cross, hidden, bias=False)
                self.id_to_v = torch.nn.Linear(cross, hidden, bias=False)

        def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                     id_embedding=None, id_scale=None, **_):
            residual = hidden_states
            b = hidden_states.shape[0]
            query = attn.to_q(hidden_states)
            ctx = hidden_states if encoder_hidden_states is None else encoder_hidden_states
            ip_ctx = None
            if self.ip:
                end = ctx.shape[1] - self.num_tokens
                ctx, ip_ctx = ctx[:, :end], ctx[:, end:]
            heads = attn.heads
            dh = query.shape[-1] // heads

            def split(x):
                return x.view(b, -1, heads, dh).transpose(1, 2)

            def merge(x):
                return x.transpose(1, 2).reshape(b, -1, heads * dh)

            q = split(query)
            out = merge(F.scaled_dot_product_attention(q, split(attn.to_k(ctx)), split(attn.to_v(ctx))))
            if ip_ctx is not None:
                ip = merge(F.scaled_dot_product_attention(q, split(self.to_k_ip(ip_ctx)), split(self.to_v_ip(ip_ctx))))
                out = out + self.scale * ip
            if self.pulid and id_embedding is not None:
                # PuLID's app: NUM_ZERO zero tokens appended before the ID key/value projections.
                zeros = id_embedding.new_zeros((id_embedding.shape[0], zero_tokens, id_embedding.shape[-1]))
                ids = torch.cat((id_embedding, zeros), dim=1)
                k = split(self.id_to_k(ids))
                idh = merge(F.scaled_dot_product_attention(q, k, split(self.id_to_v(ids))))
                o32, i32 = out.float(), idh.float()
                proj = (o32 * i32).sum(-2, keepdim=True) / (o32 * o32).sum(-2, keepdim=True) * o32
                if ortho == "ORTHO_v2":
                    attn_map = (q @ k.transpose(-2, -1)).softmax(dim=-1).mean(dim=1)
                    attn_mean = attn_map[:, :, :5].sum(dim=-1, keepdim=True)
                    out = (o32 + id_scale * (i32 + (attn_mean - 1) * proj)).to(out.dtype)
                else:
                    out = (o32 + id_scale * (i32 - proj)).to(out.dtype)
            out = attn.to_out[1](attn.to_out[0](out))
            if attn.residual_connection:
                out = out + residual
            return out / attn.rescale_output_factor

    procs = {}
    for name in unet.attn_processors.keys():
        cross = None if name.endswith("attn1.processor") else unet.config.cross_attention_dim
        if name.startswith("mid_block"):
            hidden = unet.config.block_out_channels[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(unet.config.block_out_channels))[int(name[len("up_blocks.")])]
        else:
            hidden = unet.config.block_out_channels[int(name[len("down_blocks.")])]
        procs[name] = LikenessAttn(hidden, cross, bool(args.instantid), bool(args.pulid)).to(dev, dtype)
    unet.set_attn_processor(procs)
    layers = list(unet.attn_processors.values())

    if args.instantid:
        from ip_adapter.resampler import Resampler  # InstantID repo

        state = ip_state_all
        proj = Resampler(**resampler_sizes(state["image_proj"], args.instantid_heads))
        proj.load_state_dict(state["image_proj"])
        result["image_proj"] = proj.to(dev, dtype).eval()
        # IP-Adapter's convention: ModuleList(attn_processors.values()) keys "<index>.to_k_ip.weight".
        ip_state = {k: v for k, v in state["ip_adapter"].items()}
        for i, layer in enumerate(layers):
            if layer.ip:
                layer.to_k_ip.weight.data.copy_(ip_state[f"{i}.to_k_ip.weight"])
                layer.to_v_ip.weight.data.copy_(ip_state[f"{i}.to_v_ip.weight"])
        result["ip"] = [p for p in layers if p.ip]
        result["ip_tokens"] = int(state["image_proj"]["latents"].shape[1])
        result["embedding_dim"] = int(state["image_proj"]["proj_in.weight"].shape[1])
    if args.pulid:
        from safetensors.torch import load_file
        from pulid.encoders import IDEncoder  # PuLID repo

        ckpt = load_file(args.pulid) if args.pulid.endswith(".safetensors") else torch.load(args.pulid, map_location="cpu")
        enc_state = {k[len("id_adapter."):]: v for k, v in ckpt.items() if k.startswith("id_adapter.")}
        attn_state = {k[len("id_adapter_attn_layers."):]: v for k, v in ckpt.items() if k.startswith("id_adapter_attn_layers.")}
        body_in, body_out = enc_state["body.0.weight"].shape[1], enc_state["body.6.weight"].shape[0]
        context = unet.config.cross_attention_dim
        enc = IDEncoder(width=body_in, context_dim=context, num_token=body_out // context)
        enc.load_state_dict(enc_state)
        result["id_cond_dim"] = int(body_in)
        result["id_encoder"] = enc.to(dev, dtype).eval()
        for i, layer in enumerate(layers):
            if layer.pulid:
                layer.id_to_k.weight.data.copy_(attn_state[f"{i}.id_to_k.weight"])
                layer.id_to_v.weight.data.copy_(attn_state[f"{i}.id_to_v.weight"])
        with torch.inference_mode():
            probe = result["id_encoder"](torch.zeros(1, result["id_cond_dim"], device=dev, dtype=dtype),
                                         [torch.zeros(1, *EVA_HIDDEN[1:], device=dev, dtype=dtype)] * EVA_HIDDEN[0])
        result["id_tokens"] = int(probe.shape[1])
    return result


# ------------------------------------------------------------------------------------------


def write_manifest(args, info: dict) -> None:
    out = args.out
    dtype = "fp16" if args.fp16 else "fp32"
    lines = [
        "format = 1",
        f"name = {json.dumps(args.name)}",
        f"description = {json.dumps(args.description)}",
        'family = "sdxl"',
        f'dtype = "{dtype}"',
        f"licence = {json.dumps(args.licence)}",
        f"force_zeros_for_empty_prompt = {str(info['force_zeros']).lower()}",
        "",
        "[latent]",
        f"channels = {info['latent_channels']}",
        f"vae_scale_factor = {info['vae_scale_factor']}",
        f"scaling_factor = {info['scaling_factor']!r}",
        "size_multiple = 64",
        "max_side = 1536",
        "default_size = [1024, 1024]",
        "",
        "[control]",
        f"down_channels = {toml_list(info['res_channels'])}",
        f"down_strides = {toml_list(info['res_strides'])}",
        f"mid_channels = {info['mid'][0]}",
        f"mid_stride = {info['mid'][1]}",
        "",
    ]
    if info["ip_tokens"]:
        lines += ["[instantid]", f"tokens = {info['ip_tokens']}", f"embedding_dim = {info['embedding_dim']}", ""]
    if info["id_tokens"]:
        lines += ["[pulid]", f"tokens = {info['id_tokens']}", f"id_cond_dim = {info['id_cond_dim']}",
                  f"vit_hidden_shape = {toml_list(EVA_HIDDEN)}", ""]
    lines += scheduler_lines(info["scheduler"], bool(args.lightning_unet or args.trailing))
    if info["id_tokens"]:
        lines += ["[methods.pulid]", 'scheduler = "dpmpp-2m"', 'timestep_spacing = "trailing"', ""]
    for sub, pad, max_length in zip(("tokenizer", "tokenizer_2"), info["pads"], info["max_lengths"]):
        lines += [
            f"[{sub}]",
            f'vocab = "{sub}/vocab.json"',
            f'vocab_sha256 = "{sha256(os.path.join(out, sub, "vocab.json"))}"',
            f'merges = "{sub}/merges.txt"',
            f'merges_sha256 = "{sha256(os.path.join(out, sub, "merges.txt"))}"',
            f"max_length = {max_length}",
            f"pad_token = {json.dumps(pad)}",
            "",
        ]
    for role, g in info["graphs"].items():
        path = os.path.join(out, g["file"])
        ins, outs = io_names(path)
        lines += [f"[graphs.{role}]", f'file = "{g["file"]}"', f'sha256 = "{sha256(path)}"',
                  f"inputs = {toml_list(ins)}", f"outputs = {toml_list(outs)}"]
        if "dtype" in g:
            lines.append(f'dtype = "{g["dtype"]}"')
        if "hidden_state" in g:
            lines += [f'hidden_state = "{g["hidden_state"]}"', f'pooled = "{g["pooled"]}"']
        if g["data"]:
            items = ", ".join(f'{{ file = "{d}", sha256 = "{sha256(os.path.join(out, d))}" }}' for d in g["data"])
            lines.append(f"external_data = [{items}]")
        lines.append("")
    with open(os.path.join(out, "pack.toml"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    print(f"wrote {os.path.join(out, 'pack.toml')}")


def make_readable(out: str) -> None:
    """Every file of the pack 0644 and every folder 0755 (onnx writes external data 0600)."""
    for folder, dirs, files in os.walk(out):
        for d in dirs:
            os.chmod(os.path.join(folder, d), 0o755)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644)


def main() -> int:
    ap = argparse.ArgumentParser(description="Export an SDXL Likeness diffusion pack (docs/model-packs.md).")
    ap.add_argument("--base", required=True, help="diffusers SDXL folder (or hub id), e.g. stabilityai/stable-diffusion-xl-base-1.0")
    ap.add_argument("--lightning-unet", help="SDXL-Lightning UNet .safetensors to load into the base UNet (sets trailing spacing)")
    ap.add_argument("--trailing", action="store_true", help="trailing timestep spacing (Turbo-like bases)")
    ap.add_argument("--controlnet-canny", help="diffusers SDXL canny ControlNet folder")
    ap.add_argument("--controlnet-depth", help="diffusers SDXL depth ControlNet folder")
    ap.add_argument("--controlnet-pose", help="diffusers SDXL pose ControlNet folder")
    ap.add_argument("--instantid", help="InstantID checkpoint folder (ip-adapter.bin + ControlNetModel/)")
    ap.add_argument("--instantid-repo", help="checkout of instantX-research/InstantID (for ip_adapter.resampler)")
    ap.add_argument("--pulid", help="PuLID SDXL checkpoint (pulid_v1.bin / .safetensors)")
    ap.add_argument("--pulid-repo", help="checkout of ToTheBeginning/PuLID (for pulid.encoders)")
    ap.add_argument("--pulid-mode", choices=list(PULID_MODES), default="fidelity",
                    help="PuLID's app modes: fidelity (8 zero tokens + ORTHO_v2, default) or extremely-style (16 zero tokens + ORTHO)")
    ap.add_argument("--pulid-eva", help="EVA02-CLIP checkpoint PuLID uses (EVA02_CLIP_L_336_psz14_s6B.pt; its visual.* weights) "
                    "-> pulid_eva_clip (needs --pulid-repo for eva_clip, and torchvision)")
    ap.add_argument("--pulid-eva-model", default="EVA02-CLIP-L-14-336",
                    help="eva_clip model name, or a model config .json (as eva_clip's model_configs) for other sizes")
    ap.add_argument("--face-parsing", help="facexlib's BiSeNet weights (parsing_bisenet.pth) -> face_parsing (optional role)")
    ap.add_argument("--facexlib-dir", help="facexlib's package folder (default: the installed facexlib)")
    ap.add_argument("--instantid-heads", type=int, default=20, help="attention heads of InstantID's Resampler (20 in InstantID)")
    ap.add_argument("--antelopev2", help="insightface antelopev2 folder (glintr100.onnx becomes face_recognizer)")
    ap.add_argument("--fp16", action="store_true", help="fp16 graphs (the VAE stays fp32 unless --vae-fp16)")
    ap.add_argument("--vae-fp16", action="store_true", help="fp16 VAE (use with madebyollin/sdxl-vae-fp16-fix weights)")
    ap.add_argument("--cpu", action="store_true", help="export on the CPU even when CUDA is present")
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--sample-size", type=int, default=1024, help="size of the dummy export inputs (shapes stay dynamic)")
    ap.add_argument("--name", default="sdxl")
    ap.add_argument("--description", default="SDXL + ControlNets + InstantID + PuLID")
    ap.add_argument("--licence", default="see the licences of the exported checkpoints")
    ap.add_argument("--out", required=True, help="output pack folder")
    args = ap.parse_args()
    if args.pulid_eva and not args.pulid_repo:
        ap.error("--pulid-eva needs --pulid-repo (for eva_clip)")
    if args.face_parsing and not args.pulid_eva:
        ap.error("--face-parsing is used only with --pulid-eva")
    if not (args.controlnet_canny or args.controlnet_depth or args.controlnet_pose or args.instantid):
        print("warning: no ControlNet given; the pack will offer no control maps", file=sys.stderr)
    info = export_all(args)
    write_manifest(args, info)
    make_readable(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
