"""Task heads on top of the shared STG-CMA encoder (METHOD.md, "Task heads").

A head is a ``TaskHead``: it is trained whenever the model is (selected by type in
``stgcma.model.mark_trainable``), declares which encoder blocks it taps (``taps``; ``None`` = the
end of every stage) and maps the encoder's feature dict to a dict with ``logits``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from stgcma.adapters import init_linear
from stgcma.config import ConfigError, ModelConfig


class TaskHead(nn.Module):
    """Marker base class for task heads."""

    taps: list[int] | None = None


class AVEHead(TaskHead):
    """Per-segment event classifier: concat [a, v] -> Linear(2D, 512) -> Dropout -> Linear(512, C)."""

    def __init__(self, dim: int, hidden: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = init_linear(nn.Linear(2 * dim, hidden))
        self.drop = nn.Dropout(dropout)
        self.fc2 = init_linear(nn.Linear(hidden, num_classes))

    def forward(self, feats: dict[str, Any], encoder: nn.Module) -> dict[str, torch.Tensor]:
        v, a = encoder.pooled(feats)  # (B, T, D) each
        logits = self.fc2(self.drop(self.fc1(torch.cat([a, v], dim=-1))))  # (B, T, C)
        return {"logits": logits}


def build_head(config: ModelConfig, encoder: nn.Module) -> TaskHead:
    """The head named by ``config.head.task``."""
    h = config.head
    if h.task == "ave":
        return AVEHead(encoder.embed_dim, h.hidden, h.num_classes, h.dropout)
    raise ConfigError(f"unknown task {h.task!r}; expected one of ave, avs, avqa")
