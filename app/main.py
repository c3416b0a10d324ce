"""Assemble STG-CMA Studio: the model banner and picker, five tabs, the events that connect them, two API endpoints.

``build_demo(ctx)`` only builds the Blocks (tests call it without launching); ``app.py`` launches
it with ``THEME`` and ``CSS`` (in Gradio 6 they are arguments of ``launch()``) after
``demo.queue(**queue_settings(ctx.limits))``.

Every event that runs the model (analyse, ask, attention, attribution and the API endpoints) joins
ONE queue, ``concurrency_id="model"``, limited to ``ctx.limits.concurrency`` at a time. The page's
own events are private (not in the API page); ``/analyze`` and ``/ask`` are the public API for
``gradio_client``, and raise ``gr.Error`` on bad input. Loading a model picked in the Model list
joins its own queue, ``concurrency_id="model-load"``, one load at a time.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import gradio as gr

from app.examples import load_examples
from app.jobs import JobManager
from app.state import AppContext, AppLimits, ModelHolder, Session
from app.tabs.analyze import AnalyzeTab
from app.tabs.ask import AskTab
from app.tabs.attention import AttentionTab, task_choices
from app.tabs.attribution import PREDICTED, AttributionTab
from app.tabs.model import ModelPanel
from app.tabs.train import TrainTab

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = ROOT / "assets" / "examples"
TITLE = "STG-CMA Studio"
INTRO = ("Audio-visual understanding with one frozen image transformer and STG-CMA adapters: "
         "**Analyze** a clip (sounding-object masks, events per second), **Ask** about it, look inside with the "
         "**Attention** and **Attribution** viewers, or **Train** your own adapters.")

THEME = gr.themes.Soft(font=["system-ui", "Segoe UI", "Roboto", "sans-serif"],
                       font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"])
CSS = """
.stg-status { padding: 10px 14px; border-radius: 8px; margin: 4px 0; font-size: 0.95em; border: 1px solid; }
.stg-status ul { margin: 4px 0 0 18px; }
.stg-ok { background: #ecfdf3; border-color: #9bdbb4; color: #14532d; }
.stg-info { background: #eff6ff; border-color: #a9c7f5; color: #1e3a8a; }
.stg-warn { background: #fff7e6; border-color: #f5c46b; color: #7a4b00; font-weight: 500; }
.stg-error { background: #fdecec; border-color: #f2a7a7; color: #7f1d1d; }
.stg-status code { background: rgba(0,0,0,0.06); padding: 0 4px; border-radius: 4px; }
.stg-facts, .stg-facts tr { border-collapse: collapse; font-size: 0.9em; width: 100%; border: none !important; }
.stg-facts th, .stg-facts td { text-align: left; padding: 3px 8px; border: none !important;
  border-bottom: 1px solid #e5e7eb !important; }
.stg-note { font-size: 0.85em; opacity: 0.8; }
.stg-key { display: flex; align-items: center; gap: 6px; flex-wrap: wrap; }
.stg-swatch { display: inline-block; width: 64px; height: 12px; border-radius: 3px; border: 1px solid #d1d5db; }
.stg-player { position: relative; width: 100%; height: 320px; background: #111; border-radius: 6px; overflow: hidden; }
.stg-player video, .stg-player .stg-layer { position: absolute; inset: 0; width: 100%; height: 100%;
  object-fit: contain; }
.stg-player .stg-layer { pointer-events: none; opacity: 0; }
.stg-player-empty { display: flex; align-items: center; justify-content: center; height: 100%; padding: 16px;
  color: #d1d5db; text-align: center; font-size: 0.95em; }
"""
MODEL_QUEUE = "model"
LOAD_QUEUE = "model-load"
RENDER_QUEUE = "render"


def find_examples(folder: str | Path = EXAMPLES_DIR) -> list[str]:
    """Example clips of ``folder`` (manifest order when it has ``examples.json``); none if it does not exist."""
    return [e.path for e in load_examples(folder)]


def make_context(checkpoint: str = "default", device: str = "cpu", runs: str | Path = "runs",
                 examples: str | Path = EXAMPLES_DIR, work_dir: str | Path | None = None,
                 limits: AppLimits | None = None, training: bool = False, max_jobs: int = 1,
                 models: str | Path | None = None) -> AppContext:
    """Load the model (or remember why not) and set up the job manager and the output folder.

    ``models``: a folder whose checkpoint folders the Model list offers (besides the default and the runs).
    """
    limits = limits or AppLimits()
    holder = ModelHolder(checkpoint, device, limits=limits.media())
    holder.load()
    work = Path(work_dir) if work_dir else Path(tempfile.gettempdir()) / "stgcma-studio"
    work.mkdir(parents=True, exist_ok=True)
    items = load_examples(examples)
    return AppContext(holder=holder, jobs=JobManager(runs, max_running=max_jobs), work_dir=work,
                      examples=[e.path for e in items], limits=limits, training=training, example_items=items,
                      models_dir=Path(models) if models else None)


def queue_settings(limits: AppLimits) -> dict[str, Any]:
    """``demo.queue(**...)``: a bounded queue (a request beyond it is told the app is busy, try again)."""
    return {"max_size": limits.queue_size, "default_concurrency_limit": max(1, limits.concurrency)}


def build_demo(ctx: AppContext | None = None) -> gr.Blocks:
    """The whole app as a ``gr.Blocks`` (not launched)."""
    ctx = ctx or make_context()
    analyze, ask, attention = AnalyzeTab(ctx), AskTab(ctx), AttentionTab(ctx)
    attribution, train, panel = AttributionTab(ctx), TrainTab(ctx), ModelPanel(ctx)
    private = {"api_visibility": "private"}
    model = {"concurrency_id": MODEL_QUEUE, "concurrency_limit": max(1, ctx.limits.concurrency), **private}
    quiet = {"show_progress": "hidden", **private}
    with gr.Blocks(title=TITLE, delete_cache=(3600, 86400)) as demo:  # Gradio's uploads: hourly, a day old
        gr.Markdown(f"# {TITLE}\n{INTRO}")
        banner = gr.HTML(ctx.holder.status_html())
        session = gr.State(Session())
        panel.build()
        with gr.Tabs():
            with gr.Tab("Analyze"):
                analyze.build()
            with gr.Tab("Ask"):
                ask.build()
            with gr.Tab("Attention"):
                attention.build()
            with gr.Tab("Attribution"):
                attribution.build()
            with gr.Tab("Train"):
                train.build()
        with gr.Group(visible=False):  # inputs and outputs of the API endpoints (gradio_client); not on the page
            api_video = gr.Video(label="video")
            api_result, api_overlay = gr.JSON(label="result"), gr.Video(label="overlay")
            api_timeline = gr.Image(label="timeline", type="filepath")
            api_question, api_clip = gr.Textbox(label="question"), gr.Video(label="video")
            api_answer, api_confidence = gr.Textbox(label="answer"), gr.Number(label="confidence")
            api_alternatives = gr.JSON(label="alternatives")
            api_analyze, api_ask = gr.Button("analyze"), gr.Button("ask")
        # the API endpoints first, so they own the names /analyze and /ask (the page's events are private)
        api_analyze.click(analyze.api_analyze, [api_video], [api_result, api_overlay, api_timeline],
                          api_name="analyze", concurrency_id=MODEL_QUEUE,
                          concurrency_limit=max(1, ctx.limits.concurrency))
        api_ask.click(ask.api_ask, [api_question, api_clip], [api_answer, api_confidence, api_alternatives],
                      api_name="ask", concurrency_id=MODEL_QUEUE, concurrency_limit=max(1, ctx.limits.concurrency))
        seconds = [attention.second, attribution.second]

        analysis = dict(fn=analyze.analyze, inputs=[analyze.video, session], outputs=analyze.outputs(session),
                        show_progress_on=[analyze.player], **model)
        after_analysis = [dict(fn=analyze.seconds_range, inputs=[session], outputs=seconds, **quiet),
                          dict(fn=ask.suggest, inputs=[session], outputs=[ask.chips], **quiet),
                          dict(fn=analyze.finish, inputs=[session], outputs=[analyze.files, analyze.player,
                                                                             analyze.status],
                               show_progress_on=[analyze.files], concurrency_id=RENDER_QUEUE,
                               concurrency_limit=max(1, ctx.limits.concurrency), **private)]
        starts = [analyze.button.click(**analysis)]
        if analyze.gallery is not None:
            starts.append(analyze.gallery.select(analyze.pick_example, None, [analyze.video], **quiet).then(**analysis))
        for start in starts:
            for step in after_analysis:
                start = start.then(**step)
        analyze.table.select(analyze.seek, [session], [analyze.player, *seconds, analyze.status], **quiet)

        ask_args = dict(fn=ask.ask, inputs=[ask.question, ask.chat, session, analyze.video],
                        outputs=[ask.chat, ask.question, session, ask.status], **model)
        ask.send.click(**ask_args)
        ask.question.submit(**ask_args)
        ask.chips.click(ask.ask_chip, [ask.chips, ask.chat, session, analyze.video],
                        [ask.chat, ask.question, session, ask.status], **model)
        ask.clear.click(ask.clear_chat, None, [ask.chat, ask.status], **quiet)

        show = dict(fn=attention.show, inputs=[*attention.inputs(), session, analyze.video],
                    outputs=attention.outputs(), trigger_mode="always_last", **model)
        attention.button.click(**show)
        for control in (attention.block, attention.stage, attention.direction):
            control.input(**show)
        attention.second.release(**show)
        attention.task.input(attention.on_task, [attention.task], [attention.question], **quiet)

        attribution.button.click(attribution.explain, [*attribution.inputs(), session, analyze.video],
                                 attribution.outputs(), trigger_mode="always_last", **model)
        attribution.task.input(attribution.on_task, [attribution.task, session],
                               [attribution.target, attribution.question], **quiet)

        model_ui = dict(fn=lambda att_task, attr_task, state: refresh_model_ui(ctx, attribution, att_task, attr_task,
                                                                               state),
                        inputs=[attention.task, attribution.task, session],
                        outputs=[banner, attention.task, attribution.task, attribution.target, attention.question,
                                 attribution.question], **quiet)
        panel_ui = dict(fn=panel.refresh_list, inputs=[session], outputs=[panel.picker, panel.about], **quiet)
        loading = {"concurrency_id": LOAD_QUEUE, "concurrency_limit": 1, **private}
        switched = [panel.picker, session, banner, panel.status]
        panel.picker.input(panel.pick, [panel.picker, session], switched, **loading).then(**model_ui).then(**panel_ui)
        for start in (panel.hub_button.click, panel.hub.submit):
            start(panel.load_hub, [panel.hub, session], switched, **loading).then(**model_ui).then(**panel_ui)
        panel.refresh.click(**panel_ui)
        if train.enabled:
            poll = dict(fn=train.poll, inputs=[train.run], outputs=train.monitor_outputs(), **quiet)
            train.launch.click(train.start, train.form_inputs(), [train.run, train.timer, train.status],
                               **private).then(**poll)
            train.timer.tick(**poll)
            train.run.change(**poll)
            train.refresh.click(train.refresh_runs, [train.run], [train.run], **private).then(**poll)
            train.cancel.click(train.cancel_run, [train.run], [train.timer, train.status], **private).then(**poll)
            train.resume.click(train.resume_run, [train.run], [train.timer, train.status], **private).then(**poll)
            train.task.input(train.on_task, [train.task, train.data], [train.data], **quiet)
            train.load.click(train.load_run, [train.run, session], [session, banner, train.status],
                             **private).then(**model_ui).then(**panel_ui)
        demo.load(**model_ui).then(**panel_ui)
    return demo


def refresh_model_ui(ctx: AppContext, attribution: AttributionTab, att_task: str | None,
                     attr_task: str | None, session: Session | None = None) -> tuple[Any, ...]:
    """After the session's model changed: its banner, and task pickers that list only its tasks."""
    choices = task_choices(ctx.holder.tasks_for(session))
    values = [v for _, v in choices]
    att = att_task if att_task in values else (values[0] if values else None)
    attr = attr_task if attr_task in values else (values[0] if values else None)
    return (ctx.holder.status_html(session), gr.update(choices=choices, value=att),
            gr.update(choices=choices, value=attr),
            gr.update(choices=attribution.target_choices(attr, session), value=PREDICTED),
            gr.update(visible=att == "avqa"), gr.update(visible=attr == "avqa"))
