"""Identity counterfactuals, PCA storage, generator checkpoints and inversion (tiny nets only)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import reid_core  # noqa: F401  (before anything importing timm)
from gan.config import GanConfig, build_generator
from gan.counterfactual import AVG_SEED, ConditionMeans, CounterfactualRenderer, diff_map, grid_diff, mosaic
from gan.io import load_gan_config, load_generator, to_unit
from gan.pca import IdentityPCA, load_or_fit_pca
from reid_core.checkpoint import save_checkpoint
from reid_core.errors import CheckpointError

C_DIM = 8



@pytest.fixture(scope="module")
def cfg() -> GanConfig:
    return GanConfig.preset("tiny", c_dim=C_DIM)


@pytest.fixture(scope="module")
def G(cfg):
    torch.manual_seed(0)
    G = build_generator(cfg)
    with torch.no_grad():
        for m in G.modules():  # random-init noise strengths are 0; make noise visible
            if hasattr(m, "strength"):
                m.strength.fill_(0.2)
    return G.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def embeddings() -> np.ndarray:
    rng = np.random.default_rng(0)
    e = rng.normal(size=(60, C_DIM)) * np.linspace(2.0, 0.3, C_DIM)
    return (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def pca(embeddings) -> IdentityPCA:
    return IdentityPCA.fit(embeddings, n_components=5)


@pytest.fixture(scope="module")
def renderer(G, pca) -> CounterfactualRenderer:
    return CounterfactualRenderer(G, pca, z_seed=3, psi=0.7, n_avg=64)


# --------------------------------------------------------------------------- PCA

def test_pca_matches_sklearn_and_round_trips_without_pickle(tmp_path, embeddings, pca):
    from sklearn.decomposition import PCA

    ref = PCA(n_components=5, svd_solver="full").fit(embeddings.astype(np.float64))
    np.testing.assert_allclose(pca.std, np.sqrt(ref.explained_variance_), rtol=1e-5)
    np.testing.assert_allclose(pca.explained_variance_ratio, ref.explained_variance_ratio_, rtol=1e-5)
    np.testing.assert_allclose(np.abs((pca.components * ref.components_).sum(axis=1)), 1.0, atol=1e-5)
    np.testing.assert_allclose(pca.components @ pca.components.T, np.eye(5), atol=1e-5)
    path = pca.save(tmp_path / "pca.npz")
    with np.load(path, allow_pickle=False) as z:  # every member loads without pickle
        assert all(z[k].dtype != object for k in z.files)
    back = IdentityPCA.load(path)
    for name in ("mean", "components", "std", "explained_variance_ratio"):
        np.testing.assert_array_equal(getattr(back, name), getattr(pca, name))
    assert back.n_samples == 60 and back.source_sha256 == pca.source_sha256
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_load_or_fit_pca_reuses_then_refits_on_new_embeddings(tmp_path, embeddings):
    path = tmp_path / "gan" / "pca.npz"
    first = load_or_fit_pca(embeddings, path, n_components=4)
    mtime = path.stat().st_mtime_ns
    assert load_or_fit_pca(embeddings, path, n_components=4).source_sha256 == first.source_sha256
    assert path.stat().st_mtime_ns == mtime
    changed = load_or_fit_pca(embeddings[:-5], path, n_components=4)
    assert changed.n_samples == 55 and changed.source_sha256 != first.source_sha256


def test_offset_is_sum_of_scaled_components(pca):
    off = pca.offset({0: 1.5, 2: -2.0})
    np.testing.assert_allclose(off, 1.5 * pca.std[0] * pca.components[0] - 2.0 * pca.std[2] * pca.components[2],
                               atol=1e-6)
    np.testing.assert_allclose(pca.offset(np.array([1.5, 0.0, -2.0])), off, atol=1e-7)
    with pytest.raises(IndexError):
        pca.offset({7: 1.0})


# --------------------------------------------------------------------------- rendering

def _direct_render(G, c0: np.ndarray, z_seed: int, psi: float, n_avg: int) -> np.ndarray:
    """Independent re-implementation: truncation toward the condition's mean w, const noise."""
    c = torch.from_numpy(c0).reshape(1, -1)
    with torch.no_grad():
        z_avg = torch.randn(n_avg, G.z_dim, generator=torch.Generator().manual_seed(AVG_SEED))
        w_c = G.mapping(z_avg, c.expand(n_avg, -1))[:, 0].mean(dim=0)
        z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(z_seed))
        w = w_c.lerp(G.mapping(z, c)[:, 0], psi)
        img = G.synthesis(w.unsqueeze(1).repeat(1, G.num_ws, 1), noise_mode="const")
    return to_unit(img)[0, 0].numpy()


def test_alpha_zero_reproduces_base_image_bit_for_bit(renderer, G, embeddings):
    c0 = embeddings[4]
    base = _direct_render(G, c0, z_seed=3, psi=0.7, n_avg=64)
    assert base.std() > 0
    for alphas in (None, {0: 0.0, 3: 0.0}, np.zeros(5)):
        img = renderer.render(c0, alphas)
        assert img.dtype == np.float32 and img.shape == (16, 16)
        np.testing.assert_array_equal(img, base)


def test_nonzero_alpha_changes_the_image(renderer, embeddings):
    c0 = embeddings[4]
    base = renderer.render(c0)
    moved = renderer.render(c0, {0: 2.0})
    assert np.abs(moved - base).max() > 1e-3
    assert 0.0 <= moved.min() and moved.max() <= 1.0
    c = renderer.condition(c0, {0: 2.0})  # keep_norm: the condition stays on the sphere of c0
    assert np.linalg.norm(c) == pytest.approx(np.linalg.norm(c0), rel=1e-5)


def test_truncation_toward_condition_mean(G, pca, embeddings):
    c0 = embeddings[7]
    a = CounterfactualRenderer(G, pca, z_seed=1, psi=0.0, n_avg=64).render(c0)
    b = CounterfactualRenderer(G, pca, z_seed=2, psi=0.0, n_avg=64).render(c0)
    np.testing.assert_array_equal(a, b)  # ψ = 0: the condition's mean latent, whatever z
    c = CounterfactualRenderer(G, pca, z_seed=1, psi=1.0, n_avg=64).render(c0)
    d = CounterfactualRenderer(G, pca, z_seed=2, psi=1.0, n_avg=64).render(c0)
    assert np.abs(c - d).max() > 1e-3
    other = CounterfactualRenderer(G, pca, z_seed=1, psi=0.0, n_avg=64).render(embeddings[8])
    assert np.abs(other - a).max() > 1e-3  # the mean is per condition, not the global w_avg
    means = ConditionMeans(G, n=16)
    assert means(torch.from_numpy(c0)) is means(torch.from_numpy(c0).clone())  # cached


def test_grid_shape_and_diff_maps(renderer, embeddings):
    c0, alphas = embeddings[2], [-3.0, 0.0, 3.0]
    grid = renderer.grid(c0, [0, 1], alphas)
    assert grid.shape == (2, 3, 16, 16)
    base = renderer.render(c0)
    for row in grid:
        np.testing.assert_array_equal(row[1], base)
    diffs = grid_diff(grid, alphas)
    assert diffs.shape == grid.shape and not diffs[:, 1].any() and diffs[:, [0, 2]].max() > 0
    assert not diff_map(renderer.render(c0, {1: 0.0}), base).any()
    np.testing.assert_array_equal(diff_map(grid[0, 0], base), np.abs(grid[0, 0] - base))
    assert mosaic(grid, pad=1).shape == (2 * 16 + 1, 3 * 16 + 2)


def test_sweep_gif_has_n_frames_and_is_written_atomically(tmp_path, renderer, embeddings):
    from PIL import Image

    path = renderer.sweep_gif(embeddings[1], pc=0, path=tmp_path / "sweep.gif", n_frames=7, min_size=64)
    assert [p.name for p in tmp_path.iterdir()] == ["sweep.gif"]
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames == 7
        assert im.size[0] == 64 and im.size[1] > 64  # upscaled ×4 plus the α marker strip
        assert im.info.get("loop") == 0


def test_render_ws_of_an_inverted_latent_is_exact_at_alpha_zero(renderer, embeddings):
    c0 = embeddings[5]
    ws = renderer.ws(c0)
    np.testing.assert_array_equal(renderer.render_ws(ws, c0, {0: 0.0}), renderer.synthesize(ws))
    np.testing.assert_array_equal(renderer.render_ws(ws, c0), renderer.render(c0))
    assert np.abs(renderer.render_ws(ws, c0, {0: 2.5}) - renderer.render(c0)).max() > 1e-3


def test_open_renderer_from_a_workspace_fits_and_stores_the_pca(tmp_path, G, cfg, embeddings):
    from gan.counterfactual import open_renderer
    from reid_core.embed import EmbeddingTable
    from reid_core.workspace import Workspace

    ws = Workspace(tmp_path)
    EmbeddingTable(embeddings, [f"i{k}" for k in range(len(embeddings))]).save(ws.embeddings_path)
    save_checkpoint(ws.gan_dir, G.state_dict(), {"gan": cfg.to_dict(), "c_dim": C_DIM}, name="G_ema")
    r = open_renderer(tmp_path, z_seed=3, psi=0.7, n_components=5, n_avg=64)
    assert (ws.gan_dir / "pca.npz").is_file() and r.pca.n_components == 5
    np.testing.assert_array_equal(r.render(embeddings[4]), _direct_render(G, embeddings[4], 3, 0.7, 64))


# --------------------------------------------------------------------------- checkpoints

def _save(directory, G, meta):
    return save_checkpoint(directory, G.state_dict(), meta, name="G_ema")


def test_load_generator_round_trip_of_the_training_loops_checkpoint(tmp_path, G, cfg):
    from gan.snapshot import save_generator  # the writer gan.train uses

    save_generator(tmp_path, G, cfg, {"preset": "tiny"}, {"kimg": 0.5})
    H = load_generator(tmp_path)
    assert not H.training and not any(p.requires_grad for p in H.parameters())
    assert load_gan_config(tmp_path) == cfg
    for k, v in G.state_dict().items():
        torch.testing.assert_close(H.state_dict()[k], v, rtol=0, atol=0)
    z, c = torch.randn(2, G.z_dim), torch.randn(2, C_DIM)
    with torch.no_grad():
        torch.testing.assert_close(H(z, c, noise_mode="const"), G(z, c, noise_mode="const"), rtol=0, atol=0)


def test_load_generator_accepts_gan_config_key(tmp_path, G, cfg):
    _save(tmp_path, G, {"gan_config": cfg.to_dict(), "c_dim": C_DIM, "kimg": 12.0})
    assert load_generator(tmp_path).img_resolution == 16


def test_load_generator_failures_raise_checkpoint_error(tmp_path, G, cfg):
    _save(tmp_path / "no_cfg", G, {"c_dim": C_DIM})
    with pytest.raises(CheckpointError, match="no GAN architecture"):
        load_generator(tmp_path / "no_cfg")
    with pytest.raises(CheckpointError, match="not found"):
        load_generator(tmp_path / "missing")
    _save(tmp_path / "wrong", G, {"gan": {**cfg.to_dict(), "g_channel_max": 16}})
    with pytest.raises(CheckpointError, match="does not fit"):
        load_generator(tmp_path / "wrong")
    _save(tmp_path / "bad", G, {"gan": {**cfg.to_dict(), "no_such_key": 1}})
    with pytest.raises(CheckpointError, match="invalid"):
        load_generator(tmp_path / "bad")
    _save(tmp_path / "c_dim", G, {"gan": cfg.to_dict(), "c_dim": C_DIM + 1})
    with pytest.raises(CheckpointError, match="c_dim"):
        load_generator(tmp_path / "c_dim")
    files = _save(tmp_path / "good", G, {"gan": cfg.to_dict(), "c_dim": C_DIM})
    data = files.weights.read_bytes()
    files.weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_generator(tmp_path / "good")
    tampered = bytearray(data)
    tampered[-5] ^= 0xFF
    files.weights.write_bytes(bytes(tampered))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_generator(tmp_path / "good")
    assert json.loads(files.meta.read_text())["meta"]["gan"]["resolution"] == 16


# --------------------------------------------------------------------------- inversion

def test_inversion_reduces_the_reconstruction_loss(G, renderer, embeddings):
    from gan.invert import invert
    from reid_core.model import Embedder

    torch.manual_seed(0)
    embedder = Embedder(backbone="resnet10t", embedding_dim=C_DIM, image_size=32).eval()
    target_renderer = CounterfactualRenderer(G, renderer.pca, z_seed=11, psi=1.0, n_avg=64)
    target = target_renderer.render(embeddings[9])  # reachable by G: a different z, same condition
    res = invert(G, embedder, target, steps=50, lr=0.1, c=embeddings[9], n_avg=64)
    assert res.ws.shape == (1, G.num_ws, G.w_dim) and res.c.shape == (1, C_DIM)
    assert res.image.shape == (16, 16) and res.target.shape == (16, 16)
    assert set(res.losses) == {"total", "pixel", "feature"} and len(res.losses["total"]) == 50
    first, last = res.losses["pixel"][:3].mean(), res.losses["pixel"][-3:].mean()
    assert last < 0.5 * first, (first, last)
    assert res.losses["total"][-3:].mean() < 0.6 * res.losses["total"][:3].mean()
    assert all(p.requires_grad for p in embedder.parameters()) and not embedder.training  # flags restored
    res_c = invert(G, embedder, target, steps=3, space="w", optimize_noise=True, n_avg=16)
    assert res_c.c.shape == (1, C_DIM) and res_c.noise is not None and len(res_c.noise) == 5
    assert torch.equal(res_c.ws[:, 0], res_c.ws[:, -1])  # W: one w shared by every layer
