"""Training config: the paper's defaults, recipe files, flag precedence, clear errors."""

import argparse
import dataclasses
import math
import re
from pathlib import Path

import pytest
import yaml

from alexnet.cli import build_parser
from alexnet.train.config import (
    EMBEDDED_DEFAULT,
    TrainConfig,
    add_config_arguments,
    flag_overrides,
    load_recipe,
    make_config,
    resolve_config,
)

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "alexnet" / "configs"


def _flags(*argv: str) -> dict:
    return flag_overrides(build_parser("train").parse_args(["train", *argv]))


def test_defaults_are_the_papers_recipe():
    # reference section 3 (paper section 5)
    c = TrainConfig()
    assert (c.batch_size, c.momentum, c.weight_decay, c.lr) == (128, 0.9, 5e-4, 0.01)
    assert (c.schedule, c.lr_factor, c.max_drops, c.epochs) == ("plateau", 0.1, 3, 90)
    assert c.model == "alexnet" and c.image_size == 256 and c.pca_std == 0.1 and c.flip


def test_paper_yaml_states_the_defaults():
    recipe = load_recipe(CONFIGS / "paper.yaml")
    defaults = dataclasses.asdict(TrainConfig())
    for key, value in recipe.items():
        if key not in ("data", "model_options"):
            assert (
                math.isclose(value, defaults[key])
                if isinstance(value, float)
                else (value == defaults[key])
            ), key
    assert recipe["model_options"]["init"] == "paper"
    with pytest.raises(ValueError, match="pass --data"):
        resolve_config(str(CONFIGS / "paper.yaml"), {})
    config = resolve_config("paper", {"data": "x"})  # a bare name finds the shipped paper.yaml
    assert config.model_options["input_size"] == 227
    with pytest.raises(FileNotFoundError, match=r"'papr' \(caffe, fashion-mnist, paper\)"):
        resolve_config("papr", {"data": "x"})  # a misspelt name lists the shipped ones


def test_fashion_mnist_yaml_is_the_embedded_default():
    recipe = yaml.safe_load((CONFIGS / "fashion-mnist.yaml").read_text())
    assert make_config(recipe) == make_config(EMBEDDED_DEFAULT)
    assert resolve_config(None, {}) == make_config(EMBEDDED_DEFAULT)


def test_flags_override_recipe_override_defaults(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("lr: 0.05\nepochs: 7\nmodel_options: {dropout: 0.3}\n")
    flags = _flags("--lr", "0.2", "--model-option", "lrn=null", "--no-flip", "--data", "d")
    config = resolve_config(str(recipe), flags)
    assert config.lr == 0.2 and config.epochs == 7 and config.flip is False
    assert config.model_options == {"dropout": 0.3, "lrn": None}
    assert config.momentum == 0.9  # untouched default
    # no recipe but --data: the paper's defaults (alexnet.train.recipes picks by the data)
    assert resolve_config(None, _flags("--data", "d")).epochs == 90


def test_bad_values_name_the_field(tmp_path):
    with pytest.raises(ValueError, match=r"unknown config keys.*'lrr'"):
        make_config({"lrr": 0.1})
    with pytest.raises(ValueError, match=r"epochs=.*int"):
        make_config({"epochs": "ten"})
    with pytest.raises(ValueError, match="schedule 'linear'"):
        make_config({"schedule": "linear"})
    with pytest.raises(ValueError, match="KEY=VALUE"):
        _flags("--model-option", "dropout")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ValueError, match=re.escape(str(bad))):
        load_recipe(bad)
    with pytest.raises(FileNotFoundError, match=r"nope\.yaml"):
        load_recipe(tmp_path / "nope.yaml")


def test_every_flag_has_help_text() -> None:
    """`alexnet train --help` explains each flag (taken from TrainConfig's field comments)."""
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    helps = {a.dest: a.help for a in parser._actions if a.dest != "help"}
    assert set(helps) == {f.name for f in dataclasses.fields(TrainConfig)} - {"recipe"}
    assert [name for name, text in helps.items() if not text] == []
    assert "0.01" in helps["lr"]  # the comment of the right field, not a neighbour's
