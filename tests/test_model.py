"""Embedder: config, shapes, pooling, input checks, channels_last, initial weights from safetensors."""
from __future__ import annotations

import copy
import logging

import pytest
import torch

import reid_core  # noqa: F401  (before timm)
import timm
from safetensors.torch import save_file

from reid_core.errors import CheckpointError, CxrReidError
from reid_core.model import INPUT_MEAN, INPUT_STD, Embedder, EmbedderConfig, load_init_weights

SMALL = "resnet10t"  # 4.9 M params, 512 features; a 64 px input gives a 2×2 feature grid


@pytest.fixture(scope="module")
def small() -> Embedder:
    torch.manual_seed(0)
    return Embedder(backbone=SMALL, embedding_dim=32).eval()


@pytest.fixture(scope="module")
def small_attn() -> Embedder:
    torch.manual_seed(0)
    model = Embedder(backbone=SMALL, embedding_dim=16, pooling="attention").eval()
    torch.nn.init.normal_(model.pool.score.weight, std=0.5)  # non-uniform attention
    return model


def images(b: int = 2, c: int = 1, size: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, size, size, generator=g)


# --------------------------------------------------------------------------- config

def test_default_is_efficientnet_b3_with_1536_features_one_channel():
    cfg = EmbedderConfig()
    assert (cfg.backbone, cfg.embedding_dim, cfg.in_chans, cfg.pooling, cfg.normalize) == (
        "efficientnet_b3", 64, 1, "avg", True)
    model = Embedder().eval()
    assert model.config == cfg and model.num_features == 1536
    assert model.backbone.conv_stem.weight.shape[1] == 1
    z = model.embed(images(b=2, size=32))
    assert z.shape == (2, 64)


def test_config_round_trips_and_rejects_unknown_keys():
    cfg = EmbedderConfig(backbone=SMALL, embedding_dim=8, pooling="attention", head_hidden=32, dropout=0.1,
                         backbone_kwargs={"stem_width": 24})
    assert EmbedderConfig.from_dict(cfg.to_dict()) == cfg
    assert EmbedderConfig.from_dict({"embedding_dim": 16}).backbone == "efficientnet_b3"
    with pytest.raises(ValueError, match="unknown EmbedderConfig key.*embeding_dim"):
        EmbedderConfig.from_dict({"embeding_dim": 16})


@pytest.mark.parametrize("kwargs", [
    {"embedding_dim": 3}, {"embedding_dim": 129}, {"embedding_dim": 32.0}, {"embedding_dim": True},
    {"pooling": "max"}, {"in_chans": 0}, {"dropout": 1.0}, {"head_hidden": 0}, {"drop_path_rate": -0.1},
    {"backbone_kwargs": {"in_chans": 3}},
])
def test_invalid_config_raises(kwargs):
    with pytest.raises(ValueError):
        EmbedderConfig(**kwargs)


@pytest.mark.parametrize("dim", [4, 128])
def test_embedding_dim_bounds_are_inclusive(dim):
    assert EmbedderConfig(embedding_dim=dim).embedding_dim == dim


def test_unknown_backbone_raises_with_hint():
    with pytest.raises(ValueError, match=r"resnet10x.*timm\.list_models"):
        Embedder(backbone="resnet10x")


# --------------------------------------------------------------------------- forward

def test_output_shape_and_unit_norm(small):
    z = small(images(b=3))
    assert z.shape == (3, 32) and z.dtype == torch.float32
    torch.testing.assert_close(z.norm(dim=1), torch.ones(3))


def test_unnormalised_head_with_hidden_layer():
    torch.manual_seed(0)
    model = Embedder(backbone=SMALL, embedding_dim=8, normalize=False, head_hidden=16, dropout=0.2).eval()
    z = model(images())
    assert z.shape == (2, 8)
    assert not torch.allclose(z.norm(dim=1), torch.ones(2))


def test_attention_map_shape_and_sums_to_one(small_attn):
    z, att = small_attn(images(b=2, size=96), return_attention=True)
    assert z.shape == (2, 16)
    assert att.shape == (2, 3, 3)  # resnet stride 32
    torch.testing.assert_close(att.sum(dim=(1, 2)), torch.ones(2))
    assert (att > 0).all() and att.std() > 1e-3  # learned, not uniform


def test_avg_pooling_reports_uniform_attention(small):
    _, att = small(images(), return_attention=True)
    assert att.shape == (2, 2, 2)
    torch.testing.assert_close(att, torch.full_like(att, 0.25))


def test_untrained_attention_pooling_equals_average_pooling(small):
    attn = Embedder(backbone=SMALL, embedding_dim=32, pooling="attention").eval()
    missing, unexpected = attn.load_state_dict(small.state_dict(), strict=False)
    assert set(missing) == {"pool.score.weight", "pool.score.bias"} and not unexpected
    torch.testing.assert_close(attn(images()), small(images()))


def test_embed_and_features_are_inference_only(small):
    small.train()
    try:
        x = images()
        z = small.embed(x)
        f = small.features(x)
        assert small.training  # mode restored
    finally:
        small.eval()
    assert not z.requires_grad and not f.requires_grad
    assert f.shape == (2, small.num_features)
    torch.testing.assert_close(z, small(x))


def test_input_is_standardised_internally(small):
    x = images()
    fmap = small.backbone.forward_features((x - INPUT_MEAN) / INPUT_STD)
    torch.testing.assert_close(small.features(x), fmap.mean(dim=(2, 3)))


@pytest.mark.parametrize("bad, match", [
    (torch.rand(64, 64), "4-D"),
    (torch.rand(2, 64, 64), "4-D"),
    (torch.rand(2, 3, 64, 64), "1 input channel"),
    ((torch.rand(2, 1, 64, 64) * 255).to(torch.uint8), "float"),
])
def test_bad_inputs_raise_clear_value_errors(small, bad, match):
    with pytest.raises(ValueError, match=match):
        small(bad)


def test_channels_last_matches_contiguous(small):
    x = images(b=2)
    ref = small(x)
    cl = copy.deepcopy(small).to_channels_last()
    assert cl.backbone.conv1[0].weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(cl(x.contiguous(memory_format=torch.channels_last)), ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(cl(x), ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(small(x.contiguous(memory_format=torch.channels_last)), ref, rtol=1e-4, atol=1e-5)


def test_vit_token_backbone_is_folded_into_a_grid():
    torch.manual_seed(0)
    model = Embedder(backbone="vit_tiny_patch16_224", embedding_dim=8, pooling="attention",
                     backbone_kwargs={"img_size": 32}).eval()
    z, att = model(images(size=32), return_attention=True)
    assert z.shape == (2, 8) and att.shape == (2, 2, 2)


# --------------------------------------------------------------------------- initial weights

def test_rgb_init_weights_load_into_one_channel_model(tmp_path, small, caplog):
    torch.manual_seed(1)
    rgb = timm.create_model(SMALL, pretrained=False, in_chans=3, num_classes=5)  # an "ImageNet" file with fc
    sd = rgb.state_dict()
    assert "fc.weight" in sd
    path = tmp_path / "rgb.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))

    model = copy.deepcopy(small)
    with caplog.at_level(logging.INFO, logger="reid_core.model"):
        report = load_init_weights(model, path)
    torch.testing.assert_close(model.backbone.conv1[0].weight, sd["conv1.0.weight"].sum(dim=1, keepdim=True))
    torch.testing.assert_close(model.backbone.layer4[0].conv1.weight, sd["layer4.0.conv1.weight"])
    assert report.adapted == ["conv1.0.weight"]
    assert report.skipped_classifier == ["fc.bias", "fc.weight"]
    assert not report.missing and not report.unexpected
    assert "summed the RGB kernels" in caplog.text


def test_init_weights_report_prefixes_unexpected_and_mismatched(tmp_path, small):
    model = copy.deepcopy(small)
    sd = {f"module.backbone.{k}": v.clone() for k, v in model.backbone.state_dict().items()
          if not k.startswith("layer4")}
    sd["head.1.weight"] = torch.zeros(3, 3)
    save_file(sd, str(tmp_path / "partial.safetensors"))
    report = load_init_weights(model, tmp_path / "partial.safetensors")
    assert report.unexpected == ["head.1.weight"]
    assert report.missing and all(k.startswith("layer4") for k in report.missing)

    save_file({"conv1.3.weight": torch.zeros(7, 7, 3, 3)}, str(tmp_path / "wrong.safetensors"))
    with pytest.raises(CheckpointError, match="conv1.3.weight"):
        load_init_weights(model, tmp_path / "wrong.safetensors")
    save_file({"foo": torch.zeros(1)}, str(tmp_path / "none.safetensors"))
    with pytest.raises(CheckpointError, match="no tensor matches"):
        load_init_weights(model, tmp_path / "none.safetensors")
    (tmp_path / "garbage.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_init_weights(model, tmp_path / "garbage.safetensors")


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".bin"])
def test_pickle_weight_files_are_refused(tmp_path, small, monkeypatch, suffix):
    def boom(*a, **k):
        raise AssertionError("torch.load must never be called")

    monkeypatch.setattr(torch, "load", boom)
    path = tmp_path / f"weights{suffix}"
    path.write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(CheckpointError, match=r"(?s)only \.safetensors.*save_file") as info:
        load_init_weights(small, path)
    assert isinstance(info.value, CxrReidError)
    with pytest.raises(CheckpointError, match="not found"):
        load_init_weights(small, tmp_path / "absent.safetensors")
