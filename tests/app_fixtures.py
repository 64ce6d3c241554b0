"""Workspaces for the app tests (no pytest import): a tiny trained one and one with only images.

:func:`build_trained_workspace` makes the synthetic blob workspace of
:mod:`train_fixtures`, gives it what a real dataset's manifest has (study dates,
sexes, ages, views, findings, a test split) and runs the CLI's ``train`` (8
steps of resnet10t), ``embed`` and ``evaluate``, so every page has content.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

import reid_core  # noqa: F401  (before timm)
from reid_core.cli import main
from reid_core.data.manifest import load_manifest, save_manifest
from reid_core.evaluate import evaluate_workspace
from reid_core.workspace import Workspace

from train_fixtures import make_workspace

TRAIN_SETS = ("model.backbone=resnet10t", "model.embedding_dim=16", "batch_size=16", "m_per_patient=4",
              "max_steps=8", "num_workers=0", "warmup_steps=2", "val_every=1000", "log_every=2", "lr=2e-3")
FINDINGS = ("Effusion", "Cardiomegaly", "Effusion|Nodule")


def enrich_manifest(ws: Workspace) -> pd.DataFrame:
    """Dates six months apart, alternating sex, ages, PA/AP views, findings on later studies, a test split."""
    m = load_manifest(ws.manifest_path)
    num = m["patient_id"].str[1:].astype(int).to_numpy()
    order = m["study_order"].to_numpy()
    m.loc[num % 4 == 2, "split"] = "test"
    m["study_date"] = pd.Timestamp("2015-01-01") + pd.to_timedelta(num * 30 + order * 182, unit="D")
    m["sex"] = np.where(num % 2 == 0, "M", "F")
    m["age"] = 30.0 + num + order * 0.5
    m["view"] = np.where(order % 3 == 2, "AP", "PA")
    last = order == m.groupby("patient_id")["study_order"].transform("max").to_numpy()
    abnormal = last & (num % 3 != 0)
    m["findings"] = "No Finding"
    m.loc[abnormal, "findings"] = [FINDINGS[k % len(FINDINGS)] for k in num[abnormal]]
    save_manifest(m, ws.manifest_path)
    return m


def build_images_only_workspace(root: Path, n_patients: int = 12, per_patient: int = 3, size: int = 64) -> Workspace:
    """Manifest + image store, nothing trained: every model page must say what to run."""
    ws = make_workspace(root, n_patients=n_patients, per_patient=per_patient, size=size)
    enrich_manifest(ws)
    return ws


def build_trained_workspace(root: Path, n_patients: int = 24, per_patient: int = 4, size: int = 64) -> Workspace:
    """Images, an 8-step embedder, embeddings + index, verifier.json and report.json."""
    ws = make_workspace(root, n_patients=n_patients, per_patient=per_patient, size=size)
    enrich_manifest(ws)
    args = ["train", "--workspace", str(root), "--quiet"] + [a for s in TRAIN_SETS for a in ("--set", s)]
    for argv in (args, ["embed", "--workspace", str(root)]):
        rc = main(argv)
        if rc != 0:
            raise RuntimeError(f"cxr-reid {' '.join(argv)} failed with exit code {rc}")
    # The library call behind `cxr-reid evaluate`: the CLI's summary line cannot print a verifier
    # whose distance threshold is undefined (None in report.json), which an 8-step model can give.
    evaluate_workspace(ws, n_boot=10)
    return ws


# ---------------------------------------------------------------------------- a real `streamlit run app.py`
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_health(port: int, timeout: float = 90.0) -> None:
    import time
    import urllib.request

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"streamlit did not answer on port {port} within {timeout:.0f} s")


def render_over_websocket(port: int, url_path: str, timeout: float = 120.0) -> dict[str, list]:
    """Open one browser-like session on ``url_path`` and collect what the first script run sends.

    Returns ``{"exceptions": [...], "sidebar": [element types], "headings": [...], "alerts": [...],
    "plotly": [spec lengths]}``. Speaks Streamlit's own websocket protocol (BackMsg / ForwardMsg).
    """
    import asyncio

    import websockets
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    async def session() -> dict[str, list]:
        out: dict[str, list] = {"exceptions": [], "sidebar": [], "headings": [], "alerts": [], "plotly": []}
        async with websockets.connect(f"ws://127.0.0.1:{port}/_stcore/stream", subprotocols=["streamlit"],
                                      max_size=2**26) as ws:
            msg = BackMsg()
            msg.rerun_script.page_name = url_path
            await ws.send(msg.SerializeToString())
            while True:
                fm = ForwardMsg()
                fm.ParseFromString(await asyncio.wait_for(ws.recv(), timeout))
                kind = fm.WhichOneof("type")
                if kind == "script_finished":
                    return out
                if kind != "delta" or fm.delta.WhichOneof("type") != "new_element":
                    continue
                el = fm.delta.new_element
                et = el.WhichOneof("type")
                if list(fm.metadata.delta_path)[:1] == [1]:
                    out["sidebar"].append(et)
                if et == "exception":
                    out["exceptions"].append(f"{el.exception.type}: {el.exception.message}")
                elif et == "heading":
                    out["headings"].append(el.heading.body)
                elif et == "alert":
                    out["alerts"].append(el.alert.body)
                elif et == "plotly_chart":
                    out["plotly"].append(len(el.plotly_chart.spec))

    return asyncio.run(session())
