"""Model picker and About panel: which model this session uses, and what that model is.

The picker lists the app's model, the embedded default, the checkpoints of the Train tab's runs
(``--runs``) and the models in the operator's folder (``--models``); a Hugging Face Hub repo id can
be typed in (online only; offline the library says so). A pick is ONE click and changes only the
visitor's session (``ModelHolder.load_for_session``); a failed load keeps the model the session had
and says why in one line, naming no server path. The list's values are short keys (``run:NAME``,
``models:NAME``), never paths, and only keys of the current list are loaded.

The About panel is the session model's card (:func:`app.about.about_markdown`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import gradio as gr

from app.about import about_markdown
from app.errors import status_html, user_message
from app.jobs import checkpoint_of
from app.state import AppContext, Session, is_hub_id
from stgcma.checkpoint import CONFIG_NAME, DEFAULT_DIR, CheckpointError
from stgcma.inference import TASKS

APP, DEFAULT, RUN, MODELS, HUB = "app", "default", "run:", "models:", "hub:"


def default_available() -> bool:
    """Whether the embedded default is built (at least one task folder in ``assets/default``)."""
    return any((DEFAULT_DIR / task / CONFIG_NAME).exists() for task in TASKS)


def model_source(folder: Path) -> Path | None:
    """The checkpoint source a folder of the models folder offers (a checkpoint, task folders, a run), or None."""
    if (folder / CONFIG_NAME).exists() or any((folder / task / CONFIG_NAME).exists() for task in TASKS):
        return folder
    return checkpoint_of(folder)


class ModelPanel:
    """The Model list (with a Hub repo id box) above the tabs, and the About accordion."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def catalogue(self) -> dict[str, tuple[str, str]]:
        """What can be picked now: list value -> (label, checkpoint source)."""
        holder, items = self.ctx.holder, {}
        if holder.predictor is not None:
            items[DEFAULT if holder.source == "default" else APP] = (f"{holder.label} (the app's model)",
                                                                     holder.source)
        if DEFAULT not in items and default_available():
            items[DEFAULT] = ("embedded default", "default")
        root = self.ctx.jobs.runs_root
        for run in self.ctx.jobs.list_runs():
            checkpoint = checkpoint_of(run)
            if checkpoint is not None:
                name = run.relative_to(root).as_posix() if run.is_relative_to(root) else run.name
                items[RUN + name] = (f"run {name} ({checkpoint.name})", str(checkpoint))
        models = self.ctx.models_dir
        if models is not None and Path(models).is_dir():
            for folder in sorted(p for p in Path(models).iterdir() if p.is_dir() and not p.name.startswith(".")):
                source = model_source(folder)
                if source is not None:
                    items[MODELS + folder.name] = (f"{folder.name} (models folder)", str(source))
        return items

    def current(self, session: Session | None, items: dict[str, tuple[str, str]]) -> str | None:
        """The list value of the model ``session`` uses (None when it is not in the list)."""
        picked = self.ctx.holder.session_source(session)
        if picked is None:
            return next((v for v in (DEFAULT, APP) if v in items and items[v][1] == self.ctx.holder.source), None)
        if picked.hub:
            return HUB + picked.source
        for value, (_, source) in items.items():
            if value != APP and (source == picked.source or (source != "default" and
                                                             str(Path(source).resolve()) == picked.source)):
                return value
        return None

    def choices(self, session: Session | None = None) -> tuple[list[tuple[str, str]], str | None]:
        """The list for ``session`` (its Hub model included) and the value it shows."""
        items = self.catalogue()
        picked = self.ctx.holder.session_source(session)
        if picked is not None and picked.hub:
            items[HUB + picked.source] = (f"{picked.source} (Hub)", picked.source)
        return [(label, value) for value, (label, _) in items.items()], self.current(session, items)

    def build(self) -> None:
        choices, value = self.choices()
        with gr.Row(equal_height=True):
            self.picker = gr.Dropdown(choices, value=value, label="Model (for you only)", scale=3, min_width=300,
                                      info="the app's model, the embedded default, Train-tab runs, the models "
                                           "folder; picking one loads it for your session, other visitors keep theirs")
            self.hub = gr.Textbox(label="or a Hugging Face Hub repo id", placeholder="owner/name", scale=2,
                                  min_width=240, info="needs internet access on the server")
            with gr.Column(scale=1, min_width=140):
                self.hub_button = gr.Button("Load from Hub")
                self.refresh = gr.Button("Refresh list", size="sm")
        self.status = gr.HTML()
        with gr.Accordion("About this model", open=False):
            self.about = gr.Markdown(self.about_text(None))

    def about_text(self, session: Session | None) -> str:
        """The About panel's Markdown for the model ``session`` uses."""
        holder = self.ctx.holder
        try:
            predictor = holder.predictor_for(session)
        except Exception as err:  # the session's model cannot be reloaded: say why, keep the page working
            return status_html(user_message(err, "ModelPanel.about_text"), "error")
        return about_markdown(predictor, holder.model_label(session))

    def _switch(self, session: Session, load: Any, what: str, where: str) -> tuple[Any, ...]:
        """Run ``load`` (returns the new ``Session.model`` id, None for the app's model) -> picker, session,
        banner, status; on failure the session keeps its model, the picker shows it again, and the status
        says what could not be loaded, why, and which model is kept."""
        try:
            model = load()
        except Exception as err:
            choices, value = self.choices(session)
            reason = user_message(err, where).rstrip(".")
            message = f"Could not load {what}: {reason}. You keep {self.ctx.holder.model_label(session)}."
            return gr.update(choices=choices, value=value), gr.skip(), gr.skip(), status_html(message, "error")
        session = dataclasses.replace(session, model=model)
        choices, value = self.choices(session)
        own = " for your session only (other visitors keep theirs)" if model else ""
        note = status_html(f"Now using {self.ctx.holder.model_label(session)}{own}. Analyse again to see its "
                           "results.", "ok")
        return gr.update(choices=choices, value=value), session, self.ctx.holder.status_html(session), note

    def pick(self, value: str | None, session: Session) -> tuple[Any, ...]:
        """One click in the list: load that model for this session (the app's model: back to it)."""
        def load() -> str | None:
            items = self.catalogue()
            if value not in items:
                raise CheckpointError("That model is no longer in the list: press Refresh list.")
            label, source = items[value]
            if value == APP or source == self.ctx.holder.source:
                return None  # the app's model: nothing to load
            if not value.startswith(RUN):
                return self.ctx.holder.load_for_session(source)  # named after its source
            over = self.ctx.holder.predictor is not None  # a run trains one task: the app's others are kept
            return self.ctx.holder.load_for_session(source, f"{self.ctx.holder.label} + {label}" if over else label)

        what = self.catalogue().get(value or "", ("that model", ""))[0]
        return self._switch(session or Session(), load, what, "ModelPanel.pick")

    def load_hub(self, repo: str | None, session: Session) -> tuple[Any, ...]:
        """Load the Hub repo ``repo`` (owner/name) for this session."""
        def load() -> str:
            text = (repo or "").strip()
            if not text:
                raise ValueError("type a Hub repo id (owner/name) first")
            if not is_hub_id(text) or Path(text).exists():
                raise ValueError("that is not a Hub repo id: type owner/name (this server's models are in the "
                                 "list)")
            return self.ctx.holder.load_for_session(text)

        text = (repo or "").strip()
        what = text if is_hub_id(text) else "a Hub model"  # a typed path is not echoed back
        return self._switch(session or Session(), load, what, "ModelPanel.load_hub")

    def refresh_list(self, session: Session | None) -> tuple[Any, ...]:
        """The list (new runs included) showing the session's model, and its About text."""
        choices, value = self.choices(session)
        return gr.update(choices=choices, value=value), self.about_text(session)
