"""Workspace paths/status and the CLI's contract (help with examples, typed errors → exit 2)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from reid_core.cli import build_parser, main
from reid_core.errors import WorkspaceError
from reid_core.workspace import Workspace


def test_layout_paths_match_architecture(tmp_path):
    ws = Workspace(tmp_path / "ws")
    assert ws.manifest_path.name == "manifest.parquet"
    assert ws.images_path(256).name == "images_256.npy"
    assert ws.embedder_dir.name == "embedder" and ws.gan_dir.name == "gan"
    assert {ws.embeddings_path.name, ws.index_path.name, ws.verifier_path.name, ws.report_path.name} == {
        "embeddings.npz", "index.faiss", "verifier.json", "report.json"}
    assert not (tmp_path / "ws").exists()  # constructing touches nothing


def test_status_of_empty_and_partial_workspace(tmp_path):
    ws = Workspace(tmp_path / "ws")
    assert not any(a.exists for a in ws.status())
    with pytest.raises(WorkspaceError, match="not a cxr-reid workspace"):
        ws.info()
    with pytest.raises(WorkspaceError, match="no prepared images"):
        ws.default_image_size()
    ws.create(dataset="toy")
    (ws.root / "images_64.npy").write_bytes(b"")
    (ws.root / "images_64.state.json").write_text(json.dumps({"complete": True}))
    (ws.root / "images_128.npy").write_bytes(b"")
    (ws.root / "images_128.state.json").write_text(json.dumps({"complete": False}))
    assert ws.image_sizes() == [64] and ws.default_image_size() == 64
    text = ws.format_status()
    assert "dataset toy" in text and "64 px" in text
    assert f"cxr-reid train --workspace {ws.root}" in text  # says how to build what is missing


@pytest.mark.parametrize("command", ["phantom", "prepare", "status", "demo", "train", "embed", "evaluate",
                                     "verify", "search", "audit", "shortcut-audit", "train-gan",
                                     "gan-evaluate"])
def test_every_subcommand_help_has_an_example(command, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([command, "--help"])
    assert exc.value.code == 0
    assert "example" in capsys.readouterr().out


def test_typed_errors_exit_2_with_message(tmp_path, capsys):
    code = main(["prepare", "--workspace", str(tmp_path / "ws"), "--dataset", "nih", "--root", str(tmp_path / "x")])
    assert code == 2
    err = capsys.readouterr().err
    assert "error" in err and "Traceback" not in err


def test_console_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "reid_core.cli", "status", "--workspace", "/nonexistent/ws"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "missing; build with" in proc.stdout
