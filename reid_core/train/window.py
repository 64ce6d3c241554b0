"""Run-layer helpers shared by the trainers: per-step seeds and a stats window between log lines.
Light on purpose: importing it loads neither timm nor pytorch-metric-learning."""
from __future__ import annotations

import numpy as np
import torch


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers (stable across runs and platforms)."""
    state = np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class StatsWindow:
    """Stats and time accumulated between two log lines (means over the steps that reported each stat).

    Every trainer logs through one: the embedder's ``loss``, the GAN's and the autoencoder's loss terms,
    and for all of them throughput and the share of step time spent waiting for data.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.values: dict[str, list[torch.Tensor]] = {}
        self.time, self.wait, self.nimg = 0.0, 0.0, 0

    def add(self, stats: dict[str, torch.Tensor]) -> None:
        for key, value in stats.items():
            self.values.setdefault(key, []).append(torch.as_tensor(value).detach().float().reshape(()))

    def add_time(self, seconds: float, nimg: int, wait_s: float = 0.0) -> None:
        """``seconds`` of step time (of which ``wait_s`` waiting for data) that showed ``nimg`` images."""
        self.time, self.wait, self.nimg = self.time + seconds, self.wait + wait_s, self.nimg + nimg

    def flush(self) -> dict[str, float]:
        """Means (one device sync for all of them), images/s, kimg/s, s/kimg, the data-wait share and
        seconds; then start a new window."""
        keys = sorted(self.values)
        means = [torch.stack(self.values[k]).mean() for k in keys]
        device = next((m.device for m in means if m.device.type != "cpu"), torch.device("cpu"))
        out: dict[str, float] = dict(zip(keys, torch.stack([m.to(device) for m in means]).tolist() if keys else []))
        out["images_per_sec"] = self.nimg / self.time if self.time > 0 else 0.0
        out["data_wait_frac"] = self.wait / self.time if self.time > 0 else 0.0
        out["kimg_per_s"] = self.nimg / 1000.0 / self.time if self.time > 0 else 0.0
        out["s_per_kimg"] = self.time / (self.nimg / 1000.0) if self.nimg else 0.0
        out["sec"] = round(self.time, 3)
        self.reset()
        return out
