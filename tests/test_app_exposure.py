"""The app listens on this machine only by default and opens only workspaces under its root."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from reid_core.cli import build_parser, streamlit_command
from reid_core.errors import WorkspaceError
from reid_core.ui.workspaces import resolve_custom_workspace

REPO = Path(__file__).resolve().parents[1]


def test_streamlit_config_binds_localhost():
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"


def test_demo_binds_localhost_unless_told():
    args = build_parser().parse_args(["demo", "--no-serve"])
    assert args.host == "127.0.0.1"
    cmd = streamlit_command(REPO / "app.py", args.host, args.port)
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    exposed = build_parser().parse_args(["demo", "--host", "0.0.0.0"])
    assert "0.0.0.0" in streamlit_command(REPO / "app.py", exposed.host, 8501)


@pytest.fixture
def roots(tmp_path):
    base = tmp_path / "workspaces"
    (base / "demo").mkdir(parents=True)
    outside = tmp_path / "secret_ws"
    outside.mkdir()
    (base / "link").symlink_to(outside)
    return base, outside


def test_sidebar_opens_folders_under_the_root(roots):
    base, _ = roots
    assert resolve_custom_workspace("demo", base) == (base / "demo").resolve()
    assert resolve_custom_workspace(str(base / "demo"), base) == (base / "demo").resolve()


@pytest.mark.parametrize("typed", ["../secret_ws", "../../..", "/", "link", "demo/../../secret_ws"])
def test_sidebar_refuses_folders_outside_the_root(roots, typed):
    base, _ = roots
    with pytest.raises(WorkspaceError, match="CXR_REID_ANY_WORKSPACE=1"):
        resolve_custom_workspace(typed, base)


def test_explicit_option_opens_any_folder(roots):
    base, outside = roots
    assert resolve_custom_workspace(str(outside), base, allow_any=True) == outside.resolve()
    with pytest.raises(WorkspaceError, match="not a folder"):
        resolve_custom_workspace(str(outside / "missing"), base, allow_any=True)
