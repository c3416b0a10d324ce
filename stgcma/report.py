"""Write an analysis to a folder: result.json, the mask-overlay mp4 (or mask layers), mask PNGs, the AVE
timeline, answers, and explanation images (cross-modal attention and an Integrated-Gradients
attribution of one prediction).

Used by ``python -m stgcma analyze`` and by the app's download buttons, so both produce the same
files. Every output file carries the media warnings (no audio track, truncation...) in result.json,
and the overlay video keeps the original audio.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from stgcma.checkpoint import atomic_write_bytes
from stgcma.inference import Analysis, Predictor
from stgcma.media import plot_timeline, render_mask_video, save_mask_pngs
from stgcma.media.browser import browser_playable, layer_size, mask_layers

OVERLAY = "overlay.mp4"


def write_explanations(predictor: Predictor, analysis: Analysis, out: Path, second: int | None = None,
                       ig_steps: int = 8) -> dict[str, Any]:
    """Attention (aggregate over blocks, spatial stage) and IG attribution images for one second.

    The explained prediction is the AVE class at ``second`` (default: the most confident event second,
    else the middle one); AVS is used when the checkpoint has no AVE model.
    """
    import cv2

    from stgcma.media.heatmaps import heat_on_frame, spectrogram_figure

    task = "ave" if "ave" in predictor.models else "avs" if "avs" in predictor.models else None
    if task is None:
        return {}
    n = int(analysis.facts["num_segments"])
    if second is None:
        second = n // 2
        if analysis.ave is not None:
            event = np.asarray(analysis.ave["label_ids"]) != analysis.ave["background_index"]
            if event.any():
                second = int(np.argmax(np.where(event, analysis.ave["confidence"], -1.0)))
    shift = predictor.models[task].config.preprocess.frame_shift_ms
    files: dict[str, Any] = {"explained_second": second, "explained_task": task}

    def save(name: str, image: np.ndarray) -> str:
        cv2.imwrite(str(out / name), image[..., ::-1])
        return str(out / name)

    att = predictor.attention(second, task=task, key=analysis.key)
    files["attention_frame"] = save("attention_frame.png", heat_on_frame(att["frame"], att["frame_heat"]))
    files["attention_spectrogram"] = save("attention_spectrogram.png", spectrogram_figure(
        att["spectrogram"], att["spectrogram_heat"], f"video -> audio attention, second {second}", shift))
    attr = predictor.attribute(second, task=task, method="ig", key=analysis.key, n_steps=ig_steps)
    files["attribution_frame"] = save("attribution_frame.png", heat_on_frame(attr["frame"], attr["frame_heat"]))
    files["attribution_spectrogram"] = save("attribution_spectrogram.png", spectrogram_figure(
        attr["spectrogram"], attr["spectrogram_heat"], f"IG attribution of '{attr['target_label']}'", shift))
    files["attribution"] = {"target": attr["target_label"], "audio_share": attr["audio_share"],
                            "visual_share": attr["visual_share"], "delta": attr["delta"], "method": "ig",
                            "steps": ig_steps}
    return files


def write_report(predictor: Predictor, path: str | Path, analysis: Analysis, out: str | Path,
                 questions: list[str] | None = None, progress: Callable[[float], None] | None = None,
                 extras: dict[str, Any] | None = None, explain: bool = True, overlay_video: bool = True,
                 overlay_layers: bool = False) -> dict[str, Any]:
    """Write every output for ``analysis`` of ``path`` into ``out``; returns the result dict (also result.json).

    ``overlay_video``: render the AVS overlay mp4 now (the app renders it later, see
    :func:`write_overlay_video`, and first shows ``overlay_layers``: one transparent PNG per second in
    ``layers/``, drawn by the page over the original video when :func:`browser_playable` says it plays).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = analysis.to_dict()
    files: dict[str, Any] = {}
    if analysis.avs is not None:
        masks = analysis.avs["masks"]
        if overlay_video:
            files["overlay"] = _render_overlay(predictor, path, masks, out, progress)
        elif (out / OVERLAY).exists():  # rendered for an earlier report of the same analysis (written atomically)
            files["overlay"] = str(out / OVERLAY)
        size = (int(analysis.facts.get("width", masks.shape[2])), int(analysis.facts.get("height", masks.shape[1])))
        files["masks"] = [str(p) for p in save_mask_pngs((masks > 0.5).astype(np.float32), out / "masks", size=size)]
        if overlay_layers:
            files["layers"] = _write_layers(masks, size, out / "layers")
    if analysis.ave is not None:
        files["timeline"] = str(plot_timeline(analysis.ave["probs"], analysis.ave["class_names"], out / "timeline.png",
                                              title="audio-visual events per second",
                                              labels=analysis.ave["label_ids"]))
    if questions:
        result["answers"] = [predictor.ask(q, analysis.key) for q in questions]
    if explain:
        files["explanations"] = write_explanations(predictor, analysis, out)
    if extras:
        result.update(extras)
    result["browser_playable"] = browser_playable(analysis.facts, path)
    result["files"] = files
    atomic_write_bytes(out / "result.json", json.dumps(result, indent=2, default=_plain).encode())
    return result


def write_overlay_video(predictor: Predictor, path: str | Path, analysis: Analysis, out: str | Path,
                        progress: Callable[[float], None] | None = None) -> str | None:
    """Render the AVS overlay mp4 of a report written without it, and add it to its result.json.

    Returns the mp4's path, or None when the analysis has no AVS masks.
    """
    if analysis.avs is None:
        return None
    out = Path(out)
    video = _render_overlay(predictor, path, analysis.avs["masks"], out, progress)
    report = out / "result.json"
    if report.exists():
        result = json.loads(report.read_text())
        result.setdefault("files", {})["overlay"] = video
        atomic_write_bytes(report, json.dumps(result, indent=2, default=_plain).encode())
    return video


def _render_overlay(predictor: Predictor, path: str | Path, masks: np.ndarray, out: Path,
                    progress: Callable[[float], None] | None) -> str:
    """The overlay mp4, written under a temporary name and renamed: an existing one is always whole."""
    partial = out / f".overlay-{uuid.uuid4().hex[:12]}.partial.mp4"  # one per writer: two may race
    try:
        render_mask_video(path, masks, partial, limits=predictor.limits, progress=progress)
        partial.replace(out / OVERLAY)
    finally:
        partial.unlink(missing_ok=True)
    return str(out / OVERLAY)


def _write_layers(masks: np.ndarray, size: tuple[int, int], folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for t, data in enumerate(mask_layers(masks, layer_size(*size))):
        paths.append(str(folder / f"layer_{t:04d}.png"))
        Path(paths[-1]).write_bytes(data)
    return paths


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    return str(value)
