"""Write an analysis to a folder: result.json, the mask-overlay mp4, mask PNGs, the AVE timeline, answers,
and explanation images (cross-modal attention and an Integrated-Gradients attribution of one prediction).

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
                 extras: dict[str, Any] | None = None, explain: bool = True) -> dict[str, Any]:
    """Write every output for ``analysis`` of ``path`` into ``out``; returns the result dict (also result.json)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = analysis.to_dict()
    files: dict[str, Any] = {}
    if analysis.avs is not None:
        masks = analysis.avs["masks"]
        files["overlay"] = str(render_mask_video(path, masks, out / "overlay.mp4", limits=predictor.limits,
                                                     progress=progress))
        size = (int(analysis.facts.get("width", masks.shape[2])), int(analysis.facts.get("height", masks.shape[1])))
        files["masks"] = [str(p) for p in save_mask_pngs((masks > 0.5).astype(np.float32), out / "masks", size=size)]
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
    result["files"] = files
    atomic_write_bytes(out / "result.json", json.dumps(result, indent=2, default=_plain).encode())
    return result


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    return str(value)
