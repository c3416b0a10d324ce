"""SynthAV sound: one timbre x pitch x envelope per class, mixed per second from the scene.

Each source is a one-second template with integer-Hz frequencies and envelopes that repeat every
second, so tiling it over T seconds is phase-continuous (and cheap). A source is switched on and off
per segment by a gate with 10-ms ramps (no clicks). Templates are normalised to unit RMS, so a
source's loudness is its scene ``gain``. The mix adds white noise and a fixed master gain, then a
tanh soft limiter (transparent below about 0.3).
"""

from __future__ import annotations

import numpy as np

from stgcma.data.synthav.scene import Scene
from stgcma.data.synthav.styles import ClassStyle, class_styles

MASTER_GAIN = 0.12
RAMP_S = 0.01


def class_template(style: ClassStyle, detune: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """One second of a class's sound, periodic with period one second, unit RMS (float32 (sr,))."""
    t = np.arange(sample_rate, dtype=np.float64) / sample_rate
    f0 = max(20, round(style.pitch_hz * detune))
    nyquist = sample_rate / 2
    if style.timbre == "harmonic":
        rolloff = 1.0 + 0.4 * (style.index % 3)
        wave = np.zeros_like(t)
        for h in range(1, 7):
            if h * f0 < nyquist * 0.9:
                wave += np.sin(2 * np.pi * h * f0 * t + 0.7 * h) / h**rolloff
    elif style.timbre == "fm":
        ratio = (1, 2, 3)[style.index % 3]
        index = 2.0 + (style.index % 4) * 0.5
        wave = np.sin(2 * np.pi * f0 * t + index * np.sin(2 * np.pi * ratio * f0 * t))
    else:
        freqs = np.fft.rfftfreq(sample_rate, 1.0 / sample_rate)
        centre = min(2.0 * f0, nyquist * 0.7)
        magnitude = np.exp(-0.5 * ((freqs - centre) / (0.18 * centre)) ** 2)
        phase = rng.uniform(0, 2 * np.pi, size=freqs.shape)
        wave = np.fft.irfft(magnitude * np.exp(1j * phase), n=sample_rate)
    wave = wave * _envelope(style, t)
    return (wave / (np.sqrt(np.mean(wave**2)) + 1e-12)).astype(np.float32)


def _envelope(style: ClassStyle, t: np.ndarray) -> np.ndarray:
    if style.envelope == "plucked":
        local = np.mod(t, 0.5)
        return np.exp(-local / 0.12) * np.minimum(1.0, local / 0.005)
    if style.envelope == "pulsed":
        rate = 4 + style.index % 4
        return np.clip(1.6 * np.sin(2 * np.pi * rate * t) + 0.3, 0.0, 1.0)
    return np.ones_like(t)


def gate(sounding: tuple[bool, ...], sample_rate: int) -> np.ndarray:
    """Per-sample on/off envelope from per-segment flags, with linear ramps (float32 (T*sr,)).

    Equal to a moving average of width ``2 * RAMP_S`` over the step function (the ramps of one second
    never overlap), written directly: a linear ramp across each segment boundary where the flag changes.
    """
    flags = np.asarray(sounding, dtype=np.float32)
    env = np.repeat(flags, sample_rate)  # (T*sr,)
    width = max(1, int(RAMP_S * sample_rate))
    rise = np.arange(2 * width, dtype=np.float32) / np.float32(2 * width)  # (2w,) from 0 towards 1
    for t in np.flatnonzero(flags[1:] != flags[:-1]) + 1:
        lo = int(t) * sample_rate - width
        env[lo:lo + 2 * width] = rise if flags[t] else 1 - rise
    return env


def render_audio(scene: Scene, sample_rate: int = 16000, styles: list[ClassStyle] | None = None) -> np.ndarray:
    """The clip's mono soundtrack: every sounding source plus noise, float32 (T * sr,) in [-1, 1]."""
    if scene.world == "music":
        from stgcma.data.synthav import music
        return music.render_audio(scene, sample_rate)
    styles = styles or class_styles(scene.num_classes)
    rng = np.random.default_rng(scene.audio_seed)
    total = scene.num_segments * sample_rate
    mix = np.zeros(total, dtype=np.float32)
    for source in scene.sources:
        template = class_template(styles[source.cls], source.detune, sample_rate, rng)
        if any(source.sounding):
            mix += source.gain * np.tile(template, scene.num_segments) * gate(source.sounding, sample_rate)
    mix *= MASTER_GAIN
    mix += rng.standard_normal(total, dtype=np.float32) * np.float32(scene.noise_level)
    return np.tanh(mix)  # soft limiter: identity for quiet mixes, no hard clipping on peaks
