"""One folder per dataset + model: every artefact's path, and what exists yet.

The CLI writes a workspace step by step; the app reads it. Layout (see
shared/ARCHITECTURE.md)::

    workspace/
      workspace.json           dataset name, source root, creation settings
      manifest.parquet         images_<res>.npy (+ .state.json)   bad_files.csv
      embedder/ model.safetensors, config.json, metrics.json, train_log.jsonl
      embeddings.npz           index.faiss            verifier.json
      gan/ G_ema.safetensors, config.json, metrics.json, samples.png
      report.json              dim_sweep.csv + sweeps/dim<D>/ (cxr-reid evaluate --dims)
      audit/                   likely_mislabelled.csv, same_person_pairs.csv (cxr-reid audit)
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reid_core import artefact_names as names
from reid_core.atomic import write_text_atomic
from reid_core.errors import WorkspaceError
from reid_core.jsonfile import read_json_object


@dataclass(frozen=True)
class Artefact:
    """One entry of :meth:`Workspace.status`: what it is, where, and how to build it."""

    name: str
    path: Path
    exists: bool
    detail: str
    command: str


_IMAGES_RE = re.compile(r"^images_(\d+)\.npy$")


class Workspace:
    """Paths of a workspace's artefacts; creating the object touches no file."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    # ---- paths -------------------------------------------------------------
    @property
    def info_path(self) -> Path:
        return self.root / "workspace.json"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.parquet"

    @property
    def bad_files_path(self) -> Path:
        return self.root / "bad_files.csv"

    def images_path(self, size: int) -> Path:
        return self.root / f"images_{int(size)}.npy"

    @property
    def embedder_dir(self) -> Path:
        return self.root / "embedder"

    @property
    def embedder_weights_path(self) -> Path:
        return self.embedder_dir / names.weights_file(names.EMBEDDER_NAME)

    @property
    def embedder_record_path(self) -> Path:
        return self.embedder_dir / names.record_file(names.EMBEDDER_META)

    @property
    def embedder_metrics_path(self) -> Path:
        return self.embedder_dir / names.RUN_METRICS

    @property
    def embedder_card_path(self) -> Path:
        return self.embedder_dir / names.EMBEDDER_CARD

    @property
    def embeddings_path(self) -> Path:
        return self.root / "embeddings.npz"

    @property
    def index_path(self) -> Path:
        return self.root / "index.faiss"

    @property
    def verifier_path(self) -> Path:
        return self.root / "verifier.json"

    @property
    def gan_dir(self) -> Path:
        return self.root / "gan"

    @property
    def generator_weights_path(self) -> Path:
        return self.gan_dir / names.weights_file(names.GENERATOR_NAME)

    @property
    def encoder_weights_path(self) -> Path:
        return self.gan_dir / names.weights_file(names.ENCODER_NAME)

    @property
    def gan_metrics_path(self) -> Path:
        return self.gan_dir / names.RUN_METRICS

    @property
    def report_path(self) -> Path:
        return self.root / "report.json"

    # ---- state -------------------------------------------------------------
    def exists(self) -> bool:
        return self.info_path.exists()

    def create(self, **info: Any) -> None:
        """Create the folder and write (or update) ``workspace.json``."""
        if self.root.exists() and not self.root.is_dir():
            raise WorkspaceError(f"{self.root} is a file, not a workspace folder: give a folder path")
        self.root.mkdir(parents=True, exist_ok=True)
        current = self.info() if self.info_path.exists() else {}
        current.update(info)
        write_text_atomic(self.info_path, json.dumps(current, indent=2, sort_keys=True, default=str))

    def info(self) -> dict[str, Any]:
        """The contents of ``workspace.json``; WorkspaceError if this is no workspace."""
        if not self.info_path.exists():
            raise WorkspaceError(
                f"{self.root} is not a cxr-reid workspace (no workspace.json); "
                f"build one with `cxr-reid prepare --workspace {self.root} ...`"
            )
        return read_json_object(self.info_path)

    def image_sizes(self) -> list[int]:
        """Resolutions with a complete image store, smallest first."""
        sizes = []
        if self.root.is_dir():
            for p in self.root.iterdir():
                m = _IMAGES_RE.match(p.name)
                if m and _store_complete(p):
                    sizes.append(int(m.group(1)))
        return sorted(sizes)

    def default_image_size(self) -> int:
        """The largest complete image store's resolution; WorkspaceError if none."""
        sizes = self.image_sizes()
        if not sizes:
            raise WorkspaceError(
                f"{self.root} has no prepared images; run `cxr-reid prepare --workspace {self.root} ...`"
            )
        return sizes[-1]

    def status(self) -> list[Artefact]:
        """Every artefact of the layout, whether it exists, and the command that builds it."""
        ws = str(self.root)
        sizes = self.image_sizes()
        rows = [
            Artefact("workspace", self.info_path, self.info_path.exists(), _info_detail(self),
                     f"cxr-reid prepare --workspace {ws} --dataset ..."),
            Artefact("manifest", self.manifest_path, self.manifest_path.exists(), _manifest_detail(self),
                     f"cxr-reid prepare --workspace {ws} --dataset ..."),
            Artefact("images", self.images_path(sizes[-1]) if sizes else self.root / "images_<res>.npy",
                     bool(sizes), ", ".join(f"{s} px" for s in sizes) or "not prepared",
                     f"cxr-reid prepare --workspace {ws} --size 256"),
            Artefact("bad files", self.bad_files_path, self.bad_files_path.exists(), _bad_detail(self),
                     f"cxr-reid prepare --workspace {ws}"),
            Artefact("embedder", self.embedder_weights_path, self.embedder_weights_path.exists(), "",
                     f"cxr-reid train --workspace {ws}"),
            Artefact("embeddings", self.embeddings_path, self.embeddings_path.exists(), "",
                     f"cxr-reid embed --workspace {ws}"),
            Artefact("index", self.index_path, self.index_path.exists(), "", f"cxr-reid embed --workspace {ws}"),
            Artefact("verifier", self.verifier_path, self.verifier_path.exists(), "",
                     f"cxr-reid evaluate --workspace {ws}"),
            Artefact("report", self.report_path, self.report_path.exists(), "",
                     f"cxr-reid evaluate --workspace {ws}"),
            Artefact("gan", self.generator_weights_path, self.generator_weights_path.exists(), "",
                     f"cxr-reid train-gan --workspace {ws}"),
        ]
        return rows

    def format_status(self) -> str:
        """``status`` as an aligned text table (what `cxr-reid status` prints)."""
        lines = [f"workspace {self.root}"]
        for a in self.status():
            mark = "ok " if a.exists else "-- "
            tail = a.detail if a.exists else f"missing; build with: {a.command}"
            lines.append(f"  {mark}{a.name:<11} {tail}")
        return "\n".join(lines)


def _store_complete(npy: Path) -> bool:
    state = npy.with_suffix(".state.json")
    if not state.exists():
        return False
    try:
        return bool(read_json_object(state).get("complete"))
    except WorkspaceError:
        return False


def _info_detail(ws: Workspace) -> str:
    try:
        info = ws.info()
    except Exception:  # noqa: BLE001 - status must never crash on a broken file
        return "unreadable"
    return f"dataset {info.get('dataset', '?')}"


def _manifest_detail(ws: Workspace) -> str:
    if not ws.manifest_path.exists():
        return ""
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(ws.manifest_path, columns=["patient_id"])
        n_img = table.num_rows
        n_pat = len(set(table.column("patient_id").to_pylist()))
        return f"{n_img} images of {n_pat} patients"
    except Exception as exc:  # noqa: BLE001
        return f"unreadable ({type(exc).__name__})"


def _bad_detail(ws: Workspace) -> str:
    if not ws.bad_files_path.exists():
        return ""
    with ws.bad_files_path.open() as fh:
        n = max(sum(1 for _ in fh) - 1, 0)
    return f"{n} file(s) skipped"
