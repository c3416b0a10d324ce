"""Recompute BatchNorm running statistics of a trained model on data (no gradients, weights unchanged).

Standard practice after changing a model's weights outside training (e.g. weight averaging) and the
way to restore the statistics of a checkpoint that lacks them. Only BatchNorm layers switch to
training mode, with a cumulative average (momentum None); dropout stays off.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from stgcma.train.tasks import move, task_inputs


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, dataset: Any, task: str, batch_size: int = 8,
                          max_batches: int | None = None, device: str | torch.device = "cpu") -> int:
    """Reset and re-estimate every BatchNorm's running mean/var over ``dataset``; returns batches used."""
    from stgcma.train.loop import _collate

    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    model.eval()
    saved = []
    for m in norms:
        saved.append(m.momentum)
        m.reset_running_stats()
        m.momentum = None
        m.train()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=_collate(task))
    used = 0
    for batch in loader:
        if max_batches is not None and used >= max_batches:
            break
        batch = move(batch, torch.device(device))
        model(batch["video"], batch["audio"], **task_inputs(task, batch))
        used += 1
    for m, momentum in zip(norms, saved, strict=True):
        m.momentum = momentum
        m.eval()
    return used
