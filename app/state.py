"""Who holds the model, and what one browser session has analysed.

``ModelHolder`` owns the app's ``Predictor`` (shared by every session; its own lock serialises
model work) and can swap it for another checkpoint without ever leaving the app with no model
because a load failed. A model picked in the Model list, or loaded from the Train tab ("Load into
demo"), is a SESSION model: only the session that loaded it sees it; every other visitor keeps the
app's model.
``Session`` is the per-browser state kept in a ``gr.State`` (server-side, never sent to the
browser): the uploaded file, the analysed clip's cache key and name, where its outputs were
written, and which model the session uses. Banners name models, never server paths.
"""

from __future__ import annotations

import html
import logging
import re
import shutil
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
        max_results: analyses whose outputs stay in the work folder; older ones are removed, so a
            long-running public app does not fill its disk (Gradio keeps its own copies of what it served).
    """

    max_file_mb: int = 200
    max_duration_s: float = 600.0
    queue_size: int = 16
    concurrency: int = 1
    max_results: int = 64  # analysis folders kept in the work folder (oldest removed first)

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
    """A model one session loaded on top of the app's model.

    ``source``: a checkpoint folder (resolved), ``"default"`` or a Hub repo id; ``hub``: whether it is the latter.
    """

    label: str
    source: str
    predictor: Predictor | None = None
    hub: bool = False


HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
# an absolute path in a message (not a URL, not "owner/name", not "1/16"): shown by its last part
ABSOLUTE_PATH = re.compile(r"(?<![\w.~:/<-])(?:/[\w.@+-]+)+/?")


def is_hub_id(text: str) -> bool:
    """Whether ``text`` looks like a Hugging Face Hub repo id (``owner/name``)."""
    return bool(HUB_ID.fullmatch(text)) and ".." not in text


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

    def _scrub(self, message: str, *sources: str | Path) -> str:
        """``message`` with the server paths of the app's and ``sources`` replaced by their names (and any
        other absolute path by its last part)."""
        forms = {}
        for source in (self.source, *sources):
            for form in {str(source), str(Path(source).expanduser().resolve())}:
                if form and form != "default" and not (is_hub_id(form) and not Path(form).exists()):
                    forms[form] = model_name(source)
        for form in sorted(forms, key=len, reverse=True):
            message = message.replace(form, forms[form])
        return ABSOLUTE_PATH.sub(lambda m: Path(m.group()).name or "/", message)

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

    def load_for_session(self, source: str | Path, label: str | None = None) -> str:
        """Load ``source`` over the app's model for ONE session; returns its model id (``Session.model``).

        ``source``: a checkpoint folder (one task, a finished run, or a folder of task folders),
        ``"default"`` or a Hub repo id. Its tasks replace the app model's and the app model's other tasks
        are kept (a one-task run keeps the other two). ``label`` names it in the banner (default: its name,
        "+"-joined to the app model's when tasks of the app model are kept).

        Sessions that load the same source share one Predictor; at most ``max_session_models``
        stay in memory (an evicted one is loaded again when its session next needs it). Raises
        CheckpointError with a one-line message naming no server path; the app's model and every
        session are left as they were.
        """
        text = str(source)
        hub = text != "default" and is_hub_id(text) and not Path(text).exists()
        if text == "default" or hub:
            model_id = text
        else:
            folder = Path(text).expanduser().resolve()
            weights = [folder / "adapter_model.safetensors", *folder.glob("*/adapter_model.safetensors")]
            stamp = max((w.stat().st_mtime_ns for w in weights if w.exists()), default=0)
            text, model_id = str(folder), f"{folder}@{stamp}"
        self._session_predictor(model_id, SessionModel(label or "", text, hub=hub))
        return model_id

    def _build(self, entry: SessionModel) -> Predictor:
        """``entry``'s source over the app's model; CheckpointError (one line, no server path) when it fails."""
        try:
            own = Predictor.from_pretrained(entry.source, device=self.device, limits=self.limits)
        except CheckpointError as err:
            log.info("loading %r for a session failed: %s", entry.source, err)
            raise CheckpointError(self._scrub(one_line(err), entry.source)) from None
        except Exception as err:
            log.exception("loading %r for a session failed", entry.source)
            raise CheckpointError(self._scrub(f"loading {model_name(entry.source)} failed: {one_line(err)}",
                                              entry.source)) from None
        base = self.predictor
        if not entry.label:
            kept = base is not None and not set(base.tasks) <= set(own.tasks)
            entry.label = f"{self.label} + {model_name(entry.source)}" if kept else model_name(entry.source)
        return base.with_tasks_of(own) if base is not None else own

    def _session_predictor(self, model_id: str, entry: SessionModel | None = None) -> Predictor:
        with self._swap:
            entry = self._session_models.get(model_id) or entry
        if entry is None:
            raise NoModelError("This session's model is gone (the app restarted): pick it again in the Model list.")
        predictor = entry.predictor or self._build(entry)
        with self._swap:
            entry.predictor = predictor
            self._session_models[model_id] = entry
            self._session_models.move_to_end(model_id)
            loaded = [k for k, e in self._session_models.items() if e.predictor is not None]
            for old in loaded[: max(0, len(loaded) - self.max_session_models)]:
                self._session_models[old].predictor = None  # keep its source: reloaded on demand
        return predictor

    def session_source(self, session: Session | None) -> SessionModel | None:
        """The model ``session`` picked (its source and label), None when it uses the app's."""
        if session is None or not session.model:
            return None
        return self._session_models.get(session.model)

    def predictor_for(self, session: Session | None = None) -> Predictor | None:
        """The model ``session`` uses: its own (the Model list, the Train tab's "Load into demo"), else the app's."""
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

    ``training``: whether the Train tab can launch jobs (off unless the operator enabled it);
    ``models_dir``: the operator's folder of checkpoints offered in the Model list (``--models``), if any.
    """

    holder: ModelHolder
    jobs: Any
    work_dir: Path
    examples: list[str] = field(default_factory=list)
    limits: AppLimits = field(default_factory=AppLimits)
    training: bool = False
    example_items: list[Any] = field(default_factory=list)  # app.examples.Example, in gallery order
    models_dir: Path | None = None


def prune_results(work: Path, keep: int, current: Path) -> list[Path]:
    """Remove all but the ``keep`` most recent analysis folders of ``work`` (never ``current``); returns
    what was removed."""
    folders = sorted((p for p in work.iterdir() if p.is_dir() and p != current),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    removed = folders[max(keep - 1, 0):]
    for folder in removed:
        shutil.rmtree(folder, ignore_errors=True)
    return removed
