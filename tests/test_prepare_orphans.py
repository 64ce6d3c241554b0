"""A SIGKILLed prepare leaves no decoder workers behind (Linux: they get SIGTERM when their parent dies)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")

ROOT = Path(__file__).resolve().parents[1]
PREPARE = ("from reid_core.prepare import prepare_workspace; import sys; "
           "prepare_workspace(sys.argv[1], 'phantom', size=256, workers=2, progress=False, patients=400, seed=0)")


def _children(pid: int) -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_killed_prepare_takes_its_workers_with_it(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", PREPARE, str(tmp_path / "ws")], cwd=ROOT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stderr=subprocess.DEVNULL)
    workers: set[int] = set()
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(workers) < 2:
            workers = _children(proc.pid)
            time.sleep(0.2)
        assert len(workers) >= 2, "the pool never started"
        time.sleep(0.5)  # the workers are decoding
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.time() + 15
        while time.time() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.2)
        assert not any(_alive(w) for w in workers), "orphaned decoder workers still running"
    finally:
        proc.kill()
        for w in workers:  # never leave them running, whatever the outcome
            if _alive(w):
                os.kill(w, signal.SIGKILL)
