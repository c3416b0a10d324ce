"""The About panel: the model card of the model a session uses, as Markdown (plain data in, text out).

Per task: what :meth:`stgcma.inference.Predictor.describe` says (the same facts as the Hub model
card of :func:`stgcma.hub.model_card`: backbone and its pretraining, preset, adapters, trainable and
total parameters, training data), the measured quality next to the world's ceilings and floors when
a ``quality.json`` sits beside the checkpoint (the embedded default's, written by ``build-default``),
else the validation metrics stored in the checkpoint, and the limitation in plain words.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("stgcma.app")

QUALITY_NAME = "quality.json"
SYNTHAV_LIMITATION = ("trained on SynthAV, a synthetic world of drawn objects and rendered sounds: it knows its own "
                      "synthetic world, not real footage, so on real videos its outputs mean little.")
OTHER_LIMITATION = ("a model knows only the data it was trained on: on clips unlike that data (the Analyze tab says "
                    "when a clip is out of its world) its outputs mean little.")
# task -> (metric, what it is called, shown as a percentage?, the bounds entry that is its ceiling)
MAIN_METRICS = {"ave": [("accuracy", "segment accuracy", True, "ceiling")],
                "avs": [("miou", "mIoU", False, "ceiling"), ("fscore", "F-score", False, "fscore")],
                "avqa": [("accuracy", "overall accuracy", True, "ceiling")]}
FLOOR_NAMES = {"avqa": "question-only floor"}


def read_quality(source: str | None) -> dict[str, Any] | None:
    """The quality report beside a task checkpoint (``<model>/quality.json`` for ``<model>/<task>/``), if any."""
    if not source:
        return None
    path = Path(source).parent / QUALITY_NAME
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError) as err:
        log.warning("cannot read %s: %s", path, err)
        return None


def _value(value: float, percent: bool) -> str:
    return f"{100 * value + 1e-9:.1f}%" if percent else f"{value + 1e-12:.3f}"  # 0.5225 -> 52.3%, as README rounds


def recipe_data(quality: dict[str, Any] | None, task: str) -> str | None:
    """The training data of a ``build-default`` recipe, in words (None without a recipe for ``task``)."""
    recipe = (quality or {}).get("recipe") or {}
    entry = (recipe.get("tasks") or {}).get(task)
    if not entry:
        return None
    world = ",".join(w for w in (recipe.get("world", ""), entry.get("world", "")) if w)
    text = (f"SynthAV `{world or 'world=shapes'}`: {entry.get('n_train')} fresh clips per epoch for "
            f"{entry.get('epochs')} epochs")
    refit = entry.get("refit")
    if refit:
        questions = f" x {refit['questions']} questions" if refit.get("questions", 1) > 1 else ""
        text += (f", then the head alone refitted on the frozen encoder's features of {refit.get('n_train')} "
                 f"clips{questions} for {refit.get('epochs')} epochs")
    return text + " (`python -m stgcma build-default`)"


def quality_text(task: str, facts: dict[str, Any], quality: dict[str, Any] | None) -> str:
    """Measured quality of ``task``: test metrics next to the world's ceiling/floor, else validation metrics."""
    test = ((quality or {}).get("test") or {}).get(task)
    if test:
        bounds = ((quality or {}).get("bounds") or {}).get(task) or {}
        parts = []
        for metric, name, percent, ceiling in MAIN_METRICS.get(task, []):
            if metric not in test:
                continue
            known = [f"ceiling {_value(bounds[ceiling], percent)}"] if ceiling in bounds else []
            if metric != "fscore" and "floor" in bounds:
                known.append(f"{FLOOR_NAMES.get(task, 'floor')} {_value(bounds['floor'], percent)}")
            parts.append(f"{name} **{_value(test[metric], percent)}**" + (f" ({', '.join(known)})" if known else ""))
        where = f" on `{test['data']}`, clips never used in training" if test.get("data") else ""
        return "test " + "; ".join(parts) + where
    val = {k: v for k, v in facts.get("val", {}).items() if k != "loss" and isinstance(v, (int, float))}
    if val:
        shown = ", ".join(f"{k} {v:.3f}" for k, v in val.items())
        epoch = f" (epoch {facts['epoch']})" if facts.get("epoch") else ""
        return f"validation {shown}{epoch}, stored in the checkpoint; no test measurement or world bounds recorded"
    return "not measured"


def about_markdown(predictor: Any, label: str) -> str:
    """The About panel for ``predictor`` (a :class:`stgcma.inference.Predictor`) named ``label``."""
    if predictor is None:
        return "No model is loaded, so there is nothing to describe yet."
    lines = [f"#### {label}", "",
             "STG-CMA: one frozen image transformer shared by audio (log-mel fbank as an image) and video, "
             "adapted by small trainable temporal, spatial and global cross-modal adapters "
             "(Wang, Tian, Hatzinakos, CVPR-W 2024).", ""]
    synthetic, other = [], []
    quality_note = None
    for task in predictor.tasks:
        try:
            facts = predictor.describe(task)
        except Exception as err:  # noqa: BLE001 -- one task without a card must not hide the others
            log.warning("no card for %s: %s", task, err)
            lines += [f"**{task.upper()}**: no model card ({type(err).__name__}).", ""]
            continue
        quality = read_quality(predictor.meta[task].get("source"))
        data = facts["data"] if facts["data"] != "not recorded" else (recipe_data(quality, task) or facts["data"])
        (synthetic if data.lower().startswith("synthav") else other).append(task.upper())
        total = facts["total"]
        params = f"{facts['trainable']:,} trainable" + (
            f" of {total:,} in all ({100 * facts['trainable'] / total:.1f}% trained; frozen trunk counted once)"
            if total else "")
        outputs = f"{facts['num_classes']} output" + ("s" if facts["num_classes"] != 1 else "")
        lines += [f"**{task.upper()}**: {facts['task_name']}, {outputs}", "",
                  "| property | value |", "|---|---|",
                  f"| frozen backbone | {facts['weights']} |",
                  f"| preset | `{facts['preset']}` |",
                  f"| adapters | {facts['adapters']} |",
                  f"| parameters | {params} |",
                  f"| training data | {data if data.startswith('SynthAV `') else f'`{data}`'} |",
                  f"| quality | {quality_text(task, facts, quality)} |", ""]
        if quality and quality.get("note") and task in (quality.get("test") or {}):
            quality_note = quality["note"]
    if quality_note:
        lines += [f"<span class='stg-note'>{quality_note}</span>", ""]
    if synthetic:
        lines.append(f"**Limitation** ({', '.join(synthetic)}): {SYNTHAV_LIMITATION}")
    if other:
        lines.append(f"**Limitation** ({', '.join(other)}): {OTHER_LIMITATION}")
    return "\n".join(lines).strip() + "\n"
