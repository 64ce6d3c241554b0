"""Run a script under ``torchrun`` with two CPU (gloo) processes and compare what the ranks saved."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]


def run_two_ranks(script: str, args: list[str], tmp_path: Path, timeout: float) -> str:
    """Write ``script`` to ``tmp_path/run.py``, run it on 2 CPU ranks under torchrun; its output (asserts success).

    The whole process group is killed on timeout, so nothing outlives the test.
    """
    (tmp_path / "run.py").write_text(script)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(tmp_path / "run.py"), *args]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        raise AssertionError("torchrun timed out:\n" + output[-4000:]) from None
    assert proc.returncode == 0, output[-4000:]
    return output


def run_two_ranks_and_compare(script: str, args: list[str], tmp_path: Path, timeout: float) -> None:
    """Run ``script`` on 2 ranks (it must save ``<out>/rank<RANK>.safetensors``) and assert both are equal."""
    run_two_ranks(script, args, tmp_path, timeout)
    a, b = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
