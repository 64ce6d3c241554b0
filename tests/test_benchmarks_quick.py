"""Each benchmark case runs in --quick mode (a smoke test: no timing is asserted)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CASES = {"phantom", "phantom_difficulty", "prepare", "counterfactual", "retrieval", "ann", "embed", "train", "gan", "app"}


def _bench(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", *args],
                          check=False, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_quick_benchmarks_run(tmp_path):
    out = tmp_path / "bench.json"
    _bench("--out", str(out))
    result = json.loads(out.read_text())
    cases = result["cases"]
    assert set(cases) >= CASES  # the harness runs every case it lists and exits non-zero if one fails
    assert cases["prepare"]["png8_img_per_s_1w"] > 0
    assert cases["retrieval"]["random_2000"]["top10_agreement_vs_sklearn"] > 0.99  # exact search is exact
    assert cases["retrieval"]["random_2000"]["ivf"]["sweep"] and cases["retrieval"]["lowdim_2000"]["hnsw"]["sweep"]
    assert cases["embed"]["end_to_end_img_per_s"] > 0 and cases["embed"]["model_only_img_per_s"] > 0
    assert cases["train"]["loop_steps"] == 4 and 0 <= cases["train"]["data_wait_frac_median"] <= 1
    assert cases["gan"]["tiny_16px"]["s_per_kimg_ada"] > 0
    assert cases["app"]["explorer_library"]["points"] == 2000 and cases["app"]["explorer_library"]["payload_sex_mb"] > 0
    assert "cores" in result["hardware"] and "command" in cases["gan"]["measured"]

    # --only re-measures one case and keeps the others of the same mode
    cases["phantom"] = {"images": 1}
    out.write_text(json.dumps(result))
    _bench("--only", "gan", "--out", str(out))
    again = json.loads(out.read_text())["cases"]
    assert set(again) == set(cases) and again["phantom"] == {"images": 1}


def test_device_aware_cases_are_the_ones_whose_run_takes_a_device():
    import importlib
    import inspect

    from benchmarks.__main__ import CASES as LISTED
    from benchmarks.__main__ import DEVICE_CASES, _cases_to_run

    assert set(LISTED) == CASES
    for name in CASES - {"app"}:  # bench_app needs the browser extras only to run, not to import; skip the import
        takes = "device" in inspect.signature(importlib.import_module(f"benchmarks.bench_{name}").run).parameters
        assert takes == (name in DEVICE_CASES), name
    assert _cases_to_run(None, "cuda") == list(DEVICE_CASES) and _cases_to_run(None, "cpu") == list(LISTED)
    with pytest.raises(SystemExit, match="app measure"):
        _cases_to_run(["embed", "app"], "cuda")


def test_cuda_run_without_a_gpu_says_so(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--device", "cuda", "--only", "embed",
                           "--out", str(tmp_path / "b.json")], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode != 0 and "no CUDA device" in proc.stderr
    assert not (tmp_path / "b.json").exists()
