"""Captum attributions of one STG-CMA prediction to the frames and the spectrogram together.

Reference: Wang, Tian, Hatzinakos, "Towards Efficient Audio-Visual Learners via Empowering
Pre-trained Vision Transformers with Cross-Modal Adaptation", CVPR-W 2024 (arXiv 2403.01862);
Integrated Gradients: Sundararajan et al., ICML 2017; Occlusion: Zeiler & Fergus, ECCV 2014.

A ``Target`` picks one scalar of the model's output; ``attribute`` explains it with Integrated
Gradients (one path from the baseline to BOTH inputs at once, so the attributions of frames and
spectrogram add up to f(x) - f(baseline) together) or with Occlusion (windows over each input in
turn). The baseline is zeros: the inputs are normalised, so zero is the dataset mean frame and fbank.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from captum.attr import IntegratedGradients, Occlusion
from torch import nn

from stgcma.explain.common import as_clip, as_task_inputs, block_layouts, eval_mode

METHODS = ("ig", "occlusion")


@dataclass(frozen=True)
class Target:
    """One scalar output to explain; build with ``Target.ave``, ``Target.avs`` or ``Target.avqa``.

    Attributes:
        task: "ave", "avs" or "avqa" (must be the model's head task).
        segment: the AVE segment or the AVS frame t.
        index: the AVE event class or the AVQA answer.
        reduction: AVS only. "positive" (default): the sum of frame t's mask logits over the pixels
            predicted positive (logit > 0) for the explained input; the pixel set is fixed from that
            prediction, so the explained function is linear in the logits and IG stays complete.
            If no pixel is predicted positive it falls back to "mean": the mean mask logit of frame t.
    """

    task: str
    segment: int | None = None
    index: int | None = None
    reduction: str = "positive"

    @classmethod
    def ave(cls, segment: int, event_class: int) -> Target:
        """The logit of ``event_class`` at ``segment``."""
        return cls("ave", segment=segment, index=event_class)

    @classmethod
    def avs(cls, frame: int, reduction: str = "positive") -> Target:
        """The mask of ``frame`` (see ``reduction``)."""
        if reduction not in ("positive", "mean"):
            raise ValueError(f"AVS reduction must be 'positive' or 'mean'; got {reduction!r}")
        return cls("avs", segment=frame, reduction=reduction)

    @classmethod
    def avqa(cls, answer: int) -> Target:
        """The logit of answer index ``answer``."""
        return cls("avqa", index=answer)


@dataclass
class Attribution:
    """Attributions of one target for one clip.

    Attributes:
        method: "ig" or "occlusion".
        target: what was explained; ``description`` says it in words (incl. an AVS fallback).
        video: (T, S, S) sum over RGB of |attribution| per pixel.
        audio: (T, F, M) |attribution| per fbank bin (time frame, mel bin).
        video_raw: (T, 3, S, S) signed attributions of the frames.
        audio_raw: (T, 1, F, M) signed attributions of the fbank.
        audio_share, visual_share: sum |attr| of each modality / both (NaN when all are zero).
        audio_share_per_segment: (T,) the audio share within each segment.
        output: the target's value f(x) on the clip.
        baseline_output: f(baseline) (IG; None for Occlusion).
        delta: IG's convergence delta, sum(attributions) - (f(x) - f(baseline)) (None for Occlusion).
    """

    method: str
    target: Target
    description: str
    video: np.ndarray
    audio: np.ndarray
    video_raw: np.ndarray
    audio_raw: np.ndarray
    audio_share: float
    visual_share: float
    audio_share_per_segment: np.ndarray
    output: float
    baseline_output: float | None = None
    delta: float | None = None

    def to_dict(self) -> dict[str, np.ndarray]:
        """Flat numpy dict of the arrays and numbers (NaN where a number is None)."""
        arrays = {k: getattr(self, k) for k in ("video", "audio", "video_raw", "audio_raw", "audio_share_per_segment")}
        numbers = {k: getattr(self, k) for k in ("audio_share", "visual_share", "output", "baseline_output", "delta")}
        arrays.update({k: np.asarray(np.nan if v is None else v, dtype=np.float64) for k, v in numbers.items()})
        return arrays


def _scalar(target: Target, logits: torch.Tensor, task: str) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    """The map logits (N, ...) -> (N,) that ``target`` selects, built from the clip's own logits (1, ...)."""
    if target.task != task:
        raise ValueError(f"target is for {target.task!r} but the model's head is {task!r}")
    if task in ("ave", "avs"):
        frames = logits.shape[1]
        if target.segment is None or not 0 <= target.segment < frames:
            raise ValueError(f"target segment must lie in [0, {frames}); got {target.segment}")
    t, c = target.segment, target.index
    if task in ("ave", "avqa"):
        classes = logits.shape[-1]
        if c is None or not 0 <= c < classes:
            raise ValueError(f"target index must lie in [0, {classes}); got {c}")
        if task == "ave":
            return (lambda out: out[:, t, c]), f"AVE logit of class {c} at segment {t}"
        return (lambda out: out[:, c]), f"AVQA logit of answer {c}"
    mask = (logits[0, t, 0] > 0).to(logits.dtype)  # (S, S), fixed from the explained input
    if target.reduction == "positive" and bool(mask.any()):
        count = int(mask.sum())
        return (lambda out: (out[:, t, 0] * mask).sum((-2, -1))), \
            f"AVS: sum of frame {t}'s mask logits over its {count} predicted-positive pixels"
    note = " (no pixel predicted positive)" if target.reduction == "positive" else ""
    return (lambda out: out[:, t, 0].mean((-2, -1))), f"AVS: mean mask logit of frame {t}{note}"


def attribute(
    model: nn.Module, video: Any, audio: Any, target: Target, method: str = "ig", *, n_steps: int = 32,
    internal_batch_size: int | None = 8, window: int | None = None, audio_window: tuple[int, int] | None = None,
    stride: int | None = None, audio_stride: tuple[int, int] | None = None, perturbations_per_eval: int = 8,
    show_progress: bool = False, **task_inputs: Any,
) -> Attribution:
    """Attribute ``target`` to the frames and the spectrogram of one clip.

    Args:
        model: an ``STGCMAModel``; run in eval mode (its mode is restored). Its dtype is used (call
            ``.double()`` first for float64 attributions).
        video: (T, 3, S, S) or (1, T, 3, S, S) normalised frames.
        audio: (T, 1, F, M) or (1, T, 1, F, M) normalised fbank.
        target: the scalar to explain.
        method: "ig" (Integrated Gradients, Gauss-Legendre, zero baselines, both inputs on one path)
            or "occlusion" (windows set to zero, one input at a time).
        n_steps: IG integration steps.
        internal_batch_size: IG path points per forward pass (bounds memory); None = all at once.
        window: Occlusion window side p over frames: (1 segment, 3 channels, p, p). Default: the
            pixel stride of the encoder's final tokens (one window per final token).
        audio_window: Occlusion window (p_t, p_f) over the fbank: (1 segment, 1, p_t, p_f). Default:
            the final audio token stride in both directions.
        stride, audio_stride: Occlusion steps; default the windows (no overlap).
        perturbations_per_eval: occluded copies per forward pass.
        show_progress: Occlusion progress bar (captum's).
        **task_inputs: what the head needs, e.g. ``question=(L,) or (1, L)`` token ids for AVQA.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    video, audio = as_clip(model, video, audio)
    inputs = as_task_inputs(model, task_inputs)
    keys = [k for k, v in inputs.items() if isinstance(v, torch.Tensor)]
    fixed = {k: v for k, v in inputs.items() if k not in keys}
    extra = tuple(inputs[k] for k in keys)
    with eval_mode(model):
        with torch.no_grad():
            logits = model(video, audio, **inputs)["logits"]
            scalar, description = _scalar(target, logits, model.config.head.task)
            output = float(scalar(logits)[0])

        def forward(v: torch.Tensor, a: torch.Tensor, *values: torch.Tensor) -> torch.Tensor:
            return scalar(model(v, a, **dict(zip(keys, values, strict=True)), **fixed)["logits"])  # (N,)

        baseline_output = delta = None
        if method == "ig":
            baselines = (torch.zeros_like(video), torch.zeros_like(audio))
            with torch.enable_grad():
                (attr_v, attr_a), deltas = IntegratedGradients(forward).attribute(
                    (video, audio), baselines=baselines, additional_forward_args=extra or None, n_steps=n_steps,
                    internal_batch_size=internal_batch_size, return_convergence_delta=True)
            with torch.no_grad():
                baseline_output = float(forward(*baselines, *extra)[0])
            delta = float(deltas[0])
        else:
            final = block_layouts(model.encoder)[-1].stride
            p = window or final
            pt, pf = audio_window or (final, final)
            s = stride or p
            st, sf = audio_stride or (pt, pf)
            with torch.no_grad():
                attr_v, attr_a = Occlusion(forward).attribute(
                    (video, audio), sliding_window_shapes=((1, 3, p, p), (1, 1, pt, pf)),
                    strides=((1, 3, s, s), (1, 1, st, sf)), baselines=(0.0, 0.0),
                    additional_forward_args=extra or None, perturbations_per_eval=perturbations_per_eval,
                    show_progress=show_progress)
    raw_v = attr_v[0].detach().double().cpu().numpy()  # (T, 3, S, S)
    raw_a = attr_a[0].detach().double().cpu().numpy()  # (T, 1, F, M)
    heat_v, heat_a = np.abs(raw_v).sum(1), np.abs(raw_a)[:, 0]  # (T, S, S), (T, F, M)
    seg_v, seg_a = heat_v.reshape(len(heat_v), -1).sum(1), heat_a.reshape(len(heat_a), -1).sum(1)  # (T,)
    total = seg_v.sum() + seg_a.sum()
    audio_share = float(seg_a.sum() / total) if total > 0 else float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        per_segment = np.where(seg_v + seg_a > 0, seg_a / (seg_v + seg_a), np.nan)
    return Attribution(
        method, target, description, heat_v.astype(np.float32), heat_a.astype(np.float32),
        raw_v.astype(np.float32), raw_a.astype(np.float32), audio_share, 1.0 - audio_share,
        per_segment.astype(np.float32), output, baseline_output, delta)
