"""DDP through torchrun: 2 CPU processes on gloo train a few steps and end with identical weights."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path


from reid_core.train.runlog import read_jsonl
from ddp_helpers import run_two_ranks_and_compare
from train_fixtures import make_workspace, tiny_config

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import faulthandler; faulthandler.dump_traceback_later(100, exit=True)  # a hang fails, with stacks
    import json, os, sys
    import reid_core
    from safetensors.torch import save_file
    from reid_core.train import TrainConfig, train_embedder

    ws, cfg_path, out = sys.argv[1], sys.argv[2], sys.argv[3]
    config = TrainConfig.from_dict(json.load(open(cfg_path)))
    result = train_embedder(ws, config, progress=False)
    rank = int(os.environ["RANK"])
    state = {k: v.detach().contiguous().clone() for k, v in result.model.state_dict().items()}
    save_file(state, os.path.join(out, f"rank{rank}.safetensors"))
""")


def test_two_cpu_processes_end_with_identical_weights(tmp_path):
    ws = make_workspace(tmp_path / "ws", n_patients=16)
    cfg = tiny_config(max_steps=3, val_every=2, loss="contrastive_xbm", device="cpu")
    (tmp_path / "cfg.json").write_text(json.dumps(cfg.to_dict()))
    run_two_ranks_and_compare(SCRIPT, [str(ws.root), str(tmp_path / "cfg.json"), str(tmp_path)], tmp_path, 150)
    out = ws.embedder_dir
    assert (out / "model.safetensors").exists() and (out / "resume" / "state.json").exists()
    records = read_jsonl(out / "train_log.jsonl")
    assert [r["step"] for r in records if r["event"] == "train"] == [2, 3]  # rank 0 alone writes the log
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == 3
    assert metrics["images_seen"] == 3 * 2 * cfg.batch_size
