"""Benchmark: single-image CPU latency of a counterfactual render (the slider's cost), per GAN preset.

Run ``python benchmarks/bench_counterfactual.py [--quick] [--threads N]``. Random
weights (latency does not depend on training). Per preset it reports the median of

* ``new_condition_ms`` — a render whose condition was not seen before: the
  condition's mean latent (``n_avg`` mapping rows) + mapping of z + synthesis;
  what a slider move costs;
* ``cached_condition_ms`` — the same condition again (mean latent cached);
* ``condition_mean_ms`` — the mean latent alone.

``autoencoder`` times the shipped (CPU-trained, 64 px) generator's architecture
with its nuisance encoder and a ResNet-18 96 px embedder: ``slider_ms`` (one
encoded-film render at a new α), ``upload_ms`` (embed + encode + first render
of a 256 px upload) and ``inversion_ms`` (the pure-GAN path it replaces: W+
inversion with the page's 100 steps), with the ratio.

The full run also times the 128 px preset against its former, wider generator
(``g_channel_base`` 16384: 256 and 128 maps in the two top blocks instead of
128 and 64), interleaved in one process, and reports the ratio.
"""
from __future__ import annotations

import argparse
import itertools
import json
import logging
import statistics
import time

import numpy as np
import torch

import reid_core  # noqa: F401
from gan.config import GanConfig, build_generator
from gan.counterfactual import ConditionMeans, CounterfactualRenderer
from gan.pca import IdentityPCA
from reid_core.device import synchronize

from benchmarks.common import interleaved_medians, ratio

log = logging.getLogger("bench_counterfactual")
C_DIM = 64


def _median_ms(fn, repeats: int) -> float:
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return round(1000 * statistics.median(times), 2)


def _embeddings() -> np.ndarray:
    emb = np.random.default_rng(0).normal(size=(200, C_DIM)).astype(np.float32)
    return emb / np.linalg.norm(emb, axis=1, keepdims=True)


def _renderer(preset: str, n_avg: int = 256, device: str = "cpu", **overrides) -> CounterfactualRenderer:
    torch.manual_seed(0)
    G = build_generator(GanConfig.preset(preset, c_dim=C_DIM, **overrides)).to(device)
    return CounterfactualRenderer(G, IdentityPCA.fit(_embeddings(), 8), z_seed=0, psi=0.7, n_avg=n_avg)


def slim_vs_wide_128(repeats: int = 7) -> dict[str, float]:
    """The 128 px preset against the former wide generator, interleaved: one slider render each (ms)."""
    c0, alpha = _embeddings()[0], itertools.count()  # a new α each call: a new condition, as a slider move is
    slim, wide = _renderer("128"), _renderer("128", g_channel_base=16384)
    t = interleaved_medians({"slim": lambda: slim.render(c0, {0: 0.1 * next(alpha)}),
                             "wide": lambda: wide.render(c0, {0: 0.1 * next(alpha)})}, repeats)
    return {"slim_ms": round(1000 * t["slim"], 2), "wide_ms": round(1000 * t["wide"], 2),
            "speedup": ratio(t["wide"], t["slim"])}


def autoencoder_vs_inversion(repeats: int = 5, inversion_steps: int = 100) -> dict[str, float]:
    """Slider and upload latency of the autoencoder path, and the W+ inversion it replaces (random weights)."""
    from gan.cae.config import CaeArch
    from gan.cae.encoder import EncoderConfig, NuisanceEncoder
    from gan.invert import invert
    from reid_core.model import Embedder
    from gan.views import encode_image

    arch = CaeArch()
    torch.manual_seed(0)
    G = build_generator(arch.gan_config(64, C_DIM)).eval().requires_grad_(False)
    E = NuisanceEncoder(EncoderConfig(64, arch.n_dim, arch.e_channel_base, arch.e_channel_max)).eval()
    embedder = Embedder(backbone="resnet18", embedding_dim=C_DIM, image_size=96).eval()
    upload = np.random.default_rng(0).integers(0, 255, (256, 256), dtype=np.uint8)
    renderer = CounterfactualRenderer(G, IdentityPCA.fit(_embeddings(), 8), psi=1.0)
    enc = encode_image(G, E, embedder, upload)  # warm-up
    alphas = np.linspace(-3, 3, repeats + 1)
    slider = _median_ms(lambda i: enc.subject.render(renderer, {0: float(alphas[i])}), repeats)
    upload_ms = _median_ms(lambda i: encode_image(G, E, embedder, upload), repeats)
    t0 = time.perf_counter()
    invert(G, embedder, upload.astype(np.float32) / 255.0, steps=inversion_steps)
    inversion_ms = round(1000 * (time.perf_counter() - t0), 1)
    return {"slider_ms": slider, "upload_ms": upload_ms, "inversion_ms": inversion_ms,
            "inversion_steps": inversion_steps, "upload_speedup_vs_inversion": ratio(inversion_ms, upload_ms)}


def measure(preset: str, repeats: int = 5, n_avg: int = 256, device: str = "cpu") -> dict[str, float]:
    """Median latencies (ms) of one preset with random weights (a render returns a host array: synchronised)."""
    r = _renderer(preset, n_avg, device)
    G, emb = r.G, _embeddings()
    c0 = emb[0]
    r.render(c0, {0: 0.123})  # warm-up (allocator, first-call overheads)
    alphas = np.linspace(-3, 3, repeats + 1)
    means = ConditionMeans(G, n_avg)
    return {
        "resolution": G.img_resolution,
        "new_condition_ms": _median_ms(lambda i: r.render(c0, {0: float(alphas[i])}), repeats),
        "cached_condition_ms": _median_ms(lambda i: r.render(c0, {0: 1.0}), repeats),
        "condition_mean_ms": _median_ms(lambda i: synchronize(means(torch.from_numpy(emb[i + 1])).device), repeats),
    }


def run(quick: bool = False, threads: int | None = None, device: str = "cpu") -> dict[str, object]:
    """Latency per preset (``quick``: tiny and 64 px only, 3 repeats; CUDA: 20 repeats, the 256 px preset too)."""
    if threads:
        torch.set_num_threads(threads)
    cuda = torch.device(device).type == "cuda"
    presets = ("tiny", "64") if quick else ("tiny", "64", "128", "256") if cuda else ("tiny", "64", "128")
    out: dict[str, object] = {"device": device, "torch_threads": torch.get_num_threads()}
    for p in presets:
        out[f"preset_{p}"] = measure(p, repeats=3 if quick else 20 if cuda else 5, device=device)
    if not cuda:
        out["autoencoder"] = autoencoder_vs_inversion(3 if quick else 9, 10 if quick else 100)
    if not quick and not cuda:
        out["preset_128_vs_former_wide"] = slim_vs_wide_128()
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(json.dumps(run(args.quick, args.threads, args.device), indent=2))
