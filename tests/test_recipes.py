"""Paper recipes (stgcma.recipes, ``recipes``): every command is accepted by the real parsers, and
``measure`` extrapolates a recipe's hours from timed steps."""

from __future__ import annotations

import shlex

import pytest

from stgcma.cli import main
from stgcma.cli.train import split_settings
from stgcma.config import apply_overrides, load_preset
from stgcma.recipes import RECIPES, Recipe, markdown_table, measure
from stgcma.train.config import TrainConfig


def test_one_recipe_per_trainable_paper_row() -> None:
    ave = {r.preset for r in RECIPES.values() if r.task == "ave"}
    assert ave == {"clip-b16-tiny", "clip-b16-base", "clip-l14-tiny", "clip-l14-base", "swin-b-tiny", "swin-b-base",
                   "swin-l-tiny", "swin-l-large"}
    assert {r.dataset for r in RECIPES.values() if r.task == "avs"} == {"avs-s4", "avs-ms3"}
    assert RECIPES["ave-clip-b16-tiny"].paper == 76.3 and RECIPES["avs-s4-swin-l-large"].paper == 81.8
    assert RECIPES["ave-swin-b-base"].train_command().count("lr=1e-4") == 1  # Swin-B AVE uses 1e-4


@pytest.mark.parametrize("name", list(RECIPES))
def test_recipe_commands_parse(name: str) -> None:
    recipe = RECIPES[name]
    words = shlex.split(recipe.train_command("/data/x"))
    assert words[:4] == ["python", "-m", "stgcma", "train"]
    settings = [w for w in words if "=" in w]
    train, model = split_settings(settings)  # unknown keys would be refused here
    cfg = apply_overrides(TrainConfig(task=recipe.task, preset=recipe.preset), [f"{k}={v}" for k, v in train.items()])
    cfg = cfg.resolve()
    assert cfg.epochs == 20 and cfg.batch_size == 2 and cfg.weight_decay == 5e-7 and cfg.beta1 == 0.95
    assert cfg.lr == {"ave": 1e-4 if "swin-b" in name else 5e-5, "avs": 3e-4, "avqa": 2.5e-5}[recipe.task]
    assert cfg.warmup_epochs == (5 if recipe.task == "avs" else 2)
    preprocess = load_preset(recipe.preset, model).preprocess
    assert preprocess.num_segments == (5 if recipe.task == "avs" else 10)
    prepare = shlex.split(recipe.prepare_command("/data/x"))
    assert prepare[3] == "prepare" and prepare[prepare.index("--preset") + 1] == recipe.preset
    assert ("preprocess.num_segments=5" in prepare) == (recipe.task == "avs")  # the cache holds what training reads
    assert recipe.cache in recipe.train_command()


def test_markdown_table_and_cli(capsys: pytest.CaptureFixture) -> None:
    table = markdown_table({"ave-clip-b16-tiny": {"hours": 5.04, "peak_gib": 9.6, "device": "H200"}})
    assert table.count("\n") == len(RECIPES) + 1 and "| 5.0 h, 10 GiB (H200) |" in table
    assert main(["recipes"]) == 0 and "avqa-swin-l-large" in capsys.readouterr().out
    assert main(["recipes", "ave-clip-b16-tiny", "--data", "/data/AVE"]) == 0
    out = capsys.readouterr().out
    assert "prepare --data /data/AVE" in out and "backbone.pretrained=openai" in out and "eval --task ave" in out
    assert main(["recipes", "nope"]) == 2


def test_measure_extrapolates_hours() -> None:
    recipe = Recipe("t", "ave", "vit-test", "ave", None, "accuracy", ("epochs=3", "batch_size=2"))
    result = measure(recipe, "synthav:seed=0,n=4,segments=4,size=32", device="cpu", steps=1)
    assert result["step_seconds"] > 0 and result["train_items"] == 3339
    assert result["steps"] == 1670 * 3 and result["hours"] == pytest.approx(result["step_seconds"] * 1670 * 3 / 3600)
