"""Helpers of the browser app that need no Streamlit (so they are testable and reusable).

* :mod:`reid_core.ui.workspaces` — finding workspaces, which artefacts a page needs, cache keys.
* :mod:`reid_core.ui.tables` — dataset summaries, neighbour tables, report and training-log tables.
* :mod:`reid_core.ui.projection` — PCA / UMAP coordinates, cached in the workspace.
* :mod:`reid_core.ui.figures` — plotly figures, and selections mapped back to image ids.
* :mod:`reid_core.ui.upload` — checking and decoding uploaded query files.

The pages in ``pages/`` build widgets and call these; nothing here imports streamlit.
"""
