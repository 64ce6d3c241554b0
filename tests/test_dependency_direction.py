"""Dependencies run one way: ``reid_core`` ← ``gan`` ← app/pages; the CLI finds gan's commands by entry point."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_BLOCK_GAN = """
import importlib, importlib.abc, pkgutil, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "gan" or name.startswith("gan."):
            raise ImportError(f"reid_core imported {name}")
sys.meta_path.insert(0, Block())
import reid_core
names = [m.name for m in pkgutil.walk_packages(reid_core.__path__, "reid_core.")]
for name in names:
    importlib.import_module(name)
print(len(names))
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_every_reid_core_module_imports_with_gan_blocked():
    out = _run(_BLOCK_GAN)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.strip()) > 40  # the walk reached the whole package, not just its top


def test_the_block_itself_would_catch_an_import_of_gan():
    out = _run(_BLOCK_GAN.replace("import reid_core\n", "import reid_core\nimport gan.views\n", 1))
    assert out.returncode != 0 and "imported gan" in out.stderr


def test_the_cli_lists_the_generator_commands_through_its_entry_point():
    from reid_core.cli import build_parser, plugin_commands

    assert any(f.__module__ == "gan.commands" for f in plugin_commands())
    choices = build_parser()._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse has no public getter
    assert {"train-cae", "cae-evaluate", "ship-gan", "counterfactuals", "train-gan", "gan-evaluate"} <= set(choices)


def test_without_gan_the_cli_still_serves_its_own_commands():
    code = _BLOCK_GAN.split("import reid_core")[0] + (
        "from reid_core.cli import main\n"
        "sys.argv = ['cxr-reid', '--help']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    print('exit', e.code)\n")
    out = _run(code)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "prepare" in out.stdout and "train-cae" not in out.stdout and "exit 0" in out.stdout
    assert "commands" in out.stderr and "unavailable" in out.stderr  # says why they are missing
