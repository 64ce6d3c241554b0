"""GAN training speed: s/kimg of ``gan.train.measure_s_per_kimg`` (CPU: tiny preset; CUDA: the real presets).

Synthetic reals and conditions, no workspace. ``steps`` is a multiple of 16, so
the lazy R1 step (every 16th) is amortised as in a real run. Side by side,
interleaved and repeated (medians): ADA augmentation on (p = 0.2) and off, to
show its cost. The published anchor — StyleGAN2-ADA with its custom CUDA
kernels on one A100 at 128 px, 6.79 s/kimg — is printed beside for scale only:
other hardware, another network size. The single-image render latency of the
counterfactual slider is the ``counterfactual`` case. ``--device cuda`` times the
real ``64`` and ``128`` presets at batch 32 (bf16 + channels_last, the training
defaults), the configuration the anchor is comparable with.
"""
from __future__ import annotations

import statistics

import torch

from benchmarks.common import ratio
from gan.train import measure_s_per_kimg

ANCHOR_S_PER_KIMG = 6.79  # StyleGAN2-ADA, custom CUDA kernels, A100, 128 px


def measure(preset: str, res: int, batch: int, steps: int, repeats: int, warmup: int, device: str = "cpu") -> dict:
    """Median s/kimg with ADA on and off (interleaved) at one resolution."""
    times: dict[str, list[float]] = {"ada": [], "no_ada": []}
    for _ in range(repeats):
        for name, p in (("ada", 0.2), ("no_ada", 0.0)):
            times[name].append(measure_s_per_kimg(preset, res, batch, steps, device=device, warmup=warmup,
                                                  augment_p=p))
    ada, no_ada = statistics.median(times["ada"]), statistics.median(times["no_ada"])
    return {"preset": preset, "res": res, "batch": batch, "timed_steps": steps,
            "s_per_kimg_ada": round(ada, 1), "s_per_kimg_no_ada": round(no_ada, 1),
            "ratio_ada_vs_no_ada": ratio(ada, no_ada), "ratio_vs_a100_anchor": ratio(ada, ANCHOR_S_PER_KIMG)}


def run(quick: bool = False, device: str = "cpu") -> dict:
    """Tiny preset at 64 and 128 px, batch 16, 16 timed steps, 2 repeats (``quick``: 16 px, batch 4, 2 steps).

    CUDA (not quick): presets ``64`` and ``128`` at their resolution, batch 32,
    32 timed steps after 8 warm-up steps, 2 repeats.
    """
    cuda = torch.device(device).type == "cuda"
    if quick:
        plan, batch, steps, repeats, warmup = (("tiny", 16),), 4, 2, 1, 1
    elif cuda:
        plan, batch, steps, repeats, warmup = (("64", 64), ("128", 128)), 32, 32, 2, 8
    else:
        plan, batch, steps, repeats, warmup = (("tiny", 64), ("tiny", 128)), 16, 16, 2, 2
    out: dict = {"device": device, "torch_threads": torch.get_num_threads(),
                 "anchor_s_per_kimg_a100_128px": ANCHOR_S_PER_KIMG}
    for preset, res in plan:
        out[f"{preset}_{res}px"] = measure(preset, res, batch, steps, repeats, warmup, device)
    return out
