"""The app's example clips: each with a title, a one-line caption and suggested questions.

A folder of clips may hold ``examples.json`` (written by ``python -m stgcma.data.synthav.examples``)::

    {"examples": [{"file": "music-01-duet.mp4", "title": ..., "caption": ..., "world": "music",
                   "questions": [{"question": ..., "answer": ..., "type": ...}, ...]}]}

(a question may also be a plain string). Without it every ``*.mp4`` is an example named after its
file. Each example carries its content hash, so the Ask tab recognises an analysed example however
it was uploaded.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stgcma.checkpoint import file_sha256
from stgcma.media import MediaError, decode_clip

log = logging.getLogger("stgcma.app")
MANIFEST = "examples.json"


@dataclass(frozen=True)
class Example:
    """One example clip and what the app says about it."""

    path: str
    title: str
    caption: str = ""
    questions: list[str] = field(default_factory=list)
    key: str = ""

    @property
    def label(self) -> str:
        """The gallery caption: title and what happens."""
        return f"{self.title}: {self.caption}" if self.caption else self.title

    def thumbnail(self) -> np.ndarray | None:
        """The clip's middle second as an upright (h, w, 3) uint8 frame; None if it cannot be decoded."""
        return _thumbnail(self.path)


@functools.lru_cache(maxsize=64)
def _thumbnail(path: str) -> np.ndarray | None:
    try:
        frames = decode_clip(path).frames  # (N, h, w, 3)
    except (MediaError, OSError) as err:
        log.warning("no thumbnail for %s: %s", path, err)
        return None
    return frames[len(frames) // 2] if len(frames) else None


def _questions(items: list) -> list[str]:
    out = []
    for item in items or []:
        text = item.get("question") if isinstance(item, dict) else item
        if isinstance(text, str) and text.strip():
            out.append(text.strip().replace("_", " "))  # "church_bell" reads "church bell"; ask() joins it back
    return out


def load_examples(folder: str | Path) -> list[Example]:
    """The examples in ``folder``: in manifest order when ``examples.json`` lists them, else every mp4 sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    clips = {p.name: p for p in folder.glob("*.mp4")}
    entries: list[dict] = []
    manifest = folder / MANIFEST
    if manifest.exists():
        try:
            entries = [e for e in json.loads(manifest.read_text()).get("examples", []) if isinstance(e, dict)]
        except (OSError, ValueError, AttributeError) as err:
            log.warning("ignoring %s: %s", manifest, err)
    listed = [e for e in entries if e.get("file") in clips]
    if not listed:
        listed = [{"file": name} for name in sorted(clips)]
    return [Example(str(clips[e["file"]]), str(e.get("title") or Path(e["file"]).stem),
                    str(e.get("caption") or ""), _questions(e.get("questions", [])), file_sha256(clips[e["file"]]))
            for e in listed]
