"""GAN training speed on CPU: s/kimg of ``gan.train.measure_s_per_kimg`` (tiny preset at 64 and 128 px).

Synthetic reals and conditions, no workspace. ``steps`` is a multiple of 16, so
the lazy R1 step (every 16th) is amortised as in a real run. Side by side,
interleaved and repeated (medians): ADA augmentation on (p = 0.2) and off, to
show its cost. The published anchor — StyleGAN2-ADA with its custom CUDA
kernels on one A100 at 128 px, 6.79 s/kimg — is printed beside for scale only:
other hardware, another network size. The single-image render latency of the
counterfactual slider is the ``counterfactual`` case.
"""
from __future__ import annotations

import statistics

import torch

from benchmarks.common import ratio
from gan.train import measure_s_per_kimg

ANCHOR_S_PER_KIMG = 6.79  # StyleGAN2-ADA, custom CUDA kernels, A100, 128 px


def measure(preset: str, res: int, batch: int, steps: int, repeats: int, warmup: int) -> dict:
    """Median s/kimg with ADA on and off (interleaved) at one resolution."""
    times: dict[str, list[float]] = {"ada": [], "no_ada": []}
    for _ in range(repeats):
        for name, p in (("ada", 0.2), ("no_ada", 0.0)):
            times[name].append(measure_s_per_kimg(preset, res, batch, steps, device="cpu", warmup=warmup,
                                                  augment_p=p))
    ada, no_ada = statistics.median(times["ada"]), statistics.median(times["no_ada"])
    return {"preset": preset, "res": res, "batch": batch, "timed_steps": steps,
            "s_per_kimg_ada": round(ada, 1), "s_per_kimg_no_ada": round(no_ada, 1),
            "ratio_ada_vs_no_ada": ratio(ada, no_ada), "ratio_vs_a100_anchor": ratio(ada, ANCHOR_S_PER_KIMG)}


def run(quick: bool = False) -> dict:
    """Tiny preset at 64 and 128 px, batch 16, 16 timed steps, 2 repeats (``quick``: 16 px, batch 4, 2 steps)."""
    if quick:
        plan, batch, steps, repeats, warmup = (16,), 4, 2, 1, 1
    else:
        plan, batch, steps, repeats, warmup = (64, 128), 16, 16, 2, 2
    out: dict = {"torch_threads": torch.get_num_threads(), "anchor_s_per_kimg_a100_128px": ANCHOR_S_PER_KIMG}
    for res in plan:
        out[f"tiny_{res}px"] = measure("tiny", res, batch, steps, repeats, warmup)
    return out
