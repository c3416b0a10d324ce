"""A short SynthAV training run lowers the loss and beats chance on held-out clips, for each task.

Uses the embedded default's backbone (pretrained on SynthAV frames only), frozen, with fresh adapters
and heads; chance is the uniform guess for AVE/AVQA and an all-empty mask for AVS.
"""

import csv
from pathlib import Path

import pytest
import torch

from stgcma.checkpoint import DEFAULT_DIR
from stgcma.data.spec import build_dataset
from stgcma.train import TrainConfig, fit
from stgcma.train.tasks import Evaluator

BACKBONE = DEFAULT_DIR / "backbone" / "model.safetensors"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not BACKBONE.exists(), reason="the embedded default backbone is not in assets/")]

CASES = {  # task: (world options, model overrides, training clips, learning rate)
    "ave": ("", [], 96, 2e-3),
    "avs": (",mode=s4", ["preprocess.num_segments=5", "head.avs_channels=32"], 192, 3e-3),
    "avqa": ("", ["head.hidden=128", "head.avqa_embed=64"], 96, 2e-3),
}


def _empty_mask_miou(spec: str) -> float:
    data = build_dataset(spec, "avs", "val", _preprocess(["preprocess.num_segments=5"]))
    ev = Evaluator("avs")
    for i in range(len(data)):
        item = data[i]
        batch = {"mask": item["mask"][None], "mask_valid": item["mask_valid"][None]}
        ev.update(torch.full((1, *item["mask"].shape[:1], 1, *item["mask"].shape[1:]), -10.0), batch)
    return ev.compute()["miou"]


def _preprocess(overrides):
    from stgcma.config import load_preset

    return load_preset("synth-vit", overrides).preprocess


@pytest.mark.parametrize("task", list(CASES))
def test_short_training_lowers_loss_and_beats_chance(tmp_path, task):
    world, overrides, n_train, lr = CASES[task]
    torch.set_num_threads(2)
    cfg = TrainConfig(task=task, preset="synth-vit", data=f"synthav:seed=11,n={n_train}{world}",
                      val_data=f"synthav:seed=12,n=24{world}", out=str(tmp_path / task), epochs=3, batch_size=8,
                      lr=lr, head_lr_scale=1.0, warmup_epochs=0.5, seed=0,
                      avs_dice_weight=1.0 if task == "avs" else 0.0)
    summary = fit(cfg, [f"backbone.pretrained={BACKBONE}", *overrides], progress=False)
    steps = [float(r["loss"]) for r in csv.DictReader(open(Path(summary["run"]) / "steps.csv"))]
    assert sum(steps[-4:]) / 4 < 0.9 * sum(steps[:4]) / 4, steps
    rows = list(csv.DictReader(open(Path(summary["run"]) / "metrics.csv")))
    best = max(float(r["val_select"]) for r in rows)
    if task == "ave":
        chance = 1 / 9
    elif task == "avqa":
        chance = 1 / len(build_dataset("synthav:seed=12,n=1", "avqa", "val", _preprocess(overrides)).answer_vocab)
    else:
        chance = _empty_mask_miou(f"synthav:seed=12,n=24{world}")
    assert best > chance + 0.05, (best, chance)
