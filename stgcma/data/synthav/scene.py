"""SynthAV scene descriptions: one per clip, from which pictures, sound and all labels derive.

A scene is T one-second segments with 1-3 objects placed in left-to-right slots (so "left", "middle"
and "right" are unambiguous and objects never overlap). Per segment each object is visible or not
(it may enter or leave the frame) and sounding or not; an off-screen distractor (a class that never
appears) may also sound. Visual attributes never depend on sounding, so the picture alone does not
tell which object sounds.

Modes: ``"ms3"`` (multi-source, the general world: any subset of the objects sounds, intervals vary)
and ``"s4"`` (single-source, AVSBench S4-like: all objects always visible, exactly one of them sounds
in every second, no off-screen sound).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from stgcma.data.synthav.backdrops import SCENE_KINDS
from stgcma.data.synthav.music_bank import MUSIC_CLASSES
from stgcma.data.synthav.styles import MAX_CLASSES

Mode = Literal["ms3", "s4"]
WORLDS = ("shapes", "music")
NUM_MUSIC_CLASSES = len(MUSIC_CLASSES)  # classes of the music world's bank table
GAINS = (0.25, 0.5, 1.0)
DEFAULT_CLASSES = {"music": 14, "shapes": 8}  # K when a config does not say


@dataclass(frozen=True)
class SynthConfig:
    """Parameters of the SynthAV world (not of its rendering resolution).

    The default world is ``"music"`` (14 classes); ``world="shapes"`` (8 classes) is the unit-test
    world of coloured shapes. Fields left ``None`` take their world's default.
    """

    num_segments: int = 10
    num_classes: int | None = None
    mode: Mode = "ms3"
    max_objects: int = 3
    duplicate_prob: float = 0.2
    distractor_prob: float = 0.3
    partial_visibility_prob: float = 0.2
    silent_prob: float = 0.35
    full_event_prob: float = 0.4
    sample_rate: int = 16000
    world: str = "music"
    decidable_event: bool | None = None
    scenery_prob: float | None = None
    edge_prob: float | None = None

    def __post_init__(self) -> None:
        music = self.world == "music"
        if self.num_classes is None:  # auto: the product's music world (14 classes), or the 8 shapes
            object.__setattr__(self, "num_classes", DEFAULT_CLASSES.get(self.world, 8))
        if self.decidable_event is None:  # auto: the music world's labels are decidable, shapes' keep the prior
            object.__setattr__(self, "decidable_event", music)
        if self.scenery_prob is None:  # auto: a stage, room or outdoors behind half the music clips
            object.__setattr__(self, "scenery_prob", 0.5 if music else 0.0)
        if self.edge_prob is None:  # auto: some music objects stand partly outside the frame
            object.__setattr__(self, "edge_prob", 0.15 if music else 0.0)
        for name in ("scenery_prob", "edge_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.mode not in ("ms3", "s4"):
            raise ValueError(f"mode must be 'ms3' or 's4', got {self.mode!r}")
        if self.world not in WORLDS:
            raise ValueError(f"world must be one of {list(WORLDS)}, got {self.world!r}")
        if self.world == "music" and self.num_classes > NUM_MUSIC_CLASSES:
            raise ValueError(f"the music world has {NUM_MUSIC_CLASSES} classes, got num_classes={self.num_classes}")
        if not 1 <= self.max_objects <= 3:
            raise ValueError(f"max_objects must be 1, 2 or 3, got {self.max_objects}")
        if self.num_segments < 2:
            raise ValueError(f"num_segments must be >= 2, got {self.num_segments}")
        if not self.max_objects < self.num_classes <= MAX_CLASSES:
            raise ValueError(f"num_classes must be in [{self.max_objects + 1}, {MAX_CLASSES}], "
                             f"got {self.num_classes}")


@dataclass(frozen=True)
class SceneObject:
    """One on-screen object. Positions and sizes are fractions of the frame side.

    Attributes:
        cls: class index.
        slot: left-to-right rank among the clip's objects.
        x, y, radius: rest position of the centre and size.
        motion: (amp_x, amp_y, period_s, phase) of a smooth drift around the rest position.
        angle, spin: rotation at t=0 (rad) and its speed (rad/s).
        shade: brightness factor of the class colour.
        visible, sounding: per segment.
        gain: loudness (linear, one of ``GAINS``).
        detune: pitch factor near 1.
    """

    cls: int
    slot: int
    x: float
    y: float
    radius: float
    motion: tuple[float, float, float, float]
    angle: float
    spin: float
    shade: float
    visible: tuple[bool, ...]
    sounding: tuple[bool, ...]
    gain: float
    detune: float

    def centre(self, t: float) -> tuple[float, float]:
        """Centre (x, y) at time ``t`` seconds."""
        ax, ay, period, phase = self.motion
        w = 2.0 * np.pi * t / period + phase
        return self.x + ax * float(np.sin(w)), self.y + ay * float(np.sin(1.3 * w + 1.0))


@dataclass(frozen=True)
class OffscreenSound:
    """A distractor: a class heard but never seen."""

    cls: int
    sounding: tuple[bool, ...]
    gain: float
    detune: float


@dataclass(frozen=True)
class Background:
    """A static backdrop: a two-colour gradient, smooth noise or a scene-like one (a stage, a room, the
    outdoors: :mod:`stgcma.data.synthav.backdrops`), plus fine grain."""

    kind: Literal["gradient", "noise", "stage", "room", "outdoors"]
    colour_a: tuple[float, float, float]
    colour_b: tuple[float, float, float]
    angle: float
    grain: float
    seed: int


@dataclass(frozen=True)
class Scene:
    """Everything about one clip; pictures, sound and labels are pure functions of it."""

    num_segments: int
    num_classes: int
    objects: tuple[SceneObject, ...]
    distractors: tuple[OffscreenSound, ...]
    event_class: int
    background: Background
    noise_level: float
    audio_seed: int
    mode: Mode = "ms3"
    world: str = "shapes"

    @property
    def sources(self) -> tuple[SceneObject | OffscreenSound, ...]:
        """Every sound source: the objects, then the off-screen distractors."""
        return (*self.objects, *self.distractors)

    def visible_classes(self) -> list[list[int]]:
        """Per segment, the sorted classes of the visible objects."""
        return [sorted({o.cls for o in self.objects if o.visible[t]}) for t in range(self.num_segments)]

    def sounding_classes(self) -> list[list[int]]:
        """Per segment, the sorted classes heard (visible or not, distractors included)."""
        return [sorted({s.cls for s in self.sources if s.sounding[t]}) for t in range(self.num_segments)]

    def audio_visual_classes(self) -> list[list[int]]:
        """Per segment, the sorted classes of objects that are visible AND sounding."""
        return [sorted({o.cls for o in self.objects if o.visible[t] and o.sounding[t]})
                for t in range(self.num_segments)]

    def ave_labels(self) -> list[int]:
        """AVE label per segment: the event class when an object of it is visible and sounding, else
        background (``num_classes``)."""
        return [self.event_class if self.event_class in av else self.num_classes
                for av in self.audio_visual_classes()]

    def sound_levels(self) -> np.ndarray:
        """uint8 (T, K): per segment and class, 0 when the class is silent, else 1 + the index in ``GAINS``
        of its loudest sounding source (visible or not, distractors included)."""
        levels = np.zeros((self.num_segments, self.num_classes), dtype=np.uint8)
        for source in self.sources:
            level = 1 + GAINS.index(source.gain)
            for t, on in enumerate(source.sounding):
                if on:
                    levels[t, source.cls] = max(levels[t, source.cls], level)
        return levels

    def sides(self) -> tuple[int, ...]:
        """Per object, left to right, its side as MUSIC-AVQA's questions name it (0 left, 1 middle,
        2 right): one object is in the middle; two are left and right; three are left, middle, right."""
        return {1: (1,), 2: (0, 2), 3: (0, 1, 2)}[len(self.objects)]

    def side_classes(self) -> np.ndarray:
        """int64 (3,): the class standing at the left, in the middle and at the right (:meth:`sides`),
        -1 for a side no object holds."""
        out = np.full(3, -1, dtype=np.int64)
        for side, obj in zip(self.sides(), self.objects, strict=True):
            out[side] = obj.cls
        return out

    def sounding_objects(self, t: int) -> list[int]:
        """Indices of objects visible and sounding in segment ``t`` (those with an AVS mask)."""
        return [i for i, o in enumerate(self.objects) if o.visible[t] and o.sounding[t]]

    def reversed(self) -> Scene:
        """The same scene with its segments in reverse order: who is visible and who sounds in segment
        ``t`` is what was there in segment ``T - 1 - t``. Classes, places, sides and loudness stay, so
        the questions about the reversed scene are the ones a clip played backwards should answer."""
        objects = tuple(replace(o, visible=o.visible[::-1], sounding=o.sounding[::-1]) for o in self.objects)
        distractors = tuple(replace(d, sounding=d.sounding[::-1]) for d in self.distractors)
        return replace(self, objects=objects, distractors=distractors)


def _interval(rng: np.random.Generator, T: int, min_len: int = 1) -> tuple[bool, ...]:
    length = int(rng.integers(min_len, T + 1))
    start = int(rng.integers(0, T - length + 1))
    return tuple(start <= t < start + length for t in range(T))


def _visibility(rng: np.random.Generator, cfg: SynthConfig) -> tuple[bool, ...]:
    T = cfg.num_segments
    if cfg.mode == "s4" or rng.random() >= cfg.partial_visibility_prob:
        return (True,) * T
    length = int(rng.integers((T + 1) // 2, T))
    if rng.random() < 0.5:
        return tuple(t >= T - length for t in range(T))  # enters
    return tuple(t < length for t in range(T))  # leaves


def _sounding(rng: np.random.Generator, cfg: SynthConfig, is_event: bool) -> tuple[bool, ...]:
    T = cfg.num_segments
    if cfg.mode == "s4":
        return (is_event,) * T
    if is_event:
        return (True,) * T if rng.random() < cfg.full_event_prob else _interval(rng, T, min_len=2)
    if rng.random() < cfg.silent_prob:
        return (False,) * T
    return _interval(rng, T)


def _interval_probability(pattern: tuple[bool, ...], min_len: int) -> float:
    """Probability that :func:`_interval` with ``min_len`` draws exactly ``pattern``."""
    T = len(pattern)
    on = [t for t, flag in enumerate(pattern) if flag]
    if len(on) < min_len or on != list(range(on[0], on[0] + len(on))):
        return 0.0
    return 1.0 / (T - min_len + 1) / (T - len(on) + 1)


def sounding_likelihood(pattern: tuple[bool, ...], is_event: bool, cfg: SynthConfig) -> float:
    """P(an object's per-second sounding pattern | it is / is not the event object): the prior that
    :func:`_sounding` samples from (ms3 mode)."""
    if is_event:
        full = cfg.full_event_prob if all(pattern) else 0.0
        return full + (1 - cfg.full_event_prob) * _interval_probability(pattern, 2)
    silent = cfg.silent_prob if not any(pattern) else 0.0
    return silent + (1 - cfg.silent_prob) * _interval_probability(pattern, 1)


def audio_visual_seconds(obj: SceneObject) -> int:
    """Seconds in which an object is both visible and sounding."""
    return sum(v and s for v, s in zip(obj.visible, obj.sounding, strict=True))


def _make_event_decidable(rng: np.random.Generator, objects: list[SceneObject], event_slot: int,
                          T: int) -> list[SceneObject]:
    """Make the event object the one seen sounding longest, by at least a second (``decidable_event``).

    The event object is redrawn (a few tries, then "sounds whenever visible") until it is seen sounding
    for two seconds or more; every other object keeps only the first ``E - 1`` of its audio-visual
    seconds, where ``E`` is the event object's count. A perfect perceiver then tells the event object
    apart (the most audio-visual seconds) and every AVE label is decidable.
    """
    event = objects[event_slot]
    for _ in range(8):
        if audio_visual_seconds(event) >= 2:
            break
        event = replace(event, sounding=_interval(rng, T, min_len=2))
    if audio_visual_seconds(event) < 2:
        event = replace(event, sounding=event.visible)
    budget = audio_visual_seconds(event) - 1
    out = []
    for slot, obj in enumerate(objects):
        if slot == event_slot:
            out.append(event)
            continue
        kept, count, stopped = [], 0, False  # a prefix of the object's sounding interval
        for v, snd in zip(obj.visible, obj.sounding, strict=True):
            keep = snd and not stopped and (not v or count < budget)
            stopped = stopped or (snd and not keep)
            count += keep and v
            kept.append(keep)
        out.append(replace(obj, sounding=tuple(kept)))
    return out


EDGE_OUT = (0.2, 0.4)  # fraction of an edge object's side that rests outside the frame


def _edge_placed(rng: np.random.Generator, objects: list[SceneObject], prob: float) -> list[SceneObject]:
    """Move some objects so part of them rests outside the frame (partial occlusion by the frame edge).

    An object leaves through the top or the bottom, or, for the leftmost and rightmost of two or three,
    through its own side, so slots keep their left-to-right order (a lone object stays "in the middle")
    and objects still never overlap. Between ``EDGE_OUT`` of its side is cut off at rest; its motion
    changes that a little over time.
    """
    out = []
    last = len(objects) - 1
    for obj in objects:
        sides = ((["left"] if obj.slot == 0 else []) + (["right"] if obj.slot == last else [])) if last else []
        edges = ["top", "bottom", *sides]
        pick, cut = rng.random(), rng.uniform(*EDGE_OUT)
        edge = edges[int(rng.integers(len(edges)))]
        if pick >= prob:
            out.append(obj)
            continue
        rest = obj.radius * (1.0 - 2.0 * cut)  # centre distance to the edge; the sprite spans +-radius
        x, y = obj.x, obj.y
        if edge == "top":
            y = rest
        elif edge == "bottom":
            y = 1.0 - rest
        elif edge == "left":
            x = rest
        else:
            x = 1.0 - rest
        out.append(replace(obj, x=x, y=y))
    return out


def _muted_colour(rng: np.random.Generator) -> tuple[float, float, float]:
    rgb = rng.uniform(30, 210, size=3)
    grey = rgb.mean()
    return tuple(float(v) for v in grey + 0.45 * (rgb - grey))


def sample_scene(rng: np.random.Generator, cfg: SynthConfig) -> Scene:
    """Draw one scene from the world's prior."""
    T, K = cfg.num_segments, cfg.num_classes
    weights = np.array([0.2, 0.4, 0.4][: cfg.max_objects])
    n = int(rng.choice(np.arange(1, cfg.max_objects + 1), p=weights / weights.sum()))
    classes = [int(c) for c in rng.choice(K, size=n, replace=False)]
    if n >= 2 and rng.random() < cfg.duplicate_prob and not (cfg.decidable_event and cfg.mode == "s4"):
        classes[1] = classes[0]
    classes = [classes[i] for i in rng.permutation(n)]
    event_slot = int(rng.integers(n))
    width = 1.0 / n
    objects = []
    for slot, cls in enumerate(classes):
        radius = float(rng.uniform(0.08, min(0.2, width / 2 - 0.04)))
        room = width / 2 - radius - 0.015
        amp_x = float(rng.uniform(0.0, min(0.03, room)))
        amp_y = float(rng.uniform(0.0, 0.04))
        x = (slot + 0.5) * width + float(rng.uniform(-1, 1)) * (room - amp_x)
        margin = radius + amp_y + 0.03
        objects.append(SceneObject(
            cls=cls,
            slot=slot,
            x=x,
            y=float(rng.uniform(margin, 1 - margin)),
            radius=radius,
            motion=(amp_x, amp_y, float(rng.uniform(3.0, 8.0)), float(rng.uniform(0, 2 * np.pi))),
            angle=float(rng.uniform(0, 2 * np.pi)),
            spin=float(rng.uniform(-0.3, 0.3)),
            shade=float(rng.uniform(0.85, 1.1)),
            visible=_visibility(rng, cfg),
            sounding=_sounding(rng, cfg, slot == event_slot),
            gain=float(rng.choice(GAINS)),
            detune=float(rng.uniform(0.97, 1.03)),
        ))
    if cfg.decidable_event and cfg.mode != "s4":
        objects = _make_event_decidable(rng, objects, event_slot, cfg.num_segments)
    distractors = []
    if cfg.mode != "s4" and rng.random() < cfg.distractor_prob:
        unseen = sorted(set(range(K)) - set(classes))
        distractors.append(OffscreenSound(
            cls=int(rng.choice(unseen)),
            sounding=_interval(rng, T),
            gain=float(rng.choice(GAINS)),
            detune=float(rng.uniform(0.97, 1.03)),
        ))
    background = Background(
        kind="gradient" if rng.random() < 0.5 else "noise",
        colour_a=_muted_colour(rng),
        colour_b=_muted_colour(rng),
        angle=float(rng.uniform(0, 2 * np.pi)),
        grain=float(rng.uniform(2.0, 8.0)),
        seed=int(rng.integers(2**31)),
    )
    look = np.random.default_rng([background.seed, 2])  # a side stream: the draws above stay as they were
    if look.random() < cfg.scenery_prob:
        background = replace(background, kind=str(look.choice(SCENE_KINDS)))
    if cfg.edge_prob > 0:
        objects = _edge_placed(look, objects, cfg.edge_prob)
    return Scene(
        num_segments=T,
        num_classes=K,
        objects=tuple(objects),
        distractors=tuple(distractors),
        event_class=classes[event_slot],
        background=background,
        noise_level=float(rng.uniform(0.003, 0.012)),
        audio_seed=int(rng.integers(2**31)),
        mode=cfg.mode,
        world=cfg.world,
    )
