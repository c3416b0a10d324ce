"""One-second segments and model-sized windows over them (STG-CMA, METHOD.md "Inputs").

A clip of duration ``d`` seconds is cut into ``ceil(d / segment_seconds)`` segments (at least one);
a tail shorter than :data:`TAIL_TOLERANCE_S` does not add a segment, so container padding such as
AAC priming (a 10.02-s file from a 10-s recording) does not create an almost empty last second.

A model trained on ``T`` segments is applied to a longer clip over non-overlapping windows of ``T``
consecutive segments: ``[0, T), [T, 2T), ...``. The last window is completed by repeating its last
real segment (so every window looks like a real clip to the temporal attention) and a mask marks
which positions are real. :meth:`Windows.scatter` puts the per-position answers back on the clip's
timeline, so a 60-s clip gives 60 per-second answers from a T=10 model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

TAIL_TOLERANCE_S = 0.1


def count_segments(duration: float, segment_seconds: float = 1.0) -> int:
    """Number of segments for a clip: ``ceil`` of its length in segments, at least one."""
    if not math.isfinite(duration) or duration <= 0:
        return 1
    return max(1, math.ceil((duration - TAIL_TOLERANCE_S) / segment_seconds))


def segment_targets(num_segments: int, duration: float, segment_seconds: float = 1.0,
                    position: float = 0.5) -> np.ndarray:
    """Time (s) of the frame to show the model for each segment.

    Args:
        num_segments: number of segments.
        duration: clip duration in seconds (a last partial segment uses its real part only).
        segment_seconds: segment length.
        position: where inside a segment to take the frame, 0 = start, 0.5 = centre (default).

    Returns:
        float64 array (num_segments,) of target times.
    """
    starts = np.arange(num_segments, dtype=np.float64) * segment_seconds
    ends = np.minimum(starts + segment_seconds, max(duration, 0.0))
    ends = np.where(ends > starts, ends, starts + segment_seconds)
    return starts + position * (ends - starts)


@dataclass(frozen=True)
class Windows:
    """Non-overlapping windows of ``T`` segments over a clip of ``num_segments``.

    Attributes:
        index: int64 (W, T) segment index at each window position (the padding repeats the last).
        mask: bool (W, T), True where the position is a real segment (not padding).
    """

    index: np.ndarray
    mask: np.ndarray

    @property
    def num_windows(self) -> int:
        return int(self.index.shape[0])

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """Per-segment tensor (N, ...) -> windows (W, T, ...)."""
        idx = torch.as_tensor(self.index, device=x.device)
        return x[idx.reshape(-1)].reshape(*self.index.shape, *x.shape[1:])  # (W, T, ...)

    def scatter(self, y: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """Per-position answers (W, T, ...) -> per-segment answers (N, ...), padding dropped."""
        flat_mask = self.mask.reshape(-1)
        flat = y.reshape(-1, *y.shape[2:])  # (W*T, ...)
        if isinstance(flat, torch.Tensor):
            return flat[torch.as_tensor(flat_mask, device=flat.device)]
        return flat[flat_mask]


def windows(num_segments: int, T: int) -> Windows:
    """Plan non-overlapping windows of ``T`` segments; see the module docstring for the policy."""
    if num_segments < 1 or T < 1:
        raise ValueError(f"need num_segments >= 1 and T >= 1, got {num_segments}, {T}")
    count = math.ceil(num_segments / T)
    pos = np.arange(count * T, dtype=np.int64).reshape(count, T)  # (W, T)
    mask = pos < num_segments
    return Windows(index=np.minimum(pos, num_segments - 1), mask=mask)
