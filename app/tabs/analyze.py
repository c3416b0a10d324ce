"""Analyze tab: upload a clip -> AVS overlay video, AVE timeline and per-second table, downloads.

The outputs come from ``stgcma.report.write_report`` (the same files as ``python -m stgcma
analyze``); clicking a row of the per-second table seeks the video to that second.
"""

from __future__ import annotations

import dataclasses
import html
import shutil
import time
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from app.errors import guarded, status_html, warnings_html
from app.render import clock, percent
from app.state import AppContext, Session
from stgcma.report import write_report

PROGRESS = gr.Progress()  # Gradio finds progress trackers by their default value
TABLE_HEADERS = ["second", "time", "top event", "prob.", "background", "mask area"]


def per_second_table(analysis: Any, segment_seconds: float = 1.0) -> pd.DataFrame:
    """One row per second: the top AVE class and its probability, background, AVS mask area."""
    ave, avs = analysis.ave, analysis.avs
    count = len(ave["labels"]) if ave is not None else len(avs["area"]) if avs is not None else 0
    rows = []
    for i in range(count):
        row = {"second": i, "time": clock(i * segment_seconds)}
        if ave is not None:
            top, bg = int(ave["label_ids"][i]), int(ave["background_index"])
            row["top event"] = "background (no event)" if top == bg else ave["labels"][i]
            row["prob."] = percent(float(ave["confidence"][i]))
            row["background"] = percent(float(ave["probs"][i][bg]))
        else:
            row.update({"top event": "no AVE model", "prob.": "", "background": ""})
        row["mask area"] = percent(float(avs["area"][i])) if avs is not None else ""
        rows.append(row)
    return pd.DataFrame(rows, columns=TABLE_HEADERS)


def facts_html(facts: dict[str, Any]) -> str:
    """The clip's media facts as a compact table."""
    audio = (f"{facts.get('audio_codec')} · {facts.get('audio_channels')} ch · {facts.get('audio_sample_rate')} Hz"
             if facts.get("has_audio") else "none (analysed with silence)")
    seconds = facts.get("num_segments", "?")
    rows = [("duration", f"{float(facts.get('duration', 0)):.1f} s ({seconds} seconds analysed)"),
            ("picture", f"{facts.get('width')}×{facts.get('height')} · {float(facts.get('fps') or 0):.1f} fps · "
                        f"{facts.get('video_codec')} · rotation {facts.get('rotation', 0)}°"),
            ("audio", audio)]
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f'<table class="stg-facts">{body}</table>'


class AnalyzeTab:
    """Upload, analyse, look at and download the results."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def build(self) -> None:
        with gr.Row():
            with gr.Column(scale=1):
                self.video = gr.Video(label="Your clip", sources=["upload"], include_audio=True, height=320)
                if self.ctx.examples:
                    gr.Examples(examples=[[p] for p in self.ctx.examples], inputs=[self.video],
                                label="Example clips (SynthAV)")
                self.button = gr.Button("Analyze", variant="primary")
                self.facts = gr.HTML()
            with gr.Column(scale=1):
                self.overlay = gr.Video(label="Sounding objects (AVS overlay, original audio)", interactive=False,
                                        height=320)
                self.warnings = gr.HTML()
                self.status = gr.HTML()
        with gr.Row(equal_height=False):
            with gr.Column(scale=1):
                self.timeline = gr.Image(label="Audio-visual events per second (AVE)", type="filepath",
                                         interactive=False, show_label=False)
            with gr.Column(scale=1):
                self.table = gr.Dataframe(headers=TABLE_HEADERS, label="Per second: click a row to seek the video",
                                          interactive=False, max_height=360, wrap=True)
        self.files = gr.File(label="Downloads: overlay video, masks (zip), result.json, timeline",
                             file_count="multiple", interactive=False)

    def outputs(self, session: gr.State) -> list[Any]:
        return [self.overlay, self.timeline, self.table, self.files, self.facts, self.warnings, session, self.status]

    @guarded(8)
    def analyze(self, video: str | None, session: Session, progress: Any = PROGRESS) -> tuple[Any, ...]:
        """Decode and run every loaded task, then write the overlay, masks, timeline and result.json."""
        if not video:
            raise ValueError("Upload a video or pick an example first.")
        holder = self.ctx.holder
        predictor = holder.require()
        started = time.perf_counter()
        progress(0.0, desc="Decoding")
        analysis = predictor.analyze(video, progress=lambda f: progress(0.3 * float(f), desc="Decoding"))
        progress(0.35, desc="Rendering the overlay")
        out = Path(self.ctx.work_dir) / f"{analysis.key[:16]}-model{holder.generation}"
        result = write_report(predictor, video, analysis, out,
                              progress=lambda f: progress(0.35 + 0.6 * float(f), desc="Rendering the overlay"))
        files = result["files"]
        downloads = [files["overlay"]] if "overlay" in files else []
        if (out / "masks").is_dir():
            downloads.append(shutil.make_archive(str(out / "masks"), "zip", out / "masks"))
        downloads += [str(out / "result.json")] + ([files["timeline"]] if "timeline" in files else [])
        facts = analysis.facts
        segment_seconds = float(facts.get("segment_seconds", 1.0))
        new_session = dataclasses.replace(session, video=video, key=analysis.key, out_dir=str(out),
                                          num_segments=int(facts.get("num_segments", 0)),
                                          segment_seconds=segment_seconds, generation=holder.generation,
                                          warnings=list(analysis.warnings))
        for warning in analysis.warnings:
            gr.Warning(warning)
        missing = [t.upper() for t in ("ave", "avs") if t not in predictor.tasks]
        note = f" (no {' or '.join(missing)} model loaded)" if missing else ""
        done = status_html(f"Analysed {new_session.num_segments} seconds in {time.perf_counter() - started:.1f} s"
                           f"{note}. Click a row of the table to jump to that second.", "ok")
        overlay = files.get("overlay", video)
        return (overlay, files.get("timeline"), per_second_table(analysis, segment_seconds), downloads,
                facts_html(facts), warnings_html(analysis.warnings), new_session, done)

    @guarded(4)
    def seek(self, session: Session, evt: gr.SelectData) -> tuple[Any, ...]:
        """A click on the table: seek the overlay video to that second and point the viewers at it."""
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        second = int(row)
        return gr.update(playback_position=second * session.segment_seconds), second, second, ""

    def seconds_range(self, session: Session) -> tuple[Any, Any]:
        """After an analysis: the viewers' second sliders span the clip."""
        top = max(0, session.num_segments - 1)
        return (gr.update(maximum=max(1, top), value=0, interactive=session.num_segments > 1),) * 2
