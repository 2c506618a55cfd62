#!/usr/bin/env python3
"""How much PuLID's features move with the whitening mask, at PuLID's real sizes.

A random-weight EVA02-CLIP-L-14-336 (the real tower: width 1024, 24 blocks, built by
tools/export/random_checkpoints.py) and the conformance checkpoints' PuLID IDEncoder (real input
widths), on the conformance golden's aligned face, through PuLID's own get_id_embedding: the
engine's landmark ellipse against no whitening and against the ellipse 10% smaller or larger.
Prints, per mask, the pixels changed, 1 - cos of the class token, the relative L2 change of the
hidden states and of the ID tokens. Random weights: the figures say how sensitive the
architecture is, not how a trained PuLID reacts. Not run by the tests (a minute or two on 2 cores).

Usage: python tools/conformance/mask_effect.py --pulid-repo /work/ref/PuLID --work DIR
   (DIR: make_goldens.py's --work folder, for its pulid_v1.bin)
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "export"))
import make_goldens as mg  # noqa: E402
import random_checkpoints as rc  # noqa: E402
from export_pack import eva_visual  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pulid-repo", required=True, help="checkout of ToTheBeginning/PuLID")
    ap.add_argument("--work", required=True, help="make_goldens.py's --work folder (pulid_v1.bin)")
    args = ap.parse_args()
    import torch

    eva_dir = os.path.join(args.work, "eva-real")
    os.makedirs(eva_dir, exist_ok=True)
    path, model = rc.eva_clip_checkpoint(torch, rc.SDXL, eva_dir, args.pulid_repo)
    visual = eva_visual(model, path).eval()
    pipeline = mg.pulid_pipeline_class(args.pulid_repo)
    from pulid.encoders import IDEncoder  # PuLID repo

    state = torch.load(os.path.join(args.work, "pulid_v1.bin"), map_location="cpu")
    encoder = IDEncoder(width=1280, context_dim=rc.TINY.context).eval()
    encoder.load_state_dict({k[len("id_adapter."):]: v for k, v in state.items() if k.startswith("id_adapter.")})
    face, embedding = mg.aligned_face(), mg.gaussian(79, 1, 512) * 20.0

    def features(mask):
        cond, vit = mg.pulid_reference_features(torch, pipeline, visual, face, mask, embedding)
        with torch.no_grad():
            return cond, vit, encoder(cond, [vit[:, i] for i in range(vit.shape[1])])

    ellipse = mg.landmark_mask(mg.FFHQ_TEMPLATE)
    cond0, vit0, tokens0 = features(ellipse)
    for label, mask in (("no whitening", np.ones_like(ellipse)),
                        ("ellipse x0.9", mg.landmark_mask(mg.FFHQ_TEMPLATE, scale=0.9)),
                        ("ellipse x1.1", mg.landmark_mask(mg.FFHQ_TEMPLATE, scale=1.1))):
        cond, vit, tokens = features(mask)
        a, b = cond0[0, 512:], cond[0, 512:]
        print(f"{label}: {int((mask != ellipse).sum())} pixels, class token 1-cos "
              f"{float(1 - torch.dot(a, b) / (a.norm() * b.norm())):.2e}, hidden states "
              f"{float((vit - vit0).norm() / vit0.norm()):.3f}, ID tokens {float((tokens - tokens0).norm() / tokens0.norm()):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
