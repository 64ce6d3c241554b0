"""Helpers of the browser app that need no Streamlit (so they are testable and reusable).

* :mod:`reid_core.ui.workspaces` — finding workspaces, which artefacts a page needs, cache keys.
* :mod:`reid_core.ui.tables` — dataset summaries, neighbour tables, report and training-log tables.
* :mod:`reid_core.ui.projection` — PCA / UMAP coordinates, cached in the workspace.
* :mod:`reid_core.ui.figures` — plotly figures, and selections mapped back to image ids.
* :mod:`reid_core.ui.upload` — checking and decoding uploaded query files.
* :mod:`reid_core.ui.overlay` — heat maps (saliency, |Δ|) laid over radiographs.
* :mod:`reid_core.ui.verification` — the test ROC of report.json and a threshold's operating point.
* :mod:`reid_core.ui.dates` — study dates as days from each patient's first study (calendar dates on opt-in).
* :mod:`reid_core.ui.formatting` — dates and ages as every caption and table shows them.
* :mod:`reid_core.ui.url_state` — which widget keys travel in a page's URL, parsed and checked.
* :mod:`reid_core.ui.map_actions` — a map selection event read as click / select / clear.
* :mod:`reid_core.ui.map_marks` — the selection, inspected point, neighbours and one patient's timeline on the map.
* :mod:`reid_core.ui.selection` — big maps: the drawn sample and box/lasso regions resolved on the server.

Out-of-distribution checks of uploads live in :mod:`reid_core.ood` (they serve the CLI as much as the app).

The pages in ``pages/`` build widgets and call these; nothing here imports streamlit. The
counterfactual page's library is :mod:`gan.views` (it needs the generator, and ``reid_core``
never imports ``gan``).
"""
