"""Attention viewer: the adapters' cross-modal attention at one second, over the frame and the spectrogram.

"audio → video" is where the sound's tokens look in the FRAME (audio queries, video keys); "video →
audio" is where the picture's tokens listen in the SPECTROGRAM (video queries, audio keys). A block
index shows one STG-CMA block; "aggregate" is the gate-weighted mean over blocks.
"""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from app.errors import guarded, status_html
from app.render import heat_on_frame, percent, spectrogram_figure
from app.state import AppContext, Session

BOTH, A2V, V2A = "both", "audio → video (frame)", "video → audio (spectrogram)"
DIRECTIONS = [BOTH, A2V, V2A]
STAGE_CHOICES = [("spatial (within a frame's token groups)", "spatial"), ("global (all tokens of a frame)", "global")]


def task_choices(tasks: list[str]) -> list[tuple[str, str]]:
    names = {"ave": "AVE (events)", "avs": "AVS (sounding objects)", "avqa": "AVQA (needs a question)"}
    return [(names[t], t) for t in tasks if t in names]


def frame_and_spectrogram(frame_caption: str, spectrogram_caption: str) -> tuple[gr.Image, gr.Image]:
    """Side by side, each under its caption: the frame image and the spectrogram image of one second."""
    images = []
    with gr.Row():
        for caption in (frame_caption, spectrogram_caption):
            with gr.Column():
                gr.Markdown(caption)
                images.append(gr.Image(show_label=False, interactive=False, type="numpy", format="png"))
    return images[0], images[1]


class AttentionTab:
    """Pick task, second, block, stage and direction; see the maps."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def build(self) -> None:
        tasks = task_choices(self.ctx.holder.tasks)
        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                self.task = gr.Dropdown(tasks, value=tasks[0][1] if tasks else None, label="Model (task)")
                self.question = gr.Textbox(label="Question (AVQA)", visible=False,
                                           placeholder="How many objects are sounding in the video?")
                self.second = gr.Slider(0, 1, value=0, step=1, label="Second", interactive=False,
                                        info="analyse a clip first; clicking a table row in Analyze sets it")
                self.block = gr.Dropdown(["aggregate"], value="aggregate", label="Block",
                                         info="one STG-CMA block, or the gate-weighted mean over blocks")
                self.stage = gr.Radio(STAGE_CHOICES, value="spatial", label="Stage")
                self.direction = gr.Radio(DIRECTIONS, value=BOTH, label="Direction")
                self.button = gr.Button("Show attention", variant="primary")
            with gr.Column(scale=3):
                self.frame, self.spectrogram = frame_and_spectrogram(
                    "**Frame**: where the sound looks (audio → video)",
                    "**Spectrogram**: where the picture listens (video → audio)")
                self.info = gr.HTML()
                self.status = gr.HTML()

    def inputs(self) -> list[Any]:
        return [self.task, self.second, self.block, self.stage, self.direction, self.question]

    def outputs(self) -> list[Any]:
        return [self.frame, self.spectrogram, self.block, self.info, self.status]

    @guarded(5)
    def show(self, task: str | None, second: float, block: str, stage: str, direction: str, question: str,
             session: Session, video: str | None) -> tuple[Any, ...]:
        """Compute (or reuse) the maps of the window holding ``second`` and draw the chosen ones."""
        predictor = self.ctx.holder.require(session)
        if not task:
            raise ValueError("The loaded model has no task with cross-modal attention to show.")
        key = self.ctx.holder.clip_key(session, video)
        chosen: int | str = "aggregate" if block in (None, "", "aggregate") else int(block)
        maps = predictor.attention(int(second), task, block=chosen, stage=stage, key=key,
                                   question=question or session.last_question or None)
        frame_heat = maps["frame_heat"] if direction in (BOTH, A2V) else None
        spec_heat = maps["spectrogram_heat"] if direction in (BOTH, V2A) else None
        frame = heat_on_frame(maps["frame"], frame_heat)
        where = "aggregate" if chosen == "aggregate" else f"block {chosen}"
        title = f"second {maps['second']} · {where} · {stage}"
        spectrogram = spectrogram_figure(maps["spectrogram"], spec_heat, title)
        blocks = gr.update(choices=["aggregate"] + [str(b) for b in maps["blocks"]], value=str(chosen))
        weights = maps["weights"]
        rows = [("audio → video", weights["a<-v"], maps["cls_mass"]["a<-v"]),
                ("video → audio", weights["v<-a"], maps["cls_mass"]["v<-a"])]
        body = "".join(f"<tr><td>{name}</td><td>{w:.4f}</td><td>{percent(c)}</td></tr>" for name, w, c in rows)
        info = (f'<table class="stg-facts"><tr><th>direction</th><th>|gate|{" (sum)" if chosen == "aggregate" else ""}'
                f"</th><th>attention on the class token</th></tr>{body}</table>"
                f"<p class='stg-note'>Maps are scaled to [0, 1] per second for display. A gate near 0 means "
                f"this block's cross-attention barely changes the output. Task: {html.escape(task.upper())}.</p>")
        return frame, spectrogram, blocks, info, status_html("")

    def on_task(self, task: str | None) -> Any:
        """The question box is only for AVQA."""
        return gr.update(visible=task == "avqa")
