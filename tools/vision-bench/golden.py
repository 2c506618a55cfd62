#!/usr/bin/env python3
"""Renders likeness-vision's golden files with the reference implementations.

- keypoints_*.png: InstantID's `draw_kps` rules drawn with OpenCV (black canvas; limbs [0,2] [1,2]
  [3,2] [4,2] as cv2.ellipse2Poly(center, (length/2, 4), angle, 0, 360, 1) + cv2.fillConvexPoly in
  the colour of the limb's first point; canvas * 0.6; then cv2.circle radius 10 filled per point).
- cmyk.jpg: a tiny self-made CMYK JPEG (PIL) with four colour patches, for the ingestion test.
- canny_input.png / canny_opencv.png: a synthetic test card and its edges by the `auto_canny`
  recipe (RGB2GRAY, GaussianBlur 3x3, median, cv2.Canny(0.66 m, 1.33 m)).
- align_*.png: faces cut for the recogniser as insightface's `face_align.norm_crop` cuts them
  (skimage's SimilarityTransform from the five landmarks onto ArcFace's 112x112 template, then
  cv2.warpAffine, bilinear, black border): the astronaut (MTCNN's landmarks, as above) and a
  tilted face on the Canny card (landmarks in `keypoints.json`).

Usage: python golden.py OUT_DIR [PHOTOS_DIR]   (OUT_DIR = host/vision/tests/golden; PHOTOS_DIR,
default .cache/testdata, holds astronaut.png as the tests fetch it)
"""
import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from skimage.transform import SimilarityTransform

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255)]


def draw_kps(w, h, kps, color_list=COLOURS):
    """The reference drawing rules (written from the InstantID description, not copied)."""
    stickwidth = 4
    limb_seq = np.array([[0, 2], [1, 2], [3, 2], [4, 2]])
    kps = np.array(kps)
    out = np.zeros([h, w, 3])
    for index in limb_seq:
        color = color_list[index[0]]
        x = kps[index][:, 0]
        y = kps[index][:, 1]
        length = ((x[0] - x[1]) ** 2 + (y[0] - y[1]) ** 2) ** 0.5
        angle = math.degrees(math.atan2(y[0] - y[1], x[0] - x[1]))
        polygon = cv2.ellipse2Poly((int(np.mean(x)), int(np.mean(y))), (int(length / 2), stickwidth), int(angle), 0, 360, 1)
        out = cv2.fillConvexPoly(out.copy(), polygon, color)
    out = (out * 0.6).astype(np.uint8)
    for i, kp in enumerate(kps):
        x, y = kp
        out = cv2.circle(out.copy(), (int(x), int(y)), 10, color_list[i], -1)
    return out


CASES = {
    # MTCNN's landmarks on astronaut.png (512x512).
    "keypoints_astronaut": (512, 512, [[203.4, 101.2], [246.7, 103.9], [224.5, 128.3], [201.8, 139.6], [244.2, 141.1]]),
    # A large, tilted face on a non-square canvas.
    "keypoints_tilted": (640, 480, [[250.0, 180.0], [370.0, 150.5], [318.3, 250.7], [270.9, 320.2], [380.6, 300.0]]),
    # Points near and past the border (clipped circles and limbs).
    "keypoints_border": (200, 160, [[3.0, 4.0], [195.5, 2.2], [100.0, 80.0], [-5.0, 158.0], [205.0, 150.0]]),
}


# ArcFace's five-point template for a 112x112 crop (insightface's `arcface_dst`).
ARCFACE_DST = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                        [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32)


def norm_crop(img, landmarks, size=112):
    """insightface's norm_crop: a similarity from the landmarks onto the template, then warpAffine."""
    tform = SimilarityTransform.from_estimate(np.array(landmarks, dtype=np.float32), ARCFACE_DST * (size / 112.0))
    return cv2.warpAffine(img, tform.params[0:2, :], (size, size), borderValue=0.0)


def main():
    out_dir = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for name, (w, h, kps) in CASES.items():
        img = draw_kps(w, h, kps)
        Image.fromarray(img).save(out_dir / f"{name}.png", optimize=True)
        manifest[name] = {"width": w, "height": h, "kps": kps}
    (out_dir / "keypoints.json").write_text(json.dumps(manifest, indent=1) + "\n")

    # CMYK JPEG: four 8x8 patches red, green, blue, white (as CMYK).
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:8, :8] = (255, 0, 0)
    rgb[:8, 8:] = (0, 255, 0)
    rgb[8:, :8] = (0, 0, 255)
    rgb[8:, 8:] = (255, 255, 255)
    Image.fromarray(rgb).convert("CMYK").save(out_dir / "cmyk.jpg", quality=95)
    # Synthetic test card for Canny: gradients, shapes at several angles, deterministic noise.
    card = np.zeros((240, 320, 3), np.uint8)
    yy, xx = np.mgrid[0:240, 0:320]
    card[..., 0] = (xx * 255 // 319).astype(np.uint8)
    card[..., 1] = (yy * 255 // 239).astype(np.uint8)
    card[..., 2] = 90
    cv2.circle(card, (90, 110), 55, (230, 40, 60), -1)
    cv2.rectangle(card, (180, 30), (290, 100), (20, 200, 220), -1)
    pts = np.array([[170, 220], [240, 130], [310, 215]], np.int32)
    cv2.fillConvexPoly(card, pts, (250, 250, 240))
    cv2.line(card, (10, 230), (150, 170), (0, 0, 0), 3)
    cv2.ellipse(card, (250, 180), (40, 15), 30, 0, 360, (60, 20, 120), -1)
    rng = np.random.default_rng(7)
    card = np.clip(card.astype(np.int16) + rng.integers(-6, 7, (240, 320, 1)), 0, 255).astype(np.uint8)
    Image.fromarray(card).save(out_dir / "canny_input.png", optimize=True)
    g = cv2.GaussianBlur(cv2.cvtColor(card, cv2.COLOR_RGB2GRAY), (3, 3), 0)
    m = float(np.median(g))
    edges = cv2.Canny(g, int(max(0, 0.66 * m)), int(min(255, 1.33 * m)))
    Image.fromarray(edges).save(out_dir / "canny_opencv.png", optimize=True)
    photos = Path(sys.argv[2] if len(sys.argv) > 2 else ".cache/testdata")
    astronaut = np.array(Image.open(photos / "astronaut.png").convert("RGB"))
    aligned = {"align_astronaut": CASES["keypoints_astronaut"][2],
               "align_card": [[100.0, 80.0], [160.0, 95.0], [122.0, 125.0], [95.0, 150.0], [145.0, 162.0]]}
    for name, kps in aligned.items():
        source = astronaut if name == "align_astronaut" else card
        Image.fromarray(norm_crop(source, kps)).save(out_dir / f"{name}.png", optimize=True)
        manifest[name] = {"kps": kps}
    (out_dir / "keypoints.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {len(CASES)} keypoint images, cmyk.jpg, the Canny card and {len(aligned)} aligned faces to {out_dir}")


if __name__ == "__main__":
    main()
