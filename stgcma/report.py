"""Write an analysis to a folder: result.json, the mask-overlay mp4, mask PNGs, the AVE timeline, answers.

Used by ``python -m stgcma analyze`` and by the app's download buttons, so both produce the same
files. Every output file carries the media warnings (no audio track, truncation...) in result.json,
and the overlay video keeps the original audio.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from stgcma.checkpoint import atomic_write_bytes
from stgcma.inference import Analysis, Predictor
from stgcma.media import plot_timeline, render_mask_video, save_mask_pngs


def write_report(predictor: Predictor, path: str | Path, analysis: Analysis, out: str | Path,
                 questions: list[str] | None = None, progress: Callable[[float], None] | None = None,
                 extras: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write every output for ``analysis`` of ``path`` into ``out``; returns the result dict (also result.json)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = analysis.to_dict()
    files: dict[str, Any] = {}
    if analysis.avs is not None:
        masks = analysis.avs["masks"]
        files["overlay"] = str(render_mask_video(path, masks, out / "overlay.mp4", progress=progress))
        size = (int(analysis.facts.get("width", masks.shape[2])), int(analysis.facts.get("height", masks.shape[1])))
        files["masks"] = [str(p) for p in save_mask_pngs((masks > 0.5).astype(np.float32), out / "masks", size=size)]
    if analysis.ave is not None:
        files["timeline"] = str(plot_timeline(analysis.ave["probs"], analysis.ave["class_names"], out / "timeline.png",
                                              title="audio-visual events per second"))
    if questions:
        result["answers"] = [predictor.ask(q, analysis.key) for q in questions]
    if extras:
        result.update(extras)
    result["files"] = files
    atomic_write_bytes(out / "result.json", json.dumps(result, indent=2, default=_plain).encode())
    return result


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    return str(value)
