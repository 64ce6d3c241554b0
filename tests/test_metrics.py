"""Retrieval metrics: hand-computed cases, PML equality, database-size curve, pixel baseline."""
from __future__ import annotations

import numpy as np
import pytest

import reid_core  # noqa: F401  (makes timm/torchvision importable before PML)
from reid_core import metrics
from reid_core.metrics import (
    database_size_curve,
    per_query_metrics,
    pixel_baseline_embeddings,
    retrieval_metrics,
)


def _line(positions):
    """1-D positions as 2-D embeddings, so neighbours can be read off a number line."""
    return np.c_[np.asarray(positions, dtype=np.float32), np.zeros(len(positions), np.float32)]


# Patients A (3 images), B (2), C (1, a pure distractor) on a line:
#   a1=0.0  a2=1.0  c1=1.6  b1=2.1  b2=3.5  a3=5.0
HAND_POS = [0.0, 1.0, 5.0, 2.1, 3.5, 1.6]
HAND_LAB = ["A", "A", "A", "B", "B", "C"]
# Ranked relevance of each query's other images (worked out by hand):
#   a1: a2 c1 b1 b2 a3 -> 1 0 0 0 1   R=2  P@1=1  P@5=2/5  Rp=1/2  AP@R=1/2
#   a2: c1 a1 b1 b2 a3 -> 0 1 0 0 1   R=2  P@1=0  P@5=2/5  Rp=1/2  AP@R=(1/2)(1/2)=1/4
#   a3: b2 b1 c1 a2 a1 -> 0 0 0 1 1   R=2  P@1=0  P@5=2/5  Rp=0    AP@R=0
#   b1: c1 a2 b2 a1 a3 -> 0 0 1 0 0   R=1  P@1=0  P@5=1/5  Rp=0    AP@R=0
#   b2: b1 a3 c1 a2 a1 -> 1 0 0 0 0   R=1  P@1=1  P@5=1/5  Rp=1    AP@R=1
#   c1: no positive -> not a query (distractor only)


def test_hand_computed_example():
    m = retrieval_metrics(_line(HAND_POS), HAND_LAB)
    assert m["n_queries"] == 5
    assert m["precision_at_1"] == pytest.approx(2 / 5)
    assert m["precision_at_5"] == pytest.approx((2 + 2 + 2 + 1 + 1) / 5 / 5)
    # only 5 other images exist: missing ranks 6..10 count as misses
    assert m["precision_at_10"] == pytest.approx((2 + 2 + 2 + 1 + 1) / 10 / 5)
    assert m["r_precision"] == pytest.approx((0.5 + 0.5 + 0 + 0 + 1) / 5)
    assert m["map_at_r"] == pytest.approx((0.5 + 0.25 + 0 + 0 + 1) / 5)
    assert set(m) == {"precision_at_1", "precision_at_5", "precision_at_10", "r_precision", "map_at_r", "n_queries"}


def test_per_query_rows_and_singletons():
    pq = per_query_metrics(_line(HAND_POS), HAND_LAB, ks=(1,))
    assert pq["is_query"].tolist() == [True] * 5 + [False]
    assert pq["n_positives"].tolist() == [2, 2, 2, 1, 1, 0]
    assert np.isnan(pq.loc[5, "precision_at_1"])
    np.testing.assert_allclose(pq["average_precision_at_r"][:5], [0.5, 0.25, 0, 0, 1])


def test_map_at_r_differs_from_r_precision_when_order_matters():
    # query q (A) with R=3; ranked others: A, B, A, A  -> Rp = 2/3, AP@R = (1 + 2/3)/3
    pos = [0.0, 1.0, 2.0, 3.0, 4.0]
    lab = ["A", "A", "B", "A", "A"]
    pq = per_query_metrics(_line(pos), lab, ks=(1,))
    assert pq.loc[0, "r_precision"] == pytest.approx(2 / 3)
    assert pq.loc[0, "average_precision_at_r"] == pytest.approx((1 + 2 / 3) / 3)


def test_all_singletons_gives_nan_and_zero_queries():
    m = retrieval_metrics(np.random.default_rng(0).normal(size=(5, 3)), list("abcde"))
    assert m["n_queries"] == 0 and np.isnan(m["precision_at_1"]) and np.isnan(m["map_at_r"])


def test_ties_broken_by_row_order_and_self_excluded():
    # Row 1 (patient A) has a B image (row 0) and an A image (row 2) at the same distance 1.
    pq = per_query_metrics(_line([1.0, 0.0, -1.0]), ["B", "A", "A"], ks=(1,))
    assert pq.loc[1, "precision_at_1"] == 0.0  # row 0 (smaller) wins the tie
    # exact duplicate of the query from the same patient: self removed, duplicate kept
    pq = per_query_metrics(_line([0.0, 0.0, 3.0]), ["A", "A", "B"], ks=(1,))
    assert pq.loc[0, "precision_at_1"] == 1.0 and pq.loc[1, "precision_at_1"] == 1.0


def test_input_validation():
    with pytest.raises(ValueError):
        retrieval_metrics(np.zeros((4, 2)), [0, 0, 1])
    with pytest.raises(ValueError):
        retrieval_metrics(np.array([[0.0, np.nan], [1.0, 1.0]]), [0, 0])
    with pytest.raises(ValueError):
        retrieval_metrics(np.zeros((4, 2)), [0, 0, 1, 1], ks=(0,))


def _random_dataset(seed, n_patients=60, dim=16):
    rng = np.random.default_rng(seed)
    sizes = rng.choice([1, 1, 2, 3, 5, 9], size=n_patients)  # singletons and unequal classes
    labels = np.repeat(np.arange(n_patients), sizes)
    rng.shuffle(labels)
    centres = rng.normal(size=(n_patients, dim)) * 1.2
    x = (centres[labels] + rng.normal(size=(len(labels), dim))).astype(np.float32)
    return x, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_pytorch_metric_learning(seed, monkeypatch):
    torch = pytest.importorskip("torch")
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    x, labels = _random_dataset(seed)
    if seed == 2:  # force many small query chunks
        monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 64)
    ours = retrieval_metrics(x, labels)
    calc = AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
        k="max_bin_count",
        device=torch.device("cpu"),
    )
    # reference=None => query set is the reference set and ref_includes_query=True
    ref = calc.get_accuracy(x, labels)
    assert ours["precision_at_1"] == pytest.approx(ref["precision_at_1"], abs=1e-6)
    assert ours["r_precision"] == pytest.approx(ref["r_precision"], abs=1e-6)
    assert ours["map_at_r"] == pytest.approx(ref["mean_average_precision_at_r"], abs=1e-6)
    counts = np.bincount(labels)
    assert ours["n_queries"] == int((counts[labels] > 1).sum())


def test_database_size_curve_nested_and_monotone():
    x, labels = _random_dataset(3, n_patients=80)
    counts = np.bincount(labels)
    query_mask = labels < 20
    base = int(counts[:20].sum())
    sizes = [base, base + 30, base + 100, len(labels)]
    curve = database_size_curve(x, labels, query_mask, sizes, np.random.default_rng(0))
    assert curve["gallery_size"].tolist() == sizes
    assert curve["n_distractor_images"].tolist() == [s - base for s in sizes]
    assert curve["n_distractor_patients"].iloc[0] == 0
    assert curve["n_queries"].iloc[0] == int((query_mask & (counts[labels] > 1)).sum())
    p1 = curve["precision_at_1"].to_numpy()
    assert np.all(np.diff(p1) <= 1e-12)  # nested galleries, fixed positives: P@1 can only fall
    # at full size it is the ordinary leave-one-out P@1 over the query images
    pq = per_query_metrics(x, labels, ks=(1,))
    sel = query_mask & pq["is_query"].to_numpy()
    assert p1[-1] == pytest.approx(pq.loc[sel, "precision_at_1"].mean())
    with pytest.raises(ValueError):
        database_size_curve(x, labels, query_mask, [base - 1], np.random.default_rng(0))
    with pytest.raises(ValueError):
        database_size_curve(x, labels, query_mask, [len(labels) + 1], np.random.default_rng(0))


def test_area_downsampling_is_block_mean():
    img = np.random.default_rng(0).random((8, 6))
    small = metrics._area_matrix(8, 4) @ img @ metrics._area_matrix(6, 3).T
    np.testing.assert_allclose(small, img.reshape(4, 2, 3, 2).mean(axis=(1, 3)))


def test_pixel_baseline_shape_determinism_and_identity_signal():
    rng = np.random.default_rng(0)
    n_pat, per = 15, 3
    patterns = rng.random((n_pat, 8, 8))
    base = np.kron(patterns, np.ones((8, 8)))  # 64×64 "anatomy" per patient
    labels = np.repeat(np.arange(n_pat), per)
    gain = rng.uniform(0.6, 1.0, size=(len(labels), 1, 1))
    imgs = base[labels] * gain + 0.1 * rng.random((len(labels), 64, 64))
    u8 = np.clip(imgs * 255, 0, 255).astype(np.uint8)
    emb = pixel_baseline_embeddings(u8, size=16, n_components=10)
    assert emb.shape == (len(labels), 10) and emb.dtype == np.float32
    np.testing.assert_array_equal(emb, pixel_baseline_embeddings(u8, size=16, n_components=10))
    # per-image standardisation: a global intensity affine change does not matter
    shifted = pixel_baseline_embeddings(u8.astype(np.float32) * 0.5 + 7.0, size=16, n_components=10)
    np.testing.assert_allclose(shifted, emb, atol=1e-3)
    assert pixel_baseline_embeddings(u8[:6], size=4, n_components=50).shape == (6, 6)  # clipped to N
    assert retrieval_metrics(emb, labels)["precision_at_1"] > 0.9
    with pytest.raises(ValueError):
        pixel_baseline_embeddings(u8[0])
