"""Assemble STG-CMA Studio: the model banner, five tabs, and the events that connect them.

``build_demo(ctx)`` only builds the Blocks (tests call it without launching); ``app.py`` launches
it with ``THEME`` and ``CSS`` (in Gradio 6 they are arguments of ``launch()``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import gradio as gr

from app.jobs import JobManager
from app.state import AppContext, ModelHolder, Session
from app.tabs.analyze import AnalyzeTab
from app.tabs.ask import AskTab
from app.tabs.attention import AttentionTab, task_choices
from app.tabs.attribution import PREDICTED, AttributionTab
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
"""


def find_examples(folder: str | Path = EXAMPLES_DIR) -> list[str]:
    """Example clips (``*.mp4``) in ``folder``, sorted; none if it does not exist."""
    folder = Path(folder)
    return sorted(str(p) for p in folder.glob("*.mp4")) if folder.is_dir() else []


def make_context(checkpoint: str = "default", device: str = "cpu", runs: str | Path = "runs",
                 examples: str | Path = EXAMPLES_DIR, work_dir: str | Path | None = None) -> AppContext:
    """Load the model (or remember why not) and set up the job manager and the output folder."""
    holder = ModelHolder(checkpoint, device)
    holder.load()
    work = Path(work_dir) if work_dir else Path(tempfile.gettempdir()) / "stgcma-studio"
    work.mkdir(parents=True, exist_ok=True)
    return AppContext(holder=holder, jobs=JobManager(runs), work_dir=work, examples=find_examples(examples))


def build_demo(ctx: AppContext | None = None) -> gr.Blocks:
    """The whole app as a ``gr.Blocks`` (not launched)."""
    ctx = ctx or make_context()
    analyze, ask, attention = AnalyzeTab(ctx), AskTab(ctx), AttentionTab(ctx)
    attribution, train = AttributionTab(ctx), TrainTab(ctx)
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(f"# {TITLE}\n{INTRO}")
        banner = gr.HTML(ctx.holder.status_html())
        session = gr.State(Session())
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
        seconds = [attention.second, attribution.second]

        analyze.button.click(analyze.analyze, [analyze.video, session], analyze.outputs(session)).then(
            analyze.seconds_range, [session], seconds)
        analyze.table.select(analyze.seek, [session], [analyze.overlay, *seconds, analyze.status])

        ask_args = dict(fn=ask.ask, inputs=[ask.question, ask.chat, session, analyze.video],
                        outputs=[ask.chat, ask.question, session, ask.status])
        ask.send.click(**ask_args)
        ask.question.submit(**ask_args)
        ask.clear.click(ask.clear_chat, None, [ask.chat, ask.status])

        show = dict(fn=attention.show, inputs=[*attention.inputs(), session, analyze.video],
                    outputs=attention.outputs(), trigger_mode="always_last")
        attention.button.click(**show)
        for control in (attention.block, attention.stage, attention.direction):
            control.input(**show)
        attention.second.release(**show)
        attention.task.input(attention.on_task, [attention.task], [attention.question])

        attribution.button.click(attribution.explain, [*attribution.inputs(), session, analyze.video],
                                 attribution.outputs(), trigger_mode="always_last")
        attribution.task.input(attribution.on_task, [attribution.task], [attribution.target, attribution.question])

        poll = dict(fn=train.poll, inputs=[train.run], outputs=train.monitor_outputs(), show_progress="hidden")
        train.launch.click(train.start, train.form_inputs(), [train.run, train.timer, train.status]).then(**poll)
        train.timer.tick(**poll)
        train.run.change(**poll)
        train.refresh.click(train.refresh_runs, [train.run], [train.run]).then(**poll)
        train.cancel.click(train.cancel_run, [train.run], [train.timer, train.status]).then(**poll)
        train.resume.click(train.resume_run, [train.run], [train.timer, train.status]).then(**poll)
        train.task.input(train.on_task, [train.task, train.data], [train.data])

        model_ui = dict(fn=lambda att_task, attr_task: refresh_model_ui(ctx, attribution, att_task, attr_task),
                        inputs=[attention.task, attribution.task],
                        outputs=[banner, attention.task, attribution.task, attribution.target, attention.question,
                                 attribution.question])
        train.load.click(train.load_run, [train.run], [banner, train.status]).then(**model_ui)
        demo.load(**model_ui)
    return demo


def refresh_model_ui(ctx: AppContext, attribution: AttributionTab, att_task: str | None,
                     attr_task: str | None) -> tuple[Any, ...]:
    """After the model changed: the banner, and task pickers that list only the loaded tasks."""
    choices = task_choices(ctx.holder.tasks)
    values = [v for _, v in choices]
    att = att_task if att_task in values else (values[0] if values else None)
    attr = attr_task if attr_task in values else (values[0] if values else None)
    return (ctx.holder.status_html(), gr.update(choices=choices, value=att), gr.update(choices=choices, value=attr),
            gr.update(choices=attribution.target_choices(attr), value=PREDICTED), gr.update(visible=att == "avqa"),
            gr.update(visible=attr == "avqa"))
