"""Contract tests driven by the registries: every loss kind, pooling and index kind, whatever gets registered."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

import reid_core  # noqa: F401  (before timm)
from reid_core.index_kinds import INDEX_KINDS, IndexKind, get_index_kind
from reid_core.model import POOLINGS, EmbedderConfig, Pooling, make_pooling
from reid_core.retrieval import Index
from reid_core.shipping import _miner_name
from reid_core.train.config import TrainConfig
from reid_core.train.loss_kinds import LOSSES, LossKind, get_loss, register_loss
from reid_core.train.losses import build_objective
from reid_core.typed_config import TypedConfig

LABELS = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])


# --------------------------------------------------------------------------- losses

def test_the_registry_holds_the_losses_the_shipped_runs_used():
    assert {"triplet", "multi_similarity", "contrastive_xbm"} <= set(LOSSES)


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_kind_contract(name):
    kind = get_loss(name)
    assert issubclass(kind, LossKind) and kind.name == name
    assert issubclass(kind.Params, TypedConfig) and kind.Params.__dataclass_params__.frozen
    config = TrainConfig(loss=name, batch_size=8, m_per_patient=2, model=EmbedderConfig(embedding_dim=8))
    params = kind.params(config)
    assert isinstance(params, kind.Params)
    assert params == kind.Params()  # the Params defaults are the TrainConfig defaults: nothing moved
    assert kind.Params.from_dict(params.to_dict()) == params
    n_classes = int(LABELS.max()) + 1
    loss, miner = kind.build(params, 8, n_classes)
    assert isinstance(loss, torch.nn.Module) and (miner is None or isinstance(miner, torch.nn.Module))
    assert isinstance(kind.miner_name(params), str) and kind.miner_name(params)
    objective = build_objective(config, n_classes)
    assert type(objective.loss) is type(loss) and type(objective.miner) is type(miner)
    assert objective.lr_mult == kind.lr_mult(params) > 0
    z = torch.nn.functional.normalize(torch.randn(8, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    z.requires_grad_(True)
    value = objective(z, LABELS)
    value.backward()
    assert value.ndim == 0 and torch.isfinite(value) and z.grad is not None and torch.isfinite(z.grad).all()


@pytest.mark.parametrize("name", list(LOSSES))
def test_the_miner_option_reaches_only_the_kinds_that_take_it(name, caplog):
    kind = get_loss(name)
    base = TrainConfig(loss=name)
    moved = base.with_overrides(["miner=all"])
    takes_miner = "miner" in kind.Params.field_names()
    assert (kind.params(moved) != kind.params(base)) == takes_miner
    with caplog.at_level(logging.WARNING, logger="reid_core.train.losses"):
        build_objective(moved, 4)
    assert ("has no effect" in caplog.text) == (not takes_miner)  # no longer silently ignored
    assert _miner_name(moved.to_dict()) == kind.miner_name(kind.params(moved))  # the card asks the registry


def test_unknown_losses_are_refused_listing_the_registered_ones():
    with pytest.raises(ValueError, match=r"loss must be one of \[.*'contrastive_xbm'.*\], got 'arcface'"):
        TrainConfig(loss="arcface")
    with pytest.raises(ValueError, match="loss must be one of"):
        TrainConfig().with_overrides(["loss=arcface"])
    with pytest.raises(ValueError, match="registered twice"):
        register_loss(type("Again", (get_loss("triplet"),), {}))


# --------------------------------------------------------------------------- poolings

@pytest.mark.parametrize("name", list(POOLINGS))
def test_pooling_contract(name):
    pool = make_pooling(name, 6)
    assert isinstance(pool, Pooling)
    fmap = torch.randn(2, 6, 3, 4, generator=torch.Generator().manual_seed(1))
    pooled, weights = pool(fmap)
    assert pooled.shape == (2, 6) and weights.shape == (2, 3, 4)
    assert torch.allclose(weights.sum(dim=(1, 2)), torch.ones(2)) and (weights >= 0).all()
    assert torch.allclose(pooled, torch.einsum("bchw,bhw->bc", fmap, weights), atol=1e-6)  # a weighted sum
    assert EmbedderConfig(pooling=name).pooling == name


def test_unknown_poolings_are_refused_listing_the_registered_ones():
    with pytest.raises(ValueError, match=r"pooling must be one of \['avg', 'attention'.*got 'max'"):
        EmbedderConfig(pooling="max")
    with pytest.raises(ValueError, match="pooling must be one of"):
        make_pooling("max", 4)


# --------------------------------------------------------------------------- index kinds

@pytest.mark.parametrize("name", list(INDEX_KINDS))
def test_index_kind_contract(name, tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(8, 16))
    x = (centres[rng.integers(0, 8, 600)] + 0.05 * rng.normal(size=(600, 16))).astype(np.float32)
    ids = [f"img{i}" for i in range(600)]
    assert isinstance(get_index_kind(name), IndexKind) and get_index_kind(name).name == name
    index = Index.build(x, ids, kind=name)
    assert index.kind == name and len(index) == 600
    assert index.recall_at_k_vs_exact(x[:50], k=5) >= 0.9
    d, found = index.search(x[:3], k=1)
    assert list(found[:, 0]) == ids[:3] and np.allclose(d[:, 0], 0.0, atol=1e-3)
    path = index.save(tmp_path)
    kind = get_index_kind(name)
    assert kind.file_fits(path, 600, 16) and not kind.file_fits(path, 6000, 16)  # size bounds before reading
    loaded = Index.load(tmp_path)
    assert loaded.kind == name and np.array_equal(loaded.search(x[:20], k=5)[1], index.search(x[:20], k=5)[1])


def test_unknown_index_kinds_are_refused_listing_the_registered_ones():
    with pytest.raises(ValueError, match=r"unknown index kind 'lsh'; choose one of \('flat', 'ivf', 'hnsw'"):
        Index(16, kind="lsh")


# --------------------------------------------------------------------------- phantom marks
def _patient_with_mark(kind: str):
    from reid_core.data.phantom import PhantomGenerator

    gen = PhantomGenerator(seed=0)
    for i in range(200):
        anat = gen.patient(i)
        marks = [m for m in anat.marks if m.kind == kind]
        if marks:
            return anat, marks[0]
    raise AssertionError(f"no {kind} among 200 phantom patients")


@pytest.mark.parametrize("kind", ["granuloma", "rib_fracture", "sternotomy", "clips", "pacemaker"])
def test_every_phantom_mark_kind_is_sampled_and_drawn_through_its_registry(kind):
    from reid_core.data.phantom.anatomy import MARK_KINDS, MARK_SAMPLERS
    from reid_core.data.phantom.devices import MARK_DRAWERS, draw_marks
    from reid_core.data.phantom.raster import Grid
    from reid_core.data.phantom.thorax import Thorax

    assert set(MARK_SAMPLERS) == set(MARK_DRAWERS) == set(MARK_KINDS) and kind in MARK_KINDS
    anat, mark = _patient_with_mark(kind)
    layers = draw_marks(Grid(96, 1.2), Thorax(anat), (mark,))
    drawn = {name: float(np.abs(getattr(layers, name)).sum()) for name in ("metal", "bone", "inner")}
    assert sum(drawn.values()) > 0, drawn  # the mark adds attenuation to at least one layer


# --------------------------------------------------------------------------- phantom findings
@pytest.mark.parametrize("kind", ["cardiomegaly", "effusion", "consolidation", "nodule", "mass", "pneumothorax",
                                  "atelectasis"])
def test_every_phantom_finding_kind_changes_the_layers_through_its_registry(kind):
    from reid_core.data.phantom import FINDING_KINDS, PhantomGenerator
    from reid_core.data.phantom.findings import FINDING_DRAWERS, FindingEffects, finding_effects
    from reid_core.data.phantom.raster import Grid
    from reid_core.data.phantom.thorax import Thorax

    assert set(FINDING_DRAWERS) == set(FINDING_KINDS)
    gen = PhantomGenerator(seed=0)
    found = next(((gen.patient(i), f) for i in range(300) for s in gen.studies(i) for f in s.findings
                  if f.kind == kind), None)
    assert found is not None, f"no {kind} among 300 phantom patients"
    anat, state = found
    fx = finding_effects(Grid(96, 1.2), Thorax(anat), (state,), np.ones((96, 96), np.float32))
    untouched = FindingEffects()
    changed = fx.heart_scale != untouched.heart_scale or any(
        getattr(fx, name) is not None and np.any(getattr(fx, name) != (1.0 if name == "vessel_mask" else 0.0))
        for name in ("opacity", "add", "air_gain", "vessel_mask"))
    assert changed


@pytest.mark.parametrize("name", list(LOSSES))
def test_proxy_losses_train_their_proxies_at_their_own_rate(name):
    from reid_core.train.optim import build_optimizer

    config = TrainConfig(loss=name, batch_size=8, m_per_patient=2, model=EmbedderConfig(embedding_dim=8))
    objective = build_objective(config, 4)
    model = torch.nn.Linear(8, 8)
    opt = build_optimizer(model, 1e-3, 0.05, objective.parameters(), objective.lr_mult)
    proxy = name in ("proxy_anchor", "cosface")
    assert bool(objective.parameters()) == proxy and (objective.state() is not None) == (proxy or "xbm" in name)
    if proxy:
        assert len(opt.param_groups) == 3 and opt.param_groups[2]["lr"] == pytest.approx(1e-3 * objective.lr_mult)
        before = objective.parameters()[0].detach().clone()
        objective(torch.nn.functional.normalize(model(torch.randn(8, 8)), dim=1), LABELS).backward()
        opt.step()
        assert not torch.equal(before, objective.parameters()[0])
        with pytest.raises(ValueError, match="number of training patients"):
            build_objective(config, 1)
    else:
        assert len(opt.param_groups) == 2
