#!/usr/bin/env python3
"""NumPy + onnxruntime reference of the Likeness diffusion loop (SDXL, ControlNet, InstantID, PuLID).

Written from diffusers' SDXL / ControlNet pipelines, InstantID's and PuLID's pipelines and
diffusers' Euler, Euler-ancestral and DPM++ 2M schedulers, independently of the Rust engine, so
that the engine's loop can be checked against it on the same pack with the same noise.

Usage: python3 reference.py CASE.json
CASE.json (written by the Rust test) names the pack, the plan, the raw input files and where to
write the outputs:
  {"pack": DIR, "method": "controlnet"|"instant-id"|"pulid", "prompt": ..., "negative_prompt": ...,
   "steps": N, "guidance": G, "width": W, "height": H, "identity_weight": S,
   "scheduler": "euler"|"euler-ancestral"|"dpmpp-2m", "timestep_spacing": "leading"|"trailing"|"linspace",
   "control_maps": [{"kind", "weight", "start", "end", "image": FILE(u8 HxWx3)}],
   "face_embedding": FILE(f32 512) | null, "id_cond": FILE | null, "id_vit_hidden": FILE | null,
   "photo": FILE(u8 HxWx3) | null, "strength": S | null,
   "noise": FILE(f32 1x4xhxw), "step_noise": FILE(f32 steps x 1x4xhxw) | null,
   "out_latents": FILE, "out_image": FILE}
Outputs are raw little-endian float32: the final latents [1,4,h,w] and the decoded image [1,3,H,W]
in -1..1 (before the conversion to 8 bits).
"""

from __future__ import annotations

import json
import os
import re
import sys

import numpy as np
import onnxruntime as ort

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib  # type: ignore


# --------------------------------------------------------------------------------------------
# CLIP BPE tokenizer (the algorithm of openai/CLIP simple_tokenizer and transformers'
# CLIPTokenizer without ftfy): lower-case, whitespace-clean, regex split, byte-level BPE with </w>.


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


class ClipTokenizer:
    PAT = re.compile(
        r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|(?:[^\s\w]|_)+""", re.IGNORECASE
    )

    def __init__(self, vocab_path: str, merges_path: str, max_length: int, pad_token: str):
        with open(vocab_path, encoding="utf-8") as f:
            self.encoder = json.load(f)
        with open(merges_path, encoding="utf-8") as f:
            merges = f.read().strip().split("\n")[1:]
        self.ranks = {tuple(m.split()): i for i, m in enumerate(merges)}
        self.byte_encoder = bytes_to_unicode()
        self.max_length = max_length
        self.bos = self.encoder["<|startoftext|>"]
        self.eos = self.encoder["<|endoftext|>"]
        self.pad = self.encoder[pad_token]

    def bpe(self, token: str) -> list[str]:
        word = list(token[:-1]) + [token[-1] + "</w>"]
        while len(word) > 1:
            pairs = [(self.ranks.get((a, b), 1 << 60), i) for i, (a, b) in enumerate(zip(word, word[1:]))]
            rank, _ = min(pairs)
            if rank == 1 << 60:
                break
            first, second = next((a, b) for a, b in zip(word, word[1:]) if self.ranks.get((a, b)) == rank)
            out = []
            i = 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == first and word[i + 1] == second:
                    out.append(first + second)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = out
        return word

    def __call__(self, text: str) -> list[int]:
        text = " ".join(text.lower().split())
        ids = []
        for tok in self.PAT.findall(text):
            tok = "".join(self.byte_encoder[b] for b in tok.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(tok))
        ids = [self.bos] + ids[: self.max_length - 2] + [self.eos]
        return ids + [self.pad] * (self.max_length - len(ids))


# --------------------------------------------------------------------------------------------
# Schedulers (diffusers' EulerDiscrete, EulerAncestralDiscrete, DPMSolverMultistep dpmsolver++
# order 2 midpoint, lower_order_final, final_sigmas_type "zero"), in float64.


def alphas_cumprod(cfg) -> np.ndarray:
    n = cfg["num_train_timesteps"]
    if cfg["beta_schedule"] == "scaled_linear":
        betas = np.linspace(cfg["beta_start"] ** 0.5, cfg["beta_end"] ** 0.5, n, dtype=np.float64) ** 2
    elif cfg["beta_schedule"] == "linear":
        betas = np.linspace(cfg["beta_start"], cfg["beta_end"], n, dtype=np.float64)
    else:
        raise ValueError(cfg["beta_schedule"])
    return np.cumprod(1.0 - betas)


def schedule(cfg, kind: str, spacing: str, steps: int):
    """Returns (timesteps, sigmas with a trailing 0)."""
    n = cfg["num_train_timesteps"]
    offset = cfg.get("steps_offset", 0)
    if kind in ("euler", "euler-ancestral"):
        if spacing == "linspace":
            ts = np.linspace(0, n - 1, steps, dtype=np.float32)[::-1].astype(np.float64)
        elif spacing == "leading":
            ratio = n // steps
            ts = (np.arange(0, steps) * ratio).round()[::-1].copy() + offset
        else:
            ratio = n / steps
            ts = np.arange(n, 0, -ratio).round() - 1
    else:
        if spacing == "linspace":
            ts = np.linspace(0, n - 1, steps + 1).round()[::-1][:-1].copy()
        elif spacing == "leading":
            ratio = n // (steps + 1)
            ts = (np.arange(0, steps + 1) * ratio).round()[::-1][:-1].copy() + offset
        else:
            ratio = n / steps
            ts = np.arange(n, 0, -ratio).round() - 1
    ac = alphas_cumprod(cfg)
    sig = ((1 - ac) / ac) ** 0.5
    sigmas = np.interp(ts, np.arange(0, len(sig)), sig)
    return ts.astype(np.float64), np.concatenate([sigmas, [0.0]])


class Sampler:
    def __init__(self, kind, timesteps, sigmas, spacing):
        self.kind, self.timesteps, self.sigmas, self.spacing = kind, timesteps, sigmas, spacing
        self.prev_x0 = None
        self.lower_order_nums = 0

    def init_noise_sigma(self):
        if self.kind == "dpmpp-2m":
            return 1.0
        m = self.sigmas.max()
        return m if self.spacing in ("linspace", "trailing") else (m * m + 1) ** 0.5

    def scale_input(self, x, i):
        if self.kind == "dpmpp-2m":
            return x
        return x / (self.sigmas[i] ** 2 + 1) ** 0.5

    def add_noise(self, x0, noise, i):
        s = self.sigmas[i]
        if self.kind == "dpmpp-2m":
            a = 1 / (s * s + 1) ** 0.5
            return a * x0 + s * a * noise
        return x0 + noise * s

    def step(self, eps, i, x, noise=None):
        s, s_next = self.sigmas[i], self.sigmas[i + 1]
        if self.kind == "euler":
            x0 = x - s * eps
            return x + (x - x0) / s * (s_next - s)
        if self.kind == "euler-ancestral":
            x0 = x - s * eps
            up = (s_next**2 * (s**2 - s_next**2) / s**2) ** 0.5
            down = (s_next**2 - up**2) ** 0.5
            return x + (x - x0) / s * (down - s) + noise * up

        def alpha_sigma(sig):
            a = 1 / (sig * sig + 1) ** 0.5
            return a, sig * a

        a_s, sg_s = alpha_sigma(s)
        x0 = (x - sg_s * eps) / a_s
        a_t, sg_t = alpha_sigma(s_next)
        with np.errstate(divide="ignore"):
            lam_t = np.log(a_t) - np.log(sg_t)
        lam_s = np.log(a_s) - np.log(sg_s)
        h = lam_t - lam_s
        last = i == len(self.timesteps) - 1
        if self.lower_order_nums < 1 or last:
            out = (sg_t / sg_s) * x - a_t * (np.exp(-h) - 1.0) * x0
        else:
            s_prev = self.sigmas[i - 1]
            a_p, sg_p = alpha_sigma(s_prev)
            lam_p = np.log(a_p) - np.log(sg_p)
            r0 = (lam_s - lam_p) / h
            d0, d1 = x0, (1.0 / r0) * (x0 - self.prev_x0)
            out = (sg_t / sg_s) * x - a_t * (np.exp(-h) - 1.0) * d0 - 0.5 * a_t * (np.exp(-h) - 1.0) * d1
        self.prev_x0 = x0
        self.lower_order_nums = min(self.lower_order_nums + 1, 2)
        return out


# --------------------------------------------------------------------------------------------


class Pack:
    def __init__(self, path: str):
        self.dir = path
        with open(os.path.join(path, "pack.toml"), "rb") as f:
            self.cfg = tomllib.load(f)
        self.sessions = {}

    def graph(self, role):
        if role not in self.sessions:
            g = self.cfg["graphs"][role]
            opts = ort.SessionOptions()
            self.sessions[role] = ort.InferenceSession(os.path.join(self.dir, g["file"]), opts, providers=["CPUExecutionProvider"])
        return self.sessions[role]

    def run(self, role, feeds: dict, outputs: list[str]) -> list[np.ndarray]:
        sess = self.graph(role)
        types = {i.name: i.type for i in sess.get_inputs()}
        cast = {}
        for k, v in feeds.items():
            if k not in types:
                continue
            t = types[k]
            cast[k] = v.astype({"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64}[t])
        return [o.astype(np.float64) for o in sess.run(outputs, cast)]

    def tokenizer(self, key):
        t = self.cfg[key]
        return ClipTokenizer(os.path.join(self.dir, t["vocab"]), os.path.join(self.dir, t["merges"]), t["max_length"], t["pad_token"])


def f32(x: np.ndarray) -> np.ndarray:
    """Latents are float32 tensors between operations, as in diffusers; the arithmetic is float64."""
    return np.asarray(x, dtype=np.float32).astype(np.float64)


def resize_to(img: np.ndarray, w: int, h: int) -> np.ndarray:
    if img.shape[0] != h or img.shape[1] != w:
        raise ValueError("the reference takes images at the output size")
    return img


def main() -> int:
    case = json.load(open(sys.argv[1]))
    pack = Pack(case["pack"])
    cfg = pack.cfg
    W, H = case["width"], case["height"]
    f = cfg["latent"]["vae_scale_factor"]
    h, w = H // f, W // f
    cfg_on = case["guidance"] > 1.0
    B = 2 if cfg_on else 1

    def encode(text: str):
        hs, pooled = [], None
        for key, role in (("tokenizer", "text_encoder"), ("tokenizer_2", "text_encoder_2")):
            ids = np.array([pack.tokenizer(key)(text)], dtype=np.int64)
            g = cfg["graphs"][role]
            hidden, pool = pack.run(role, {"input_ids": ids}, [g["hidden_state"], g["pooled"]])
            hs.append(hidden)
            pooled = pool
        return np.concatenate(hs, axis=-1), pooled

    pe, pp = encode(case["prompt"])
    if cfg_on:
        if case["negative_prompt"] == "":
            ne, np_ = np.zeros_like(pe), np.zeros_like(pp)
        else:
            ne, np_ = encode(case["negative_prompt"])
        text_ctx = np.concatenate([ne, pe])
        text_embeds = np.concatenate([np_, pp])
    else:
        text_ctx, text_embeds = pe, pp
    time_ids = np.tile(np.array([[H, W, 0, 0, H, W]], dtype=np.float64), (B, 1))

    unet_inputs = [i.name for i in pack.graph("unet").get_inputs()]
    method = case["method"]
    iw = case["identity_weight"]

    def load(name, dtype, shape):
        return np.fromfile(case[name], dtype=dtype).reshape(shape).astype(np.float64)

    # InstantID: image-proj tokens appended to the context; the zero embedding for the uncond half.
    face_tokens = None
    ip_tokens = cfg.get("instantid", {}).get("tokens", 0)
    if method == "instant-id":
        emb = load("face_embedding", np.float32, (1, 1, -1))
        embs = np.concatenate([np.zeros_like(emb), emb]) if cfg_on else emb
        (face_tokens,) = pack.run("instantid_image_proj", {"image_embeds": embs}, ["image_prompt_embeds"])
    extra = {}
    ctx = text_ctx
    if "ip_scale" in unet_inputs:
        tail = face_tokens if face_tokens is not None else np.zeros((B, ip_tokens, ctx.shape[2]))
        ctx = np.concatenate([text_ctx, tail], axis=1)
        extra["ip_scale"] = np.array([iw if method == "instant-id" else 0.0])
    if "id_embedding" in unet_inputs:
        pt = cfg["pulid"]["tokens"]
        if method == "pulid":
            cond = load("id_cond", np.float32, (1, -1))
            vit = load("id_vit_hidden", np.float32, tuple([1] + cfg["pulid"]["vit_hidden_shape"]))
            if cfg_on:
                cond = np.concatenate([np.zeros_like(cond), cond])
                vit = np.concatenate([np.zeros_like(vit), vit])
            (ide,) = pack.run("pulid_id_encoder", {"id_cond": cond, "id_vit_hidden": vit}, ["id_embedding"])
            extra["id_embedding"], extra["id_scale"] = ide, np.array([iw])
        else:
            extra["id_embedding"], extra["id_scale"] = np.zeros((B, pt, ctx.shape[2])), np.array([0.0])

    # Control maps.
    roles = {"canny": "controlnet_canny", "depth": "controlnet_depth", "pose": "controlnet_pose", "face-keypoints": "identitynet"}
    controls = []
    for cm in case["control_maps"]:
        img = np.fromfile(cm["image"], dtype=np.uint8).reshape(H, W, 3).astype(np.float64) / 255.0
        img = np.tile(img.transpose(2, 0, 1)[None], (B, 1, 1, 1))
        controls.append((roles[cm["kind"]], cm["weight"], cm["start"], cm["end"], img))
    cn_ctx = face_tokens if method == "instant-id" else text_ctx

    cc = cfg["scheduler"]
    ts, sigmas = schedule(cc, case["scheduler"], case["timestep_spacing"], case["steps"])
    sampler = Sampler(case["scheduler"], ts, sigmas, case["timestep_spacing"])
    noise = load("noise", np.float32, (1, 4, h, w))
    begin = 0
    if case.get("photo"):
        strength = case["strength"]
        init_t = min(int(case["steps"] * strength), case["steps"])
        begin = max(case["steps"] - init_t, 0)
        photo = np.fromfile(case["photo"], dtype=np.uint8).reshape(H, W, 3).astype(np.float64)
        x = (photo / 127.5 - 1.0).transpose(2, 0, 1)[None]
        (lat,) = pack.run("vae_encoder", {"sample": x}, ["latent_sample"])
        latents = f32(sampler.add_noise(f32(lat * cfg["latent"]["scaling_factor"]), noise, begin))
    else:
        latents = f32(noise * sampler.init_noise_sigma())
    step_noise = load("step_noise", np.float32, (case["steps"], 1, 4, h, w)) if case.get("step_noise") else None

    res_names = [n for n in unet_inputs if n.startswith("down_block_res_")] + (["mid_block_res"] if "mid_block_res" in unet_inputs else [])
    ctl = cfg.get("control", {})
    shapes = [(c, s) for c, s in zip(ctl.get("down_channels", []), ctl.get("down_strides", []))]
    if "mid_block_res" in unet_inputs:
        shapes.append((ctl["mid_channels"], ctl["mid_stride"]))
    n = len(ts) - begin
    for k, i in enumerate(range(begin, len(ts))):
        x_in = np.concatenate([latents] * B) if cfg_on else latents
        x_in = f32(sampler.scale_input(x_in, i))
        t = np.full((B,), ts[i])
        feeds = {"sample": x_in, "timestep": t, "encoder_hidden_states": ctx, "text_embeds": text_embeds, "time_ids": time_ids}
        res = [np.zeros((B, c, h // s, w // s)) for c, s in shapes]
        for role, weight, start, end, img in controls:
            keep = 1.0 - float(k / n < start or (k + 1) / n > end)
            scale = weight * keep
            if scale == 0.0:
                continue
            outs = pack.run(
                role,
                {"sample": x_in, "timestep": t, "encoder_hidden_states": cn_ctx, "controlnet_cond": img,
                 "conditioning_scale": np.array([scale]), "text_embeds": text_embeds, "time_ids": time_ids},
                res_names,
            )
            res = [r + o for r, o in zip(res, outs)]
        feeds.update(dict(zip(res_names, res)))
        feeds.update(extra)
        (eps,) = pack.run("unet", feeds, ["out_sample"])
        if cfg_on:
            u, c = eps[:1], eps[1:]
            eps = f32(u + case["guidance"] * (c - u))
        latents = f32(sampler.step(eps, i, latents, step_noise[k] if step_noise is not None else None))

    scaled = latents.astype(np.float32) / np.float32(cfg["latent"]["scaling_factor"])
    (image,) = pack.run("vae_decoder", {"latent_sample": scaled}, ["sample"])
    latents.astype("<f4").tofile(case["out_latents"])
    image.astype("<f4").tofile(case["out_image"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
