"""Which workspaces exist, what a page needs from one, and keys for caching its files."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from reid_core.errors import CxrReidError
from reid_core.jsonfile import as_dict, read_json_object
from reid_core.workspace import Artefact, Workspace

DEFAULT_WORKSPACE = Path("workspaces/demo")

# What each page cannot work without (names of Workspace.status() rows).
PAGE_NEEDS: dict[str, tuple[str, ...]] = {
    "overview": ("manifest",),
    "explorer": ("manifest", "embeddings"),
    "verification": ("manifest", "embeddings", "verifier"),
    "retrieval": ("manifest", "embeddings", "index"),
    "longitudinal": ("manifest", "embeddings"),
    "report": ("report",),
    "counterfactuals": ("manifest", "embeddings", "gan"),
}

# Not needed by the core pages: "bad files" is written only when a dataset had unreadable files; the GAN serves
# the counterfactual page alone.
OPTIONAL_ARTEFACTS = frozenset({"bad files", "gan"})


def list_workspaces(base: str | Path) -> list[Path]:
    """Folders directly under ``base`` that hold a workspace.json or a manifest, sorted by name."""
    base = Path(base)
    if not base.is_dir():
        return []
    found = [p for p in base.iterdir()
             if p.is_dir() and ((p / "workspace.json").exists() or (p / "manifest.parquet").exists())]
    return sorted(found, key=lambda p: p.name)


ANY_WORKSPACE_ENV = "CXR_REID_ANY_WORKSPACE"
"""Set to 1 when starting the app to let the sidebar open workspace folders outside the workspaces root."""


def resolve_custom_workspace(value: str, base: str | Path, allow_any: bool = False) -> Path:
    """The folder a user typed, if the app may open it: under ``base`` (after resolving ``..`` and
    symlinks) unless ``allow_any``; :class:`WorkspaceError` saying why not otherwise."""
    from reid_core.errors import WorkspaceError

    text = (value or "").strip()
    if not text:
        raise WorkspaceError("no workspace folder given")
    path = Path(text).expanduser()
    path = (Path(base) / path if not path.is_absolute() else path).resolve()
    root = Path(base).resolve()
    if not allow_any and path != root and root not in path.parents:
        raise WorkspaceError(f"only workspaces under {root} can be opened here; start the app with "
                             f"{ANY_WORKSPACE_ENV}=1 to open other folders")
    if not path.is_dir():
        raise WorkspaceError(f"{text} is not a folder")
    return path


def default_workspace(base: str | Path, preferred: str = DEFAULT_WORKSPACE.name) -> Path:
    """``base/demo`` when it exists (or nothing else does), else the first workspace found."""
    base = Path(base)
    found = list_workspaces(base)
    if (base / preferred).is_dir() or not found:
        return base / preferred
    return found[0]


# What each artefact is built from (so a notice names the whole chain still to run).
PREREQUISITES: dict[str, tuple[str, ...]] = {
    "manifest": ("workspace",), "images": ("manifest",), "embedder": ("images",),
    "embeddings": ("embedder",), "index": ("embedder",), "verifier": ("embeddings",),
    "report": ("embeddings",), "gan": ("embeddings",),
}


def missing_artefacts(ws: Workspace, names: tuple[str, ...] | list[str],
                      with_prerequisites: bool = True) -> list[Artefact]:
    """The artefacts among ``names`` the workspace lacks, in pipeline order (KeyError on an unknown name).

    With ``with_prerequisites``, a missing artefact brings its missing inputs along
    (no embeddings and no embedder → both, so the notice says to train first).
    """
    status = ws.status()
    by_name = {a.name: a for a in status}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise KeyError(f"unknown artefact name(s) {unknown}; known: {sorted(by_name)}")
    wanted: set[str] = set()
    todo = [n for n in names if not by_name[n].exists]
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        wanted.add(name)
        if with_prerequisites:
            todo.extend(p for p in PREREQUISITES.get(name, ()) if not by_name[p].exists)
    return [a for a in status if a.name in wanted]


def build_commands(missing: list[Artefact]) -> list[str]:
    """The distinct commands that build ``missing``, in pipeline order."""
    out: list[str] = []
    for a in missing:
        if a.command not in out:
            out.append(a.command)
    return out


def status_frame(ws: Workspace) -> pd.DataFrame:
    """``Workspace.status()`` as a table: artefact, required or optional, present, detail, path, command."""
    rows = [{"artefact": a.name, "needed": "optional" if a.name in OPTIONAL_ARTEFACTS else "required",
             "present": a.exists, "detail": a.detail if a.exists else "missing",
             "path": str(a.path), "build with": "" if a.exists else a.command} for a in ws.status()]
    return pd.DataFrame(rows, columns=["artefact", "needed", "present", "detail", "path", "build with"])


def optional_sentence(ws: Workspace) -> str:
    """One line on the optional extras: the GAN (built or the command) and the UMAP maps (computed on first use)."""
    gan = next(a for a in ws.status() if a.name == "gan")
    gan_text = ("Optional extras: the GAN (Counterfactuals page) is built" if gan.exists else
                f"Optional extras: the GAN for the Counterfactuals page is not built (`{gan.command}`)")
    umap = sorted(p.name for p in ws.root.glob("projection_umap_*d.npz"))
    umap_text = (f"UMAP maps cached ({', '.join(umap)})" if umap else
                 "UMAP maps are computed on first use in the Embedding explorer and cached in the workspace")
    return f"{gan_text}; {umap_text}."


def file_key(path: str | Path) -> tuple[str, int]:
    """``(path, mtime_ns)`` (``-1`` when missing): a cache key that changes when the file is rewritten."""
    p = Path(path)
    try:
        return str(p.resolve()), p.stat().st_mtime_ns
    except OSError:
        return str(p), -1


@dataclass(frozen=True)
class EmbedderSummary:
    """What the model page and the overview say about a trained embedder."""

    backbone: str
    embedding_dim: int
    image_size: int
    steps: int | None
    best_step: int | None
    elapsed_s: float | None
    train_findings: str = "all"  # "normal": trained on normal films only (the drift embedder)


def embedder_summary(ws: Workspace) -> EmbedderSummary | None:
    """Backbone, dimension, resolution and training length from ``embedder/``; None when absent/unreadable."""
    cfg_path = ws.embedder_record_path
    if not (ws.embedder_weights_path).exists() or not cfg_path.exists():
        return None
    try:
        meta = as_dict(read_json_object(cfg_path).get("meta"))
        emb = as_dict(meta.get("embedder"))
        metrics_path = ws.embedder_metrics_path
        metrics = read_json_object(metrics_path) if metrics_path.exists() else {}
        return EmbedderSummary(
            backbone=str(emb.get("backbone", "?")), embedding_dim=int(emb.get("embedding_dim", 0)),
            image_size=int(emb.get("image_size", 0)), steps=_number(metrics.get("steps")),
            best_step=_number(metrics.get("best_step")), elapsed_s=_number(metrics.get("elapsed_s")),
            train_findings=str(as_dict(as_dict(meta.get("extra")).get("train_config")).get("train_findings", "all")),
        )
    except (CxrReidError, TypeError, ValueError):
        return None


def _number(value: object) -> int | float | None:
    """A JSON number, else None (a tampered metrics.json must not reach an f-string format)."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
