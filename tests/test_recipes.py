"""Named recipes: each resolves to a valid TrainConfig, ``--recipe`` applies before ``--set``."""
from __future__ import annotations

import argparse

import pytest

import reid_core  # noqa: F401  (torchvision shim before timm)
from reid_core.errors import TrainingError
from reid_core.train import TrainConfig
from reid_core.train.cli import add_train_arguments, config_from_args
from reid_core.train.recipes import RECIPES, recipe_overrides


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_is_a_valid_config(name):
    config = TrainConfig().with_overrides(recipe_overrides(name))
    assert config != TrainConfig()


def _args(*argv: str) -> argparse.Namespace:
    return add_train_arguments(argparse.ArgumentParser()).parse_args(["--workspace", "ws", *argv])


def test_recipe_then_set_then_flags():
    config = config_from_args(_args("--recipe", "cpu-pairs", "--set", "lr=5e-4", "--max-steps", "7"))
    assert config.loss == "multi_similarity" and config.model.backbone == "resnet18" and config.image_size == 96
    assert config.lr == 5e-4 and config.max_steps == 7
    assert config_from_args(_args("--recipe", "gpu")).model.backbone == "efficientnet_b3"


def test_unknown_recipe_is_a_training_error():
    with pytest.raises(TrainingError, match="unknown recipe 'fast'.*cpu-pairs"):
        config_from_args(_args("--recipe", "fast"))
