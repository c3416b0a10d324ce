"""The look and the sound of each SynthAV class (PRODUCT.md "SynthAV").

A class is a shape x colour x texture on screen and a timbre x pitch x envelope in the audio. The
table is fixed (it does not depend on any seed), so a class means the same thing in every clip and
every dataset: class ``k`` of a 8-class world is class ``k`` of a 16-class world.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from math import gcd

SHAPES = ("circle", "square", "triangle", "star", "crescent", "cross", "ellipse", "ring")
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 80, 230),
    "yellow": (235, 215, 40),
    "magenta": (205, 50, 205),
    "cyan": (40, 205, 215),
    "orange": (245, 135, 30),
    "white": (240, 240, 240),
}
TEXTURES = ("plain", "stripes", "dots")
TIMBRES = ("harmonic", "fm", "noise")
ENVELOPES = ("plucked", "sustained", "pulsed")
MAX_CLASSES = 32
LOWEST_PITCH_HZ = 160.0
PITCH_OCTAVES = 3.3


@dataclass(frozen=True)
class ClassStyle:
    """Everything that identifies one class, on screen and in the audio."""

    index: int
    name: str
    shape: str
    colour: tuple[int, int, int]
    texture: str
    timbre: str
    envelope: str
    pitch_hz: float


def class_styles(num_classes: int) -> list[ClassStyle]:
    """The first ``num_classes`` classes of the fixed table.

    Shapes cycle; colours follow a stride so the first eight classes differ in shape AND colour;
    (shape, colour) pairs, and so names like ``"red_circle"``, are unique up to 64 classes. Timbre and
    envelope combinations differ for the first nine classes; pitches are log-spaced over
    ``PITCH_OCTAVES`` octaves in a scrambled order so neighbouring classes are far apart.
    """
    if not 2 <= num_classes <= MAX_CLASSES:
        raise ValueError(f"num_classes must be in [2, {MAX_CLASSES}], got {num_classes}")
    colour_names = list(COLOURS)
    stride = _coprime_stride(num_classes)
    styles = []
    for k in range(num_classes):
        shape = SHAPES[k % len(SHAPES)]
        colour = colour_names[(3 * k + k // len(SHAPES)) % len(colour_names)]
        rank = (k * stride) % num_classes
        styles.append(ClassStyle(
            index=k,
            name=f"{colour}_{shape}",
            shape=shape,
            colour=COLOURS[colour],
            texture=TEXTURES[k % len(TEXTURES)],
            timbre=TIMBRES[k % len(TIMBRES)],
            envelope=ENVELOPES[(k + k // len(TIMBRES)) % len(ENVELOPES)],
            pitch_hz=LOWEST_PITCH_HZ * 2.0 ** (PITCH_OCTAVES * rank / (num_classes - 1)),
        ))
    return styles


def _coprime_stride(n: int) -> int:
    """A stride near ``0.6 n`` that is coprime with ``n`` (so ``k * stride % n`` is a permutation)."""
    stride = max(1, round(0.6 * n))
    while gcd(stride, n) != 1:
        stride += 1
    return stride


def class_names(num_classes: int, world: str = "shapes") -> list[str]:
    """Display names of the first ``num_classes`` classes of a world: ``["red_circle", ...]`` (shapes) or
    AVE-style names such as ``"Violin, fiddle"`` (music)."""
    if world == "music":
        from stgcma.data.synthav.music_bank import MUSIC_CLASSES
        return [c.name for c in MUSIC_CLASSES[:num_classes]]
    return [s.name for s in class_styles(num_classes)]


def question_names(num_classes: int, world: str = "shapes") -> list[str]:
    """The words questions and answers use for the classes: the display names in the shapes world,
    MUSIC-AVQA-style words such as ``"acoustic_guitar"`` in the music world."""
    if world == "music":
        from stgcma.data.synthav.music_bank import MUSIC_CLASSES
        heads = (c.name.split(",")[0].lower() for c in MUSIC_CLASSES[:num_classes])  # "Violin, fiddle" -> violin
        return [re.sub(r"[^a-z0-9]+", "_", head).strip("_") for head in heads]
    return class_names(num_classes)
