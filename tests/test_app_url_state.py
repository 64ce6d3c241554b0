"""Each page keeps its view in the URL (``st.query_params``): a shared or reloaded URL restores it, a bad link
falls back to the defaults, and thumbnails and table rows link to the other pages with their state.

AppTest stands in for the browser: ``at.query_params`` is the URL the page is opened with, and what the page
writes back. Following a link is opening its page with the link's query string, as a browser does.
"""
from __future__ import annotations

from urllib.parse import parse_qs

import pytest

from test_app import APP, PAGES, images_only, open_page, table_with, texts, trained  # noqa: F401  (fixtures)

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402


def open_url(ws, page: str, params: dict[str, str]) -> AppTest:
    """``page`` opened from a URL carrying ``params`` (a fresh session, as a shared link or a reload gives)."""
    at = AppTest.from_file(APP, default_timeout=90)
    at.session_state["workspace"] = str(ws.root)
    for name, value in params.items():
        at.query_params[name] = value
    at.run()
    if page != "overview":
        at.switch_page(PAGES[page]).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def url(at: AppTest) -> dict[str, str]:
    return {k: (v[0] if isinstance(v, list) else v) for k, v in dict(at.query_params).items()}


def test_explorer_view_round_trips_through_the_url(trained):
    at = open_page(trained, "explorer")
    at.selectbox(key="explorer_colour").select("sex").run()
    at.selectbox(key="explorer_patient").select("P003").run()
    at.selectbox(key="explorer_focus").select("p2_0").run()
    at.slider(key="explorer_k").set_value(3).run()
    shared = url(at)
    assert {k: shared[k] for k in ("proj", "dims", "colour", "id", "patient", "k")} == {
        "proj": "pca", "dims": "2", "colour": "sex", "id": "p2_0", "patient": "P003", "k": "3"}
    again = open_url(trained, "explorer", shared)  # a reload, or the link sent to a colleague
    assert again.selectbox(key="explorer_colour").value == "sex"
    assert again.selectbox(key="explorer_focus").value == "p2_0"
    assert again.selectbox(key="explorer_patient").value == "P003"
    assert table_with(again, "rank", "distance")["image_id"].tolist() == \
        table_with(at, "rank", "distance")["image_id"].tolist()  # the same three neighbours
    assert [t.get("name") for t in _data(again)] == [t.get("name") for t in _data(at)]  # the same marks


def _data(at: AppTest) -> list[dict]:
    import json

    return json.loads(at.get("plotly_chart")[0].proto.spec)["data"]


def test_verification_retrieval_and_longitudinal_restore_their_view(trained):
    at = open_url(trained, "verification", {"a": "p3_1", "b": "p3_2", "t": "0.9"})
    assert (at.selectbox(key="verify_a_id").value, at.selectbox(key="verify_b_id").value) == ("p3_1", "p3_2")
    assert at.slider(key="verify_threshold").value == 0.9 and "recorded: same patient" in texts(at, "caption")
    at.selectbox(key="verify_b_id").select("p5_2").run()
    assert url(at)["b"] == "p5_2" and url(at)["t"] == "0.9"
    at = open_url(trained, "retrieval", {"q": "p6_1", "k": "4"})
    table = table_with(at, "rank", "distance")
    assert at.selectbox(key="search_query_id").value == "p6_1"
    assert len(table) == 4 and "p6_1" not in set(table["image_id"])
    at = open_url(trained, "longitudinal", {"patient": "P007"})
    assert at.selectbox(key="longitudinal_patient").value == "P007"
    assert set(table_with(at, "baseline_id", "drift")["baseline_id"]) == {"p7_0"}


def test_a_bad_or_stale_link_falls_back_to_the_defaults(trained):
    at = open_url(trained, "verification", {"a": "no_such_image", "t": "7", "b": "p0_2"})
    assert at.selectbox(key="verify_a_id").value == "p0_0" and at.slider(key="verify_threshold").value == 0.5
    assert at.selectbox(key="verify_b_id").value == "p0_2"  # the valid part of the link still applies
    at = open_url(trained, "explorer", {"id": "../../etc/passwd", "dims": "4", "colour": "sex"})
    assert at.selectbox(key="explorer_focus").value is None and at.radio(key="explorer_dims").value == 2
    assert at.selectbox(key="explorer_colour").value == "sex"


def test_a_link_opens_a_workspace_only_under_the_same_rule_as_the_sidebar(trained, images_only, monkeypatch):
    at = open_url(trained, "overview", {"ws": str(images_only.root)})  # outside the workspaces root: refused
    assert at.session_state["workspace"] == str(trained.root)
    assert "The link's workspace cannot be opened" in "\n".join(e.value for e in at.sidebar.error)
    monkeypatch.setenv("CXR_REID_ANY_WORKSPACE", "1")
    at = open_url(trained, "overview", {"ws": str(images_only.root)})
    assert at.session_state["workspace"] == str(images_only.root.resolve())
    assert url(at)["ws"] == str(images_only.root.resolve())


def links(at: AppTest) -> list[tuple[str, str, dict[str, str]]]:
    """``(label, page, query params)`` of every page link on the page."""
    out = []
    for el in at.get("page_link"):
        params = {k: v[0] for k, v in parse_qs(el.proto.query_string).items()}
        out.append((el.proto.label, el.proto.page, params))
    return out


def test_thumbnails_and_rows_open_the_image_on_another_page_in_one_click(trained):
    at = open_url(trained, "retrieval", {"q": "p4_0", "k": "3"})
    found = links(at)
    first = table_with(at, "rank", "distance")["image_id"].iloc[0]
    mine = {label: (page, params) for label, page, params in found if params.get("q", params.get("a",
            params.get("b", params.get("id")))) == first}
    assert {"as retrieval query", "as verification A", "as verification B", "on the map, with neighbours"} <= set(mine)
    page, params = mine["as retrieval query"]
    assert page.endswith("search") or "4_retrieval" in page
    followed = open_url(trained, "retrieval", params)  # following the link: the result is now the query
    assert followed.selectbox(key="search_query_id").value == first
    _, params = mine["as verification B"]
    followed = open_url(trained, "verification", params)
    assert followed.selectbox(key="verify_b_id").value == first
    patient = next(params for label, _, params in found if label.startswith("patient ") and "patient" in params)
    followed = open_url(trained, "longitudinal", patient)
    assert followed.selectbox(key="longitudinal_patient").value == patient["patient"]
    # a table row: choosing it offers the same links (AppTest cannot tick the row; the link builder is shared)
    assert any("Choose a row" in c.value for c in at.caption)
