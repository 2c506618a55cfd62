#!/usr/bin/env python3
"""Makes a tiny diffusion model pack with the exact contract of docs/model-packs.md.

Every graph is a small conv/matmul network with fixed random weights (seeded), the real tensor
names and ranks, 4 latent channels and a VAE factor of 8, so that the Rust engine can be tested
end to end in seconds. The weights mean nothing: the output is coloured noise, but the same inputs
always give the same output, in Rust and in the NumPy reference (reference.py).

Usage: python3 make_tiny_pack.py OUT_DIR [--dtype fp32|fp16]
Needs: numpy, onnx (see requirements.txt). Runs in about a second.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 18
IR_VERSION = 8

# Tiny dimensions (the real SDXL value in the comment).
MAX_LEN = 77  # 77
D1 = 32  # text_encoder hidden (768)
D2 = 48  # text_encoder_2 hidden (1280)
POOLED = 40  # text_encoder_2 projected pooled "text_embeds" (1280)
CTX = D1 + D2  # UNet context width (2048)
TIME_IDS = 6  # 6
LATENT = 4  # 4
CT = 16  # time embedding width (1280)
C0, C1, C2 = 8, 16, 16  # UNet level widths (320, 640, 1280)
DOWN_CHANNELS = [C0, C1, C2]  # SDXL: [320]*4 + [640]*3 + [1280]*2
DOWN_STRIDES = [1, 2, 4]  # SDXL: [1]*3 + [2]*3 + [4]*3 (plus conv_in's)
MID_CHANNELS, MID_STRIDE = C2, 4
IP_TOKENS = 4  # InstantID image-proj tokens (16)
ID_TOKENS = 8  # PuLID ID tokens (32)
FACE_DIM = 512  # antelopev2 embedding (512)
EVA_DIM = 32  # EVA02-CLIP class token (768); id_cond = FACE_DIM + EVA_DIM (1280)
VIT_LAYERS, VIT_TOKENS, VIT_DIM = 5, 16, 24  # EVA hidden states (5, 577, 1024)
REC_SIZE = 112  # face recogniser input (112)
FACE_SIZE = 512  # PuLID's aligned face, the EVA and face-parsing input (512; EVA resizes to 336)
PARSE_CLASSES = 19  # BiSeNet's CelebAMask-HQ labels (19)

FLOAT = TensorProto.FLOAT
F16 = TensorProto.FLOAT16
INT64 = TensorProto.INT64


class Graph:
    """A small ONNX graph builder with fixed random weights."""

    def __init__(self, name: str, rng: np.random.Generator, dtype: str):
        self.name = name
        self.rng = rng
        self.dtype = dtype
        self.nodes: list = []
        self.inits: list = []
        self.inputs: list = []
        self.outputs: list = []
        self.n = 0

    def tmp(self, hint: str = "t") -> str:
        self.n += 1
        return f"{hint}_{self.n}"

    def const(self, arr, hint: str = "c") -> str:
        name = self.tmp(hint)
        arr = np.asarray(arr)
        if arr.dtype == np.float64:
            raise TypeError(f"{self.name}: float64 constant {hint}")
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def weight(self, shape, fan_in: int, hint: str = "w", gain: float = 1.0) -> str:
        w = (self.rng.standard_normal(shape) * (gain / np.sqrt(fan_in))).astype(np.float32)
        return self.const(w, hint)

    def op(self, op_type: str, inputs, hint: str | None = None, **attrs) -> str:
        out = self.tmp(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def input(self, name: str, elem, shape) -> str:
        """A graph input; float inputs of an fp16 pack are float16 and cast to float inside."""
        if elem == FLOAT and self.dtype == "fp16":
            self.inputs.append(helper.make_tensor_value_info(name, F16, shape))
            return self.op("Cast", [name], hint=name + "_f32", to=FLOAT)
        self.inputs.append(helper.make_tensor_value_info(name, elem, shape))
        return name

    def output(self, name: str, value: str, shape) -> None:
        if self.dtype == "fp16":
            self.nodes.append(helper.make_node("Cast", [value], [name], to=F16))
            self.outputs.append(helper.make_tensor_value_info(name, F16, shape))
        else:
            self.nodes.append(helper.make_node("Identity", [value], [name]))
            self.outputs.append(helper.make_tensor_value_info(name, FLOAT, shape))

    # Layers -------------------------------------------------------------------------------
    def linear(self, x: str, fan_in: int, fan_out: int, gain: float = 1.0) -> str:
        w = self.weight((fan_in, fan_out), fan_in, gain=gain)
        b = self.const((self.rng.standard_normal(fan_out) * 0.1).astype(np.float32), "b")
        return self.op("Add", [self.op("MatMul", [x, w]), b])

    def conv(self, x: str, cin: int, cout: int, k: int = 3, stride: int = 1, gain: float = 1.0) -> str:
        w = self.weight((cout, cin, k, k), cin * k * k, gain=gain)
        b = self.const((self.rng.standard_normal(cout) * 0.1).astype(np.float32), "b")
        pad = (k - 1) // 2 if stride == 1 else 0
        if stride != 1 and k == 3:
            pad = 1
        return self.op("Conv", [x, w, b], kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4)

    def silu(self, x: str) -> str:
        return self.op("Mul", [x, self.op("Sigmoid", [x])])

    def unsq(self, x: str, axes) -> str:
        return self.op("Unsqueeze", [x, self.const(np.array(axes, dtype=np.int64), "axes")])

    def reshape(self, x: str, shape) -> str:
        return self.op("Reshape", [x, self.const(np.array(shape, dtype=np.int64), "shape")])

    def attention(self, q_in: str, cq: int, ctx: str, cctx: int, width: int) -> str:
        """Single-head attention of q_in [B,N,cq] over ctx [B,S,cctx] -> [B,N,width]."""
        q = self.op("MatMul", [q_in, self.weight((cq, width), cq)])
        k = self.op("MatMul", [ctx, self.weight((cctx, width), cctx)])
        v = self.op("MatMul", [ctx, self.weight((cctx, width), cctx)])
        kt = self.op("Transpose", [k], perm=[0, 2, 1])
        scores = self.op("Mul", [self.op("MatMul", [q, kt]), self.const(np.float32(1.0 / np.sqrt(width)))])
        return self.op("MatMul", [self.op("Softmax", [scores], axis=-1), v])

    def save(self, path: str) -> None:
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="likeness-tiny-pack")
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model)
        with open(path, "wb") as f:
            f.write(model.SerializeToString())


# ---------------------------------------------------------------------------------------------
# Graphs


def text_encoder(rng, dtype, vocab_size: int, dim: int, projection: int | None) -> Graph:
    """CLIP-like: token + position embeddings, two tanh-MLP layers, pooled at the EOS (argmax id)."""
    g = Graph("text_encoder", rng, dtype)
    ids = g.input("input_ids", INT64, ["batch", MAX_LEN])
    tok = g.const((rng.standard_normal((vocab_size, dim)) * 0.5).astype(np.float32), "tok_emb")
    pos = g.const((rng.standard_normal((MAX_LEN, dim)) * 0.5).astype(np.float32), "pos_emb")
    h0 = g.op("Add", [g.op("Gather", [tok, ids], axis=0), pos])
    hidden = [h0]
    h = h0
    for _ in range(2):
        h = g.op("Add", [h, g.op("Tanh", [g.linear(h, dim, dim)])])
        hidden.append(h)
    last = h
    # pooled: the hidden state at the EOS token, which has the largest id (as in CLIP).
    eos = g.op("ArgMax", [ids], axis=1, keepdims=1)  # [B,1]
    rng_ = g.const(np.arange(MAX_LEN, dtype=np.int64), "range")
    onehot = g.op("Cast", [g.op("Equal", [eos, rng_])], to=FLOAT)  # [B,77]
    pooled = g.op("Squeeze", [g.op("MatMul", [g.unsq(onehot, [1]), last]), g.const(np.array([1], dtype=np.int64))])
    for i, hs in enumerate(hidden):
        g.output(f"hidden_states.{i}", hs, ["batch", MAX_LEN, dim])
    g.output("last_hidden_state", last, ["batch", MAX_LEN, dim])
    if projection is None:
        g.output("pooler_output", pooled, ["batch", dim])
    else:
        g.output("text_embeds", g.op("MatMul", [pooled, g.weight((dim, projection), dim)]), ["batch", projection])
    return g


def time_embedding(g: Graph, t: str, text_embeds: str, time_ids: str) -> str:
    """Sinusoidal timestep embedding + pooled text + time ids -> [B, CT] (SDXL's add_embedding)."""
    freqs = g.const(np.exp(-np.log(10000.0) * np.arange(8, dtype=np.float32) / 8).astype(np.float32), "freqs")
    arg = g.op("Mul", [g.unsq(t, [1]), freqs])  # [B,8]
    sincos = g.op("Concat", [g.op("Sin", [arg]), g.op("Cos", [arg])], axis=1)  # [B,16]
    emb = g.linear(sincos, 16, CT)
    emb = g.op("Add", [emb, g.linear(text_embeds, POOLED, CT)])
    scaled_ids = g.op("Mul", [time_ids, g.const(np.float32(1.0 / 64.0))])
    emb = g.op("Add", [emb, g.linear(scaled_ids, TIME_IDS, CT)])
    return g.silu(emb)


def add_temb(g: Graph, h: str, temb: str, channels: int) -> str:
    proj = g.linear(temb, CT, channels)  # [B,C]
    return g.op("Add", [h, g.unsq(proj, [2, 3])])


def cross_attend(g: Graph, h: str, channels: int, ctx: str, ctx_dim: int, scale: str | None = None) -> str:
    """h [B,C,H,W] attends over ctx [B,S,ctx_dim]; returns the attention output as [B,C,H,W]."""
    nhwc = g.op("Transpose", [h], perm=[0, 2, 3, 1])
    q_in = g.op("Reshape", [nhwc, g.const(np.array([0, -1, channels], dtype=np.int64), "shape")])
    att = g.attention(q_in, channels, ctx, ctx_dim, channels)  # [B,HW,C]
    if scale is not None:
        att = g.op("Mul", [att, scale])
    # back to [B,C,H,W]: reshape to [B,H,W,C] using the shape of nhwc
    nhwc_shape = g.op("Shape", [nhwc])
    return g.op("Transpose", [g.op("Reshape", [att, nhwc_shape])], perm=[0, 3, 1, 2])


def unet(rng, dtype) -> Graph:
    """The UNet with every optional input group: ControlNet residuals, InstantID, PuLID."""
    g = Graph("unet", rng, dtype)
    sample = g.input("sample", FLOAT, ["batch", LATENT, "height", "width"])
    t = g.input("timestep", FLOAT, ["batch"])
    ehs = g.input("encoder_hidden_states", FLOAT, ["batch", "sequence", CTX])
    text_embeds = g.input("text_embeds", FLOAT, ["batch", POOLED])
    time_ids = g.input("time_ids", FLOAT, ["batch", TIME_IDS])
    res = [
        g.input(f"down_block_res_{i}", FLOAT, ["batch", c, f"h{i}", f"w{i}"]) for i, c in enumerate(DOWN_CHANNELS)
    ]
    mid_res = g.input("mid_block_res", FLOAT, ["batch", MID_CHANNELS, "hm", "wm"])
    ip_scale = g.input("ip_scale", FLOAT, [1])
    id_emb = g.input("id_embedding", FLOAT, ["batch", ID_TOKENS, CTX])
    id_scale = g.input("id_scale", FLOAT, [1])

    temb = time_embedding(g, g.op("Mul", [t, g.const(np.float32(1.0 / 1000.0))]), text_embeds, time_ids)
    h0 = add_temb(g, g.silu(g.conv(sample, LATENT, C0)), temb, C0)
    skip0 = g.op("Add", [h0, res[0]])
    h1 = g.silu(g.conv(h0, C0, C1, stride=2))
    skip1 = g.op("Add", [h1, res[1]])
    h2 = g.silu(g.conv(h1, C1, C2, stride=2))
    skip2 = g.op("Add", [h2, res[2]])
    m = g.silu(g.conv(h2, C2, C2))
    # IP-adapter attention (InstantID): the last IP_TOKENS tokens of the context are face tokens.
    seq = g.op("Shape", [ehs], start=1, end=2)
    split_at = g.op("Sub", [seq, g.const(np.array([IP_TOKENS], dtype=np.int64))])
    zero = g.const(np.array([0], dtype=np.int64))
    one = g.const(np.array([1], dtype=np.int64))
    big = g.const(np.array([1 << 30], dtype=np.int64))
    text_ctx = g.op("Slice", [ehs, zero, split_at, one])
    ip_ctx = g.op("Slice", [ehs, split_at, big, one])
    m = g.op("Add", [m, cross_attend(g, m, C2, text_ctx, CTX)])
    m = g.op("Add", [m, cross_attend(g, m, C2, ip_ctx, CTX, scale=ip_scale)])
    # PuLID: extra attention over the ID tokens, scaled by id_scale.
    id_gain = g.op("Mul", [id_scale, g.const(np.float32(4.0))])
    m = g.op("Add", [m, cross_attend(g, m, C2, id_emb, CTX, scale=id_gain)])
    m = g.op("Add", [m, mid_res])
    up = g.op("Add", [g.silu(g.conv(m, C2, C2)), skip2])
    scales = g.const(np.array([1, 1, 2, 2], dtype=np.float32), "scales")
    up = g.op("Resize", [up, "", scales], mode="nearest")
    up = g.op("Add", [g.silu(g.conv(up, C2, C1)), skip1])
    up = g.op("Resize", [up, "", scales], mode="nearest")
    up = g.op("Add", [g.silu(g.conv(up, C1, C0)), skip0])
    # A skip from the input keeps the prediction noise-like, so that the x0 estimates (and the
    # final latents) stay near unit scale as with a trained model.
    out = g.op("Add", [g.op("Mul", [sample, g.const(np.float32(0.95))]), g.conv(up, C0, LATENT, gain=0.05)])
    g.output("out_sample", out, ["batch", LATENT, "height", "width"])
    return g


def controlnet(rng, dtype, name: str) -> Graph:
    """A ControlNet: the condition image (pixels in 0..1) steers residuals for the UNet's skips."""
    g = Graph(name, rng, dtype)
    sample = g.input("sample", FLOAT, ["batch", LATENT, "height", "width"])
    t = g.input("timestep", FLOAT, ["batch"])
    ehs = g.input("encoder_hidden_states", FLOAT, ["batch", "sequence", CTX])
    cond = g.input("controlnet_cond", FLOAT, ["batch", 3, "image_height", "image_width"])
    scale = g.input("conditioning_scale", FLOAT, [1])
    text_embeds = g.input("text_embeds", FLOAT, ["batch", POOLED])
    time_ids = g.input("time_ids", FLOAT, ["batch", TIME_IDS])
    temb = time_embedding(g, g.op("Mul", [t, g.const(np.float32(1.0 / 1000.0))]), text_embeds, time_ids)
    c = g.silu(g.conv(cond, 3, C0, k=8, stride=8))
    h0 = g.op("Add", [add_temb(g, g.silu(g.conv(sample, LATENT, C0)), temb, C0), c])
    h1 = g.silu(g.conv(h0, C0, C1, stride=2))
    h2 = g.silu(g.conv(h1, C1, C2, stride=2))
    m = g.silu(g.conv(h2, C2, C2))
    m = g.op("Add", [m, cross_attend(g, m, C2, ehs, CTX)])
    for i, (h, ch) in enumerate(zip([h0, h1, h2], DOWN_CHANNELS)):
        r = g.op("Mul", [g.conv(h, ch, ch, k=1, gain=0.5), scale])
        g.output(f"down_block_res_{i}", r, ["batch", ch, f"h{i}", f"w{i}"])
    g.output("mid_block_res", g.op("Mul", [g.conv(m, C2, C2, k=1, gain=0.5), scale]), ["batch", C2, "hm", "wm"])
    return g


def image_proj(rng, dtype) -> Graph:
    """InstantID's Resampler stand-in: 512-d face embedding -> IP_TOKENS context tokens."""
    g = Graph("instantid_image_proj", rng, dtype)
    x = g.input("image_embeds", FLOAT, ["batch", 1, FACE_DIM])
    h = g.op("Tanh", [g.linear(x, FACE_DIM, IP_TOKENS * CTX)])  # [B,1,T*C]
    h = g.reshape(h, [0, IP_TOKENS, CTX])
    h = g.op("Add", [h, g.const((rng.standard_normal((IP_TOKENS, CTX)) * 0.5).astype(np.float32), "latents")])
    g.output("image_prompt_embeds", h, ["batch", IP_TOKENS, CTX])
    return g


def pulid_encoder(rng, dtype) -> Graph:
    """PuLID's IDEncoder stand-in: id_cond [B,1280] + stacked EVA hidden states -> ID tokens."""
    g = Graph("pulid_id_encoder", rng, dtype)
    cond = g.input("id_cond", FLOAT, ["batch", FACE_DIM + EVA_DIM])
    vit = g.input("id_vit_hidden", FLOAT, ["batch", VIT_LAYERS, VIT_TOKENS, VIT_DIM])
    half = ID_TOKENS // 2
    a = g.reshape(g.op("Tanh", [g.linear(cond, FACE_DIM + EVA_DIM, half * CTX)]), [0, half, CTX])
    pooled = g.op("ReduceMean", [vit, g.const(np.array([2], dtype=np.int64))], keepdims=0)  # [B,L,D]
    pooled = g.reshape(pooled, [0, VIT_LAYERS * VIT_DIM])
    b = g.reshape(g.op("Tanh", [g.linear(pooled, VIT_LAYERS * VIT_DIM, half * CTX)]), [0, half, CTX])
    g.output("id_embedding", g.op("Concat", [a, b], axis=1), ["batch", ID_TOKENS, CTX])
    return g


def face_recognizer(rng, dtype) -> Graph:
    """Face recogniser stand-in: aligned 112x112 face (normalised) -> L2-normalised 512-d embedding."""
    g = Graph("face_recognizer", rng, dtype)
    x = g.input("face", FLOAT, ["batch", 3, REC_SIZE, REC_SIZE])
    p = g.op("AveragePool", [x], kernel_shape=[14, 14], strides=[14, 14])  # [B,3,8,8]
    flat = g.op("Flatten", [p], axis=1)
    e = g.linear(flat, 3 * 64, FACE_DIM)
    norm = g.op("Sqrt", [g.op("ReduceSumSquare", [e, g.const(np.array([1], dtype=np.int64))], keepdims=1)])
    g.output("embedding", g.op("Div", [e, norm]), ["batch", FACE_DIM])
    return g


def eva_clip(rng, dtype) -> Graph:
    """PuLID's EVA02-CLIP stand-in: the whitened aligned face -> L2-normalised class token and 5
    stacked hidden states (VIT_TOKENS tokens pooled from 128-pixel patches, residual tanh layers)."""
    g = Graph("pulid_eva_clip", rng, dtype)
    x = g.input("face", FLOAT, ["batch", 3, FACE_SIZE, FACE_SIZE])
    side = int(np.sqrt(VIT_TOKENS))
    patch = FACE_SIZE // side
    p = g.op("AveragePool", [x], kernel_shape=[patch, patch], strides=[patch, patch])  # [B,3,s,s]
    tokens = g.op("Transpose", [g.reshape(p, [0, 3, VIT_TOKENS])], perm=[0, 2, 1])  # [B,T,3]
    h = g.op("Tanh", [g.linear(tokens, 3, VIT_DIM, gain=4.0)])
    hidden = []
    for _ in range(VIT_LAYERS):
        h = g.op("Add", [h, g.op("Tanh", [g.linear(h, VIT_DIM, VIT_DIM)])])
        hidden.append(g.unsq(h, [1]))
    g.output("id_vit_hidden", g.op("Concat", hidden, axis=1), ["batch", VIT_LAYERS, VIT_TOKENS, VIT_DIM])
    pooled = g.op("ReduceMean", [h, g.const(np.array([1], dtype=np.int64))], keepdims=0)  # [B,D]
    c = g.linear(pooled, VIT_DIM, EVA_DIM)
    norm = g.op("Sqrt", [g.op("ReduceSumSquare", [c, g.const(np.array([1], dtype=np.int64))], keepdims=1)])
    g.output("id_cond_vit", g.op("Div", [c, norm]), ["batch", EVA_DIM])
    return g


def face_parsing(rng, dtype) -> Graph:
    """BiSeNet stand-in: the aligned face (RGB 0..1) -> per-pixel logits of the 19 labels: a fixed
    prior (skin inside the template's face oval, background outside) plus a random 1x1 conv."""
    g = Graph("face_parsing", rng, dtype)
    x = g.input("face", FLOAT, ["batch", 3, FACE_SIZE, FACE_SIZE])
    low = 16
    yy, xx = np.mgrid[0:low, 0:low].astype(np.float32) + 0.5
    inside = ((xx / low - 0.5) / 0.27) ** 2 + ((yy / low - 0.57) / 0.4) ** 2 <= 1.0
    prior = np.zeros((1, PARSE_CLASSES, low, low), np.float32)
    prior[0, 0] = np.where(inside, 0.0, 3.0)
    prior[0, 1] = np.where(inside, 3.0, 0.0)
    scales = g.const(np.array([1, 1, FACE_SIZE // low, FACE_SIZE // low], np.float32), "scales")
    up = g.op("Resize", [g.const(prior, "prior"), "", scales], mode="nearest")
    g.output("parsing", g.op("Add", [up, g.conv(x, 3, PARSE_CLASSES, k=1)]), ["batch", PARSE_CLASSES, FACE_SIZE, FACE_SIZE])
    return g


def vae_decoder(rng, dtype) -> Graph:
    g = Graph("vae_decoder", rng, dtype)
    z = g.input("latent_sample", FLOAT, ["batch", LATENT, "height", "width"])
    h = g.silu(g.conv(z, LATENT, 16))
    w = g.weight((16, 3, 8, 8), 16, gain=0.12)
    b = g.const(np.zeros(3, dtype=np.float32), "b")
    up = g.op("ConvTranspose", [h, w, b], kernel_shape=[8, 8], strides=[8, 8])
    g.output("sample", g.op("Tanh", [up]), ["batch", 3, "image_height", "image_width"])
    return g


def vae_encoder(rng, dtype) -> Graph:
    g = Graph("vae_encoder", rng, dtype)
    x = g.input("sample", FLOAT, ["batch", 3, "image_height", "image_width"])
    h = g.conv(x, 3, LATENT, k=8, stride=8, gain=4.0)
    g.output("latent_sample", h, ["batch", LATENT, "height", "width"])
    return g


# ---------------------------------------------------------------------------------------------
# Tokenizer: a CLIP-format byte-level BPE (vocab.json + merges.txt) learnt from a small corpus.

CORPUS = """
a photo of a person, anime artwork illustrating a smiling woman anime style, highly detailed
claymation figure of a man with glasses, soft studio light, plasticine texture
pixel art portrait of a child, 16-bit, vibrant palette, retro game sprite
watercolor painting of an old man with a beard, loose brush strokes, paper texture
a portrait photo of a person, best quality, sharp focus, cinematic lighting
blurry, lowres, bad anatomy, worst quality, deformed face, extra fingers, watermark, text
toy figure of a smiling girl, glossy plastic, studio photo, shallow depth of field
"""


def bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def learn_bpe(corpus: str, num_merges: int) -> list[tuple[str, str]]:
    import re

    b2u = bytes_to_unicode()
    words: dict[tuple[str, ...], int] = {}
    for w in re.findall(r"[a-z]+|[0-9]|[^\sa-z0-9]+", corpus.lower()):
        chars = [b2u[b] for b in w.encode("utf-8")]
        chars[-1] = chars[-1] + "</w>"
        words[tuple(chars)] = words.get(tuple(chars), 0) + 1
    merges = []
    for _ in range(num_merges):
        pairs: dict[tuple[str, str], int] = {}
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] = pairs.get((a, b), 0) + c
        if not pairs:
            break
        best = max(sorted(pairs), key=lambda p: pairs[p])
        merges.append(best)
        new_words = {}
        for w, c in words.items():
            out = []
            i = 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new_words[tuple(out)] = c
        words = new_words
    return merges


def write_tokenizer(out: str) -> int:
    merges = learn_bpe(CORPUS, 300)
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    for a, b in merges:
        vocab.append(a + b)
    vocab.extend(["<|startoftext|>", "<|endoftext|>"])
    os.makedirs(os.path.join(out, "tokenizer"), exist_ok=True)
    with open(os.path.join(out, "tokenizer", "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({tok: i for i, tok in enumerate(vocab)}, f, ensure_ascii=False)
    with open(os.path.join(out, "tokenizer", "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{a} {b}\n")
    return len(vocab)


# ---------------------------------------------------------------------------------------------


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def io_names(path: str) -> tuple[list[str], list[str]]:
    m = onnx.load(path)
    return [i.name for i in m.graph.input], [o.name for o in m.graph.output]


def toml_list(items) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="pack folder to create (replaced if it exists)")
    ap.add_argument("--dtype", choices=["fp32", "fp16"], default="fp32", help="tensor type at the graphs' inputs/outputs")
    args = ap.parse_args()
    out = args.out
    os.makedirs(out, exist_ok=True)
    vocab_size = write_tokenizer(out)

    rng = np.random.default_rng(20240611)
    dt = args.dtype
    graphs = {
        "text_encoder": text_encoder(rng, dt, vocab_size, D1, None),
        "text_encoder_2": text_encoder(rng, dt, vocab_size, D2, POOLED),
        "unet": unet(rng, dt),
        "vae_decoder": vae_decoder(rng, dt),
        "vae_encoder": vae_encoder(rng, dt),
        "controlnet_canny": controlnet(rng, dt, "controlnet_canny"),
        "controlnet_depth": controlnet(rng, dt, "controlnet_depth"),
        "identitynet": controlnet(rng, dt, "identitynet"),
        "instantid_image_proj": image_proj(rng, dt),
        "pulid_id_encoder": pulid_encoder(rng, dt),
        "face_recognizer": face_recognizer(rng, dt),
    }
    # PuLID's feature graphs draw from their own generator, so the graphs above keep their weights.
    pulid_rng = np.random.default_rng(20261201)
    graphs["pulid_eva_clip"] = eva_clip(pulid_rng, dt)
    graphs["face_parsing"] = face_parsing(pulid_rng, dt)
    lines = [
        "# A tiny test pack made by tools/tiny-pack/make_tiny_pack.py: random weights, real contract.",
        "# See docs/model-packs.md.",
        "format = 1",
        'name = "tiny-sdxl"',
        'description = "Tiny random-weight graphs with the SDXL pack contract, for tests and benchmarks."',
        'family = "sdxl"',
        f'dtype = "{dt}"',
        "",
        "[latent]",
        f"channels = {LATENT}",
        "vae_scale_factor = 8",
        "scaling_factor = 0.13025",
        "size_multiple = 32",
        "max_side = 512",
        "default_size = [64, 64]",
        "",
        "[control]",
        f"down_channels = {toml_list(DOWN_CHANNELS)}",
        f"down_strides = {toml_list(DOWN_STRIDES)}",
        f"mid_channels = {MID_CHANNELS}",
        f"mid_stride = {MID_STRIDE}",
        "",
        "[instantid]",
        f"tokens = {IP_TOKENS}",
        f"embedding_dim = {FACE_DIM}",
        "",
        "[pulid]",
        f"tokens = {ID_TOKENS}",
        f"id_cond_dim = {FACE_DIM + EVA_DIM}",
        f"vit_hidden_shape = {toml_list([VIT_LAYERS, VIT_TOKENS, VIT_DIM])}",
        "",
        "[scheduler]",
        "num_train_timesteps = 1000",
        "beta_start = 0.00085",
        "beta_end = 0.012",
        'beta_schedule = "scaled_linear"',
        'prediction_type = "epsilon"',
        'timestep_spacing = "leading"',
        "steps_offset = 1",
        'kind = "euler"',
        "",
    ]
    for role, tok_pad in (("tokenizer", "<|endoftext|>"), ("tokenizer_2", "!")):
        lines += [
            f"[{role}]",
            'vocab = "tokenizer/vocab.json"',
            f'vocab_sha256 = "{sha256(os.path.join(out, "tokenizer", "vocab.json"))}"',
            'merges = "tokenizer/merges.txt"',
            f'merges_sha256 = "{sha256(os.path.join(out, "tokenizer", "merges.txt"))}"',
            f"max_length = {MAX_LEN}",
            f'pad_token = "{tok_pad}"',
            "",
        ]
    for role, g in graphs.items():
        path = os.path.join(out, role + ".onnx")
        g.save(path)
        ins, outs = io_names(path)
        lines += [
            f"[graphs.{role}]",
            f'file = "{role}.onnx"',
            f'sha256 = "{sha256(path)}"',
            f"inputs = {toml_list(ins)}",
            f"outputs = {toml_list(outs)}",
        ]
        if role == "text_encoder":
            lines += ['hidden_state = "hidden_states.1"', 'pooled = "pooler_output"']
        if role == "text_encoder_2":
            lines += ['hidden_state = "hidden_states.1"', 'pooled = "text_embeds"']
        lines.append("")
    with open(os.path.join(out, "pack.toml"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    print(f"tiny pack ({dt}) written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
