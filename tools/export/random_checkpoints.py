#!/usr/bin/env python3
"""Random-weight checkpoints of the REAL classes, saved as a user's checkpoints, for
export_pack.py: a diffusers SDXL folder, a canny ControlNet folder, InstantID's ip-adapter.bin +
ControlNetModel/, PuLID's pulid_v1.bin and EVA02-CLIP checkpoint, and an antelopev2/glintr100.onnx
stand-in.

Two sizes:
- `sdxl`: SDXL base's architecture at full size (UNet 2.6B, CLIP-L + OpenCLIP bigG, the SDXL
  VAE, a ControlNet and IdentityNet of the UNet's size, InstantID's Resampler, PuLID's IDEncoder),
  so an exported pack computes per step exactly what the real model does: for benchmarks without
  real weights (docs/benchmarks.md). Building and exporting it needs about 3x the model's size in
  memory (fp32: ~40 GB) and ~25 GB of disk (fp32 pack) or ~13 GB (--fp16).
- `tiny`: the same layout at widths of a few channels, every width different (a swapped concat
  fails on shape), used by tools/conformance (the committed conformance packs).

Usage:
    python tools/export/random_checkpoints.py --size sdxl --instantid-repo ../InstantID \
        --pulid-repo ../PuLID --out /data/random-sdxl --pack /data/random-sdxl-pack [--fp16]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Every width of the checkpoints."""

    unet_blocks: tuple
    transformer_layers: tuple
    heads: tuple
    unet_groups: int
    text_1: tuple  # width, layers, heads, MLP width
    text_2: tuple
    pooled: int
    time_dim: int
    vae_blocks: tuple
    vae_layers: int
    vae_groups: int
    scaling_factor: float
    beta_end: float
    resampler: tuple  # dim, dim_head (20 heads, 16 queries, depth 4 as InstantID)
    cn_embedding: tuple
    vocab_size: int | None  # None: the tokenizer's
    sample_size: int  # latent side the UNet config names
    sparse_eva: bool  # keep a 64 x 64 block of PuLID's 1024-wide mappings (compressible)
    eva_clip: tuple | None  # PuLID's EVA tower: width, head width, class-token width (None: EVA02-CLIP-L-14-336)

    @property
    def context(self) -> int:
        return self.text_1[0] + self.text_2[0]


# The conformance test's models. The VAE's scaling_factor (0.2) and beta_end (0.013) differ from
# SDXL's, so an exporter that hard-codes SDXL's values fails.
TINY = Sizes(
    unet_blocks=(4, 8, 16), transformer_layers=(1, 2, 2), heads=(1, 2, 2), unet_groups=4,
    text_1=(12, 3, 2, 37), text_2=(20, 4, 4, 61), pooled=28, time_dim=4,
    vae_blocks=(8, 12, 16, 20), vae_layers=1, vae_groups=4, scaling_factor=0.2, beta_end=0.013,
    resampler=(40, 2), cn_embedding=(6, 10, 14, 18), vocab_size=None, sample_size=8, sparse_eva=True,
    eva_clip=(32, 16, 48),
)
# stabilityai/stable-diffusion-xl-base-1.0's configs.
SDXL = Sizes(
    unet_blocks=(320, 640, 1280), transformer_layers=(1, 2, 10), heads=(5, 10, 20), unet_groups=32,
    text_1=(768, 12, 12, 3072), text_2=(1280, 32, 20, 5120), pooled=1280, time_dim=256,
    vae_blocks=(128, 256, 512, 512), vae_layers=2, vae_groups=32, scaling_factor=0.13025, beta_end=0.012,
    resampler=(1280, 64), cn_embedding=(16, 32, 96, 256), vocab_size=49408, sample_size=128, sparse_eva=False,
    eva_clip=None,
)
SIZES = {"tiny": TINY, "sdxl": SDXL}


def hidden_size(unet, name: str) -> int:
    """The hidden width of attention processor `name` (as InstantID's and PuLID's loaders)."""
    widths = unet.config.block_out_channels
    if name.startswith("mid_block"):
        return widths[-1]
    if name.startswith("up_blocks"):
        return list(reversed(widths))[int(name[len("up_blocks.")])]
    return widths[int(name[len("down_blocks.")])]


def eva_clip_checkpoint(torch, sz: Sizes, work: str, pulid_repo: str) -> tuple[str, str]:
    """PuLID's EVA02-CLIP (eva_clip's CustomCLIP; PuLID keeps its visual tower) with random
    weights, saved as EVA-CLIP's checkpoint ({"state_dict": ...}). EVA02-CLIP-L-14-336's layout
    (336 px, 14 px patches, 577 tokens, RoPE, SwiGLU, sub-LN) with the widths of `sz.eva_clip` and
    the 21 blocks that give PuLID's 5 hidden states (before blocks 4, 8, 12, 16, 20). Every weight
    is re-drawn (the class zero-initialises some and scales the head by 0.001). Returns the
    checkpoint and the model (a config .json, or the real name)."""
    import json

    sys.path.insert(0, pulid_repo)
    from eva_clip import add_model_config, create_model  # PuLID repo

    model = "EVA02-CLIP-L-14-336"
    if sz.eva_clip:
        width, head_width, embed_dim = sz.eva_clip
        config = {
            "embed_dim": embed_dim,
            "vision_cfg": {"image_size": 336, "layers": 21, "width": width, "drop_path_rate": 0, "head_width": head_width,
                           "mlp_ratio": 2.6667, "patch_size": 14, "eva_model_name": "eva-clip-l-14-336", "xattn": True,
                           "fusedLN": True, "rope": True, "pt_hw_seq_len": 16, "intp_freq": True, "naiveswiglu": True,
                           "subln": True},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1,
                         "xattn": False, "fusedLN": True},
        }
        model = os.path.join(work, "eva-clip-random.json")
        with open(model, "w", encoding="utf-8") as f:
            json.dump(config, f, indent=1)
        add_model_config(model)
    torch.manual_seed(6)
    clip = create_model(os.path.splitext(os.path.basename(model))[0] if sz.eva_clip else model, force_custom_clip=True)
    with torch.no_grad():
        for name, p in clip.visual.named_parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn_like(p) / np.sqrt(p[0].numel()))
            elif "norm" in name or "ln" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.1 * torch.randn_like(p))
    path = os.path.join(work, "eva-clip.pt")
    torch.save({"state_dict": clip.state_dict()}, path)
    return path, model


def write_face_recognizer(path: str) -> None:
    """A stand-in for insightface's glintr100 with its I/O names: mean colour -> 512."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(5).standard_normal((3, 512)).astype(np.float32), "w")
    nodes = [helper.make_node("GlobalAveragePool", ["input.1"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("MatMul", ["flat", "w"], ["683"])]
    graph = helper.make_graph(nodes, "glintr100-stand-in",
                              [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["B", 3, 112, 112])],
                              [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["B", 512])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def build(torch, sz: Sizes, work: str, instantid_repo: str, pulid_repo: str) -> dict:
    """Writes the checkpoints under `work`; returns their paths (base, canny, instantid, pulid,
    antelopev2, eva_clip) and eva_clip's model (eva_clip_model)."""
    from diffusers import AutoencoderKL, ControlNetModel, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    sys.path.insert(0, os.path.join(ROOT, "tools", "tiny-pack"))
    from make_tiny_pack import write_tokenizer  # the tiny pack's CLIP-format BPE

    torch.manual_seed(0)
    tok_dir = os.path.join(work, "tok")
    vocab_size = write_tokenizer(tok_dir)
    files = (os.path.join(tok_dir, "tokenizer", "vocab.json"), os.path.join(tok_dir, "tokenizer", "merges.txt"))
    tokenizer = CLIPTokenizer(*files, pad_token="<|endoftext|>", model_max_length=77)
    tokenizer_2 = CLIPTokenizer(*files, pad_token="!", model_max_length=77)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id

    def clip(spec, act, projection=None):
        width, layers, heads, mlp = spec
        cfg = CLIPTextConfig(vocab_size=sz.vocab_size or vocab_size, hidden_size=width, intermediate_size=mlp,
                             num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=77,
                             hidden_act=act, bos_token_id=bos, eos_token_id=eos, pad_token_id=eos,
                             projection_dim=projection or width)
        cls = CLIPTextModelWithProjection if projection else CLIPTextModel
        return cls(cfg).eval()

    text_encoder = clip(sz.text_1, "quick_gelu")
    text_encoder_2 = clip(sz.text_2, "gelu", sz.pooled)
    unet = UNet2DConditionModel(
        sample_size=sz.sample_size, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=sz.unet_blocks, layers_per_block=2, transformer_layers_per_block=sz.transformer_layers,
        attention_head_dim=sz.heads, cross_attention_dim=sz.context, use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=sz.time_dim,
        projection_class_embeddings_input_dim=sz.pooled + 6 * sz.time_dim, norm_num_groups=sz.unet_groups,
    ).eval()
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=sz.vae_blocks, layers_per_block=sz.vae_layers,
        latent_channels=4, norm_num_groups=sz.vae_groups, sample_size=sz.sample_size * 8,
        scaling_factor=sz.scaling_factor,
    ).eval()
    scheduler = EulerDiscreteScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=sz.beta_end, beta_schedule="scaled_linear",
        prediction_type="epsilon", timestep_spacing="leading", steps_offset=1,
    )
    base = os.path.join(work, "sdxl-base")
    StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
        tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler, force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    ).save_pretrained(base)

    def controlnet(seed):
        torch.manual_seed(seed)
        cn = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=sz.cn_embedding)
        # from_unet zero-initialises the output convolutions: without new weights the ControlNet
        # would add nothing and a wrong wiring would pass.
        zeroed = [*cn.controlnet_down_blocks, cn.controlnet_mid_block, cn.controlnet_cond_embedding.conv_out]
        with torch.no_grad():
            for conv in zeroed:
                conv.weight.normal_(0.0, 0.3)
                conv.bias.normal_(0.0, 0.1)
        return cn.eval()

    canny = os.path.join(work, "controlnet-canny")
    controlnet(1).save_pretrained(canny)

    # InstantID: IdentityNet + ip-adapter.bin {image_proj: Resampler, ip_adapter: IP layers}.
    sys.path.insert(0, instantid_repo)
    from ip_adapter.attention_processor import AttnProcessor2_0, IPAttnProcessor2_0
    from ip_adapter.resampler import Resampler

    instantid = os.path.join(work, "instantid")
    controlnet(2).save_pretrained(os.path.join(instantid, "ControlNetModel"))
    torch.manual_seed(3)
    dim, dim_head = sz.resampler
    proj = Resampler(dim=dim, depth=4, dim_head=dim_head, heads=20, num_queries=16,
                     embedding_dim=512, output_dim=sz.context, ff_mult=4)
    procs = {}
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            procs[name] = AttnProcessor2_0()
        else:
            procs[name] = IPAttnProcessor2_0(hidden_size=hidden_size(unet, name), cross_attention_dim=sz.context, num_tokens=16)
    ip_layers = torch.nn.ModuleList(procs.values())
    torch.save({"image_proj": proj.state_dict(), "ip_adapter": ip_layers.state_dict()}, os.path.join(instantid, "ip-adapter.bin"))

    # PuLID: pulid_v1.bin {id_adapter.*: IDEncoder, id_adapter_attn_layers.*: ID attention}.
    sys.path.insert(0, pulid_repo)
    from pulid.attention_processor import AttnProcessor2_0 as PAttn, IDAttnProcessor2_0
    from pulid.encoders import IDEncoder

    torch.manual_seed(4)
    id_encoder = IDEncoder(width=1280, context_dim=sz.context)
    if sz.sparse_eva:
        with torch.no_grad():
            # The 1024-wide EVA mappings are fixed by the class (21M weights): keep a random
            # 64 x 64 block of each 1024 x 1024 weight (zeros elsewhere) so the graph compresses
            # to a few hundred KB; the biases and LayerNorms keep every output live.
            for mod in id_encoder.modules():
                if isinstance(mod, torch.nn.Linear) and mod.in_features == 1024 and mod.out_features == 1024:
                    mod.weight.zero_()
                    mod.weight[:64, :64] = torch.randn(64, 64) / 8.0
    id_procs = {}
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            id_procs[name] = PAttn()
        else:
            id_procs[name] = IDAttnProcessor2_0(hidden_size=hidden_size(unet, name), cross_attention_dim=sz.context)
    id_layers = torch.nn.ModuleList(id_procs.values())
    ckpt = {f"id_adapter.{k}": v for k, v in id_encoder.state_dict().items()}
    ckpt.update({f"id_adapter_attn_layers.{k}": v for k, v in id_layers.state_dict().items()})
    pulid = os.path.join(work, "pulid_v1.bin")
    torch.save(ckpt, pulid)

    # The engine takes the face embedding from the host; the pack only needs a face_recognizer
    # to offer instant-id and pulid.
    ante = os.path.join(work, "antelopev2")
    os.makedirs(ante, exist_ok=True)
    write_face_recognizer(os.path.join(ante, "glintr100.onnx"))
    eva, eva_model = eva_clip_checkpoint(torch, sz, work, pulid_repo)
    return {"base": base, "canny": canny, "instantid": instantid, "pulid": pulid, "antelopev2": ante,
            "eva_clip": eva, "eva_clip_model": eva_model}


def export_command(ck: dict, instantid_repo: str, pulid_repo: str, out: str, extra: list[str]) -> list[str]:
    """export_pack.py's command line for the checkpoints."""
    return [sys.executable, os.path.join(HERE, "export_pack.py"),
            "--base", ck["base"], "--controlnet-canny", ck["canny"],
            "--instantid", ck["instantid"], "--instantid-repo", instantid_repo,
            "--pulid", ck["pulid"], "--pulid-repo", pulid_repo,
            "--pulid-eva", ck["eva_clip"], "--pulid-eva-model", ck["eva_clip_model"],
            "--antelopev2", ck["antelopev2"], "--out", out, *extra]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=list(SIZES), default="sdxl")
    ap.add_argument("--instantid-repo", required=True, help="checkout of instantX-research/InstantID")
    ap.add_argument("--pulid-repo", required=True, help="checkout of ToTheBeginning/PuLID")
    ap.add_argument("--out", required=True, help="folder for the checkpoints")
    ap.add_argument("--pack", help="also export a pack here with export_pack.py")
    ap.add_argument("--fp16", action="store_true", help="export fp16 graphs (VAE fp32)")
    args = ap.parse_args()
    import torch

    ck = build(torch, SIZES[args.size], args.out, args.instantid_repo, args.pulid_repo)
    print("checkpoints:", ck)
    if args.pack:
        extra = ["--name", f"random-{args.size}", "--description", f"random weights, {args.size} architecture",
                 "--licence", "random weights", "--sample-size", "512"] + (["--fp16"] if args.fp16 else [])
        subprocess.run(export_command(ck, args.instantid_repo, args.pulid_repo, args.pack, extra), check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
