"""Embedder recipes side by side: held-out P@1 against wall time on the phantom (issue 18).

One call trains one recipe on a prepared phantom workspace and records its learning curve::

    OMP_NUM_THREADS=1 python -m benchmarks.bench_recipe --source workspaces/hard1500 --recipe cpu-pairs \\
        --name hard-pairs --max-steps 4000 --transfer workspaces/phantom1500

The run trains in its own folder (``workspaces/recipes/<name>``: the source's
image store and manifest hard-linked, so runs never share an embedder) and
logs validation P@1 with the wall time spent training (``elapsed_s``) every
``val_every`` steps. At the end, the best checkpoint is scored on the
source's **test** patients (never seen in training or validation; P@1 with a
patient-bootstrap 95 % CI) and, for each ``--transfer`` workspace, on its
test patients too (another difficulty, without fine-tuning). Results go to
``benchmarks/results/recipes/<name>.json``.

Runs resume: after an interruption the same command continues where it
stopped (the embedder's resume state).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from reid_core.bootstrap import bootstrap_mean_ci
from reid_core.checkpoint import load_embedder
from reid_core.data.manifest import load_manifest
from reid_core.embed import embed_array, store_size_for
from reid_core.data.store import ImageStore
from reid_core.metrics import per_query_metrics
from reid_core.train import TrainConfig, train_embedder
from reid_core.train.recipes import recipe_overrides
from reid_core.train.runlog import read_jsonl
from reid_core.workspace import Workspace

RESULTS = Path(__file__).resolve().parent / "results" / "recipes"
_LINKED = ("manifest.parquet", "workspace.json", "bad_files.csv")


def link_workspace(source: Path, dest: Path) -> Workspace:
    """``dest`` as a workspace sharing ``source``'s image stores and manifest (hard links; no copy)."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in source.iterdir():
        if f.name in _LINKED or f.name.startswith("images_"):
            target = dest / f.name
            if not target.exists():
                os.link(f, target)
    return Workspace(dest)


def test_precision_at_1(model_dir: Path, ws: Workspace) -> dict[str, float]:
    """P@1 (leave-one-out nearest film, patient-bootstrap CI) of ``model_dir``'s embedder on ``ws``'s test split."""
    model = load_embedder(model_dir)
    manifest = load_manifest(ws.manifest_path)
    test = manifest[manifest["split"] == "test"]
    store = ImageStore(ws.images_path(store_size_for(ws, model.config.image_size)), manifest)
    emb = embed_array(model, store, test["cache_row"].to_numpy(), device="cpu", progress=False)
    per_query = per_query_metrics(emb, test["patient_id"].to_numpy(), ks=(1,))
    ci = bootstrap_mean_ci(per_query["precision_at_1"].to_numpy(float), test["patient_id"].to_numpy(),
                           n_boot=500, rng=0)
    return {**ci, "n_patients": int(test["patient_id"].nunique()), "n_images": int(len(test))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, required=True, help="prepared phantom workspace")
    ap.add_argument("--name", required=True, help="run name (folder workspaces/recipes/NAME)")
    ap.add_argument("--recipe", help="a named recipe (reid_core.train.recipes)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--max-steps", type=int)
    ap.add_argument("--transfer", type=Path, nargs="*", default=[], help="other workspaces to score on")
    ap.add_argument("--runs", type=Path, default=Path("workspaces/recipes"), help="folder of the run workspaces")
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder of the result JSON files")
    args = ap.parse_args(argv)

    items = recipe_overrides(args.recipe) if args.recipe else []
    items += args.overrides + ([f"max_steps={args.max_steps}"] if args.max_steps else [])
    config = TrainConfig().with_overrides(items)
    ws = link_workspace(args.source, args.runs / args.name)
    t0 = time.perf_counter()
    result = train_embedder(ws, config, progress=True)
    wall = time.perf_counter() - t0
    curve = [{"step": r["step"], "elapsed_s": r.get("elapsed_s"), "precision_at_1": r["precision_at_1"],
              "map_at_r": r["map_at_r"]} for r in read_jsonl(ws.embedder_dir / "train_log.jsonl")
             if r["event"] == "val"]
    out = {"name": args.name, "recipe": args.recipe, "overrides": items, "source": str(args.source),
           "steps": result.steps, "total_steps": result.total_steps, "finished": result.finished,
           "train_s": round(result.elapsed_s, 1), "session_wall_s": round(wall, 1),
           "images_per_sec": result.images_per_sec, "best_step": result.best_step, "curve": curve,
           "test": {str(args.source): test_precision_at_1(ws.embedder_dir, Workspace(args.source))}}
    for other in args.transfer:
        out["test"][str(other)] = test_precision_at_1(ws.embedder_dir, Workspace(other))
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{args.name}.json").write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k != "curve"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
