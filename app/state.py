"""Who holds the model, and what one browser session has analysed.

``ModelHolder`` owns the app's single ``Predictor`` (shared by every session; its own lock
serialises model work) and can swap it for another checkpoint without ever leaving the app with no
model because a load failed. ``Session`` is the per-browser state kept in a ``gr.State``: the
uploaded file, the analysed clip's cache key and where its outputs were written.
"""

from __future__ import annotations

import html
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.errors import one_line
from stgcma.checkpoint import CheckpointError
from stgcma.inference import Predictor

log = logging.getLogger("stgcma.app")

HOW_TO_GET_A_MODEL = (
    "Build the embedded default with <code>python -m stgcma build-default</code> (writes "
    "<code>assets/default</code>), start with <code>python app.py --checkpoint FOLDER_OR_HUB_ID</code>, "
    "or train one in the <b>Train</b> tab and press <b>Load into demo</b>."
)


class NoModelError(ValueError):
    """No checkpoint is loaded; the message says how to get one."""


@dataclass
class Session:
    """What one browser session has analysed (kept in a ``gr.State``; plain data only)."""

    video: str | None = None
    key: str | None = None
    out_dir: str | None = None
    num_segments: int = 0
    segment_seconds: float = 1.0
    generation: int = -1
    warnings: list[str] = field(default_factory=list)
    last_question: str = ""


def clip_path(session: Session, video: str | None = None) -> str:
    """The clip a question or a viewer is about: the current upload, else the last analysed one."""
    path = video or session.video
    if not path:
        raise ValueError("Upload a clip (or pick an example) in the Analyze tab first.")
    return path


class ModelHolder:
    """The app's current Predictor, where it came from, and why none is loaded if so."""

    def __init__(self, source: str = "default", device: str = "cpu") -> None:
        self.source = source
        self.device = device
        self.predictor: Predictor | None = None
        self.error: str | None = None
        self.generation = 0
        self._swap = threading.Lock()

    def load(self) -> Predictor | None:
        """Load ``self.source``; on failure keep ``error`` and no model (the app still starts)."""
        try:
            predictor = Predictor.from_pretrained(self.source, device=self.device)
        except CheckpointError as err:
            self.error = str(err).splitlines()[0]
            log.warning("no model loaded: %s", self.error)
            return None
        except Exception as err:
            log.exception("loading checkpoint %r failed", self.source)
            self.error = f"loading {self.source!r} failed: {one_line(err)}"
            return None
        self.set(predictor, self.source)
        return predictor

    def set(self, predictor: Predictor, source: str) -> None:
        """Make ``predictor`` current; sessions notice through ``generation``."""
        with self._swap:
            self.predictor, self.source, self.error = predictor, source, None
            self.generation += 1

    def load_checkpoint(self, folder: str | Path) -> Predictor:
        """Swap in one task checkpoint (other tasks kept); raises CheckpointError and keeps the old model."""
        current = self.predictor
        predictor = (current.with_checkpoint(folder) if current is not None
                     else Predictor.from_pretrained(str(folder), device=self.device))
        self.set(predictor, str(folder) if current is None else f"{self.source} + {folder}")
        return predictor

    def clip_key(self, session: Session, video: str | None = None) -> str:
        """Decode (or find in the cache) the clip of ``clip_path`` and return its cache key."""
        return self.require().load(clip_path(session, video)).key

    def require(self) -> Predictor:
        """The current Predictor, or NoModelError with how to get one."""
        if self.predictor is None:
            raise NoModelError("No model is loaded: build the default (python -m stgcma build-default), "
                               "start with --checkpoint, or train one in the Train tab.")
        return self.predictor

    @property
    def tasks(self) -> list[str]:
        return self.predictor.tasks if self.predictor is not None else []

    def meta(self, task: str) -> dict[str, Any]:
        return self.predictor.meta.get(task, {}) if self.predictor is not None else {}

    def status_html(self) -> str:
        """The model banner shown at the top of the app."""
        if self.predictor is None:
            reason = html.escape(self.error or "no checkpoint given")
            return (f'<div class="stg-status stg-error">✕ <b>No model is loaded</b> ({reason}). '
                    f"{HOW_TO_GET_A_MODEL} The Train tab works without a model.</div>")
        tasks = ", ".join(t.upper() for t in self.predictor.tasks)
        return (f'<div class="stg-status stg-ok">✓ Model: <code>{html.escape(self.source)}</code> '
                f"on {html.escape(self.device)} · tasks: {tasks}</div>")


@dataclass
class AppContext:
    """What every tab needs: the model, the training jobs, where outputs go, example clips."""

    holder: ModelHolder
    jobs: Any
    work_dir: Path
    examples: list[str] = field(default_factory=list)
