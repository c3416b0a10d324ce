"""Who holds the model, and what one browser session has analysed.

``ModelHolder`` owns the app's ``Predictor`` (shared by every session; its own lock serialises
model work) and can swap it for another checkpoint without ever leaving the app with no model
because a load failed. A checkpoint loaded from the Train tab ("Load into demo") is a SESSION
model: only the session that loaded it sees it; every other visitor keeps the app's model.
``Session`` is the per-browser state kept in a ``gr.State`` (server-side, never sent to the
browser): the uploaded file, the analysed clip's cache key and name, where its outputs were
written, and which model the session uses. Banners name models, never server paths.
"""

from __future__ import annotations

import html
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.errors import one_line
from stgcma.checkpoint import CheckpointError
from stgcma.inference import Predictor
from stgcma.media import MediaLimits

log = logging.getLogger("stgcma.app")

HOW_TO_GET_A_MODEL = (
    "Build the embedded default with <code>python -m stgcma build-default</code> (writes "
    "<code>assets/default</code>), start with <code>python app.py --checkpoint FOLDER_OR_HUB_ID</code>, "
    "or train one in the <b>Train</b> tab and press <b>Load into demo</b>."
)


class NoModelError(ValueError):
    """No checkpoint is loaded; the message says how to get one."""


@dataclass(frozen=True)
class AppLimits:
    """What one request may ask of the app, set at launch and shown in the Analyze tab.

    Attributes:
        max_file_mb: largest upload (gradio refuses bigger files before they reach a handler).
        max_duration_s: longest clip analysed; longer clips are cut to their start, with a warning.
        queue_size: requests that may wait for the model; one more gets "busy, try again".
        concurrency: model requests (analyse, ask, attention, attribution, API) running at once.
    """

    max_file_mb: int = 200
    max_duration_s: float = 600.0
    queue_size: int = 16
    concurrency: int = 1

    def media(self) -> MediaLimits:
        return MediaLimits(max_duration_s=self.max_duration_s, max_file_bytes=self.max_file_mb * 1_000_000)

    def text(self) -> str:
        minutes = self.max_duration_s / 60
        length = f"{minutes:g} min" if self.max_duration_s >= 60 else f"{self.max_duration_s:g} s"
        at_once = "one request" if self.concurrency == 1 else f"{self.concurrency} requests"
        return (f"Limits: uploads up to {self.max_file_mb} MB; clips longer than {length} are cut to their first "
                f"{length}; the model serves {at_once} at a time with up to {self.queue_size} waiting "
                "(beyond that: busy, try again).")


@dataclass
class Session:
    """What one browser session has analysed (kept in a ``gr.State``; plain data only).

    ``model`` is the id of this session's own model (see ``ModelHolder.load_for_session``), None for
    the app's model; ``objects`` are the AVE events found in the clip, most confident first.
    """

    video: str | None = None
    key: str | None = None
    out_dir: str | None = None
    clip_name: str = ""
    num_segments: int = 0
    segment_seconds: float = 1.0
    has_audio: bool = True
    warnings: list[str] = field(default_factory=list)
    objects: list[str] = field(default_factory=list)
    last_question: str = ""
    model: str | None = None


def clip_path(session: Session, video: str | None = None) -> str:
    """The clip a question or a viewer is about: the current upload, else the last analysed one."""
    path = video or session.video
    if not path:
        raise ValueError("Upload a clip (or pick an example) in the Analyze tab first.")
    return path


def model_name(source: str | Path) -> str:
    """How a banner names a checkpoint source: never a server path (a folder is shown by its name)."""
    source = str(source)
    if source == "default":
        return "embedded default"
    path = Path(source)
    return path.name if path.is_absolute() or path.exists() else source  # else a Hub repo id


@dataclass
class SessionModel:
    """A checkpoint one session loaded on top of the app's model."""

    label: str
    folder: str
    predictor: Predictor | None = None


class ModelHolder:
    """The app's current Predictor, the sessions' own models, and why none is loaded if so."""

    def __init__(self, source: str = "default", device: str = "cpu", limits: MediaLimits | None = None,
                 max_session_models: int = 4) -> None:
        self.source = source
        self.device = device
        self.limits = limits
        self.label = model_name(source)
        self.predictor: Predictor | None = None
        self.error: str | None = None
        self.generation = 0
        self.max_session_models = max_session_models
        self._session_models: OrderedDict[str, SessionModel] = OrderedDict()
        self._swap = threading.Lock()

    def load(self) -> Predictor | None:
        """Load ``self.source``; on failure keep ``error`` and no model (the app still starts)."""
        try:
            predictor = Predictor.from_pretrained(self.source, device=self.device, limits=self.limits)
        except CheckpointError as err:
            self.error = self._scrub(str(err).splitlines()[0])
            log.warning("no model loaded: %s", err)
            return None
        except Exception as err:
            log.exception("loading checkpoint %r failed", self.source)
            self.error = self._scrub(f"loading {self.source!r} failed: {one_line(err)}")
            return None
        self.set(predictor, self.source)
        return predictor

    def _scrub(self, message: str) -> str:
        """``message`` with the source's server path replaced by its name."""
        for form in {str(self.source), str(Path(self.source).expanduser().resolve())}:
            if form and form != "default":
                message = message.replace(form, model_name(self.source))
        return message

    def set(self, predictor: Predictor, source: str, label: str | None = None) -> None:
        """Make ``predictor`` the app's model for every session (an operator's action, not a visitor's)."""
        with self._swap:
            self.predictor, self.source, self.error = predictor, source, None
            self.label = label or model_name(source)
            self.generation += 1

    def load_checkpoint(self, folder: str | Path) -> Predictor:
        """Swap one task checkpoint into the APP's model (other tasks kept); raises and keeps the old one."""
        current = self.predictor
        predictor = (current.with_checkpoint(folder) if current is not None
                     else Predictor.from_pretrained(str(folder), device=self.device, limits=self.limits))
        label = model_name(folder) if current is None else f"{self.label} + {model_name(folder)}"
        self.set(predictor, str(folder) if current is None else f"{self.source} + {folder}", label)
        return predictor

    def load_for_session(self, folder: str | Path, label: str) -> str:
        """Load the task checkpoint ``folder`` over the app's model for ONE session; returns its model id.

        Sessions that load the same checkpoint share one Predictor; at most ``max_session_models``
        stay in memory (an evicted one is loaded again when its session next needs it). Raises
        CheckpointError (the app's model and every session are left as they were).
        """
        folder = Path(folder).resolve()
        weights = folder / "adapter_model.safetensors"
        model_id = f"{folder}@{weights.stat().st_mtime_ns if weights.exists() else 0}"
        entry = SessionModel(label, str(folder))
        self._session_predictor(model_id, entry)
        return model_id

    def _session_predictor(self, model_id: str, entry: SessionModel | None = None) -> Predictor:
        with self._swap:
            entry = self._session_models.get(model_id) or entry
        if entry is None:
            raise NoModelError("This session's model is gone (the app restarted): load it again from the Train tab.")
        predictor = entry.predictor
        if predictor is None:
            base = self.predictor
            predictor = (base.with_checkpoint(entry.folder) if base is not None
                         else Predictor.from_pretrained(entry.folder, device=self.device, limits=self.limits))
        with self._swap:
            entry.predictor = predictor
            self._session_models[model_id] = entry
            self._session_models.move_to_end(model_id)
            loaded = [k for k, e in self._session_models.items() if e.predictor is not None]
            for old in loaded[: max(0, len(loaded) - self.max_session_models)]:
                self._session_models[old].predictor = None  # keep its folder: reloaded on demand
        return predictor

    def predictor_for(self, session: Session | None = None) -> Predictor | None:
        """The model ``session`` uses: its own (Train tab's "Load into demo"), else the app's."""
        if session is not None and session.model:
            return self._session_predictor(session.model)
        return self.predictor

    def clip_key(self, session: Session, video: str | None = None) -> str:
        """Decode (or find in the cache) the clip of ``clip_path`` and return its cache key."""
        return self.require(session).load(clip_path(session, video)).key

    def require(self, session: Session | None = None) -> Predictor:
        """The session's Predictor (the app's when it has none of its own), or NoModelError."""
        predictor = self.predictor_for(session)
        if predictor is None:
            raise NoModelError("No model is loaded: build the default (python -m stgcma build-default), "
                               "start with --checkpoint, or train one in the Train tab.")
        return predictor

    def model_label(self, session: Session | None = None) -> str:
        """The name of the model ``session`` uses (no server paths)."""
        if session is not None and session.model and session.model in self._session_models:
            return self._session_models[session.model].label
        return self.label

    def tasks_for(self, session: Session | None = None) -> list[str]:
        predictor = self.predictor_for(session)
        return predictor.tasks if predictor is not None else []

    @property
    def tasks(self) -> list[str]:
        return self.tasks_for(None)

    def meta(self, task: str, session: Session | None = None) -> dict[str, Any]:
        predictor = self.predictor_for(session)
        return predictor.meta.get(task, {}) if predictor is not None else {}

    def status_html(self, session: Session | None = None) -> str:
        """The model banner shown at the top of the app, for ``session`` (the app's model without one)."""
        predictor = self.predictor_for(session)
        if predictor is None:
            reason = html.escape(self.error or "no checkpoint given")
            return (f'<div class="stg-status stg-error">✕ <b>No model is loaded</b> ({reason}). '
                    f"{HOW_TO_GET_A_MODEL} The Train tab works without a model.</div>")
        tasks = ", ".join(t.upper() for t in predictor.tasks)
        own = " (loaded in this session only)" if session is not None and session.model else ""
        return (f'<div class="stg-status stg-ok">✓ Model: <b>{html.escape(self.model_label(session))}</b>{own} '
                f"on {html.escape(self.device)} · tasks: {tasks}</div>")


@dataclass
class AppContext:
    """What every tab needs: the model, the training jobs, where outputs go, example clips, limits.

    ``training``: whether the Train tab can launch jobs (off unless the operator enabled it).
    """

    holder: ModelHolder
    jobs: Any
    work_dir: Path
    examples: list[str] = field(default_factory=list)
    limits: AppLimits = field(default_factory=AppLimits)
    training: bool = False
    example_items: list[Any] = field(default_factory=list)  # app.examples.Example, in gallery order
