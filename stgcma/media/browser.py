"""What a browser can show as it is: which sources play in a ``<video>`` element, and mask layers for them.

Re-encoding a clip with its AVS masks burnt in (:func:`stgcma.media.render.render_mask_video`)
costs several times decoding it and running the model (``python -m stgcma bench e2e``). When the
uploaded file already plays in every browser, the app instead plays the original and stacks one
transparent PNG per segment over it (:func:`mask_layers`), cross-faded by the page as the video
plays. :func:`browser_playable` decides conservatively, from the facts :func:`decode_clip` reports:
H.264 (8-bit 4:2:0), VP8, VP9 or AV1 pictures in an MP4/QuickTime or WebM file, with AAC, MP3, Opus
or Vorbis sound (or none). Anything else (HEVC, 10-bit, AVI, MKV, MPEG-TS...) gets the rendered mp4.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from stgcma.media.render import DEFAULT_COLOR

PLAYABLE_VIDEO = {"h264", "vp8", "vp9", "av1"}
PLAYABLE_AUDIO = {None, "aac", "mp3", "opus", "vorbis"}
PLAYABLE_PIXELS = {None, "yuv420p", "yuvj420p"}  # None: not reported; 10-bit or 4:4:4 H.264 fails in Chrome
MP4_SUFFIXES = {".mp4", ".m4v", ".mov"}


def browser_playable(facts: Mapping[str, Any], path: str | Path | None = None) -> bool:
    """Whether Chrome, Firefox and Safari all play this clip as it is (see the module docstring).

    Args:
        facts: :meth:`DecodedClip.facts` (``container``, ``video_codec``, ``audio_codec``, ``pixel_format``).
        path: the file, whose suffix decides the MIME type the server sends (default: ``facts["path"]``).
    """
    suffix = Path(str(path if path is not None else facts.get("path", ""))).suffix.lower()
    container = str(facts.get("container") or "")
    if suffix in MP4_SUFFIXES:
        family = "mp4" in container.split(",")
    elif suffix == ".webm":
        family = "webm" in container.split(",")
    else:
        return False
    return (family and facts.get("video_codec") in PLAYABLE_VIDEO and facts.get("audio_codec") in PLAYABLE_AUDIO
            and facts.get("pixel_format") in PLAYABLE_PIXELS)


def layer_size(width: int, height: int, long_side: int = 320) -> tuple[int, int]:
    """(w, h) of a layer with the picture's aspect ratio and ``long_side`` pixels on its long side."""
    if width <= 0 or height <= 0:
        return long_side, long_side
    scale = long_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def mask_layers(masks: np.ndarray, size: tuple[int, int], color: Sequence[int] = DEFAULT_COLOR,
                alpha: float = 0.5) -> list[bytes]:
    """One RGBA PNG per segment: ``color`` with opacity ``alpha * mask``, stretched to ``size``.

    The same blend as :func:`stgcma.media.render.overlay` when the page shows a layer at full opacity
    over the frame (masks are in upright model coordinates, which cover the whole picture).

    Args:
        masks: float (T, h, w) in [0, 1].
        size: (width, height) of the layers; give the picture's aspect ratio (:func:`layer_size`).
        color: RGB colour.
        alpha: opacity where the mask is 1.

    Returns:
        PNG bytes, one per segment.
    """
    masks = np.asarray(masks, dtype=np.float32)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (T, h, w), got {masks.shape}")
    w, h = size
    layers = []
    for mask in masks:
        weight = cv2.resize(np.clip(mask, 0.0, 1.0), (w, h), interpolation=cv2.INTER_LINEAR)  # (h, w)
        bgra = np.empty((h, w, 4), np.uint8)
        bgra[..., :3] = np.asarray(color, np.uint8)[::-1]  # OpenCV writes BGR(A)
        bgra[..., 3] = np.clip(weight * (255.0 * alpha) + 0.5, 0, 255).astype(np.uint8)
        ok, data = cv2.imencode(".png", bgra)
        if not ok:
            raise RuntimeError("PNG encoding of a mask layer failed")
        layers.append(data.tobytes())
    return layers
