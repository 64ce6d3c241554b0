"""Pilot: judge generator snapshots trained for the same wall time by different objectives.

    python scripts/pilot_generators.py --workspace workspaces/phantom1500 --judge checkpoints/judge \
        --gan-dir workspaces/pilots/cae_25min --gan-dir workspaces/ganpilot/gan --out pilot.json

For each generator folder: conditional samples ``G(z ~ N(0, I), c)`` of 100 held-out test patients'
identities, top-1 own patient by the conditioning embedder and the independent judge (real-film
ceilings beside them); for autoencoder-trained folders also the swap and reconstruction figures.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import reid_core  # noqa: F401  (before timm)
from gan.cae.evaluate import Judge, evaluate_cae, sampled_identity_top1
from gan.cae.io import has_encoder, load_encoder
from gan.cae.report import CONDITIONING, held_out, load_films
from gan.io import load_generator
from reid_core.checkpoint import load_embedder, read_checkpoint_meta
from reid_core.data.manifest import load_manifest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workspace", type=Path, required=True)
    p.add_argument("--judge", type=Path, required=True)
    p.add_argument("--gan-dir", type=Path, action="append", required=True)
    p.add_argument("--patients", type=int, default=100)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    judges = [Judge(CONDITIONING, load_embedder(args.workspace / "embedder")),
              Judge("independent judge", load_embedder(args.judge))]
    results = {}
    for folder in args.gan_dir:
        G = load_generator(folder)
        data = held_out(args.workspace, "test", args.patients, G.img_resolution)
        stats = read_checkpoint_meta(folder).get("stats", {})
        entry = {"kimg": stats.get("kimg"), "train_time_s": stats.get("train_time_s"),
                 "sampled": sampled_identity_top1(G, judges, data)}
        if has_encoder(folder):
            m = load_manifest(args.workspace / "manifest.parquet")
            val = m[m["split"] == "val"]
            other, _ = load_films(args.workspace, val["image_id"].tolist(), G.img_resolution)
            entry["autoencoder"] = evaluate_cae(G, load_encoder(folder), judges, data, other,
                                                val["patient_id"].astype(str).to_numpy())
        results[str(folder)] = entry
        print(folder, json.dumps(entry["sampled"]))
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
