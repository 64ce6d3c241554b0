"""Helpers of the browser app that need no Streamlit (so they are testable and reusable).

* :mod:`reid_core.ui.workspaces` — finding workspaces, which artefacts a page needs, cache keys.
* :mod:`reid_core.ui.tables` — dataset summaries, neighbour tables, report and training-log tables.
* :mod:`reid_core.ui.projection` — PCA / UMAP coordinates, cached in the workspace.
* :mod:`reid_core.ui.figures` — plotly figures, and selections mapped back to image ids.
* :mod:`reid_core.ui.upload` — checking and decoding uploaded query files.
* :mod:`reid_core.ui.overlay` — heat maps (saliency, |Δ|) laid over radiographs.
* :mod:`reid_core.ui.verification` — the test ROC of report.json and a threshold's operating point.

The pages in ``pages/`` build widgets and call these; nothing here imports streamlit. The
counterfactual page's library is :mod:`gan.views` (it needs the generator, and ``reid_core``
never imports ``gan``).
"""
