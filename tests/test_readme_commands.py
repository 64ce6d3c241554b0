"""Every command in README.md's ``bash`` blocks runs, in README order, scaled down only by documented flags.

The commands are read from README.md at test time, so an edited or added command is tested as it is shown.
Each one goes through :func:`scaled`, which may only change the values of documented size flags
(``--patients``, ``--size``, ``--n-boot``, ``--res``, ``--kimg``, ``--nproc_per_node``), add documented options
that shrink the work (``--set`` training overrides, ``--preset tiny``, ``--batch``, ``--quiet``), and point
``/data/...`` roots at small datasets in the public layouts built under a temp folder. A command the table does
not know fails the test, so a new README command cannot go untested. The working directory is the temp folder,
so relative paths (``ws/phantom``, ``checkpoints/embedder``) never touch the repository.

``make demo`` and ``make test`` run the whole set-up, the app or the suite; they are checked with ``make -n``
(the targets exist and expand) instead.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reid_core.cli import main

from fixtures_datasets import make_chexpert, make_dicom_folder, make_mimic

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

TRAIN_SETS = ["model.backbone=resnet10t", "model.embedding_dim=16", "batch_size=16", "m_per_patient=4",
              "max_steps=3", "num_workers=0", "warmup_steps=1", "val_every=1000", "image_size=null"]
GAN_ARGS = ["--preset", "tiny", "--batch", "4", "--set", "tick_kimg=0.004", "--set", "grid_cols=2", "--quiet"]
CAE_SETS = ["res=16", "batch=4", "tick_kimg=0.004", "snapshot_kimg=0.004", "grid_rows=2", "splits=all",
            "adv_start_kimg=0.004", "arch.n_dim=4", "arch.w_dim=32", "arch.g_channel_base=256", "arch.g_channel_max=32",
            "arch.e_channel_base=128", "arch.e_channel_max=32", "arch.d_channel_base=128", "arch.d_channel_max=32"]
# flag -> scaled value, per command; only flags the CLI documents
SCALE = {
    "phantom": {"--patients": "3", "--size": "64"},
    "prepare": {"--size": "32", "--patients": "40"},
    "evaluate": {"--n-boot": "10"},
    "train-gan": {"--res": "16", "--kimg": "0.008"},
    "train-cae": {"--kimg": "0.008"},
}

ALWAYS = {("prepare", "--size"), ("train-gan", "--kimg")}  # scaled even when the README leaves the default


def readme_commands(text: str) -> list[str]:
    """The shell commands of the ``bash`` code blocks: continuations joined, comments and blank lines dropped."""
    commands: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()  # trailing comments start after whitespace
            if line and not line.startswith("#"):
                commands.append(" ".join(line.split()))
    return commands


def _set_flag(argv: list[str], flag: str, value: str) -> list[str]:
    """``argv`` with ``flag``'s value replaced (appended when absent)."""
    if flag in argv:
        i = argv.index(flag)
        return argv[:i + 1] + [value] + argv[i + 2:]
    return argv + [flag, value]


def scaled(argv: list[str], data: Path) -> list[str]:
    """A ``cxr-reid`` argv (without the program name) scaled down; see the module docstring."""
    command = argv[0]
    argv = [str(data / a[len("/data/"):]) if a.startswith("/data/") else a for a in argv]
    # shipped checkpoints the README reads (not writes) come from the repository
    argv = [str(REPO / a) if a == "checkpoints/judge" else a for a in argv]
    for flag, value in SCALE.get(command, {}).items():
        if flag in argv or (command, flag) in ALWAYS:
            argv = _set_flag(argv, flag, value)
    if command in ("prepare", "train"):
        argv = argv + ["--quiet"]
    if command == "train":
        argv = argv + [a for s in TRAIN_SETS for a in ("--set", s)]
    if command == "train-gan":
        argv = argv + GAN_ARGS
    if command == "train-cae":
        argv = argv + ["--quiet"] + [a for s in CAE_SETS for a in ("--set", s)]
    return argv


def _make_csv_dataset(root: Path) -> None:
    """``/data/x`` with ``meta.csv`` holding the README's column names (File, Subject, Date) and no view column."""
    root.mkdir(parents=True, exist_ok=True)
    lines = ["File,Subject,Date"]
    for i in range(4):
        Image.fromarray(np.full((16, 16), 40 * i, np.uint8)).save(root / f"img{i}.png")
        lines.append(f"img{i}.png,S{i // 2},2020-0{1 + i % 2}-01")
    (root / "meta.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """A temp working directory with the ``/data/...`` datasets the README names, in their public layouts."""
    from reid_core.data.phantom import write_phantom_dataset

    work = tmp_path_factory.mktemp("readme")
    data = work / "data_root"
    # ChestX-ray14 layout from the phantom (enough patients to train on, as the torchrun line does)
    write_phantom_dataset(data / "ChestX-ray14", n_patients=24, seed=2, size=64, fmt="nih", progress=False)
    make_chexpert(data)
    make_mimic(data / "mimic-cxr-jpg" / "2.0.0")
    make_dicom_folder(data / "my_dicoms")
    _make_csv_dataset(data / "x")
    return work, data


def test_readme_has_the_commands_this_test_knows():
    commands = readme_commands(README.read_text())
    assert len(commands) >= 20
    known = ("make ", "cxr-reid ", "torchrun ", "bash scripts/train_demo.sh ")
    assert [c for c in commands if not c.startswith(known)] == []


def test_make_targets_exist():
    for command in readme_commands(README.read_text()):
        if command.startswith("make "):
            argv = shlex.split(command)
            res = subprocess.run(["make", "-n", "-C", str(REPO), *argv[1:]], capture_output=True, text=True,
                                 timeout=60)
            assert res.returncode == 0, (command, res.stderr)


def test_train_demo_verbs_exist():
    """``bash scripts/train_demo.sh VERB`` lines train for minutes to hours: checked for syntax and the verb."""
    script = REPO / "scripts" / "train_demo.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text()
    for command in readme_commands(README.read_text()):
        if command.startswith("bash scripts/train_demo.sh"):
            verb = shlex.split(command)[2]
            assert re.search(rf"^\s+{re.escape(verb)}\)", text, flags=re.M), command


def _run_torchrun(argv: list[str], data: Path, cwd: Path) -> None:
    """``torchrun --nproc_per_node N -m MODULE ARGS`` with one process and the scaled arguments."""
    argv = _set_flag(argv, "--nproc_per_node", "1")
    m = argv.index("-m")
    module, rest = argv[m + 1], argv[m + 2:]
    if module == "reid_core.cli":
        rest = scaled(rest, data)
    elif module == "reid_core.train":
        rest = scaled(["train", *rest], data)[1:]
    else:
        raise AssertionError(f"unknown torchrun module {module}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", *argv[1:m], "-m", module, *rest]
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, (" ".join(cmd), res.stdout[-2000:], res.stderr[-4000:])


@pytest.mark.slow
def test_every_readme_command_runs(sandbox, monkeypatch, capsys):
    work, data = sandbox
    monkeypatch.chdir(work)
    assert Path.cwd() == work  # relative outputs (checkpoints/embedder) stay out of the repository
    ran: list[str] = []
    import time
    for command in readme_commands(README.read_text()):
        argv = shlex.split(command)
        t0 = time.perf_counter()
        if argv[0] in ("make", "bash"):
            continue  # test_make_targets_exist, test_train_demo_verbs_exist
        if argv[0] == "torchrun":
            _run_torchrun(argv, data, work)
        else:
            args = scaled(argv[1:], data)
            rc = main(args)
            out = capsys.readouterr()
            assert rc == 0, (command, args, out.out[-2000:], out.err[-2000:])
        ran.append(argv[1] if argv[0] == "cxr-reid" else argv[0])
        print(f"{time.perf_counter() - t0:6.1f} s  {command}", file=sys.__stderr__)
        if argv[:2] == ["cxr-reid", "phantom"]:
            # the files the later commands name: a.dcm, b.png, query.dcm (the README's "# or --format dicom")
            assert main(scaled([*argv[1:], "--out", "data/phantom_dicom", "--format", "dicom"], data)) == 0
            dcm = sorted(Path("data/phantom_dicom").rglob("*.dcm"))[0]
            shutil.copy(dcm, "a.dcm")
            shutil.copy(dcm, "query.dcm")
            shutil.copy(sorted(Path("data/phantom").rglob("*.png"))[0], "b.png")
    assert {"phantom", "prepare", "status", "train", "embed", "evaluate", "verify", "search", "audit", "ship",
            "torchrun", "train-cae", "cae-evaluate", "counterfactuals", "ship-gan"} <= set(ran)
    assert Path("checkpoints/embedder/MODEL_CARD.md").is_file() and Path("ws/phantom/gan").is_dir()
