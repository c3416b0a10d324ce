"""``build-default`` end to end at a tiny scale: image-only pretraining, the three tasks, the test
evaluation and quality.json; the written default loads; a partial rebuild keeps the other tasks' numbers."""

import copy
import json

import pytest
import torch

from stgcma.checkpoint import load_model
from stgcma.config import ConfigError
from stgcma.train.default import DefaultRecipe, build_default

pytestmark = pytest.mark.slow


def test_scaled_build_writes_a_loadable_default_and_partial_rebuilds_keep_the_rest(tmp_path):
    out, runs = tmp_path / "default", tmp_path / "runs"
    recipe = DefaultRecipe().scaled(0.01)
    build_default(out, runs, recipe=recipe, progress=False)
    quality = json.loads((out / "quality.json").read_text())
    assert set(quality["test"]) == {"ave", "avs", "avqa"}
    assert 0 <= quality["test"]["ave"]["accuracy"] <= 1 and 0 <= quality["test"]["avs"]["miou"] <= 1
    assert quality["test"]["avqa"]["data"] == "synthav:seed=300,n=10,world=music,classes=14"  # own questions only
    assert "CPUs" in quality["machine"] and quality["seconds"]["total"] > 0
    trained_on = json.loads((runs / "avqa" / "config.json").read_text())["train"]["data"]
    assert trained_on.endswith(",questions=8,fresh=1")
    assert set(quality["refit"]) == {"ave", "avs", "avqa"}  # each head is refitted on cached features
    refit = quality["refit"]["avqa"]
    assert refit["val"] >= refit["joint_val"] and [row["epoch"] for row in refit["curve"]][:2] == [0, 1]
    assert load_model(out / "avqa")[1]["refit"]["data"].startswith("synthav:seed=101,")
    assert 0 <= quality["pretrain_visible"]["balanced"] <= 1 and 0 <= quality["pretrain_object_patch_accuracy"] <= 1
    for task in ("ave", "avs", "avqa"):
        model, _ = load_model(out / task)
        assert model.config.head.task == task and model.config.backbone.name == "synth-vit"
    ave_head = load_model(out / "ave")[0].config.head
    assert ave_head.ave_audio == "tokens" and ave_head.ave_decode == "clip"
    assert load_model(out / "avs")[0].config.head.avs_match

    quality["bounds"] = {"avqa": {"floor": 0.35}}  # added by hand after a build, as the shipped file's are
    (out / "quality.json").write_text(json.dumps(quality))
    build_default(out, runs, recipe=recipe, tasks=("ave",), skip_pretrain=True, progress=False)
    again = json.loads((out / "quality.json").read_text())
    assert again["rebuilt"] == ["ave"] and again["test"]["avs"] == quality["test"]["avs"]
    assert again["test"]["avqa"] == quality["test"]["avqa"]
    assert again["bounds"] == quality["bounds"]
    assert again["pretrain_patch_accuracy"] == quality["pretrain_patch_accuracy"]

    before = {k: v.clone() for k, v in load_model(out / "ave")[0].trainable_state_dict().items()}
    build_default(out, runs, recipe=recipe, tasks=("ave",), refit_only=True, progress=False)
    third = json.loads((out / "quality.json").read_text())
    assert set(third["refit"]) == {"ave", "avs", "avqa"}, "a refit of one task keeps the others' refit records"
    assert third["refit"]["avqa"] == again["refit"]["avqa"] and third["test"]["avs"] == quality["test"]["avs"]
    after = load_model(out / "ave")[0].trainable_state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("encoder."))
    assert not (out / "ave.new").exists() and "ave_refit" in third["seconds"]
    no_refit = copy.deepcopy(recipe)
    no_refit.tasks["avs"].refit = None
    with pytest.raises(ConfigError, match="refit in the recipe"):
        build_default(out, runs, recipe=no_refit, tasks=("avs",), refit_only=True, progress=False)
