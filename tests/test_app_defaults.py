"""The pages start on meaning, and say which numbers they show (AppTest, no training).

The workspace: 40 phantom-free blob patients, the first with a single film (so "the first row" is the wrong
default), synthetic identity embeddings, and an embedder record (card.json) naming another dataset: the
evaluation must use every patient and the pages must say so.
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import reid_core  # noqa: F401  (before timm)
from reid_core.data.manifest import load_manifest
from reid_core.embed import EmbeddingTable
from reid_core.evaluate import evaluate_workspace
from reid_core.retrieval import Index

from test_app import open_page, plotly_specs, table_with, texts
from train_fixtures import make_workspace


@pytest.fixture(scope="module")
def unseen(tmp_path_factory):
    root = tmp_path_factory.mktemp("defaults") / "ws"
    ws = make_workspace(root, n_patients=40, per_patient=[1] + [3] * 39, size=32)
    m = load_manifest(ws.manifest_path)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, 16))
    codes = m["patient_id"].str[1:].astype(int).to_numpy()
    emb = centres[codes] + 0.45 * rng.normal(size=(len(m), 16))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    EmbeddingTable(emb, m["image_id"]).save(ws.embeddings_path)
    Index.build(emb, m["image_id"]).save(ws.root)
    ws.embedder_dir.mkdir()
    (ws.embedder_card_path).write_text(json.dumps({"data": {"dataset": "phantom", "options": {"seed": 0},
                                                                    "n_train_patients": 935}}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluate_workspace(ws, n_boot=20, gallery_sizes=(20, 100))
    return ws


def test_evaluation_used_every_unseen_patient(unseen):
    report = json.loads(unseen.report_path.read_text())
    assert report["evaluation_set"]["mode"] == "all" and report["evaluation_set"]["n_patients"] == 40
    assert "synthetic" in report["evaluation_set"]["reason"]


def test_retrieval_opens_on_a_query_with_other_films_and_counts_them(unseen):
    at = open_page(unseen, "retrieval")
    query = at.selectbox(key="search_query_id").value
    m = load_manifest(unseen.manifest_path)
    assert m["image_id"].iloc[0] == "p0_0" and query != "p0_0"  # p0 has no other film
    patient = m.loc[m["image_id"] == query, "patient_id"].iloc[0]
    found = int((table_with(at, "rank", "distance")["patient_id"] == patient).sum())
    assert f"**{found}** of 2 other films of this patient found in the top 10" in texts(at, "markdown")
    assert "calibrated for a result list" in texts(at, "caption")
    at.selectbox(key="search_query_id").select("p0_0").run()
    assert "no other film in the workspace" in texts(at, "markdown")


def test_verification_opens_on_a_same_patient_pair_and_explains_p(unseen):
    at = open_page(unseen, "verification")
    a, b = at.selectbox(key="verify_a_id").value, at.selectbox(key="verify_b_id").value
    assert a != b and a.split("_")[0] == b.split("_")[0] and "recorded: same patient" in texts(at, "caption")
    assert "p_same is the share of same-patient pairs at this distance among search results" in texts(at, "caption")


def test_explorer_neighbours_say_which_probability(unseen):
    at = open_page(unseen, "explorer")
    at.selectbox(key="explorer_focus").select("p1_0").run()
    assert "p_same" in table_with(at, "rank", "distance") and "calibrated for a result list" in texts(at, "caption")


def test_report_shows_held_out_set_identification_calibration_and_every_section(unseen):
    at = open_page(unseen, "report")
    info = texts(at, "info")
    assert "40 images" not in info and "118 images of 40 patients" in info and "model card" in info
    ident = table_with(at, "gallery (patients)", "rank-1 [95% CI]")
    assert list(ident["gallery (patients)"]) == ["20", "100"] and "needs more than 100" in ident["note"].iloc[1]
    assert "[" in ident["rank-1 [95% CI]"].iloc[0]
    cal = table_with(at, "pairs", "ECE [95% CI]")
    assert {"random", "search results", "nearest neighbour", "hardest negative"} == set(cal["pairs"])
    metrics = table_with(at, "metric", "meaning", "n")
    assert metrics["meaning"].str.len().min() > 10 and metrics.loc[metrics["metric"] == "P@1", "n"].iloc[0].startswith(
        "118 images, 40 patients")
    titles = [str(s["layout"].get("title")) for s in plotly_specs(at)]
    assert any("DET" in t for t in titles) and any("reliability" in t for t in titles)
    expanders = [e.label for e in at.expander]
    report = json.loads(unseen.report_path.read_text())
    assert all(any(lbl.startswith(f"{k}:") for lbl in expanders) for k in report)  # every section, none cut


def test_overview_split_chart_does_not_call_unseen_patients_train(unseen):
    at = open_page(unseen, "overview")
    split = next(s for s in plotly_specs(at) if "held out" in str(s["layout"].get("title")))
    assert split["data"][0]["x"] == ["held out (never seen by the embedder)"]
    assert "[" in {m.label: m.value for m in at.metric}["P@1"]  # value [95% CI]
    assert "118 images of 40 patients" in texts(at, "caption")


def test_report_figures_axes_fit_their_data():
    import pandas as pd

    from reid_core.ui.figures import database_size_figure, training_curves

    fig = database_size_figure([{"gallery_size": 50, "precision_at_1": 0.9}, {"gallery_size": 500,
                                                                               "precision_at_1": 0.8}])
    assert list(fig.layout.yaxis.range) == [0, 1.02]  # P@1 lives in [0, 1], never an axis to 2
    train = pd.DataFrame({"step": [0, 10, 20], "loss": [1.0, 0.5, 0.4], "lr": [0.0, 1e-3, 5e-4]})
    val = pd.DataFrame({"step": [10, 20], "precision_at_1": [0.5, 0.7]})
    curves = training_curves(train, val)
    assert curves.layout.yaxis2.rangemode == "tozero"  # the learning rate: no negative tick
    assert list(curves.layout.yaxis3.range) == [0, 1.02]
