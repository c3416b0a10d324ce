"""Typed training configuration with the reference recipe (METHOD.md) as defaults.

Task-dependent defaults (learning rate, head learning-rate scale, warm-up) are ``None`` here and
resolved by ``resolve`` so a run folder records the values actually used.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from stgcma.config import ConfigError, Task, _from_dict

TASK_DEFAULTS: dict[str, dict[str, float]] = {
    "ave": {"lr": 5e-5, "head_lr_scale": 0.1, "warmup_epochs": 2.0},
    "avs": {"lr": 3e-4, "head_lr_scale": 1.0, "warmup_epochs": 5.0},
    "avqa": {"lr": 2.5e-5, "head_lr_scale": 1.0, "warmup_epochs": 2.0},
}


@dataclass
class TrainConfig:
    """Everything about a training run except the model (which is a ``ModelConfig``)."""

    task: Task = "ave"
    preset: str = "vit-test"
    data: str = "synthav:seed=0,n=64"
    val_data: str | None = None
    val_split: str = "val"
    out: str = "runs/run"
    epochs: int = 20
    batch_size: int = 2  # samples per optimizer step, over all processes and accumulation steps
    accum_steps: int = 1
    lr: float | None = None
    head_lr_scale: float | None = None
    weight_decay: float = 5e-7
    beta1: float = 0.95
    beta2: float = 0.999
    warmup_epochs: float | None = None
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    grad_clip: float = 0.0
    min_lr_ratio: float = 0.0  # the cosine schedule ends at lr * min_lr_ratio instead of 0
    checkpointing: bool = False  # activation checkpointing: recompute blocks in backward (memory mode)
    checkpoint_fraction: float = 1.0  # of the blocks recomputed when checkpointing (0.75: less time, more memory)
    compile: bool = False  # torch.compile the training forward and backward: faster steps after a slow first one
    avg_from: int | None = None
    match_weight: float = 0.5
    avs_dice_weight: float = 0.0  # reference: BCE only; a soft-Dice term helps small models on small objects
    layout_weight: float = 0.5  # AVQA with head.avqa_layout_classes: the per-patch class loss on SynthAV class maps,
    # and with its heard loudness and side slots their level and side losses (tasks.sound_loss, tasks.side_loss)
    max_steps_per_epoch: int | None = None
    num_workers: int = 0
    seed: int = 0
    device: str = "auto"
    log_every: int = 1
    ood_clips: int = 200  # validation clips for the world statistics of the saved checkpoints (0: none)

    def resolve(self) -> TrainConfig:
        """A copy with task defaults filled in and values checked."""
        defaults = TASK_DEFAULTS[self.task]
        cfg = dataclasses.replace(
            self,
            lr=self.lr if self.lr is not None else defaults["lr"],
            head_lr_scale=self.head_lr_scale if self.head_lr_scale is not None else defaults["head_lr_scale"],
            warmup_epochs=self.warmup_epochs if self.warmup_epochs is not None else defaults["warmup_epochs"],
        )
        for name in ("epochs", "batch_size", "accum_steps"):
            if getattr(cfg, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(cfg, name)}")
        if not 0.0 <= cfg.min_lr_ratio <= 1.0:
            raise ConfigError(f"min_lr_ratio must lie in [0, 1], got {cfg.min_lr_ratio}")
        if not 0.0 < cfg.checkpoint_fraction <= 1.0:
            raise ConfigError(f"checkpoint_fraction must lie in (0, 1], got {cfg.checkpoint_fraction}")
        if cfg.avg_from is not None and not 1 <= cfg.avg_from <= cfg.epochs:
            raise ConfigError(f"avg_from={cfg.avg_from} must lie in [1, epochs={cfg.epochs}]")
        return cfg

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return _from_dict(cls, data, "train")


TRAIN_KEYS = {f.name for f in dataclasses.fields(TrainConfig)}
