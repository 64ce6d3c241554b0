"""Counterfactuals of an autoencoder-trained generator: encoded subjects, swaps, figures, judging, the page."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import reid_core  # noqa: F401  (before timm)
from gan.cae.config import CaeArch, CaeTrainConfig
from gan.cae.evaluate import HeldOut, Judge, c2st_auc, evaluate_cae, kid, precision_recall, top1_patients
from gan.cae.io import load_encoder
from gan.cae.train import train_cae
from gan.counterfactual import CounterfactualRenderer
from gan.io import load_generator
from gan.pca import IdentityPCA
from reid_core.checkpoint import load_embedder, save_embedder
from reid_core.cli import main as cli_main
from reid_core.data.manifest import load_manifest
from reid_core.embed import EmbeddingTable, embed_workspace
from reid_core.model import Embedder
from reid_core.prepare import prepare_workspace
from gan import views as cf
from reid_core.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
ARCH = CaeArch(n_dim=4, w_dim=32, g_channel_base=256, g_channel_max=32, e_channel_base=128, e_channel_max=32,
               d_channel_base=128, d_channel_max=32)


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    """A 10-patient phantom at 32 px, an untrained 8-d embedder, and a 2-step autoencoder at 16 px."""
    ws = Workspace(tmp_path_factory.mktemp("cae_cf") / "ws")
    prepare_workspace(ws, "phantom", size=32, workers=1, progress=False, patients=10, seed=0)
    torch.manual_seed(0)
    save_embedder(ws.embedder_dir, Embedder(backbone="resnet10t", embedding_dim=8, image_size=32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        embed_workspace(ws, progress=False)
    cfg = CaeTrainConfig(res=16, batch=4, kimg=0.008, tick_kimg=0.004, snapshot_kimg=0.008, splits="all",
                         adv_weight=0.0, grid_rows=2, device="cpu", arch=ARCH)
    train_cae(ws, cfg, progress=False)
    return ws


def films(ws: Workspace, n: int = 4) -> tuple[list[str], np.ndarray]:
    m = load_manifest(ws.manifest_path)
    store = np.load(ws.images_path(32), mmap_mode="r")
    return m["image_id"].tolist()[:n], np.asarray(store[m["cache_row"].to_numpy()[:n]])


def test_encoded_subject_reconstructs_at_alpha_zero_and_moves_with_alpha(ws):
    G, (E, emb) = load_generator(ws.gan_dir), (load_encoder(ws.gan_dir), load_embedder(ws.embedder_dir))
    table = EmbeddingTable.load(ws.embeddings_path)
    pca = IdentityPCA.fit(table.embeddings, 4)
    ids, imgs = films(ws)
    c0 = table.embeddings[table.rows_for(ids[:1])][0]
    enc = cf.encode_image(G, E, emb, imgs[0], c0=c0, label="film")
    assert enc.subject.encoded and enc.subject.z.shape == (4,) and enc.reconstruction.shape == (16, 16)
    r = CounterfactualRenderer(G, pca, psi=1.0)
    base = enc.subject.render(r, None)
    assert np.array_equal(base, enc.reconstruction)  # α = 0 is the reconstruction, bit for bit
    assert np.array_equal(base, enc.subject.render(r, {0: 0.0}))
    moved = enc.subject.render(r, {0: 2.0})
    assert not np.array_equal(moved, base)
    other = table.embeddings[table.rows_for(ids[3:4])][0]
    swapped = enc.subject.with_identity(other, "other")
    assert np.array_equal(swapped.z, enc.subject.z) and not np.array_equal(swapped.render(r), base)
    # the embedder's own c0 when none is given
    enc2 = cf.encode_image(G, E, emb, imgs[0])
    assert enc2.subject.c0.shape == (8,) and np.isfinite(enc2.reconstruction).all()
    with pytest.raises(ValueError, match="not both"):
        cf.Subject(c0=c0, ws=np.zeros((1, 2, 3), np.float32), z=enc.subject.z)
    with pytest.raises(ValueError, match="encoded"):
        cf.Subject(c0=c0).with_identity(other, "x")


def test_figures_command_writes_grids_diffs_gifs_and_swaps(ws, tmp_path, capsys):
    ids, _ = films(ws)
    out = tmp_path / "figs"
    rc = cli_main(["counterfactuals", "--workspace", str(ws.root), "--images", ids[0], "--swap-with", ids[3],
                   "--pcs", "2", "--alphas=-2,0,2", "--out", str(out), "--scale", "2"])
    assert rc == 0
    names = sorted(p.name for p in out.iterdir())
    stem = ids[0]
    assert names == sorted([f"{stem}_grid.png", f"{stem}_diff.png", f"{stem}_pc1.gif", f"{stem}_pc2.gif",
                            f"{stem}_swap_{ids[3]}.png"])
    grid = np.asarray(Image.open(out / f"{stem}_grid.png"))
    assert grid.shape == (2 * (2 * 16 + 1), 2 * (3 * 16 + 2))  # 2 PCs × 3 α, 1 px gaps, ×2
    assert Image.open(out / f"{stem}_pc1.gif").n_frames == 24
    assert cli_main(["counterfactuals", "--workspace", str(ws.root), "--images", ids[0], "--alphas", "1,2",
                     "--out", str(out)]) == 2
    assert "must include 0" in capsys.readouterr().err
    assert cli_main(["counterfactuals", "--workspace", str(ws.root), "--images", "nope", "--out", str(out)]) == 2


# --------------------------------------------------------------------------- judging

def held_out_films(ws: Workspace, min_films: int = 1) -> HeldOut:
    """Every film of the fixture workspace (of patients with ``min_films`` or more) at the generator's 16 px."""
    m = load_manifest(ws.manifest_path)
    m = m[m["patient_id"].map(m["patient_id"].value_counts()) >= min_films]
    table = EmbeddingTable.load(ws.embeddings_path)
    store = np.load(ws.images_path(32), mmap_mode="r")
    imgs = np.asarray(store[m["cache_row"].to_numpy()], np.float32) / 255.0
    small = torch.nn.functional.interpolate(torch.from_numpy(imgs)[:, None], size=16, mode="bilinear",
                                            antialias=True)[:, 0].numpy()
    return HeldOut(small, m["patient_id"].to_numpy(), table.embeddings[table.rows_for(m["image_id"])],
                   m["image_id"].to_numpy())


def test_top1_and_realism_statistics_against_brute_force():
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=(7, 5)), rng.normal(size=(9, 5))
    pats = np.array(list("aabbbccdd"))
    excl = [[i % 9] for i in range(7)]
    got = top1_patients(q, g, pats, excl)
    for i in range(7):
        sims = [(q[i] @ g[j]) / np.linalg.norm(q[i]) / np.linalg.norm(g[j]) if j not in excl[i] else -9
                for j in range(9)]
        assert got[i] == pats[int(np.argmax(sims))]
    a, b = rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
    far = rng.normal(size=(300, 8)) + 3.0
    assert abs(kid(a, b, subsets=20, subset_size=100)) < 0.05 * kid(a, far, subsets=20, subset_size=100)
    assert 0.35 < c2st_auc(a, b) < 0.65 and c2st_auc(a, far) > 0.99
    # two real sets of different people: grouped folds cannot win by recognising the people of the training folds
    people = rng.normal(size=(30, 8)) * 3
    films = np.repeat(people, 10, axis=0) + rng.normal(size=(300, 8)) * 0.3
    who = np.repeat(np.arange(30), 10)
    first, second = who < 15, who >= 15
    grouped = c2st_auc(films[first], films[second], who[first], who[second])
    assert grouped < 0.75
    assert precision_recall(a, a) == (1.0, 1.0)
    p, r = precision_recall(a, far)
    assert p < 0.2 and r < 0.2


def test_evaluate_cae_reports_every_judge_and_realism(ws):
    G, E = load_generator(ws.gan_dir), load_encoder(ws.gan_dir)
    data = held_out_films(ws, min_films=2)
    small = held_out_films(ws).images
    judge = Judge("j", load_embedder(ws.embedder_dir))
    out = evaluate_cae(G, E, [judge, Judge("k", load_embedder(ws.embedder_dir))], data, small[:10])
    assert set(out["judges"]) == {"j", "k"}
    figs = out["judges"]["j"]
    assert set(figs) == {"real_top1", "reconstruction_top1", "swap_top1_to_B", "swap_top1_to_A",
                         "sampled_nuisance_top1"}
    assert all(0.0 <= v <= 1.0 for v in figs.values())
    emb = judge.embed(data.images)[0]
    own = top1_patients(emb, emb, data.patients, [[i] for i in range(len(emb))])
    assert figs["real_top1"] == pytest.approx(float((own == data.patients).mean()))
    assert out["realism"]["n_per_set"] == 10 and "c2st_auc" in out["realism"]["generated"]
    assert out["reconstruction"]["psnr_db"] > 0


# --------------------------------------------------------------------------- the page

def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_page_encodes_films_swaps_identities_and_encodes_uploads(ws):
    pytest.importorskip("streamlit.testing.v1")
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["workspace"] = str(ws.root)
    at.run()
    at.switch_page("pages/7_counterfactuals.py").run()
    assert not at.exception, [e.value for e in at.exception]
    shown = {cap: url for el in at.get("image") for cap, url in zip(el.captions, el.value)}
    assert "reconstruction (all α = 0)" in shown and "with the other identity" in shown
    assert not [n for n in at.number_input if n.key == "cf_seed"]  # no latent seed for an encoded film
    before = shown["counterfactual"]
    at.slider(key="cf_pc0").set_value(2.0).run()
    after = {cap: url for el in at.get("image") for cap, url in zip(el.captions, el.value)}
    assert after["counterfactual"] != before
    swap_before = after["with the other identity"]
    at.selectbox(key="cf_swap").set_value(at.selectbox(key="cf_swap").options[-1]).run()
    swapped = {cap: url for el in at.get("image") for cap, url in zip(el.captions, el.value)}
    assert swapped["with the other identity"] != swap_before
    _, imgs = films(ws, 1)
    at.radio(key="cf_source").set_value("upload").run()
    at.file_uploader(key="cf_upload").set_value(("bad.png", b"not an image", "image/png")).run()
    assert not at.exception and "Cannot use this upload" in "\n".join(str(e.value) for e in at.get("error"))
    big = np.asarray(Image.fromarray(imgs[0]).resize((96, 96), Image.BILINEAR))
    at.file_uploader(key="cf_upload").set_value(("film.png", _png(big), "image/png")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert "encoded and reconstructed in" in "\n".join(str(e.value) for e in at.get("caption")), [
        str(e.value) for k in ("error", "warning", "info") for e in at.get(k)]
    shown = {cap: url for el in at.get("image") for cap, url in zip(el.captions, el.value)}
    assert "reconstruction (all α = 0)" in shown and "with the other identity" in shown


def test_ship_writes_a_verified_pair_with_a_card_and_the_demo_installs_it(ws, tmp_path):
    from gan.cae.ship import ship_generator
    from gan.metrics import write_metrics
    from reid_core.demo import _install_generator
    from reid_core.errors import WorkspaceError

    with pytest.raises(WorkspaceError, match="cae-evaluate"):
        ship_generator(ws.root, tmp_path / "nope")
    figs = {"real_top1": 0.99, "reconstruction_top1": 0.97, "swap_top1_to_B": 0.93, "swap_top1_to_A": 0.02,
            "sampled_nuisance_top1": 0.95}
    metrics = {"n_patients": 100, "n_films": 380, "split": "test", "resolution": 16, "judge_backbone": "resnet14t",
               "judges": {"conditioning embedder": figs, "independent judge": dict(figs, swap_top1_to_B=0.91)},
               "reconstruction": {"psnr_db": 25.0, "ssim": 0.8},
               "realism": {"judge": "independent judge", "n_per_set": 380, "generated_set": "swaps",
                           "generated": {"kid_x1000": 3.0, "precision": 0.7, "recall": 0.6, "c2st_auc": 0.75},
                           "real_baseline": {"kid_x1000": 0.1, "precision": 0.9, "recall": 0.9, "c2st_auc": 0.52}},
               "pc_meaning": {"agree": 4, "table": [{"PC": 1, "variance %": 20.0,
                                                     "correlates most with (real films)": "id_ctr", "R²": 0.4,
                                                     "sweep moves most": "id_ctr", "slope (SD per σ)": 0.3,
                                                     "agree": True}]}}
    write_metrics(ws.gan_dir, {"autoencoder": metrics})
    out = ship_generator(ws.root, tmp_path / "ship", notes="pilot: see BENCHMARKS.md")
    card = (out / "MODEL_CARD.md").read_text()
    assert "| identity swap: recognised as the new identity | ≥ 0.90 | 0.930 | 0.910 |" in card
    assert "| 1 | 20.0 | id_ctr | 0.4 | id_ctr | 0.3 | yes |" in card and "pilot: see BENCHMARKS.md" in card
    assert "stage-feature distance" in card  # the objective names every loss it was trained with
    target = tmp_path / "demo_gan"
    assert _install_generator(out, target) is True
    assert _install_generator(out, target) is False  # up to date: nothing copied
    assert load_encoder(target).cfg.n_dim == 4 and load_generator(target).z_dim == 4
    quality = cf.quality_table(Workspace(tmp_path / "q"))
    assert quality is None
    ws_q = Workspace(tmp_path / "q2")
    (ws_q.gan_dir).mkdir(parents=True)
    (ws_q.gan_dir / "metrics.json").write_bytes((out / "metrics.json").read_bytes())
    q = cf.quality_table(ws_q)
    assert list(q.table.columns) == ["figure (top-1 among held-out patients)", "goal", "conditioning embedder",
                                     "independent judge"]
    assert "100 held-out patients" in q.note and "C2ST AUC 0.75" in q.note


def test_pc_meaning_table_compares_real_correlation_with_the_sweep(ws):
    from gan.cae.evaluate import pc_meaning_agreement

    G, E = load_generator(ws.gan_dir), load_encoder(ws.gan_dir)
    data = held_out_films(ws)
    table = EmbeddingTable.load(ws.embeddings_path)
    factors = cf.workspace_factors(ws, load_manifest(ws.manifest_path)).table
    pca = IdentityPCA.fit(table.embeddings, 4)
    judge = Judge("j", load_embedder(ws.embedder_dir))
    tab = pc_meaning_agreement(G, E, judge, pca, data, factors, n_pcs=2, n_films=4, min_cv_r2=-np.inf)
    assert list(tab["PC"]) == [1, 2]
    assert set(tab["correlates most with (real films)"]) | set(tab["sweep moves most"]) <= set(factors.columns)
    assert (tab["agree"] == (tab["correlates most with (real films)"] == tab["sweep moves most"])).all()
    with pytest.raises(ValueError, match="readable"):
        pc_meaning_agreement(G, E, judge, pca, data, factors, n_pcs=1, n_films=2, min_cv_r2=2.0)
