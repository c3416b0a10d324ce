"""Build the embedded default from scratch: ``python -m stgcma build-default``.

1. Image-only pretraining of the small ViT (``synth-vit``) on SynthAV frames (no audio).
2. STG-CMA adapters + heads trained on SynthAV for AVE, AVS (single-source) and AVQA, the backbone
   frozen; model selection on a validation split.
3. The selected checkpoints are copied to ``assets/default/<task>/`` (adapter-only, pointing at
   ``assets/default/backbone/model.safetensors``) and evaluated once on a fresh test seed never used
   in training; the numbers go to ``assets/default/quality.json`` (a run of some tasks only keeps the
   other tasks' entries).

The recipe is sized to rebuild in about an hour on a 2-core CPU. AVQA trains on eight questions per
clip (the clip's own answer-balanced one plus seven more about the same scene) so one encoder pass
serves eight answers; validation and test ask each clip's own question only.

Every setting lives in ``DefaultRecipe`` so the command is the documentation of how the shipped
weights were made. ``--device cuda`` runs the same recipe on a GPU.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from stgcma.checkpoint import CONFIG_NAME, DEFAULT_DIR, atomic_write_bytes, load_model
from stgcma.config import load_preset
from stgcma.train.config import TrainConfig
from stgcma.train.loop import evaluate, fit
from stgcma.train.pretrain import pretrain_backbone

TRAIN_SEED, VAL_SEED, TEST_SEED, PRETRAIN_SEED = 100, 200, 300, 1000


@dataclass
class TaskRecipe:
    n_train: int
    n_val: int
    epochs: int
    batch_size: int
    lr: float
    overrides: list[str] = field(default_factory=list)
    world: str = ""
    train: dict[str, Any] = field(default_factory=dict)
    questions: int = 1  # AVQA questions per TRAINING clip (validation and test ask each clip's own one)


@dataclass
class DefaultRecipe:
    """How the embedded default is made (see the module docstring)."""

    preset: str = "synth-vit"
    pretrain_clips: int = 1500
    pretrain_epochs: int = 4
    pretrain_batch: int = 64
    pretrain_lr: float = 1e-3
    n_test: int = 200
    tasks: dict[str, TaskRecipe] = field(default_factory=lambda: {
        "ave": TaskRecipe(1000, 100, 8, 8, 2e-3),
        "avs": TaskRecipe(800, 100, 8, 8, 1e-3, ["preprocess.num_segments=5", "head.avs_channels=64"], "mode=s4",
                          {"avs_dice_weight": 1.0}),
        "avqa": TaskRecipe(800, 200, 6, 8, 1e-3, ["head.hidden=256", "head.avqa_embed=128"], questions=8),
    })

    def scaled(self, factor: float) -> DefaultRecipe:
        """A smaller (factor < 1) copy, for smoke tests of the pipeline."""
        def n(x: int, low: int = 8) -> int:
            return max(low, int(x * factor))

        tasks = {k: TaskRecipe(n(t.n_train), n(t.n_val), max(1, int(t.epochs * factor)), t.batch_size, t.lr,
                               t.overrides, t.world, t.train, t.questions) for k, t in self.tasks.items()}
        return DefaultRecipe(self.preset, n(self.pretrain_clips, 16), max(1, int(self.pretrain_epochs * factor)),
                             self.pretrain_batch, self.pretrain_lr, n(self.n_test), tasks)


def _spec(seed: int, n: int, world: str) -> str:
    return f"synthav:seed={seed},n={n}" + (f",{world}" if world else "")


def build_default(out: str | Path = DEFAULT_DIR, runs: str | Path = "runs/default", device: str = "cpu",
                  recipe: DefaultRecipe | None = None, tasks: tuple[str, ...] = ("ave", "avs", "avqa"),
                  skip_pretrain: bool = False, progress: bool = True, num_workers: int = 0) -> dict[str, Any]:
    """Run the whole recipe; returns the quality report (also written to ``out/quality.json``)."""
    recipe = recipe or DefaultRecipe()
    out, runs = Path(out), Path(runs)
    backbone = out / "backbone" / "model.safetensors"
    machine = (f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
               f"{torch.get_num_threads()} threads")
    if device.startswith("cuda") and torch.cuda.is_available():
        machine += f", {torch.cuda.get_device_name()}"
    report: dict[str, Any] = {"recipe": asdict(recipe), "device": device, "machine": machine, "seconds": {},
                              "test": {}}
    start = time.time()
    if not (skip_pretrain and backbone.exists()):
        pre = load_preset(recipe.preset).preprocess
        result = pretrain_backbone(backbone, preprocess=pre, seed=PRETRAIN_SEED, n_clips=recipe.pretrain_clips,
                                   epochs=recipe.pretrain_epochs, batch_size=recipe.pretrain_batch,
                                   lr=recipe.pretrain_lr, device=device, progress=progress, num_workers=num_workers)
        report["seconds"]["pretrain"] = result.seconds
        report["pretrain_patch_accuracy"] = result.patch_accuracy
    for task in tasks:
        t = recipe.tasks[task]
        task_start = time.time()
        world = ",".join(filter(None, [t.world, f"questions={t.questions}" if t.questions > 1 else ""]))
        cfg = TrainConfig(task=task, preset=recipe.preset, data=_spec(TRAIN_SEED, t.n_train, world),
                          val_data=_spec(VAL_SEED, t.n_val, t.world), out=str(runs / task), epochs=t.epochs,
                          batch_size=t.batch_size, lr=t.lr, head_lr_scale=1.0, warmup_epochs=1.0, seed=0,
                          device=device, amp="off", num_workers=num_workers, **t.train)
        overrides = [f"backbone.pretrained={backbone.resolve()}", *t.overrides]
        summary = fit(cfg, overrides, progress=progress)
        selected = Path(summary["run"]) / summary["selected"]
        target = out / task
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(selected, target)
        document = json.loads((target / CONFIG_NAME).read_text())
        document["model"]["backbone"]["pretrained"] = "../backbone/model.safetensors"
        atomic_write_bytes(target / CONFIG_NAME, json.dumps(document, indent=2).encode())
        report["seconds"][task] = time.time() - task_start
        model, _ = load_model(target, device=device)
        from stgcma.data.spec import build_dataset

        test = build_dataset(_spec(TEST_SEED, recipe.n_test, t.world), task, "test", model.config.preprocess)
        metrics = evaluate(model, test, task, batch_size=8, device=device, progress=progress, num_workers=num_workers)
        metrics.pop("select", None)
        report["test"][task] = {"data": _spec(TEST_SEED, recipe.n_test, t.world), **metrics}
    report["seconds"]["total"] = time.time() - start
    previous = out / "quality.json"
    if set(tasks) != set(recipe.tasks) and previous.exists():  # a partial rebuild keeps the others' numbers
        old = json.loads(previous.read_text())
        report["test"] = {**old.get("test", {}), **report["test"]}
        report["seconds"] = {**old.get("seconds", {}), **report["seconds"]}
        report["rebuilt"] = list(tasks)  # seconds["total"] is this partial run's
    atomic_write_bytes(out / "quality.json", json.dumps(report, indent=2).encode())
    return report
