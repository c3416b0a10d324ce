"""Pure preprocessing shared by training and inference (STG-CMA, METHOD.md "Inputs").

Frames and waveforms become model tensors only through these functions, driven by a
:class:`~stgcma.config.PreprocessConfig`, so the training data pipeline and the demo cannot drift.

Image policy: a plain (non aspect-preserving, no crop) resize to ``image_size`` x ``image_size``,
as the reference code does; bilinear with antialiasing, like PIL's bilinear resize that torchvision
transforms apply to PIL images. Then scaling to [0, 1] and per-channel normalisation.

Audio policy: the reference kaldi log-mel fbank (htk_compat, hanning window, no dither, no energy)
of the mean-removed waveform, zero-padded or cut to ``target_frames`` and normalised as
``(fbank - mean) / (2 * std)``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torchaudio.compliance import kaldi

from stgcma.config import PreprocessConfig


def frames_to_tensor(frames: np.ndarray, cfg: PreprocessConfig) -> torch.Tensor:
    """Turn RGB frames into normalised model input.

    Args:
        frames: uint8 array (T, H, W, 3).
        cfg: preprocessing settings (``image_size``, ``image_mean``, ``image_std``).

    Returns:
        float32 tensor (T, 3, S, S) with S = ``cfg.image_size``.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got {frames.shape}")
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()  # (T, 3, H, W)
    size = cfg.image_size
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    x = x.clamp_(0.0, 255.0).div_(255.0)
    mean = torch.tensor(cfg.image_mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(cfg.image_std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - mean) / std  # (T, 3, S, S)


def waveform_to_fbank(wave: np.ndarray, cfg: PreprocessConfig, normalise: bool = True) -> torch.Tensor:
    """Kaldi log-mel fbank of one mono segment, padded/cut and normalised.

    Args:
        wave: float32 mono samples (S,) at ``cfg.sample_rate``.
        cfg: preprocessing settings.
        normalise: apply :func:`normalise_fbank` (False: the raw log-mel values a dataset cache stores).

    Returns:
        float32 tensor (1, target_frames, num_mel_bins).
    """
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    frame_len = int(round(cfg.sample_rate * cfg.frame_length_ms / 1000.0))
    if wave.size < frame_len:
        wave = np.pad(wave, (0, frame_len - wave.size))
    w = torch.from_numpy(wave.copy())
    w = (w - w.mean()).unsqueeze(0)  # (1, S)
    fbank = kaldi.fbank(
        w,
        htk_compat=True,
        sample_frequency=float(cfg.sample_rate),
        use_energy=False,
        window_type="hanning",
        num_mel_bins=cfg.num_mel_bins,
        dither=0.0,
        frame_shift=cfg.frame_shift_ms,
        frame_length=cfg.frame_length_ms,
    )  # (frames, M)
    n = fbank.shape[0]
    if n < cfg.target_frames:
        fbank = F.pad(fbank, (0, 0, 0, cfg.target_frames - n))
    fbank = fbank[: cfg.target_frames]  # (F, M)
    if normalise:
        fbank = normalise_fbank(fbank, cfg)
    return fbank.unsqueeze(0)  # (1, F, M)


def normalise_fbank(fbank: torch.Tensor, cfg: PreprocessConfig) -> torch.Tensor:
    """``(fbank - fbank_mean) / (2 * fbank_std)`` with the dataset statistics of ``cfg``."""
    return (fbank - cfg.fbank_mean) / (2.0 * cfg.fbank_std)


def segment_fbanks(wave: np.ndarray, num_segments: int, cfg: PreprocessConfig, normalise: bool = True) -> torch.Tensor:
    """Fbanks of consecutive ``segment_seconds`` windows of a mono waveform.

    Segment ``t`` covers samples ``[t * L, (t + 1) * L)`` with ``L = segment_seconds * sample_rate``;
    samples missing at the end are zeros.

    Args:
        wave: float32 mono samples (S,) at ``cfg.sample_rate``.
        num_segments: how many segments to cut.
        cfg: preprocessing settings.

    Returns:
        float32 tensor (num_segments, 1, target_frames, num_mel_bins).
    """
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    seg_len = int(round(cfg.segment_seconds * cfg.sample_rate))
    need = num_segments * seg_len
    if wave.size < need:
        wave = np.pad(wave, (0, need - wave.size))
    chunks = wave[:need].reshape(num_segments, seg_len)  # (N, L)
    return torch.stack([waveform_to_fbank(c, cfg, normalise) for c in chunks])  # (N, 1, F, M)
