"""Golden files for the canvas operations (crates/imaging/src/canvas.rs), from reference
implementations: OpenCV for the Gaussian blur, the box filters of the guided filter, Sobel edges
and k-means; Pillow for Lanczos / nearest resizing and masked composition; NumPy for the
operations whose definition is the contract's own (posterize, palette quantisation with and
without Floyd-Steinberg dithering, adjust, the W3C blend modes, the ellipse mask, value noise).

Inputs are real photos made small (scikit-image's public-domain astronaut, cat and camera
pictures, which the vision tests fetch into .cache/testdata). Everything lands in
crates/imaging/tests/goldens/: the inputs, one PNG per case, and manifest.txt, one line per case
(`name op input key=value...`), which crates/imaging/tests/reference.rs reads and compares
against, without Python, within the tolerances it states.

    python3 -m pip install -r tools/canvas-reference/requirements.txt
    python3 tools/canvas-reference/make_goldens.py [PHOTOS_DIR]    # or: make canvas-goldens
"""

import os
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageChops

ROOT = Path(__file__).resolve().parents[2]
PHOTOS = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("LIKENESS_TESTDATA", ROOT / ".cache/testdata"))
OUT = ROOT / "crates/imaging/tests/goldens"
W, H = 64, 48

cv2.setNumThreads(1)
cv2.setRNGSeed(1)


def save(name, rgba):
    assert rgba.dtype == np.uint8 and rgba.ndim == 3 and rgba.shape[2] == 4, (name, rgba.shape)
    Image.fromarray(rgba, "RGBA").save(OUT / f"{name}.png", optimize=True)


def load(name):
    return np.asarray(Image.open(OUT / f"{name}.png").convert("RGBA")).copy()


def to_byte(v):
    """The crate's `to_byte`: 0..1 to a byte, rounded half up, clamped."""
    return np.clip(np.floor(np.asarray(v, np.float64) * 255.0 + 0.5), 0, 255).astype(np.uint8)


def grey(values01):
    g = to_byte(values01)
    return np.dstack([g, g, g, np.full_like(g, 255)])


def luma_u8(rgb):
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    return ((77 * r + 150 * g + 29 * b + 128) >> 8).astype(np.uint8)


def fit(path, width, height):
    """A centre crop of the photo at the target's aspect ratio, Lanczos-resized."""
    im = Image.open(path).convert("RGB")
    w, h = im.size
    crop_w = min(w, h * width // height)
    crop_h = crop_w * height // width
    left, top = (w - crop_w) // 2, (h - crop_h) // 3
    return im.crop((left, top, left + crop_w, top + crop_h)).resize((width, height), Image.LANCZOS)


def make_inputs():
    photo = fit(PHOTOS / "astronaut.png", W, H).convert("RGBA")
    save("photo", np.asarray(photo))
    save("photo-large", np.asarray(fit(PHOTOS / "astronaut.png", 160, 120).convert("RGBA")))
    cat = np.asarray(fit(PHOTOS / "chelsea.png", W, H).convert("RGBA")).copy()
    # Alpha: a ramp from transparent (left) to opaque (right), and a fully transparent corner.
    cat[..., 3] = np.linspace(0, 255, W).round().astype(np.uint8)[None, :]
    cat[:8, :8, 3] = 0
    save("layer", cat)
    camera = np.asarray(fit(PHOTOS / "camera.png", W, H).convert("L"))
    save("mask", np.dstack([camera, camera, camera, np.full_like(camera, 255)]))


# --- the operations -------------------------------------------------------------------------


def filled(width, height, rgba):
    return np.tile(np.array(rgba, np.uint8), (height, width, 1))


MASK64 = (1 << 64) - 1


class Rng:
    """SplitMix64, as crates/imaging/src/noise.rs."""

    def __init__(self, seed):
        self.state = (seed ^ 0x5851F42D4C957F2D) & MASK64

    def next_u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def next_f32(self):
        return np.float32(self.next_u64() >> 40) * np.float32(1.0 / (1 << 24))


def value_noise(width, height, scale, seed):
    """Lattice values joined by smoothstep-weighted bilinear interpolation, in float32."""
    cell = np.float32(max(scale, 1.0))
    cx = int(np.ceil(np.float32(width) / cell)) + 2
    cy = int(np.ceil(np.float32(height) / cell)) + 2
    rng = Rng(seed)
    lattice = np.array([rng.next_f32() for _ in range(cx * cy)], np.float32).reshape(cy, cx)

    def axis(n, cells):
        f = np.arange(n, dtype=np.float32) / cell
        i0 = np.floor(f).astype(np.int64)
        t = f - i0.astype(np.float32)
        t = t * t * (np.float32(3) - np.float32(2) * t)
        return np.minimum(i0, cells - 1), np.minimum(i0 + 1, cells - 1), t

    x0, x1, tx = axis(width, cx)
    y0, y1, ty = axis(height, cy)
    r0, r1 = lattice[y0], lattice[y1]
    a = r0[:, x0] + (r0[:, x1] - r0[:, x0]) * tx[None, :]
    b = r1[:, x0] + (r1[:, x1] - r1[:, x0]) * tx[None, :]
    return grey(a + (b - a) * ty[:, None])


def resize(img, width, height, nearest):
    return np.asarray(Image.fromarray(img, "RGBA").resize((width, height), Image.NEAREST if nearest else Image.LANCZOS))


def blur(img, sigma):
    out = img.copy()
    out[..., :3] = cv2.GaussianBlur(img[..., :3], (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    return out


def box(plane, r):
    return cv2.boxFilter(plane, -1, (2 * r + 1, 2 * r + 1), normalize=True, borderType=cv2.BORDER_REPLICATE)


def smooth(img, radius, epsilon):
    """He et al.'s guided filter, each colour channel guided by itself, box means by OpenCV."""
    out = img.copy()
    for c in range(3):
        i = img[..., c].astype(np.float64) / 255.0
        mean = box(i, radius)
        var = np.maximum(box(i * i, radius) - mean * mean, 0.0)
        a = var / (var + epsilon)
        b = mean - a * mean
        out[..., c] = to_byte(box(a, radius) * i + box(b, radius))
    return out


def posterize(img, levels):
    steps = levels - 1
    out = img.copy()
    q = np.floor(img[..., :3] / 255.0 * steps + 0.5)
    out[..., :3] = np.floor(q * 255.0 / steps + 0.5).astype(np.uint8)
    return out


def nearest_colour(palette, r, g, b):
    """The crate's redmean distance; the first of equal distances wins."""
    best, best_d = 0, None
    for i, (pr, pg, pb) in enumerate(palette):
        rmean = (r + pr) // 2
        dr, dg, db = r - pr, g - pg, b - pb
        d = (((512 + rmean) * dr * dr) >> 8) + 4 * dg * dg + (((767 - rmean) * db * db) >> 8)
        if best_d is None or d < best_d:
            best, best_d = i, d
    return palette[best]


def quantize(img, palette, dither):
    out = img.copy()
    h, w = img.shape[:2]
    err = np.zeros((h + 1, w + 2, 3), np.int64)
    for y in range(h):
        for x in range(w):
            v = [min(max(int(img[y, x, c]) + int(err[y, x + 1, c]), 0), 255) for c in range(3)]
            chosen = nearest_colour(palette, *v)
            out[y, x, :3] = chosen
            if dither:
                for c in range(3):
                    e = v[c] - chosen[c]
                    err[y, x + 2, c] += (e * 7 + 8) >> 4
                    err[y + 1, x, c] += (e * 3 + 8) >> 4
                    err[y + 1, x + 1, c] += (e * 5 + 8) >> 4
                    err[y + 1, x + 2, c] += (e + 8) >> 4
    return out


def palette_sse(img, count):
    """The least total squared RGB distance OpenCV's k-means (k-means++, 10 attempts) reaches
    with its centres rounded to bytes, over every pixel."""
    data = img[..., :3].reshape(-1, 3).astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 100, 0.01)
    _, _, centres = cv2.kmeans(data, count, None, criteria, 10, cv2.KMEANS_PP_CENTERS)
    centres = np.clip(np.floor(centres + 0.5), 0, 255)
    d = ((data[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    return float(d.min(axis=1).sum())


def edges(img, sigma):
    luma = luma_u8(img).astype(np.float32) / np.float32(255)
    if sigma > 0:
        luma = cv2.GaussianBlur(luma, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    gx = cv2.Sobel(luma, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.Sobel(luma, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE)
    return grey(np.sqrt(gx.astype(np.float64) ** 2 + gy.astype(np.float64) ** 2) * 0.25)


def adjust(img, brightness, contrast, saturation):
    v = np.clip((img[..., :3] / 255.0 - 0.5) * contrast + 0.5 + brightness, 0.0, 1.0)
    l = (0.299 * v[..., 0] + 0.587 * v[..., 1] + 0.114 * v[..., 2])[..., None]
    out = img.copy()
    out[..., :3] = to_byte(l + (v - l) * saturation)
    return out


def mix(mode, b, s):
    """The W3C Compositing and Blending Level 1 separable blend modes."""
    if mode == "normal":
        return s
    if mode == "multiply":
        return b * s
    if mode == "screen":
        return b + s - b * s
    if mode == "overlay":
        return np.where(b <= 0.5, 2 * b * s, 1 - 2 * (1 - b) * (1 - s))
    if mode == "soft-light":
        d = np.where(b <= 0.25, ((16 * b - 12) * b + 4) * b, np.sqrt(b))
        return np.where(s <= 0.5, b - (1 - 2 * s) * b * (1 - b), b + (2 * s - 1) * (d - b))
    raise ValueError(mode)


def blend(base, top, mode, opacity):
    b, s = base[..., :3] / 255.0, top[..., :3] / 255.0
    ab, a_s = base[..., 3:] / 255.0, top[..., 3:] / 255.0 * opacity
    ao = a_s + ab * (1 - a_s)
    mixed = (1 - ab) * s + ab * mix(mode, b, s)
    colour = (a_s * mixed + ab * b * (1 - a_s)) / np.where(ao > 0, ao, 1)
    out = np.concatenate([to_byte(colour), to_byte(ao)], axis=2)
    return np.where(a_s > 0, out, base)


def blend_pillow(base, top, mode):
    """Pillow's ImageChops for the opaque, full-opacity cases it shares with the W3C model."""
    b, t = Image.fromarray(base[..., :3]), Image.fromarray(top[..., :3])
    op = {"multiply": ImageChops.multiply, "screen": ImageChops.screen, "overlay": ImageChops.overlay}[mode]
    rgb = np.asarray(op(b, t))
    return np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])


def composite(base, top, mask):
    return np.asarray(Image.composite(Image.fromarray(top, "RGBA"), Image.fromarray(base, "RGBA"), Image.fromarray(mask, "RGBA").convert("L")))


def ellipse_mask(width, height, box_, feather):
    x1, y1, x2, y2 = box_
    ax, ay = (x2 - x1) / 2, (y2 - y1) / 2
    cx, cy = x1 + ax, y1 + ay
    dx = np.arange(width)[None, :] + 0.5 - cx
    dy = np.arange(height)[:, None] + 0.5 - cy
    rho = np.sqrt(dx * dx / ax**2 + dy * dy / ay**2)
    grad = np.sqrt((dx / ax**2) ** 2 + (dy / ay**2) ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(grad > 0, (rho - 1) * rho / grad, -np.inf)
    if feather > 0:
        t = np.clip(0.5 - s / feather, 0, 1)
        m = t * t * (3 - 2 * t)
    else:
        m = (s <= 0).astype(np.float64)
    return grey(m)


# --- the cases ------------------------------------------------------------------------------


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    make_inputs()
    photo, large, layer, mask = load("photo"), load("photo-large"), load("layer"), load("mask")
    palette8 = [(0, 0, 0), (255, 255, 255), (200, 40, 40), (40, 160, 60), (40, 60, 200), (230, 200, 60), (120, 80, 60), (150, 150, 160)]
    opaque_layer = layer.copy()
    opaque_layer[..., 3] = 255
    save("layer-opaque", opaque_layer)
    cases = []

    def case(name, op, input_, result, **params):
        """One case; `ref` names the reference implementation (numpy, opencv or pillow)."""
        if result is not None:
            save(name, result)
        args = " ".join(f"{k}={v}" for k, v in params.items())
        cases.append(f"{name} {op} {input_} {args}".rstrip())

    case("filled", "filled", "-", filled(W, H, (12, 200, 99, 128)), width=W, height=H, rgba="12,200,99,128", ref="numpy")
    case("noise-8", "noise", "-", value_noise(W, H, 8.0, 7), width=W, height=H, scale=8.0, seed=7, ref="numpy")
    case("noise-2.5", "noise", "-", value_noise(W, H, 2.5, 12345678901), width=W, height=H, scale=2.5, seed=12345678901, ref="numpy")
    case("resize-down", "resize", "photo-large", resize(large, W, H, False), width=W, height=H, nearest="false", ref="pillow")
    case("resize-up", "resize", "photo", resize(photo, 100, 75, False), width=100, height=75, nearest="false", ref="pillow")
    case("resize-alpha", "resize", "layer", resize(layer, 40, 30, False), width=40, height=30, nearest="false", ref="pillow")
    case("resize-nearest-down", "resize", "photo-large", resize(large, W, H, True), width=W, height=H, nearest="true", ref="pillow")
    case("resize-nearest-up", "resize", "photo", resize(photo, 100, 75, True), width=100, height=75, nearest="true", ref="pillow")
    for sigma in (1.0, 2.5, 6.0):
        case(f"blur-{sigma}", "blur", "photo", blur(photo, sigma), sigma=sigma, ref="opencv")
    for radius, epsilon in ((4, 0.01), (8, 0.001)):
        case(f"smooth-{radius}-{epsilon}", "smooth", "photo", smooth(photo, radius, epsilon), radius=radius, epsilon=epsilon, ref="opencv")
    for levels in (2, 4, 6):
        case(f"posterize-{levels}", "posterize", "photo", posterize(photo, levels), levels=levels, ref="numpy")
    colours = ";".join(",".join(map(str, c)) for c in palette8)
    for dither in (False, True):
        name = "quantize-dither" if dither else "quantize"
        case(name, "quantize", "photo", quantize(photo, palette8, dither), palette=colours, dither=str(dither).lower(), ref="numpy")
    for count in (4, 8, 16):
        case(f"palette-{count}", "palette", "photo", None, count=count, sse=f"{palette_sse(photo, count):.1f}", ref="opencv")
    for sigma in (0.0, 1.5, 4.0):
        case(f"edges-{sigma}", "edges", "photo", edges(photo, sigma), sigma=sigma, ref="opencv")
    for b, c, s in ((0.1, 1.3, 0.7), (-0.2, 0.8, 1.5), (0.0, 1.0, 0.0)):
        case(f"adjust-{b}-{c}-{s}", "adjust", "photo", adjust(photo, b, c, s), brightness=b, contrast=c, saturation=s, ref="numpy")
    for mode in ("normal", "multiply", "screen", "overlay", "soft-light"):
        case(f"blend-{mode}", "blend", "photo", blend(photo, layer, mode, 0.8), top="layer", mode=mode, opacity=0.8, ref="numpy")
    for mode in ("multiply", "screen", "overlay"):
        case(f"blend-{mode}-pillow", "blend", "photo", blend_pillow(photo, opaque_layer, mode), top="layer-opaque", mode=mode, opacity=1.0, ref="pillow")
    case("composite", "composite", "photo", composite(photo, layer, mask), top="layer", mask="mask", ref="pillow")
    for name, box_, feather in (("ellipse", (10.5, 6.0, 50.0, 40.0), 6.0), ("ellipse-hard", (10.5, 6.0, 50.0, 40.0), 0.0), ("ellipse-circle", (-8.0, 4.0, 32.0, 44.0), 3.0)):
        case(name, "ellipse-mask", "photo", ellipse_mask(W, H, box_, feather), box=",".join(map(str, box_)), feather=feather, ref="numpy")
    (OUT / "manifest.txt").write_text(
        "# Written by tools/canvas-reference/make_goldens.py: name op input key=value...\n" + "\n".join(cases) + "\n"
    )
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"{len(cases)} cases, {total // 1024} KiB in {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
