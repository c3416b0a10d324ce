"""Helpers shared by the attention and attribution explanations: one clip in, numpy maps out."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def as_clip(model: nn.Module, video: Any, audio: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """One clip as model inputs: (T, ...) or (1, T, ...) tensors/arrays -> (1, T, ...) on the model's device/dtype.

    Raises ValueError for a batch of several clips or shapes the model does not take.
    """
    param = next(model.parameters())
    clip = []
    for name, x in (("video", video), ("audio", audio)):
        x = torch.as_tensor(x)
        x = x.unsqueeze(0) if x.ndim == 4 else x  # (1, T, C, H, W)
        if x.ndim == 5 and x.shape[0] != 1:
            raise ValueError(f"explanations are per clip: {name} must be (T, C, H, W) or (1, T, C, H, W); "
                             f"got a batch of {x.shape[0]}")
        clip.append(x.to(param.device, param.dtype))
    model.encoder.check_inputs(*clip)
    return clip[0], clip[1]


def as_task_inputs(model: nn.Module, task_inputs: dict[str, Any]) -> dict[str, Any]:
    """Task inputs for one clip on the model's device; a 1-D tensor (e.g. a question (L,)) gains the batch axis."""
    device = next(model.parameters()).device
    out = {}
    for key, value in task_inputs.items():
        if isinstance(value, (torch.Tensor, np.ndarray)):
            value = torch.as_tensor(value, device=device)
            value = value.unsqueeze(0) if value.ndim == 1 else value  # (1, L)
        out[key] = value
    return out


def clip_outputs(outputs: dict[str, Any]) -> dict[str, np.ndarray]:
    """A one-clip forward's tensor outputs as numpy, the batch axis dropped where it is 1."""
    out = {}
    for key, value in outputs.items():
        if isinstance(value, torch.Tensor):
            value = value.detach().float().cpu()
            out[key] = (value[0] if value.shape[:1] == (1,) else value).numpy()
    return out


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run the model in eval mode (no dropout, no stochastic depth), restoring its mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def normalize_per_segment(x: np.ndarray) -> np.ndarray:
    """Min-max scale each segment x[t] to [0, 1] for display; a constant segment becomes all zeros."""
    flat = x.reshape(x.shape[0], -1).astype(np.float64)  # (T, K)
    low, high = flat.min(axis=1, keepdims=True), flat.max(axis=1, keepdims=True)
    span = high - low
    scaled = np.where(span > 0, (flat - low) / np.where(span > 0, span, 1.0), 0.0)
    return scaled.reshape(x.shape).astype(np.float32)


def project(maps: torch.Tensor, stride: int, size: tuple[int, int]) -> np.ndarray:
    """Token-grid maps onto the input grid they were cut from, normalised per segment for display.

    ``maps`` (T, h, w) lies on a grid of ``stride``-pixel tokens; it is upsampled bilinearly (token
    centres on pixel-block centres, ``align_corners=False``) to the (h*stride, w*stride) area the
    tokens cover, min-max scaled per segment, and zero-padded to ``size`` where the patch embedding
    dropped a remainder (rows/columns no token saw). Returns (T, *size) float32 in [0, 1].
    """
    covered = (maps.shape[1] * stride, maps.shape[2] * stride)
    up = F.interpolate(maps[:, None].float(), size=covered, mode="bilinear", align_corners=False)[:, 0]  # (T, Hc, Wc)
    out = np.zeros((maps.shape[0], *size), dtype=np.float32)
    out[:, : covered[0], : covered[1]] = normalize_per_segment(up.cpu().numpy())
    return out


@dataclass
class BlockLayout:
    """Token grids, pixel stride and frozen block parts of one encoder block."""

    grid_v: tuple[int, int]
    grid_a: tuple[int, int]
    stride: int
    frozen: nn.Module


def block_layouts(encoder: nn.Module) -> list[BlockLayout]:
    """Per block: the grids its streams have after the stage's patch merging (as in ``Stage.merge``)."""
    grid_v, grid_a, stride = encoder.trunk.grid, encoder.grid_a, encoder.trunk.patch_size
    layouts = []
    for stage in encoder.trunk.stages:
        if stage.downsample is not None:
            grid_v, grid_a, stride = (grid_v[0] // 2, grid_v[1] // 2), (grid_a[0] // 2, grid_a[1] // 2), stride * 2
        layouts.extend(BlockLayout(grid_v, grid_a, stride, frozen) for frozen in stage.blocks)
    return layouts
