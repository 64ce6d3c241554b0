"""DDP through torchrun: 2 CPU processes on gloo train a few steps and end with identical weights."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from safetensors.torch import load_file

from reid_core.train.runlog import read_jsonl
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
    (tmp_path / "run.py").write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(tmp_path / "run.py"), str(ws.root), str(tmp_path / "cfg.json"), str(tmp_path)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both ranks: nothing may outlive the test
        output, _ = proc.communicate()
        raise AssertionError("torchrun timed out:\n" + output[-4000:]) from None
    assert proc.returncode == 0, output[-4000:]
    a, b = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    out = ws.embedder_dir
    assert (out / "model.safetensors").exists() and (out / "resume" / "state.json").exists()
    records = read_jsonl(out / "train_log.jsonl")
    assert [r["step"] for r in records if r["event"] == "train"] == [2, 3]  # rank 0 alone writes the log
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == 3
    assert metrics["images_seen"] == 3 * 2 * cfg.batch_size
