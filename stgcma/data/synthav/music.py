"""The look and sound of the SynthAV "music" world: OpenMoji pictures and SoundFont-rendered notes.

The scene logic (who is where, visible and sounding when, every label) is the shared one of
:mod:`stgcma.data.synthav.scene`; this module only draws it. An object is its class's sprite (the
OpenMoji glyph of :mod:`stgcma.data.synthav.music_bank`) scaled to the object's diameter, mirrored
or not, tilted a little, brightened or darkened by its ``shade``; its AVS mask is exactly where the
drawn glyph's alpha is at least one half. A sounding source plays one or two notes per second from
its class's pre-rendered notes, at its scene ``gain``.

Visual attributes never read ``sounding``, as in every SynthAV world.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

from stgcma.data.synthav.audio import MASTER_GAIN, gate
from stgcma.data.synthav.music_bank import MusicBank, load_bank
from stgcma.data.synthav.render import Patch, composite
from stgcma.data.synthav.scene import Scene, SceneObject

MAX_TILT_DEG = 12.0
SPRITE_SCALE = 2.0  # sprite side = SPRITE_SCALE * radius (radius is a fraction of the frame side)


@lru_cache(maxsize=1)
def default_bank() -> MusicBank:
    """The committed bank in ``assets/synthav_music`` (loaded once per process)."""
    return load_bank()


def _pose(obj: SceneObject, t: float) -> tuple[bool, float]:
    """(mirrored, tilt in degrees) of an object at time ``t``: fixed per object, a slow sway over time."""
    mirrored = bool(np.cos(obj.angle) < 0)
    tilt = MAX_TILT_DEG * float(np.sin(obj.angle)) * 0.7 + MAX_TILT_DEG * 0.3 * float(np.sin(obj.spin * 6 * t))
    return mirrored, tilt


@lru_cache(maxsize=4096)
def _sprite(bank: MusicBank, cls: int, side: int, mirrored: bool, tilt_q: int) -> np.ndarray:
    """float32 (side', side', 4) RGBA in [0, 1] of class ``cls`` at ``side`` pixels (tilt in 0.5-degree steps)."""
    image = Image.fromarray(bank.sprites[bank.classes[cls].slug])
    if mirrored:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    scale = side / max(image.size)
    image = image.resize((max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale))),
                         Image.Resampling.BILINEAR)
    if tilt_q:
        image = image.rotate(tilt_q / 2.0, resample=Image.Resampling.BILINEAR, expand=True)
    return np.asarray(image, dtype=np.float32) / 255.0


@lru_cache(maxsize=64)
def _unit_notes(bank: MusicBank, cls: int) -> np.ndarray:
    """float32 (P, sr): the class's notes scaled to unit RMS, so a source's loudness is its scene gain."""
    notes = bank.notes[bank.classes[cls].slug].astype(np.float32)
    return notes / (np.sqrt((notes**2).mean(axis=1, keepdims=True)) + 1e-8)


def object_patch(obj: SceneObject, t: float, size: int, bank: MusicBank) -> Patch | None:
    """Alpha and colour of one object's glyph at time ``t`` over its box, clipped to the frame.

    Returns:
        (rows, cols, alpha float32 (h, w) in [0, 1], colour float32 (h, w, 3) in [0, 255]), or ``None``
        when the glyph falls outside the frame.
    """
    mirrored, tilt = _pose(obj, t)
    side = max(4, round(SPRITE_SCALE * obj.radius * size))
    rgba = _sprite(bank, obj.cls, side, mirrored, round(tilt * 2))
    h, w = rgba.shape[:2]
    cx, cy = obj.centre(t)
    y0, x0 = round(cy * size - h / 2), round(cx * size - w / 2)
    r0, c0 = max(y0, 0), max(x0, 0)
    r1, c1 = min(y0 + h, size), min(x0 + w, size)
    if r1 <= r0 or c1 <= c0:
        return None
    crop = rgba[r0 - y0:r1 - y0, c0 - x0:c1 - x0]  # (h', w', 4)
    colour = np.clip(crop[..., :3] * (255.0 * obj.shade), 0, 255)
    return slice(r0, r1), slice(c0, c1), crop[..., 3], colour


def render_frames(scene: Scene, times: np.ndarray, size: int, bank: MusicBank | None = None) -> np.ndarray:
    """uint8 (F, S, S, 3) RGB frames of a music-world scene at ``times`` (seconds)."""
    bank = bank or default_bank()
    return composite(scene, times, size, lambda obj, t: object_patch(obj, t, size, bank))


def object_mask(obj: SceneObject, t: float, size: int, bank: MusicBank | None = None) -> np.ndarray:
    """bool (S, S): where the object's drawn glyph has alpha >= 0.5 at time ``t`` (visibility ignored)."""
    bank = bank or default_bank()
    mask = np.zeros((size, size), dtype=bool)
    patch = object_patch(obj, float(t), size, bank)
    if patch is not None:
        rows, cols, alpha, _ = patch
        mask[rows, cols] = alpha >= 0.5
    return mask


def render_audio(scene: Scene, sample_rate: int = 16000, bank: MusicBank | None = None) -> np.ndarray:
    """The clip's mono soundtrack: every sounding source playing its notes, plus noise (float32 (T*sr,)).

    Per source and second, one note (p = 0.5) or two half-second notes, each a pitch of the class's
    bank drawn from the scene's ``audio_seed``: a short phrase that changes pitch and rhythm.
    """
    bank = bank or default_bank()
    if bank.sample_rate != sample_rate:
        raise ValueError(f"the music bank is rendered at {bank.sample_rate} Hz, not {sample_rate} Hz")
    rng = np.random.default_rng(scene.audio_seed)
    T, sr = scene.num_segments, sample_rate
    half = sr // 2
    fade = np.ones(half, dtype=np.float32)
    fade[-(sr // 50):] = np.linspace(1.0, 0.0, sr // 50, dtype=np.float32)
    mix = np.zeros(T * sr, dtype=np.float32)
    for source in scene.sources:
        notes = _unit_notes(bank, source.cls)  # (P, sr)
        single = rng.random(T) < 0.5  # (T,) one whole note this second, else two half notes
        picks = rng.integers(len(notes), size=(T, 2))  # (T, 2) note indices
        if not any(source.sounding):
            continue
        whole = notes[picks[:, 0]]  # (T, sr)
        halves = np.concatenate([notes[picks[:, 0], :half] * fade, notes[picks[:, 1], :half] * fade], axis=1)  # (T, sr)
        track = np.where(single[:, None], whole, halves).reshape(-1)  # (T * sr,)
        mix += source.gain * track * gate(source.sounding, sr)
    mix *= MASTER_GAIN
    mix += rng.standard_normal(T * sr, dtype=np.float32) * np.float32(scene.noise_level)
    return np.tanh(mix)
