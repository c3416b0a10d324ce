"""A contact sheet of SynthAV clips, so anyone can look at a world (``python -m stgcma synth --sheet``).

One row per clip: ``columns`` frames spread over the clip, the sounding objects' AVS masks tinted green
(what the model must find), and a thin bar under each frame that is lit while the event is on screen
and heard (the AVE label).
"""

from __future__ import annotations

import numpy as np

from stgcma.data.synthav.clip import make_clip
from stgcma.data.synthav.render import render_frames, render_masks
from stgcma.data.synthav.scene import SynthConfig

TINT = np.array([40.0, 220.0, 60.0])


def contact_sheet(config: SynthConfig, seed: int = 0, split: str = "train", clips: int = 6, columns: int = 5,
                  size: int = 128) -> np.ndarray:
    """uint8 (clips * (size + 6), columns * size, 3): frames of the first ``clips`` clips of (seed, split)."""
    T = config.num_segments
    times = (np.linspace(0, T, columns, endpoint=False) + T / columns / 2).astype(np.float64)
    rows = []
    for index in range(clips):
        scene = make_clip(seed, index, config, split).scene
        frames = render_frames(scene, times, size).astype(np.float32)  # (C, S, S, 3)
        masks = render_masks(scene, times, size)  # (C, S, S)
        frames[masks] = 0.55 * frames[masks] + 0.45 * TINT
        labels = scene.ave_labels()
        bars = np.zeros((columns, 6, size, 3), dtype=np.float32)
        for c, t in enumerate(times):
            if labels[min(int(t), T - 1)] != scene.num_classes:
                bars[c, 1:5] = (250.0, 200.0, 40.0)
        tiles = np.concatenate([frames, bars], axis=1)  # (C, S + 6, S, 3)
        rows.append(np.concatenate(list(tiles), axis=1))  # (S + 6, C * S, 3)
    return np.clip(np.concatenate(rows, axis=0), 0, 255).astype(np.uint8)
