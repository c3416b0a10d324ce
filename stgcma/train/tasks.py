"""Per-task losses and metric accumulators, the only task-specific code in training.

``TaskLoss`` wraps a model so that the WHOLE loss is computed inside ``forward`` (DDP then sees
every parameter use, including the AVQA matching branch). ``Evaluator`` accumulates a task's
metrics over batches and returns a flat dict whose ``select`` key drives model selection.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from stgcma.heads import AVQAHead, decode_ave, layout_targets
from stgcma.metrics import AVQAAccuracy, AVSMetrics, ave_breakdown

SELECT_KEY = {"ave": "accuracy", "avs": "miou", "avqa": "accuracy"}


def move(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Tensors of a collated batch to ``device`` (strings stay)."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def task_inputs(task: str, batch: dict[str, Any]) -> dict[str, Any]:
    """Extra head inputs of a task (the AVQA question)."""
    return {"question": batch["question"]} if task == "avqa" else {}


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice per frame, averaged over valid frames; an empty target with an empty prediction scores 0."""
    prob = torch.sigmoid(logits).flatten(2)  # (B, T, S*S)
    target = target.flatten(2)
    inter = (prob * target).sum(-1)
    dice = (2 * inter + 1.0) / (prob.sum(-1) + target.sum(-1) + 1.0)  # (B, T)
    weights = valid.float()
    return ((1 - dice) * weights).sum() / weights.sum().clamp_min(1)


LAYOUT_BACKGROUND_WEIGHT = 0.2  # background patches are most of a frame; at full weight "all backdrop" wins


def layout_loss(layout_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-patch class cross-entropy of the AVQA layout map, the backdrop down-weighted.

    layout_logits (B, T, K+1, rows, cols), target (B, T, rows, cols) from ``layout_targets``.
    """
    weight = layout_logits.new_ones(layout_logits.shape[2], dtype=torch.float32)
    weight[0] = LAYOUT_BACKGROUND_WEIGHT
    return F.cross_entropy(layout_logits.flatten(0, 1).float(), target.long().flatten(0, 1), weight=weight)


def sound_loss(sound_logits: torch.Tensor, sound_level: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the heard loudness per segment and class.

    sound_logits (B, T, K, L+1), sound_level (B, T, K) integer (0 silent, 1..L loudness levels).
    """
    K, L1 = sound_logits.shape[-2:]
    if sound_level.shape[-1] != K or (sound_level.numel() and int(sound_level.max()) >= L1):
        raise ValueError(f"the sound levels name {sound_level.shape[-1]} classes up to level "
                         f"{int(sound_level.max()) if sound_level.numel() else 0}, but the head hears {K} "
                         f"classes at {L1 - 1} levels (head.avqa_layout_classes, head.avqa_sound_levels)")
    return F.cross_entropy(sound_logits.flatten(0, -2).float(), sound_level.long().flatten())


def side_loss(side_weights: torch.Tensor, side_class: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of each class's weight on each side against the class that stands there.

    side_weights (B, 3, K) in [0, 1] (``LayoutReadout.side_slots``), side_class (B, 3) integer: the
    class at the left, middle and right, -1 where no object stands (every weight of that side -> 0).
    Written out rather than ``F.binary_cross_entropy``, which autocast refuses.
    """
    K = side_weights.shape[-1]
    if side_class.numel() and int(side_class.max()) >= K:
        raise ValueError(f"the sides name class {int(side_class.max())}, but the head's layout map has {K} "
                         "classes (head.avqa_layout_classes)")
    target = F.one_hot(side_class.long() + 1, K + 1)[..., 1:].float()  # (B, 3, K): -1 -> all zeros
    w = side_weights.float().clamp(1e-4, 1 - 1e-4)
    return -(target * w.log() + (1 - target) * (1 - w).log()).sum(-1).mean()


def layout_target_of(out: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor | None:
    """The layout map's per-patch targets (B, T, rows, cols): cached ones (``layout_target``), else made
    from the batch's pixel class maps; None when the batch has neither (real datasets)."""
    if "layout_target" in batch:
        return batch["layout_target"]
    if "class_map" not in batch:
        return None
    logits = out["layout_logits"]  # (B, T, K+1, rows, cols)
    return layout_targets(batch["class_map"], tuple(logits.shape[-2:]), classes=logits.shape[2] - 1)


def task_loss(task: str, out: dict[str, torch.Tensor], batch: dict[str, Any], match_weight: float = 0.5,
              dice_weight: float = 0.0, layout_weight: float = 0.5) -> torch.Tensor:
    """The training loss of one task from the model's (or head's) outputs and the batch's targets."""
    logits = out["logits"]
    if task == "ave":
        return F.cross_entropy(logits.flatten(0, 1).float(), batch["label"].flatten())
    if task == "avs":
        mask_logits = logits.squeeze(2).float()  # (B, T, S, S)
        valid = batch["mask_valid"].float()[..., None, None]  # (B, T, 1, 1)
        per_pixel = F.binary_cross_entropy_with_logits(mask_logits, batch["mask"], reduction="none")
        loss = (per_pixel * valid).sum() / (valid.sum() * per_pixel.shape[-1] * per_pixel.shape[-2]).clamp_min(1)
        if dice_weight:
            loss = loss + dice_weight * soft_dice_loss(mask_logits, batch["mask"], batch["mask_valid"])
        return loss
    loss = F.cross_entropy(logits.flatten(0, -2).float(), batch["answer"].flatten())  # Q per clip or one
    if match_weight and "match_neg_logits" in out:
        loss = loss + match_weight * AVQAHead.matching_loss(out["match_logits"], out["match_neg_logits"])
    if layout_weight and "layout_logits" in out:
        target = layout_target_of(out, batch)
        if target is not None:
            loss = loss + layout_weight * layout_loss(out["layout_logits"], target)
    if layout_weight and "sound_logits" in out and "sound_level" in batch:
        loss = loss + layout_weight * sound_loss(out["sound_logits"], batch["sound_level"])
    if layout_weight and "side_weights" in out and "side_class" in batch:
        loss = loss + layout_weight * side_loss(out["side_weights"], batch["side_class"])
    return loss


class TaskLoss(nn.Module):
    """``forward(batch) -> (loss, logits)`` for one task; wrap THIS in DDP."""

    def __init__(self, model: nn.Module, task: str, match_weight: float = 0.5, dice_weight: float = 0.0,
                 layout_weight: float = 0.5) -> None:
        super().__init__()
        self.model = model
        self.task = task
        self.match_weight = match_weight
        self.dice_weight = dice_weight
        self.layout_weight = layout_weight

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(batch["video"], batch["audio"], **task_inputs(self.task, batch))
        loss = task_loss(self.task, out, batch, self.match_weight, self.dice_weight, self.layout_weight)
        return loss, out["logits"]


class Evaluator:
    """Accumulates one task's metrics; ``compute()`` returns a flat dict with the ``select`` key."""

    def __init__(self, task: str, ave_decode: str = "segment") -> None:
        self.task, self.ave_decode = task, ave_decode
        self.loss_sum, self.batches = 0.0, 0
        if task == "ave":
            self.counts = {"right": 0, "detect_right": 0, "segments": 0, "class_right": 0, "event_clips": 0}
        elif task == "avs":
            self.avs = AVSMetrics(from_logits=True)
        else:
            self.avqa = AVQAAccuracy()

    @torch.no_grad()
    def update(self, logits: torch.Tensor, batch: dict[str, Any], loss: torch.Tensor | None = None) -> None:
        if loss is not None:
            self.loss_sum += float(loss)
            self.batches += 1
        if self.task == "ave":
            pred = decode_ave(logits, self.ave_decode).cpu()  # (B, T)
            counts = ave_breakdown(pred, batch["label"].cpu(), background=logits.shape[-1] - 1)
            self.counts = {k: v + counts[k] for k, v in self.counts.items()}
        elif self.task == "avs":
            self.avs.update(logits.squeeze(2).float().cpu(), batch["mask"].cpu(), batch["mask_valid"].cpu())
        else:
            qtypes = [q for item in batch["qtype"] for q in ([item] if isinstance(item, str) else item)]
            self.avqa.update(logits.argmax(-1).flatten().cpu(), batch["answer"].flatten().cpu(), qtypes)

    def compute(self) -> dict[str, float]:
        if self.task == "ave":
            c = self.counts
            metrics = {"accuracy": c["right"] / max(c["segments"], 1),
                       "event_detection": c["detect_right"] / max(c["segments"], 1),  # when: event vs background
                       "event_class": c["class_right"] / max(c["event_clips"], 1)}  # what: the clip's event class
        elif self.task == "avs":
            metrics = {k: v for k, v in self.avs.compute().items() if k != "frames"}
        else:
            metrics = self.avqa.compute()
            metrics["accuracy"] = metrics.pop("overall", 0.0)
        if self.batches:
            metrics["loss"] = self.loss_sum / self.batches
        metrics["select"] = metrics[SELECT_KEY[self.task]]
        return metrics
