#!/usr/bin/env python3
"""Writes host/diffusion/tests/fixtures/schedulers.json: timesteps, sigmas, the initial noise sigma
and a short sampler trajectory for every sampler x spacing x step count, from the NumPy schedulers
of reference.py (a line-by-line re-implementation of diffusers' EulerDiscreteScheduler,
EulerAncestralDiscreteScheduler and DPMSolverMultistepScheduler set_timesteps/step, read from the
diffusers 0.36.0 wheel; diffusers itself needs torch, which is not installed here).

Usage: python3 scheduler_fixtures.py OUT.json
"""

import json
import sys

import numpy as np

from reference import Sampler, schedule

SDXL = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
}


def trajectory(kind, ts, sigmas, spacing):
    """Runs the sampler on a fixed latent with fixed fake model outputs and noises."""
    s = Sampler(kind, ts, sigmas, spacing)
    x = np.sin(np.arange(6, dtype=np.float64)) * s.init_noise_sigma()
    out = []
    for i in range(len(ts)):
        eps = np.cos(np.arange(6, dtype=np.float64) * (i + 1) * 0.7)
        noise = np.sin(np.arange(6, dtype=np.float64) * (i + 2) * 1.3)
        x = s.step(eps, i, x.astype(np.float32).astype(np.float64), noise)
        out.append([float(v) for v in x])
    return out


def main():
    cases = []
    for kind in ("euler", "euler-ancestral", "dpmpp-2m"):
        for spacing in ("leading", "trailing", "linspace"):
            for steps in (1, 2, 4, 8, 16, 25, 30, 50):
                ts, sigmas = schedule(SDXL, kind, spacing, steps)
                sampler = Sampler(kind, ts, sigmas, spacing)
                cases.append(
                    {
                        "kind": kind,
                        "spacing": spacing,
                        "steps": steps,
                        "timesteps": [float(t) for t in ts],
                        "sigmas": [float(s) for s in sigmas],
                        "init_noise_sigma": float(sampler.init_noise_sigma()),
                        "trajectory": trajectory(kind, ts, sigmas, spacing),
                    }
                )
    with open(sys.argv[1], "w") as f:
        json.dump({"config": SDXL, "cases": cases}, f, indent=None)
        f.write("\n")


if __name__ == "__main__":
    main()
