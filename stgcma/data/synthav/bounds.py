"""What a perfect model could score on SynthAV: AVE and AVS ceilings under perfect perception.

An AVE clip has ONE event class, but other objects may also be seen and heard at the same time
(that is what makes the world audio-visual rather than "which object is sounding"). Which of them is
the event is then only probable, never certain: the event object sounds for the whole clip (p = 0.4)
or an interval of at least two seconds, the others stay silent (p = 0.35) or sound an interval of at
least one second. :func:`ave_oracle` knows every object's sounding pattern exactly (on screen or
not) and takes the Bayes decision per second from that prior, so its accuracy bounds every model's.
In s4 mode only the event object sounds and the bound is 1.

AVS (s4): the sound names a CLASS, and two objects of one class may share a frame while only one of
them sounds; nothing in the picture says which. :func:`avs_oracle_masks` knows the sounding class
and masks every visible object of it, exact masks otherwise; its mIoU is the ceiling reported (it
loses only on those duplicate frames).

How fine a mask must be: :func:`measure_avs_ceiling` with ``grids`` also scores the TRUE masks seen
through a coarse grid (area-averaged to g x g cells, upsampled bilinearly, thresholded at one half),
what a decoder that perceives perfectly but only at a ViT's patch resolution could draw.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from stgcma.data.synthav.clip import make_clip
from stgcma.data.synthav.render import render_masks, segment_times
from stgcma.data.synthav.scene import Scene, SynthConfig, audio_visual_seconds, sounding_likelihood
from stgcma.data.synthav.styles import ClassStyle, class_styles
from stgcma.metrics import AVSMetrics


def event_posterior(scene: Scene, cfg: SynthConfig) -> np.ndarray:
    """P(object k is the event object | every object's sounding pattern), shape (n_objects,)."""
    objs = scene.objects
    if cfg.decidable_event and cfg.mode != "s4":  # the event object is the one seen sounding longest
        seconds = np.array([audio_visual_seconds(o) for o in objs])
        return (seconds == seconds.max()).astype(float) / float((seconds == seconds.max()).sum())
    if cfg.mode == "s4":
        return np.array([float(any(o.sounding)) for o in objs]) / max(1, sum(any(o.sounding) for o in objs))
    event = np.array([sounding_likelihood(o.sounding, True, cfg) for o in objs])
    other = np.array([sounding_likelihood(o.sounding, False, cfg) for o in objs])
    joint = np.array([event[k] * np.prod(np.delete(other, k)) for k in range(len(objs))])
    return joint / joint.sum()


def ave_oracle(scene: Scene, cfg: SynthConfig) -> list[int]:
    """Per second, the label with the highest posterior probability given perfect perception."""
    post = event_posterior(scene, cfg)
    background = scene.num_classes
    out = []
    for av in scene.audio_visual_classes():
        mass: dict[int, float] = {}
        for k, o in enumerate(scene.objects):  # hypothesis: object k is the event, its class the event class
            label = o.cls if o.cls in av else background
            mass[label] = mass.get(label, 0.0) + float(post[k])
        out.append(max(mass, key=mass.__getitem__))
    return out


def measure_ave_ceiling(n: int = 2000, seed: int = 300, cfg: SynthConfig | None = None,
                        split: str = "test") -> float:
    """Segment accuracy of :func:`ave_oracle` on ``n`` clips of (seed, split)."""
    cfg = cfg or SynthConfig()
    hits = total = 0
    for i in range(n):
        scene = make_clip(seed, i, cfg, split).scene
        pred, truth = np.array(ave_oracle(scene, cfg)), np.array(scene.ave_labels())
        hits += int((pred == truth).sum())
        total += truth.size
    return hits / total


def sounding_class_objects(scene: Scene, segment: int) -> list[int]:
    """Indices of the visible objects whose class is heard from an on-screen object in ``segment``."""
    heard = {scene.objects[i].cls for i in scene.sounding_objects(segment)}
    return [i for i, o in enumerate(scene.objects) if o.visible[segment] and o.cls in heard]


def avs_oracle_masks(scene: Scene, times: np.ndarray, size: int,
                     styles: list[ClassStyle] | None = None) -> np.ndarray:
    """bool (F, size, size): the masks of :func:`sounding_class_objects`."""
    return render_masks(scene, times, size, styles, objects=sounding_class_objects)


def _through_grid(truth: torch.Tensor, grid: int) -> torch.Tensor:
    """Masks (F, S, S) seen through grid x grid cells: area-averaged, upsampled bilinearly, thresholded."""
    coarse = F.adaptive_avg_pool2d(truth[:, None], grid)  # (F, 1, g, g): each cell's covered fraction
    seen = F.interpolate(coarse, size=truth.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return (seen > 0.5).float()  # (F, S, S)


def measure_avs_ceiling(n: int = 200, seed: int = 300, segments: int = 5, size: int = 112,
                        split: str = "test", world: str = "music", classes: int | None = None,
                        grids: tuple[int, ...] = ()) -> dict[str, Any]:
    """mIoU and F-score of :func:`avs_oracle_masks` on ``n`` s4 clips (T = ``segments``, ``size`` px).

    ``grids``: also the mIoU of the TRUE masks seen through g x g cells, per g (``"grid"``), and the
    sounding masks' area quantiles as fractions of the frame, over the frames where they are visible
    (``"area"``: p10, p50, p90), from the same clips.
    """
    cfg = SynthConfig(num_segments=segments, mode="s4", world=world, num_classes=classes)
    times = segment_times(segments)
    styles = class_styles(cfg.num_classes)
    metric = AVSMetrics(from_logits=False)
    through = {g: AVSMetrics(from_logits=False) for g in grids}
    areas: list[float] = []
    for i in range(n):
        scene = make_clip(seed, i, cfg, split).scene
        truth = torch.from_numpy(render_masks(scene, times, size, styles)).float()  # (F, size, size)
        metric.update(torch.from_numpy(avs_oracle_masks(scene, times, size, styles)).float(), truth)
        for g, grid_metric in through.items():
            grid_metric.update(_through_grid(truth, g), truth)
        if grids:
            areas += [a for a in truth.mean(dim=(1, 2)).tolist() if a > 0]
    result = metric.compute()
    out: dict[str, Any] = {"miou": result["miou"], "fscore": result["fscore"]}
    if grids:
        quantiles = np.quantile(areas, [0.1, 0.5, 0.9]) if areas else np.zeros(3)
        out["grid"] = {g: m.compute()["miou"] for g, m in through.items()}
        out["area"] = dict(zip(("p10", "p50", "p90"), quantiles.tolist(), strict=True))
    return out


def avqa_oracle(clip_question, scene: Scene, names: list[str]) -> str | None:
    """The answer a perfect perceiver gives: the template's filling of these values, recomputed from the scene."""
    from stgcma.data.synthav.questions import TEMPLATES, Facts

    template = next(t for t in TEMPLATES if t.qtype == clip_question.qtype and t.text == clip_question.template)
    answers = {a for values, a in template.candidates(Facts(scene, names)) if values == clip_question.values}
    return answers.pop() if len(answers) == 1 else None


def measure_avqa_ceiling(n: int = 2000, seed: int = 300, cfg: SynthConfig | None = None,
                         split: str = "test") -> dict[str, float]:
    """Accuracy of :func:`avqa_oracle` per question type and overall on ``n`` clips of (seed, split).

    A question whose values admit two answers in its scene (none should) counts as a miss, so this is
    the ceiling of any model that perceives the scene perfectly.
    """
    from stgcma.data.synthav.clip import _names
    from stgcma.data.synthav.questions import QTYPES

    cfg = cfg or SynthConfig()
    names = list(_names(cfg.num_classes, cfg.world))
    hits: dict[str, list[bool]] = {q: [] for q in QTYPES}
    for i in range(n):
        clip = make_clip(seed, i, cfg, split)
        hits[clip.question.qtype].append(avqa_oracle(clip.question, clip.scene, names) == clip.question.answer)
    out = {q: float(np.mean(h)) for q, h in hits.items() if h}
    out["overall"] = float(np.mean([x for h in hits.values() for x in h]))
    return out
