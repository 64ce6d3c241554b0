"""Dates and ages are formatted once (captions and tables agree); the app's Streamlit config is the shipped one."""
from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pandas as pd

from reid_core.ui import formatting, tables

ROOT = Path(__file__).resolve().parents[1]


def test_dates_and_ages_read_the_same_in_captions_tables_and_exports():
    from reid_core.ui.dates import with_study_days

    frame = pd.DataFrame({"image_id": ["a", "b", "c"], "patient_id": ["P1", "P1", "P1"], "study_order": [0, 1, 2],
                          "study_date": pd.to_datetime(["2013-01-02", "2013-01-30", None]),
                          "age": [30.57, 30.65, np.nan], "sex": ["F"] * 3, "view": ["PA"] * 3,
                          "findings": ["No Finding", "Effusion|Mass", "No Finding"]})
    shown = tables.display_frame(frame)  # dates as days from the patient's first study, never the calendar date
    assert "study_date" not in shown and shown["study_day"].tolist()[:2] == [0, 28] and pd.isna(shown["study_day"][2])
    assert str(shown["age"].dtype) == "Int64" and shown["age"].tolist()[:2] == [30, 30] and pd.isna(shown["age"][2])
    cap = tables.caption(with_study_days(frame).iloc[1])
    assert "day 28" in cap and "30 y" in cap and "2013" not in cap and "00:00" not in cap
    assert tables.caption(shown.iloc[1]) == cap  # a formatted row captions identically
    assert "y ·" not in tables.caption(frame.iloc[2])  # no age, no "nan y"
    opted_in = tables.display_frame(with_study_days(frame, calendar=True))  # --real-dates: the calendar date too
    assert opted_in["calendar_date"][0] == "2013-01-02" and pd.isna(opted_in["calendar_date"][2])
    assert formatting.format_age(64.999) == "64 y" and formatting.age_years("x") is None
    assert formatting.format_date("not a date") == "" and formatting.format_date(pd.NaT) == ""
    csv = tables.selection_csv(frame, ["b"])  # exports keep the stored age; the date as a study day
    assert ",28," in csv and "30.65" in csv and "2013" not in csv


def test_selection_export_carries_coordinates_and_optional_embeddings():
    frame = pd.DataFrame({"image_id": ["a", "b", "c"], "patient_id": ["P1", "P2", "P2"]})
    coords = np.array([[1.0, 2.0], [3.0, 4.0]])
    out = tables.selection_table(frame, ["c", "a"], coords=coords, axis_names=("PC1", "PC2"))
    assert out["image_id"].tolist() == ["c", "a"] and out["PC1"].tolist() == [1.0, 3.0]
    assert not any(c.startswith("emb_") for c in out)
    emb = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = tables.selection_table(frame, ["c", "a"], coords=coords, embeddings=emb)
    assert out[["emb_0", "emb_1", "emb_2"]].to_numpy().tolist() == emb.tolist() and "x" in out
    header = tables.selection_csv(frame, ["a", "b"], coords, ("UMAP 1", "UMAP 2"), emb).splitlines()[0]
    assert header == "image_id,patient_id,study_day,UMAP 1,UMAP 2,emb_0,emb_1,emb_2"


def test_streamlit_config_sends_no_usage_stats_and_shows_no_deploy_button():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["browser"]["gatherUsageStats"] is False
    assert config["client"]["toolbarMode"] == "minimal"  # no Deploy button, no developer menu
    assert config["server"]["address"] == "127.0.0.1" and config["theme"]["primaryColor"].startswith("#")
