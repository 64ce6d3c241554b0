"""GAN metrics (Fréchet distance, identity preservation) and PC interpretation (tiny, synthetic data)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import reid_core  # noqa: F401  (before anything importing timm)
from gan.interpret import (
    DEFAULT_FACTORS,
    factor_response,
    factor_response_table,
    fit_factor_regressor,
    identity_pc_r2,
    numeric_factors,
    pc_factor_r2,
    response_slope,
)
from gan.metrics import (
    evaluate_gan,
    feature_stats,
    frechet_distance,
    frechet_distance_features,
    identity_preservation,
    trace_sqrt_product,
    write_metrics,
)



@pytest.fixture(scope="module")
def embedder():
    from reid_core.model import Embedder

    torch.manual_seed(0)
    return Embedder(backbone="resnet10t", embedding_dim=8, image_size=32).eval()


# --------------------------------------------------------------------------- Fréchet distance

def test_frechet_equal_covariances_is_squared_mean_distance():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 6))
    cov = a @ a.T + 0.1 * np.eye(6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    assert frechet_distance(mu1, cov, mu2, cov) == pytest.approx(float(((mu1 - mu2) ** 2).sum()), rel=1e-6)


def test_frechet_diagonal_covariances_closed_form():
    s1, s2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    mu = np.zeros(3)
    expected = float(((np.sqrt(s1) - np.sqrt(s2)) ** 2).sum())  # tr(S1 + S2 - 2 (S1 S2)^½)
    assert frechet_distance(mu, np.diag(s1), mu + 1.0, np.diag(s2)) == pytest.approx(expected + 3.0, rel=1e-6)


def test_trace_sqrt_product_agrees_with_scipy_sqrtm():
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(8, 8)), rng.normal(size=(8, 8))
    s1, s2 = a @ a.T + 0.5 * np.eye(8), b @ b.T + 0.5 * np.eye(8)
    assert trace_sqrt_product(s1, s2) == pytest.approx(float(np.trace(sqrtm(s1 @ s2)).real), rel=1e-8)


def test_frechet_is_zero_for_identical_sets_and_finite_when_singular():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 5)) @ rng.normal(size=(5, 5))
    assert frechet_distance_features(x, x) == pytest.approx(0.0, abs=1e-6)
    few = rng.normal(size=(6, 20))  # rank-deficient covariances (N < D)
    assert frechet_distance_features(few, few) == pytest.approx(0.0, abs=1e-4)
    d = frechet_distance_features(few, few + 1.0)
    assert np.isfinite(d) and d == pytest.approx(20.0, rel=1e-3)
    mu, cov = feature_stats(x)
    assert mu.shape == (5,) and cov.shape == (5, 5)
    with pytest.raises(ValueError):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


# --------------------------------------------------------------------------- identity preservation

def test_identity_preservation_logic_on_clusters():
    rng = np.random.default_rng(0)
    centres = np.eye(4, 8) * 3.0
    pids = np.repeat(["a", "b", "c", "d"], 5)
    ref = centres[np.repeat(np.arange(4), 5)] + rng.normal(scale=0.1, size=(20, 8))
    gen = centres + rng.normal(scale=0.1, size=(4, 8))
    good = identity_preservation(gen, centres, np.array(["a", "b", "c", "d"]), ref, pids)
    assert good["top1_image"] == 1.0 and good["top1_centroid"] == 1.0
    assert good["chance_top1"] == 0.25 and good["mean_distance"] < 0.5
    assert good["real_same_patient_distance"] < good["real_other_patient_distance"]
    wrong = identity_preservation(gen, centres, np.array(["b", "c", "d", "a"]), ref, pids)
    assert wrong["top1_image"] == 0.0 and wrong["top1_centroid"] == 0.0


class RealImageGenerator(nn.Module):
    """A fake generator that returns, for each condition, the real image whose embedding it is."""

    def __init__(self, images: np.ndarray, embeddings: np.ndarray) -> None:
        super().__init__()
        self.z_dim, self.img_resolution = 4, images.shape[-1]
        self.register_buffer("images", torch.from_numpy(images).float()[:, None])
        self.register_buffer("embeddings", torch.from_numpy(embeddings).float())
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, z, c, truncation_psi=1.0, noise_mode="const"):
        rows = torch.cdist(c.float(), self.embeddings).argmin(dim=1)
        return self.images[rows] * 2.0 - 1.0


def test_evaluate_gan_with_a_generator_that_returns_real_images(tmp_path, embedder):
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.8, size=(6, 16, 16))  # 6 patients × 3 images: patient pattern + small noise
    images = np.clip(np.repeat(base, 3, axis=0) + rng.normal(scale=0.05, size=(18, 16, 16)), 0, 1)
    images = images.astype(np.float32)
    pids = np.repeat([f"P{i}" for i in range(6)], 3)
    with torch.no_grad():
        emb = embedder.embed(torch.nn.functional.interpolate(torch.from_numpy(images)[:, None], size=32,
                                                             mode="bilinear", align_corners=False)).numpy()
    G = RealImageGenerator(images, emb)
    out = evaluate_gan(G, embedder, images, emb, pids, n=12, seed=0, batch_size=8)
    assert out["top1_image"] == 1.0
    assert out["mean_distance"] < 1e-3 and out["real_resolution_distance"] < 1e-3
    assert np.isfinite(out["frechet_distance"]) and out["frechet_distance"] >= 0.0
    assert out["n_generated"] == 12 and out["n_patients"] == 6
    uint8 = evaluate_gan(G, embedder, np.rint(images * 255).astype(np.uint8), emb, pids, n=4, seed=1)
    assert 0.0 <= uint8["top1_image"] <= 1.0
    path = write_metrics(tmp_path / "gan", {**out, "broken": float("nan")})
    back = json.loads(path.read_text())
    assert back["top1_image"] == 1.0 and back["broken"] is None
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]


def test_evaluate_gan_on_a_tiny_generator_is_seeded_and_leaves_the_global_rng(embedder):
    from gan.config import GanConfig, build_generator

    torch.manual_seed(0)
    G = build_generator(GanConfig.preset("tiny", c_dim=8))
    rng = np.random.default_rng(1)
    images = rng.uniform(size=(10, 32, 32)).astype(np.float32)  # real images above G's 16 px
    with torch.no_grad():
        emb = embedder.embed(torch.from_numpy(images)[:, None]).numpy()
    pids = np.repeat(["a", "b", "c", "d", "e"], 2)
    state = torch.get_rng_state()
    first = evaluate_gan(G, embedder, images, emb, pids, n=6, seed=3, psi=0.8)
    assert torch.equal(torch.get_rng_state(), state)
    assert first == evaluate_gan(G, embedder, images, emb, pids, n=6, seed=3, psi=0.8)
    assert first["resolution"] == 16 and first["embed_size"] == 32 and first["real_resolution_distance"] > 0


# --------------------------------------------------------------------------- interpretation

def test_pc_factor_r2_finds_the_planted_relations():
    rng = np.random.default_rng(0)
    n = 400
    scores = rng.normal(size=(n, 4))
    df = pd.DataFrame({
        "image_id": [f"i{k}" for k in range(n)],
        "heart_width": 0.6 + 0.05 * scores[:, 0] + rng.normal(scale=0.005, size=n),
        "id_thorax_half_width": 0.65 - 0.02 * scores[:, 2] + rng.normal(scale=0.02, size=n),
        "id_sex": np.where(scores[:, 1] + rng.normal(scale=0.3, size=n) > 0, "M", "F"),
        "id_vessel_seed": rng.integers(0, 10**6, size=n),
        "constant": 1.0,
        "unrelated": rng.normal(size=n),
    })
    df.loc[:9, "unrelated"] = np.nan
    table = pc_factor_r2(scores, df)
    assert list(table.columns) == ["PC1", "PC2", "PC3", "PC4"]
    assert set(table.index) == {"heart_width", "id_thorax_half_width", "id_sex", "unrelated"}
    assert table.loc["heart_width", "PC1"] > 0.95
    assert table.loc["id_thorax_half_width", "PC3"] > 0.4
    assert table.loc["id_sex", "PC2"] > 0.4
    off_diagonal = table.drop(columns="PC1").loc["heart_width"].tolist() + table.loc["unrelated"].tolist()
    assert max(off_diagonal) < 0.05
    assert set(numeric_factors(df, ["id_sex", "missing"]).columns) == {"id_sex"}


def test_identity_pc_r2_on_phantom_factors_with_a_planted_embedding():
    from gan.pca import IdentityPCA
    from reid_core.data.phantom import phantom_factors

    df = phantom_factors(12, seed=0)  # the real ground-truth table (strings, seeds, marks included)
    rng = np.random.default_rng(0)
    hw = (df["heart_width"] - df["heart_width"].mean()) / df["heart_width"].std()
    emb = rng.normal(scale=0.05, size=(len(df), 8))
    emb[:, 0] += 3.0 * hw.to_numpy()  # PC1 ≈ heart width
    order = rng.permutation(len(df))  # embeddings in another order than the table: aligned by image_id
    table = identity_pc_r2(IdentityPCA.fit(emb[order], 3), emb[order], df["image_id"].to_numpy()[order], df)
    assert set(table.index) <= set(DEFAULT_FACTORS) and "id_sex" in table.index
    assert table.loc["heart_width", "PC1"] > 0.95
    assert table.loc["heart_width", ["PC2", "PC3"]].max() < 0.3
    assert table.loc["id_sex", "PC1"] < table.loc["heart_width", "PC1"]


def test_factor_regressor_and_response_slope():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(200, 10))
    y = 2.0 * feats[:, 3] - feats[:, 7] + rng.normal(scale=0.1, size=200)
    reg = fit_factor_regressor(feats, y, name="heart_width", alpha=1.0)
    assert reg.cv_r2 > 0.95 and np.abs(reg.predict(feats) - y).mean() < 0.2
    alphas = np.array([-2.0, 0.0, 2.0])
    df = pd.DataFrame({"condition": np.repeat([0, 1], 3), "alpha": np.tile(alphas, 2),
                       "prediction": np.concatenate([5 + 0.5 * alphas, -3 + 0.5 * alphas])})
    assert response_slope(df) == pytest.approx(0.5)


def test_factor_response_on_a_tiny_generator(embedder):
    from gan.config import GanConfig, build_generator
    from gan.counterfactual import CounterfactualRenderer
    from gan.pca import IdentityPCA

    torch.manual_seed(0)
    G = build_generator(GanConfig.preset("tiny", c_dim=8))
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(30, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    renderer = CounterfactualRenderer(G, IdentityPCA.fit(emb, 3), z_seed=0, psi=0.7, n_avg=32)
    feats = rng.normal(size=(40, embedder.num_features))
    reg = fit_factor_regressor(feats, feats[:, 0] + rng.normal(scale=0.1, size=40), name="f", alpha=1.0)
    resp = factor_response(renderer, reg, embedder, emb[:2], pc=0, alphas=[-2.0, 0.0, 2.0])
    assert list(resp.columns) == ["condition", "pc", "alpha", "factor", "prediction"]
    assert len(resp) == 6 and resp["prediction"].notna().all()
    table = factor_response_table(renderer, [reg], embedder, emb[:2], pcs=[0, 1], alphas=[-1.0, 1.0])
    assert list(table["pc"]) == [1, 2] and np.isfinite(table["slope"]).all()
    assert table.loc[0, "slope"] == pytest.approx(response_slope(
        factor_response(renderer, reg, embedder, emb[:2], pc=0, alphas=[-1.0, 1.0])))
