"""The config contract, checked for every TypedConfig class, and every shipped record read through it.

Each class must: round-trip through JSON, refuse an unknown key naming the valid
ones, refuse a wrongly typed value (from a dict and at construction), apply a
dotted ``key=value`` override, and read itself from a checkpoint record when it
declares where records keep it.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

import reid_core  # noqa: F401  (before timm)
from gan.cae.config import CaeArch, CaeTrainConfig
from gan.cae.encoder import EncoderConfig
from gan.config import GanArchOverrides, GanConfig
from gan.train_config import GanTrainConfig
from reid_core.checkpoint import load_state
from reid_core.errors import ConfigError
from reid_core.model import EmbedderConfig
from reid_core.train.config import AugmentConfig, LossParams, TrainConfig
from reid_core.train.loss_kinds import (ContrastiveXbmParams, CosFaceParams, MultiSimilarityParams,
                                       ProxyAnchorParams, TripletParams)
from reid_core.typed_config import TypedConfig

REPO = Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class Case:
    example: TypedConfig  # a non-default instance
    override: str  # a dotted (where the class nests) key=value
    path: str  # attribute path the override reaches
    expected: Any  # its value afterwards
    bad: dict[str, Any]  # one wrongly typed field


CASES = [
    Case(EmbedderConfig(backbone="resnet18", embedding_dim=8, pooling="attention", head_hidden=32,
                        backbone_kwargs={"stem_width": 24}),
         "backbone_kwargs.img_size=256", "backbone_kwargs", {"stem_width": 24, "img_size": 256},
         {"embedding_dim": "8"}),
    Case(AugmentConfig(degrees=0.0, hflip=True), "degrees=2", "degrees", 2.0, {"hflip": "yes"}),
    Case(LossParams(ms_alpha=1.5), "xbm_memory_size=64", "xbm_memory_size", 64, {"ms_alpha": "two"}),
    Case(TrainConfig(model=EmbedderConfig(embedding_dim=16), loss="multi_similarity", max_steps=7,
                     augment=AugmentConfig(enabled=False)),
         "model.backbone_kwargs.img_size=256", "model.backbone_kwargs", {"img_size": 256}, {"epochs": 1.5}),
    Case(GanConfig.preset("tiny", c_dim=4, conv_clamp=256), "conv_clamp=null", "conv_clamp", None,
         {"fir": "1,3,3,1"}),
    Case(GanArchOverrides(w_dim=64, fir=(1.0, 2.0, 1.0)), "fir=[1, 3, 3, 1]", "fir", (1.0, 3.0, 3.0, 1.0),
         {"w_dim": 64.5}),
    Case(GanTrainConfig(preset="tiny", betas=(0.0, 0.9), arch=GanArchOverrides(mbstd_group_size=2)),
         "arch.conv_clamp=256", "arch.conv_clamp", 256.0, {"betas": [0.1]}),
    Case(CaeArch(n_dim=4), "n_dim=8", "n_dim", 8, {"n_dim": "8"}),
    Case(CaeTrainConfig(res=32, betas=(0.5, 0.9), arch=CaeArch(w_dim=64)), "arch.n_dim=8", "arch.n_dim", 8,
         {"lr": "fast"}),
    Case(EncoderConfig(16, 4), "n_dim=8", "n_dim", 8, {"n_dim": True}),
    Case(TripletParams(margin=0.2), "miner=hard", "miner", "hard", {"margin": "wide"}),
    Case(MultiSimilarityParams(alpha=1.0), "epsilon=0.2", "epsilon", 0.2, {"beta": None}),
    Case(ContrastiveXbmParams(memory_size=64), "neg_margin=1", "neg_margin", 1.0, {"memory_size": 6.4}),
    Case(ProxyAnchorParams(alpha=16.0), "margin=0.2", "margin", 0.2, {"alpha": "big"}),
    Case(CosFaceParams(scale=16.0), "proxy_lr_mult=1", "proxy_lr_mult", 1.0, {"margin": [0.2]}),
]
IDS = [type(c.example).__name__ for c in CASES]


def _all_subclasses(cls: type) -> set[type]:
    out = set()
    for sub in cls.__subclasses__():
        out |= {sub} | _all_subclasses(sub)
    return out


def _get(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def test_every_config_class_has_a_contract_case():
    classes = {c for c in _all_subclasses(TypedConfig) if c.__module__.split(".")[0] in ("reid_core", "gan")}
    assert classes == {type(c.example) for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_json_round_trip(case):
    cls = type(case.example)
    data = json.loads(json.dumps(case.example.to_dict()))
    assert cls.from_dict(data) == case.example and cls.from_dict(data).to_dict() == data
    assert case.example != cls.from_dict({**data, **_one_changed(case)})  # the round trip is not vacuous


def _one_changed(case: Case) -> dict[str, Any]:
    changed = case.example.with_overrides([case.override]).to_dict()
    return {k: v for k, v in changed.items() if v != case.example.to_dict()[k]}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_unknown_key_is_refused_naming_the_valid_ones(case):
    cls = type(case.example)
    with pytest.raises(ConfigError, match=rf"unknown {cls.__name__} key.*'no_such_key'.*valid keys") as err:
        cls.from_dict({**case.example.to_dict(), "no_such_key": 1})
    assert all(f"'{name}'" in str(err.value) for name in cls.field_names())
    parent = case.path.rpartition(".")[0]
    key = f"{parent}.no_such_key" if parent else "no_such_key"
    with pytest.raises(ConfigError, match=rf"unknown key '{key}'; valid keys here"):
        case.example.with_overrides([f"{key}=1"])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_wrongly_typed_value_is_refused_from_data_and_at_construction(case):
    cls = type(case.example)
    (name, value), = case.bad.items()
    with pytest.raises(ConfigError, match=rf"^{name}\b"):
        cls.from_dict({**case.example.to_dict(), name: value})
    fields = {f.name: getattr(case.example, f.name) for f in dataclasses.fields(cls)}
    with pytest.raises(ConfigError, match=rf"^{name}\b"):
        cls(**{**fields, name: value})


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_dotted_override_is_applied_and_type_checked(case):
    moved = case.example.with_overrides([case.override])
    assert _get(moved, case.path) == case.expected and type(moved) is type(case.example)
    assert _get(case.example, case.path) != case.expected  # the original is untouched
    (name, value), = case.bad.items()
    with pytest.raises(ConfigError, match=rf"^{name}\b"):
        case.example.with_overrides([f"{name}={json.dumps(value)}"])


@pytest.mark.parametrize("case", [c for c in CASES if type(c.example).RECORD_KEYS], ids=lambda c: type(c.example).__name__)
def test_reads_itself_from_a_checkpoint_record_file(case, tmp_path):
    cls = type(case.example)
    meta: dict[str, Any] = {"kind": "test"}
    node = meta
    *parents, leaf = cls.RECORD_KEYS[0].split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = case.example.to_dict()
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"format": "cxr-reid-checkpoint", "format_version": 1, "meta": meta}))
    assert cls.from_file(path) == case.example
    path.write_text(json.dumps({"format": "cxr-reid-checkpoint", "meta": {"kind": "test"}}))
    with pytest.raises(ConfigError, match=rf"holds no {cls.__name__}"):
        cls.from_file(path)
    path.write_text(json.dumps(case.example.to_dict()))  # a file holding the config itself
    assert cls.from_file(path) == case.example


# --------------------------------------------------------------------------- files written before this code

RECORDS = sorted(p for p in (REPO / "checkpoints").rglob("*.json")
                 if json.loads(p.read_text()).get("format") == "cxr-reid-checkpoint")
assert len(RECORDS) >= 4, RECORDS  # embedder, judge, generator, encoder
RECORD_CLASSES = [type(c.example) for c in CASES if type(c.example).RECORD_KEYS]


def _claims(cls: type[TypedConfig], meta: dict[str, Any]) -> bool:
    for key in cls.RECORD_KEYS:
        node: Any = meta
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            return True
    return False


@pytest.mark.parametrize("record", RECORDS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_checkpoint_record_loads(record):
    meta = json.loads(record.read_text())["meta"]
    trainer = CaeTrainConfig if meta.get("objective") == "autoencoder" else GanTrainConfig
    expected = {"embedder": {EmbedderConfig, TrainConfig}, "nuisance_encoder": {EncoderConfig},
                "gan_generator": {GanConfig, trainer}}[meta["kind"]]
    claimed = {cls for cls in RECORD_CLASSES if _claims(cls, meta)}
    assert expected <= claimed  # meta.train is claimed by both trainers' configs; the objective picks one
    for cls in expected:
        assert isinstance(cls.from_file(record), cls)


def test_the_carried_resume_state_config_loads():
    state = load_state(REPO / "training" / "gan_resume", "state")
    cfg = CaeTrainConfig.from_dict(state["config"])  # written before feat_* existed: they take defaults
    assert cfg.res == 64 and cfg.arch.n_dim == 16
    assert {k: v for k, v in cfg.to_dict().items() if k in state["config"]} == state["config"]


def test_nested_errors_name_the_full_path_and_overrides_parse_by_field_type():
    with pytest.raises(ConfigError, match=r"^augment\.degrees must be of type float"):
        TrainConfig.from_dict({"augment": {"degrees": "5"}})
    with pytest.raises(ConfigError, match=r"^model\.embedding_dim must be an integer in 4\.\.128"):
        TrainConfig.from_dict({"model": {"embedding_dim": 1000}})
    with pytest.raises(ConfigError, match=r"'model\.backbone_kwargs' is a dict of free keys"):
        TrainConfig().with_overrides(["model.backbone_kwargs.a.b=1"])
    with pytest.raises(ConfigError, match=r"'lr' is not a nested config; nested configs here: \['model'"):
        TrainConfig().with_overrides(["lr.x=1"])
    cfg = GanTrainConfig().with_overrides(["preset=64", "r1_gamma=null", "kimg=10"])
    assert (cfg.preset, cfg.r1_gamma, cfg.kimg) == ("64", None, 10.0)  # a str field keeps the text; ints → floats
    assert TrainConfig().with_overrides(['init_weights="w.safetensors"']).init_weights == "w.safetensors"
    assert GanTrainConfig.from_dict({"preset": 64}).preset == "64"  # a hand-written JSON number names the preset
    with pytest.raises(ConfigError, match=r"GanConfig needs key\(s\) \['resolution', 'c_dim'\]"):
        GanConfig.from_dict({"z_dim": 8})
    with pytest.raises(ConfigError, match=r"^arch\.w_dim must be of type int"):
        GanTrainConfig.from_dict({"arch": {"w_dim": "wide"}})
