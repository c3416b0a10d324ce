"""Heatmaps for explanations, from numpy only: over frames and over the log-mel spectrogram.

Frame heatmaps come on the model's square input grid (a plain resize of the frame, see
``stgcma.media.features``), so resizing them back to the frame's size puts every value over the
pixels it was computed from. Spectrograms are the model's normalised log-mel fbank (time frames x
mel bins), drawn with time left to right and low frequencies at the bottom.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

HEAT_CMAP = "jet"
MIN_SIDE = 320


def colorize(values: np.ndarray, cmap: str = HEAT_CMAP) -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 3) uint8 RGB."""
    rgba = colormaps[cmap](np.clip(np.nan_to_num(values), 0.0, 1.0))  # (H, W, 4)
    return (rgba[..., :3] * 255).astype(np.uint8)


def heat_on_frame(frame: np.ndarray, heat: np.ndarray | None, alpha: float = 0.45) -> np.ndarray:
    """Blend a [0, 1] heatmap (any size) over an RGB uint8 frame (h, w, 3); small frames are enlarged."""
    image = np.ascontiguousarray(frame[..., :3], dtype=np.uint8)
    h, w = image.shape[:2]
    scale = max(1, int(np.ceil(MIN_SIDE / max(1, min(h, w)))))
    if scale > 1:
        image = cv2.resize(image, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST)
        h, w = image.shape[:2]
    if heat is None:
        return image
    heat = cv2.resize(np.asarray(heat, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)  # (h, w)
    colour = colorize(heat)
    weight = (alpha * np.clip(heat, 0.0, 1.0))[..., None]  # (h, w, 1): cold regions stay readable
    return (image * (1.0 - weight) + colour * weight).astype(np.uint8)


def robust_unit(heat: np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """Scale a non-negative map so its ``percentile`` maps to 1 (clipped): a few extreme pixels no longer
    darken the rest, as in captum's ``visualize_image_attr`` outlier handling."""
    heat = np.nan_to_num(np.asarray(heat, np.float32))
    top = float(np.percentile(heat, percentile)) if heat.size else 0.0
    return np.clip(heat / top, 0.0, 1.0) if top > 0 else heat


def spectrogram_figure(spec: np.ndarray, heat: np.ndarray | None, title: str,
                       frame_shift_ms: float = 10.0) -> np.ndarray:
    """The fbank (F time frames, M mel bins) as an RGB image with axes, a heatmap blended on top."""
    spec = np.asarray(spec, np.float32).T  # (M, F): mel on the vertical axis
    fig = Figure(figsize=(6.4, 4.8), dpi=100)
    ax = fig.subplots()
    extent = (0.0, spec.shape[1] * frame_shift_ms, 0.0, float(spec.shape[0]))
    ax.imshow(spec, origin="lower", aspect="auto", cmap="gray", extent=extent, interpolation="nearest")
    if heat is not None:
        heat = np.asarray(heat, np.float32).T  # (M, F)
        rgba = colormaps[HEAT_CMAP](np.clip(heat, 0.0, 1.0))
        rgba[..., 3] = 0.6 * np.clip(heat, 0.0, 1.0)
        ax.imshow(rgba, origin="lower", aspect="auto", extent=extent, interpolation="bilinear")
    ax.set_xlabel("time within the second (ms)")
    ax.set_ylabel("mel bin (low → high)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return figure_to_array(fig)


def figure_to_array(fig: Any) -> np.ndarray:
    """Render a matplotlib Figure (Agg) to an RGB uint8 array."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
