"""Uploaded video -> STG-CMA model tensors (METHOD.md "Inputs"), with the media facts and warnings.

:func:`load_clip` = :func:`~stgcma.media.decode.decode_clip` + the shared preprocessing of
:mod:`~stgcma.media.features`, so the demo feeds the model exactly what training fed it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from stgcma.config import PreprocessConfig
from stgcma.media.decode import DecodedClip, MediaLimits, decode_clip
from stgcma.media.features import frames_to_tensor, segment_fbanks
from stgcma.media.segments import Windows, windows


@dataclass
class ClipInputs:
    """Model inputs for every one-second segment of a clip.

    Attributes:
        video: float32 (N, 3, S, S), normalised frames.
        audio: float32 (N, 1, F, M), normalised fbanks.
        clip: the decoded media with its facts and ``warnings``.
    """

    video: torch.Tensor
    audio: torch.Tensor
    clip: DecodedClip

    @property
    def num_segments(self) -> int:
        return int(self.video.shape[0])

    @property
    def warnings(self) -> list[str]:
        return self.clip.warnings

    def windows(self, T: int) -> Windows:
        """Non-overlapping windows of ``T`` segments (last one padded; see :mod:`segments`)."""
        return windows(self.num_segments, T)


def clip_inputs(clip: DecodedClip, cfg: PreprocessConfig) -> ClipInputs:
    """Turn a decoded clip into model tensors with ``cfg``'s preprocessing."""
    if clip.sample_rate != cfg.sample_rate:
        raise ValueError(f"clip decoded at {clip.sample_rate} Hz but the model expects {cfg.sample_rate} Hz")
    video = frames_to_tensor(clip.frames, cfg)  # (N, 3, S, S)
    audio = segment_fbanks(clip.waveform, clip.num_segments, cfg)  # (N, 1, F, M)
    return ClipInputs(video=video, audio=audio, clip=clip)


def load_clip(
    path: str | Path,
    cfg: PreprocessConfig | None = None,
    limits: MediaLimits | None = None,
    *,
    progress: Callable[[float], None] | None = None,
) -> ClipInputs:
    """Decode a video file and build the model inputs for all its segments.

    Raises:
        MediaError: typed, one-line explanation of why the file cannot be used.
    """
    cfg = cfg or PreprocessConfig()
    clip = decode_clip(path, cfg.sample_rate, limits, segment_seconds=cfg.segment_seconds, progress=progress)
    return clip_inputs(clip, cfg)
