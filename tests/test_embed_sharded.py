"""`cxr-reid embed` under torchrun: each rank embeds one shard, rank 0 merges them in manifest order."""
from __future__ import annotations

import numpy as np
import torch

import reid_core  # noqa: F401  (before timm)
from reid_core.checkpoint import save_embedder
from reid_core.embed import EmbeddingTable, embed_workspace
from reid_core.model import Embedder, EmbedderConfig
from reid_core.retrieval import Index

from ddp_helpers import run_two_ranks  # noqa: E402  (tests/ is on sys.path under pytest)
from train_fixtures import make_workspace  # noqa: E402

SCRIPT = """
import sys
import reid_core
from reid_core.embed import embed_workspace
embed_workspace(sys.argv[1], batch_size=4, device="cpu", force=True, progress=False)
"""


def test_two_ranks_embed_shards_and_merge_like_one_process(tmp_path):
    ws = make_workspace(tmp_path / "ws", n_patients=7, per_patient=3, size=32)  # 21 images: uneven shards
    torch.manual_seed(0)
    save_embedder(ws.embedder_dir, Embedder(EmbedderConfig(backbone="resnet10t", embedding_dim=8, image_size=32)))
    single = embed_workspace(ws, batch_size=4, device="cpu", force=True, progress=False)
    ws.embeddings_path.unlink()
    ws.index_path.unlink()
    run_two_ranks(SCRIPT, [str(ws.root)], tmp_path, timeout=180)
    merged = EmbeddingTable.load(ws.embeddings_path)
    assert list(merged.image_ids) == list(single.image_ids)
    np.testing.assert_allclose(merged.embeddings, single.embeddings, atol=1e-5)
    assert not list(ws.root.glob("embeddings.rank*.npz")), "shard files are removed after the merge"
    index = Index.load(ws.root)
    assert len(index) == 21
