"""The loader fuzz (scripts/fuzz_loaders.py, ``make fuzz``) on a dozen corpus files, and that it sees bugs."""
from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

import reid_core.data.io as io_mod

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "fuzz_loaders.py"


@pytest.fixture(scope="module")
def fuzz():
    spec = importlib.util.spec_from_file_location("fuzz_loaders", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_fuzz_finds_only_loads_and_typed_errors(fuzz, capsys):
    assert fuzz.main(["--quick", "--mutants-per-file", "3"]) == 0
    out = capsys.readouterr().out
    counts = {line.rsplit(None, 1)[0].strip(): int(line.rsplit(None, 1)[1]) for line in out.splitlines()
              if line.startswith("  ") and line.rsplit(None, 1)[-1].isdigit()}
    assert counts["other exceptions"] == counts["crashes (worker died)"] == 0
    assert counts["loaded within the contract"] > 10 and counts["typed errors (ImageLoadError)"] > 10
    assert "zoo 30" in out or "zoo 29" in out  # the zoo was written and tried (29 without FIFOs)


def test_the_fuzz_reports_untyped_errors_and_hangs(fuzz, capsys, monkeypatch):
    real = io_mod.load_image

    def buggy(path, *args, **kwargs):
        name = Path(path).name
        if name == "grey8.png":
            raise KeyError("a bug")
        if name == "rgb.png":
            time.sleep(60)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(io_mod, "load_image", buggy)  # the forked worker inherits it
    assert fuzz.main(["--quick", "--mutants-per-file", "0", "--timeout", "3"]) == 1
    out = capsys.readouterr().out
    assert "other    zoo/b'grey8.png': KeyError" in out and "hang     zoo/b'rgb.png'" in out
