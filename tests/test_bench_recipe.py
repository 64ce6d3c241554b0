"""The recipe benchmark trains in its own linked workspace and scores held-out and transfer test patients."""
from __future__ import annotations

import json
import os

import reid_core  # noqa: F401  (torchvision shim before timm)
from benchmarks.bench_recipe import link_workspace, main
from reid_core.prepare import prepare_workspace


def test_recipe_run_writes_a_curve_and_test_scores(tmp_path):
    source = tmp_path / "phantom"
    prepare_workspace(source, "phantom", size=32, workers=1, progress=False, patients=40, seed=3)
    results = tmp_path / "results"
    assert main(["--source", str(source), "--name", "tiny", "--runs", str(tmp_path / "runs"),
                 "--results", str(results), "--transfer", str(source), "--max-steps", "2",
                 "--set", "model.backbone=resnet10t", "--set", "model.embedding_dim=8", "--set", "batch_size=8",
                 "--set", "m_per_patient=2", "--set", "val_every=1", "--set", "num_workers=0",
                 "--set", "warmup_steps=1", "--set", "loss=proxy_anchor"]) == 0
    out = json.loads((results / "tiny.json").read_text())
    assert out["steps"] == 2 and [c["step"] for c in out["curve"]] == [1, 2]
    assert all(c["elapsed_s"] > 0 for c in out["curve"])
    score = out["test"][str(source)]
    assert 0 <= score["value"] <= 1 and score["ci_low"] <= score["value"] <= score["ci_high"]
    assert score["n_patients"] >= 2
    run = tmp_path / "runs" / "tiny"
    assert os.path.samefile(run / "manifest.parquet", source / "manifest.parquet")  # linked, not copied
    assert (run / "embedder").is_dir() and not (source / "embedder").exists()
    link_workspace(source, run)  # linking again is a no-op
