"""Reading dataset media into model tensors through :mod:`stgcma.media` (METHOD.md "Inputs").

Videos go through :func:`stgcma.media.decode.decode_clip` (one frame at the centre of every
one-second segment plus a mono waveform) and the shared preprocessing of
:mod:`stgcma.media.features`; AVSBench's PNG frames and masks are read with Pillow and its wav files
with PyAV (never ``torchaudio.load``, which needs system FFmpeg libraries).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from stgcma.config import PreprocessConfig
from stgcma.media.decode import MediaLimits, decode_audio, decode_clip
from stgcma.media.features import frames_to_tensor, segment_fbanks


def pick_segments(available: int, num_segments: int, spread: bool = False) -> np.ndarray:
    """Which one-second segments of a clip feed the model.

    Args:
        available: segments the clip has.
        num_segments: segments the model takes (T).
        spread: take T evenly spaced segments over a longer clip (MUSIC-AVQA: every 6th second of a
            60-s clip, as AVST samples its features) instead of the first T.

    Returns:
        int64 (T,) segment indices; a short clip repeats its last segment.
    """
    if spread and available > num_segments:
        return np.floor(np.arange(num_segments) * available / num_segments).astype(np.int64)
    return np.minimum(np.arange(num_segments), max(available, 1) - 1).astype(np.int64)


def decode_video_segments(path: str | Path, cfg: PreprocessConfig, num_segments: int | None = None,
                          spread: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Decode the T segments of a video file that feed the model, before any preprocessing.

    Returns:
        uint8 frames (T, H, W, 3) and the T one-second windows of the mono waveform, concatenated
        (T * L,) float32.
    """
    T = num_segments or cfg.num_segments
    limits = MediaLimits(max_frame_side=max(2 * cfg.image_size, 256))
    clip = decode_clip(path, cfg.sample_rate, limits, segment_seconds=cfg.segment_seconds)
    available = min(clip.num_segments, len(clip.frames))
    index = pick_segments(available, T, spread)
    seg_len = int(round(cfg.segment_seconds * cfg.sample_rate))
    wave = np.pad(clip.waveform, (0, max(0, (int(index.max()) + 1) * seg_len - clip.waveform.size)))
    windows = wave[index[:, None] * seg_len + np.arange(seg_len)[None, :]]  # (T, L)
    return clip.frames[index], windows.reshape(-1)


def load_video_segments(path: str | Path, cfg: PreprocessConfig, num_segments: int | None = None,
                        spread: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode a video file into T (frame, fbank) segments.

    Returns:
        video float (T, 3, S, S) and audio float (T, 1, F, M), normalised.
    """
    T = num_segments or cfg.num_segments
    frames, windows = decode_video_segments(path, cfg, T, spread)
    return frames_to_tensor(frames, cfg), segment_fbanks(windows, T, cfg)  # (T, 3, S, S), (T, 1, F, M)


def load_wav_segments(path: str | Path, cfg: PreprocessConfig, num_segments: int) -> torch.Tensor:
    """Fbanks of the first T seconds of an audio file (any format PyAV reads), silence-padded.

    Returns:
        float (T, 1, F, M).
    """
    seconds = num_segments * cfg.segment_seconds
    wave, _ = decode_audio(path, 0.0, seconds, cfg.sample_rate)
    if wave is None:
        raise ValueError(f"{path}: no audio stream")
    return segment_fbanks(wave, num_segments, cfg)


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as uint8 RGB (H, W, 3)."""
    with Image.open(path) as image:
        return np.array(image.convert("RGB"))


def load_png_frames(paths: list[Path], cfg: PreprocessConfig) -> torch.Tensor:
    """Frame images -> float (T, 3, S, S); frames of different sizes are each resized."""
    return torch.cat([frames_to_tensor(read_rgb(p)[None], cfg) for p in paths])  # (T, 3, S, S)


def load_mask(path: str | Path, size: int) -> torch.Tensor:
    """A ground-truth mask PNG as float {0, 1} (S, S): grey level >= 128 is foreground; resized with
    nearest neighbour when its size differs."""
    with Image.open(path) as image:
        grey = np.asarray(image.convert("L"))
    mask = torch.from_numpy((grey >= 128).astype(np.float32))  # (H, W)
    if mask.shape != (size, size):
        mask = F.interpolate(mask[None, None], size=(size, size), mode="nearest")[0, 0]  # (S, S)
    return mask
