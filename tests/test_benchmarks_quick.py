"""Each benchmark case runs in --quick mode (a smoke test: no timing is asserted)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_quick_benchmarks_run(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(result["cases"]) == {"phantom", "prepare", "counterfactual"}
    assert result["cases"]["prepare"]["png8_img_per_s_1w"] > 0
    assert "cores" in result["hardware"]
