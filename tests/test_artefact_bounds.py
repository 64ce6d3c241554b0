"""A tampered architecture in a checkpoint's config.json is refused before anything is allocated.

The weights are covered by their SHA-256, the metadata is not: an edited ``head_hidden`` (embedder) or ``z_dim``
(generator) would make a plain rebuild allocate gigabytes before the key/shape check. The loads run in a fresh
interpreter whose peak RSS is read afterwards, so an allocation would show even though the error is right.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

import reid_core  # noqa: F401  (before timm)
from gan.config import GanConfig, build_generator
from gan.snapshot import save_generator
from reid_core.checkpoint import load_embedder, save_embedder
from reid_core.model import Embedder

ROOT = Path(__file__).resolve().parents[1]
PEAK_LIMIT_MB = 1500  # the interpreter with torch and timm loaded stays well under this

LOAD_BOTH = r"""
import resource, sys
import reid_core
from reid_core.checkpoint import load_embedder
from reid_core.errors import CheckpointError
from gan.io import load_generator
for load, folder in ((load_embedder, sys.argv[1]), (load_generator, sys.argv[2])):
    try:
        load(folder)
    except CheckpointError as exc:
        print("CheckpointError:", str(exc)[:300])
    else:
        print("LOADED")
print("PEAK_MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def _edit_meta(config: Path, edit) -> None:
    record = json.loads(config.read_text())
    edit(record["meta"])
    config.write_text(json.dumps(record))


def test_tampered_architectures_fail_before_allocating(tmp_path):
    torch.manual_seed(0)
    emb_dir, gan_dir = tmp_path / "embedder", tmp_path / "gan"
    save_embedder(emb_dir, Embedder(backbone="resnet10t", embedding_dim=16, head_hidden=32, image_size=32))
    cfg = GanConfig.preset("tiny", c_dim=16)
    save_generator(gan_dir, build_generator(cfg), cfg, {"preset": "tiny"}, {"kimg": 0.0})
    assert load_embedder(emb_dir) is not None  # sound before the edit

    _edit_meta(emb_dir / "config.json", lambda m: m["embedder"].update(head_hidden=3_000_000))  # ~6 GB of head
    _edit_meta(gan_dir / "config.json", lambda m: m["gan"].update(z_dim=1_000_000_000))  # ~128 GB of mapping

    out = subprocess.run([sys.executable, "-c", LOAD_BOTH, str(emb_dir), str(gan_dir)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    errors = [line for line in lines if line.startswith("CheckpointError")]
    assert len(errors) == 2, out.stdout
    assert "does not fit" in errors[0] and "head" in errors[0]
    assert "does not fit" in errors[1]
    peak = int(next(line for line in lines if line.startswith("PEAK_MB")).split()[1])
    assert peak < PEAK_LIMIT_MB, f"peak RSS {peak} MB: something was allocated"
