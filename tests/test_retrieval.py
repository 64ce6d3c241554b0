"""FAISS-backed Index: exactness, approximate recall, persistence, ids and errors."""
from __future__ import annotations

import json
import warnings

import faiss
import numpy as np
import pytest

from reid_core._compat import faiss_tuning
from reid_core.errors import WorkspaceError
from reid_core.retrieval import (
    DimensionMismatchError,
    EmptyIndexError,
    Index,
    KClippedWarning,
    UnknownImageIdError,
)


def _data(n=300, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    return x, [f"img{i:04d}" for i in range(n)]


@pytest.fixture(scope="module")
def clustered():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(200, 32)) * 4
    lab = rng.integers(0, 200, size=4000)
    x = (centres[lab] + rng.normal(size=(4000, 32))).astype(np.float32)
    return x, [f"c{i}" for i in range(len(x))]


def test_exact_search_equals_numpy_brute_force():
    x, ids = _data()
    q = np.random.default_rng(9).normal(size=(20, 16)).astype(np.float32)
    index = Index.build(x, ids)
    dist, got = index.search(q, 7)
    full = np.linalg.norm(q[:, None, :].astype(np.float64) - x[None], axis=2)
    order = np.argsort(full, axis=1)[:, :7]
    np.testing.assert_array_equal(got, np.asarray(ids, dtype=object)[order])
    np.testing.assert_allclose(dist, np.take_along_axis(full, order, axis=1), rtol=1e-4)  # Euclidean, not squared
    assert dist.dtype == np.float32 and dist.shape == (20, 7)
    d1, i1 = index.search(q[0], 3)  # a single vector is one query
    assert d1.shape == (1, 3) and i1[0, 0] == got[0, 0]


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_recall_at_10(kind, clustered):
    x, ids = clustered
    index = Index.build(x, ids, kind=kind)
    q = x[::20] + 0.1
    assert index.recall_at_k_vs_exact(q, k=10) >= 0.9
    if kind == "ivf":
        assert index.nlist == min(round(4 * np.sqrt(len(x))), len(x) // 39)
        index.nprobe = 1
        low = index.recall_at_k_vs_exact(q, k=10)
        index.nprobe = index.nlist
        assert low <= 1.0 and index.recall_at_k_vs_exact(q, k=10) == pytest.approx(1.0)
    else:
        index.ef_search = 200
        assert index.recall_at_k_vs_exact(q, k=10) >= 0.9


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_save_load_round_trip(kind, tmp_path, clustered):
    x, ids = clustered
    x, ids = x[:1000], ids[:1000]
    index = Index.build(x, ids, kind=kind, **({"nprobe": 5} if kind == "ivf" else {}))
    path = index.save(tmp_path)
    assert path.name == "index.faiss" and (tmp_path / "index.ids.json").is_file()
    loaded = Index.load(tmp_path)
    assert (loaded.kind, loaded.dim, len(loaded), loaded.image_ids) == (kind, 32, 1000, ids)
    assert loaded.nprobe == index.nprobe
    d0, i0 = index.search(x[:10], 5)
    d1, i1 = loaded.search(x[:10], 5)
    np.testing.assert_array_equal(i0, i1)
    np.testing.assert_array_equal(d0, d1)
    np.testing.assert_array_equal(loaded.search_id(ids[3], 4)[1], index.search_id(ids[3], 4)[1])


def test_incremental_add_matches_single_build():
    x, ids = _data()
    whole = Index.build(x, ids)
    parts = Index(16)
    parts.add(x[:100], ids[:100])
    parts.add(x[100:], ids[100:])
    q = x[::7] + 0.05
    for a, b in zip(whole.search(q, 5), parts.search(q, 5)):
        np.testing.assert_array_equal(a, b)
    ivf = Index.build(x[:250], ids[:250], kind="ivf")
    ivf.add(x[250:], ids[250:])
    assert len(ivf) == 300 and ivf.search(x[299], 1)[1][0, 0] == ids[299]


def test_search_id_excludes_itself():
    x, ids = _data()
    index = Index.build(x, ids)
    dist, got = index.search_id("img0005", 5)
    assert "img0005" not in got and got.shape == (5,)
    full = np.linalg.norm(x.astype(np.float64) - x[5], axis=1)
    full[5] = np.inf
    np.testing.assert_array_equal(got, np.asarray(ids, dtype=object)[np.argsort(full)[:5]])
    # an exact duplicate of the image is another image and comes first at distance 0
    index.add(x[5:6], ["dup"])
    dist, got = index.search_id("img0005", 2)
    assert got[0] == "dup" and dist[0] == 0.0


def test_ids_are_strings_and_unique():
    x, _ = _data(n=5)
    index = Index.build(x, [10, 11, 12, 13, 14])
    assert 12 in index and "12" in index
    assert index.search(x[2], 1)[1][0, 0] == "12"
    with pytest.raises(ValueError):
        index.add(x[:1], ["12"])
    with pytest.raises(ValueError):
        index.add(x[:2], ["a", "a"])
    with pytest.raises(ValueError):
        index.add(x[:2], ["b"])


def test_errors_and_k_clipping(tmp_path):
    x, ids = _data(n=6)
    with pytest.raises(ValueError):
        Index(16, kind="lsh")
    with pytest.raises(EmptyIndexError):
        Index(16).search(x, 1)
    with pytest.raises(EmptyIndexError):
        Index.build(np.zeros((0, 16)), [])
    index = Index.build(x, ids)
    with pytest.raises(DimensionMismatchError):
        index.search(np.zeros((2, 8), np.float32), 1)
    with pytest.raises(DimensionMismatchError):
        index.add(np.zeros((1, 8), np.float32), ["z"])
    with pytest.raises(UnknownImageIdError) as err:
        index.search_id("nope", 1)
    assert isinstance(err.value, KeyError) and "nope" in str(err.value)
    with pytest.raises(ValueError):
        index.search(x, 0)
    with pytest.raises(ValueError):
        index.search(np.full((1, 16), np.nan, np.float32), 1)
    with pytest.warns(KClippedWarning):
        d, i = index.search(x[:2], 50)
    assert d.shape == (2, 6)
    with pytest.warns(KClippedWarning):
        d, i = index.search_id(ids[0], 50)
    assert len(i) == 5 and ids[0] not in i
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        index.search(x[:1], 6)  # exactly the size: no warning
    with pytest.raises(WorkspaceError):
        Index.load(tmp_path / "nowhere")
    index.save(tmp_path)
    meta = json.loads((tmp_path / "index.ids.json").read_text())
    meta["image_ids"] = meta["image_ids"][:-1]
    (tmp_path / "index.ids.json").write_text(json.dumps(meta))
    with pytest.raises(WorkspaceError):
        Index.load(tmp_path)


def test_index_shards_recipe_from_docstring():
    x, ids = _data()
    parts = [Index.build(x[:120], ids[:120]), Index.build(x[120:], ids[120:])]
    shards = faiss.IndexShards(16, True, True)
    for p in parts:
        shards.add_shard(p.faiss_index)
    all_ids = np.asarray(parts[0].image_ids + parts[1].image_ids, dtype=object)
    _, rows = shards.search(x[::10], 5)
    np.testing.assert_array_equal(all_ids[rows], Index.build(x, ids).search(x[::10], 5)[1])


def test_exact_search_switches_to_blas_from_a_few_queries_per_thread():
    """FAISS 1.15 keeps up to 1,999 64-d queries on its per-query scan; ``faiss_search`` moves the switch."""
    if faiss_tuning.threshold_unit() is None:
        pytest.skip(f"FAISS's BLAS rule (default {faiss_tuning.FAISS_DEFAULT}) is not one this project re-sets")
    start = faiss_tuning.QUERIES_PER_THREAD * faiss.omp_get_max_threads()
    for dim in (4, 16, 64, 128):
        assert faiss_tuning.picks_blas(start, dim) and not faiss_tuning.picks_blas(start - 1, dim)
    if faiss_tuning.threshold_unit() == "queries×dim":  # the regression being fixed
        assert 500 * 64 < faiss_tuning.FAISS_DEFAULT
    x, ids = _data(n=2000, dim=64, seed=3)
    q = np.random.default_rng(4).normal(size=(start + 5, 64)).astype(np.float32)
    faiss.cvar.distance_compute_blas_threshold = faiss_tuning.FAISS_DEFAULT
    index = Index.build(x, ids)
    dist, got = index.search(q, 10)  # one batch: BLAS
    assert faiss.cvar.distance_compute_blas_threshold == faiss_tuning.blas_threshold(64)
    one_by_one = [index.search(row, 10) for row in q]  # single queries: the scan
    np.testing.assert_array_equal(got, np.concatenate([i for _, i in one_by_one]))
    np.testing.assert_allclose(dist, np.concatenate([d for d, _ in one_by_one]), rtol=1e-4, atol=1e-5)


def test_fewer_queries_than_threads_search_on_one_thread():
    """FAISS 1.15 splits a lone query's scan across threads, 3.6× slower here: such searches run on one thread."""
    import threading

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(2)
    try:
        def threads_seen_by_another_thread() -> int:
            seen = []
            other = threading.Thread(target=lambda: seen.append(faiss.omp_get_max_threads()))
            other.start()
            other.join()
            return seen[0]

        elsewhere = threads_seen_by_another_thread()
        with faiss_tuning.threads_for(1) as inside:
            assert inside == 1 and faiss.omp_get_max_threads() == 1
            assert threads_seen_by_another_thread() == elsewhere  # the setting is this thread's only
        assert faiss.omp_get_max_threads() == 2  # restored
        with faiss_tuning.threads_for(2) as inside:
            assert inside == 2 and faiss.omp_get_max_threads() == 2
        with pytest.raises(RuntimeError), faiss_tuning.threads_for(1):
            raise RuntimeError("search failed")
        assert faiss.omp_get_max_threads() == 2  # restored after an error too
        x, ids = _data(n=500, dim=8)
        index = Index.build(x, ids)
        one = index.search(x[3], 4)  # through the product path: same answer, threads back afterwards
        assert one[1][0, 0] == ids[3] and faiss.omp_get_max_threads() == 2
    finally:
        faiss.omp_set_num_threads(before)
