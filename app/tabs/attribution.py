"""Attribution viewer: which pixels and which time-frequency bins a prediction rests on (captum).

Targets: an AVE class at second t, the AVS mask of frame t, or an AVQA answer to a question.
Integrated Gradients integrates from an all-zero input (the dataset mean) to the clip; Occlusion
blanks one window at a time. The audio-vs-visual share is each modality's part of the total
absolute attribution.
"""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from app.errors import guarded, status_html
from app.render import heat_on_frame, percent, robust_unit, spectrogram_figure
from app.state import AppContext, Session
from app.tabs.attention import frame_and_spectrogram, task_choices

PROGRESS = gr.Progress()  # Gradio finds progress trackers by their default value
METHODS = [("Integrated Gradients", "ig"), ("Occlusion", "occlusion")]
DETAIL = {"fast": {"n_steps": 8, "occlusion_scale": 2}, "detailed": {"n_steps": 32, "occlusion_scale": 1}}
PREDICTED = "predicted"


def completeness(delta: float, change: float, detail: str) -> str:
    """The IG completeness row: the error beside f(x) - f(0), and a word when it is a large part of it.

    Integrated Gradients' attributions sum to f(x) - f(0) up to the error of its Riemann sum; on the
    embedded default 8 steps can miss by more than the change itself (an AVE logit at a second: error
    -0.33 against a change of -0.10), where 32 steps miss by 0.01.
    """
    text = f"{delta:.2e} (vs. f(x) − f(0) = {change:.3f})"
    if abs(delta) > 0.1 * max(abs(change), 1e-6):
        steps = DETAIL["detailed"]["n_steps"]
        advice = f"choose Detail: detailed ({steps} steps)" if detail == "fast" else "read the heatmaps as rough"
        text += f"<br><b>large next to the change: the heatmaps are approximate; {advice}</b>"
    return text


class AttributionTab:
    """Pick a prediction and a method; see the heatmaps and the audio/visual share."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def target_choices(self, task: str | None, session: Session | None = None) -> list[tuple[str, str]]:
        """What can be explained for ``task``: the prediction itself, or any class / answer by name."""
        meta = self.ctx.holder.meta(task, session) if task else {}
        if task == "ave":
            names = meta.get("class_names", [])
            return [("the predicted class", PREDICTED)] + [(n, str(i)) for i, n in enumerate(names)]
        if task == "avqa":
            answers = meta.get("answer_vocab", [])
            return [("the top answer", PREDICTED)] + [(a, str(i)) for i, a in enumerate(answers)]
        return [("the sounding-object mask of this second", PREDICTED)]

    def build(self) -> None:
        tasks = task_choices(self.ctx.holder.tasks)
        first = tasks[0][1] if tasks else None
        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                self.task = gr.Dropdown(tasks, value=first, label="Model (task)")
                self.target = gr.Dropdown(self.target_choices(first), value=PREDICTED, label="Explain")
                self.question = gr.Textbox(label="Question (AVQA)", visible=first == "avqa",
                                           placeholder="How many objects are sounding in the video?")
                self.second = gr.Slider(0, 1, value=0, step=1, label="Second", interactive=False,
                                        info="analyse a clip first; clicking a table row in Analyze sets it")
                self.method = gr.Radio(METHODS, value="ig", label="Method")
                self.detail = gr.Radio(list(DETAIL), value="fast", label="Detail",
                                       info="fast: IG 8 steps / Occlusion 2×2-token windows; detailed: 32 / 1 token")
                self.button = gr.Button("Explain", variant="primary")
            with gr.Column(scale=3):
                self.frame, self.spectrogram = frame_and_spectrogram(
                    "**Frame**: pixels the prediction rests on", "**Spectrogram**: time-frequency bins it rests on")
                with gr.Row():
                    self.share = gr.Label(label="Share of the evidence", num_top_classes=2)
                    self.info = gr.HTML()
                self.status = gr.HTML()

    def inputs(self) -> list[Any]:
        return [self.task, self.target, self.question, self.second, self.method, self.detail]

    def outputs(self) -> list[Any]:
        return [self.frame, self.spectrogram, self.share, self.info, self.status]

    @guarded(5)
    def explain(self, task: str | None, target: str | None, question: str, second: float, method: str,
                detail: str, session: Session, video: str | None, progress: Any = PROGRESS) -> tuple[Any, ...]:
        """Attribute the chosen prediction at ``second`` to the frame and the spectrogram."""
        predictor = self.ctx.holder.require(session)
        if not task:
            raise ValueError("The loaded model has no task to explain.")
        key = self.ctx.holder.clip_key(session, video)
        progress(0.1, desc=f"Computing {dict((v, k) for k, v in METHODS).get(method, method)}")
        index = None if target in (None, "", PREDICTED) else int(target)
        result = predictor.attribute(int(second), task, method, target=index, key=key,
                                     question=question or session.last_question or None,
                                     **DETAIL.get(detail, DETAIL["fast"]))
        title = f"second {result['second']} · {result['target_label']}"
        frame = heat_on_frame(result["frame"], robust_unit(result["frame_heat"]))
        spectrogram = spectrogram_figure(result["spectrogram"], robust_unit(result["spectrogram_heat"]), title)
        audio = result["audio_share"]
        share = {} if audio != audio else {"audio": audio, "visual": 1.0 - audio}
        rows = [("explained", html.escape(result["target_label"])), ("what", html.escape(result["description"])),
                ("audio share (whole window)", percent(audio)),
                ("audio share (this second)", percent(result["segment_audio_share"])),
                ("output", f"{result['output']:.3f}")]
        if result["delta"] is not None:
            rows.append(("IG completeness error",
                         completeness(result["delta"], result["output"] - result["baseline_output"], detail)))
        body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
        info = (f'<table class="stg-facts">{body}</table><p class="stg-note">Heatmaps show |attribution| per '
                f"picture, its 99th percentile at full colour; the share compares the raw totals.</p>")
        return frame, spectrogram, share, info, status_html("")

    def on_task(self, task: str | None, session: Session | None = None) -> tuple[Any, Any]:
        """New task: its targets, and the question box for AVQA."""
        return (gr.update(choices=self.target_choices(task, session), value=PREDICTED),
                gr.update(visible=task == "avqa"))
