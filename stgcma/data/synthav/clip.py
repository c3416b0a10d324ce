"""One SynthAV clip, deterministic from (seed, split, index), and its labels for every task.

Clip ``i`` of a dataset draws from its own ``numpy.random.Generator`` seeded with
``(seed, split id, i)``, so it is the same whatever ``n`` is and whichever task reads it; the three
splits of a seed never share a clip.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from stgcma.data.synthav.questions import (
    Question,
    answer_vocabulary,
    blind_baseline,
    sample_scene_and_question,
)
from stgcma.data.synthav.scene import Scene, SynthConfig
from stgcma.data.synthav.styles import question_names

SPLITS = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class Clip:
    """A scene plus the one question asked about it."""

    id: str
    index: int
    scene: Scene
    question: Question

    def labels(self) -> dict:
        """JSON-ready labels of all tasks (class indices; the AVE background is ``num_classes``)."""
        s = self.scene
        return {
            "id": self.id,
            "event_class": s.event_class,
            "ave_label": s.ave_labels(),
            "visible_classes": s.visible_classes(),
            "sounding_classes": s.sounding_classes(),
            "audio_visual_classes": s.audio_visual_classes(),
            "sounding_objects": [s.sounding_objects(t) for t in range(s.num_segments)],
            "question": {
                "type": self.question.qtype.split("/"),
                "template": self.question.template,
                "values": list(self.question.values),
                "question": self.question.text,
                "answer": self.question.answer,
            },
        }


def split_id(split: str) -> int:
    """Numeric id of a split name (``train``/``val``/``test``)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
    return SPLITS[split]


def clip_id(seed: int, split: str, index: int) -> str:
    """Stable clip name, e.g. ``synthav-s0-train-000042``."""
    return f"synthav-s{seed}-{split}-{index:06d}"


def clip_rng(seed: int, split: str, index: int, stream: int = 0) -> np.random.Generator:
    """The generator of clip ``index`` (``stream`` > 0 gives independent side streams)."""
    return np.random.default_rng([int(seed), split_id(split), int(index), int(stream)])


@lru_cache(maxsize=16)
def _names(num_classes: int, world: str) -> tuple[str, ...]:
    return tuple(question_names(num_classes, world))


def make_clip(seed: int, index: int, cfg: SynthConfig, split: str = "train") -> Clip:
    """Generate clip ``index`` of the (seed, split) world described by ``cfg``."""
    names = list(_names(cfg.num_classes, cfg.world))
    scene, question = sample_scene_and_question(clip_rng(seed, split, index), cfg, names)
    return Clip(clip_id(seed, split, index), index, scene, question)


def answers(cfg: SynthConfig) -> list[str]:
    """The answer vocabulary of a world with ``cfg.num_classes`` classes."""
    return answer_vocabulary(list(_names(cfg.num_classes, cfg.world)))


def measure_blind_baseline(n: int = 3000, seed: int = 0, cfg: SynthConfig | None = None,
                           split: str = "train") -> dict[str, dict[str, float]]:
    """Blind baselines of ``n`` questions of (seed, split), majorities counted on ``n`` questions of
    seed + 1 (an honest held-out estimate); see :func:`~stgcma.data.synthav.questions.blind_baseline`."""
    cfg = cfg or SynthConfig()
    scored = [make_clip(seed, i, cfg, split).question for i in range(n)]
    fit = [make_clip(seed + 1, i, cfg, split).question for i in range(n)]
    return blind_baseline(scored, fit)


def format_baseline(rows: dict[str, dict[str, float]]) -> str:
    """A plain-text table of :func:`measure_blind_baseline`'s rows (accuracies in %)."""
    lines = [f"{'question type':28s} {'n':>6s} {'type':>6s} {'templ':>6s} {'quest':>6s} {'chance':>6s}"]
    for label, row in rows.items():
        lines.append(f"{label:28s} {int(row['n']):6d} " + " ".join(
            f"{100 * row[k]:6.1f}" for k in ("type", "template", "question", "chance")))
    return "\n".join(lines)
