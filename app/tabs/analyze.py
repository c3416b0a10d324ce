"""Analyze tab: upload a clip -> the clip with its AVS masks, AVE timeline and per-second table, downloads.

The outputs come from ``stgcma.report.write_report`` (the same files as ``python -m stgcma
analyze``). The results show as soon as the model has run: the player (``app.player``) draws the
masks over the original clip in the page, and the overlay mp4 for the downloads is rendered after
(``finish``). Clicking a row of the per-second table seeks the video to that second. Results carry
the clip's name; after a failed analysis the previous clip's results stay, marked as stale.
``api_analyze`` is the same work as the ``/analyze`` API endpoint (errors raise ``gr.Error``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import json
import shutil
import time
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from app.errors import api_errors, guarded, status_html, user_message, warnings_html
from app.player import build_player, player_value
from app.render import clock, percent
from app.state import AppContext, Session, prune_results
from app.world import other_warnings, world_html
from stgcma.media.render import DEFAULT_COLOR
from stgcma.report import write_overlay_video, write_report

PROGRESS = gr.Progress()  # Gradio finds progress trackers by their default value
TABLE_HEADERS = ["second", "time", "event", "prob.", "background", "mask area"]


def per_second_table(analysis: Any, segment_seconds: float = 1.0) -> pd.DataFrame:
    """One row per second: the decoded AVE event and its probability, background, AVS mask area."""
    ave, avs = analysis.ave, analysis.avs
    count = len(ave["labels"]) if ave is not None else len(avs["area"]) if avs is not None else 0
    rows = []
    for i in range(count):
        row = {"second": i, "time": clock(i * segment_seconds)}
        if ave is not None:
            top, bg = int(ave["label_ids"][i]), int(ave["background_index"])
            row["event"] = ave["labels"][i] if top != bg else background_text(ave, i)
            row["prob."] = percent(float(ave["confidence"][i]))
            row["background"] = percent(float(ave["probs"][i][bg]))
        else:
            row.update({"event": "no AVE model", "prob.": "", "background": ""})
        row["mask area"] = percent(float(avs["area"][i])) if avs is not None else ""
        rows.append(row)
    return pd.DataFrame(rows, columns=TABLE_HEADERS)


def background_text(ave: dict[str, Any], i: int) -> str:
    """A second decoded as background; when another class tops it, say so: the clip decode ("one event
    per clip", ``stgcma.heads.decode_ave``) keeps only the clip's event class, so a second where a
    different object sounds is background for AVE, not silence."""
    probs = ave["probs"][i]
    best = int(max(range(len(probs)), key=lambda c: probs[c]))
    if best == int(ave["background_index"]):
        return "background (no event)"
    return f"background: not the clip's event (top: {ave['class_names'][best]}, {percent(float(probs[best]))})"


def clip_objects(ave: dict[str, Any] | None) -> list[str]:
    """The AVE events found in a clip (seconds whose top class is not background), most confident first."""
    if ave is None:
        return []
    total: dict[str, float] = {}
    for label, idx, conf in zip(ave["labels"], ave["label_ids"], ave["confidence"], strict=True):
        if int(idx) != int(ave["background_index"]):
            total[label] = total.get(label, 0.0) + float(conf)
    return sorted(total, key=total.get, reverse=True)


def overlay_label(name: str = "", has_audio: bool = True) -> str:
    """The overlay video's title: which clip, and whether it has sound (never "original audio" when silent)."""
    if not name:
        return "Sounding objects (AVS overlay)"
    return f"AVS overlay of {name} · " + ("original audio" if has_audio else "silent: no audio track")


def colour_key_html() -> str:
    """The overlay's colour key: the mask colour from transparent (0) to full (1) model confidence."""
    r, g, b = DEFAULT_COLOR
    return ('<div class="stg-note stg-key">Colour key: <span class="stg-swatch" style="background: linear-gradient('
            f'to right, rgba({r},{g},{b},0), rgba({r},{g},{b},0.5))"></span> tinted = where the model hears the '
            "sounding object (mask probability 0 → 1; edges blend between seconds). No tint: nothing sounding "
            "in view.</div>")


def stale_html(previous: str, failed: str) -> str:
    """After a failed analysis: the results on screen belong to the previous clip."""
    return (f'<div class="stg-status stg-warn">⚠ <b>Stale results:</b> everything below is still about '
            f"<b>{html.escape(previous)}</b>; {html.escape(failed or 'the new upload')} could not be analysed "
            "(see the message under it).</div>")


def facts_html(facts: dict[str, Any], name: str = "", scene: str = "") -> str:
    """The clip's media facts as a compact table (with what happens in it, for an example clip)."""
    audio = (f"{facts.get('audio_codec')} · {facts.get('audio_channels')} ch · {facts.get('audio_sample_rate')} Hz"
             if facts.get("has_audio") else "none (analysed with silence)")
    seconds = facts.get("num_segments", "?")
    rows = [("duration", f"{float(facts.get('duration', 0)):.1f} s ({seconds} seconds analysed)"),
            ("picture", f"{facts.get('width')}×{facts.get('height')} · {float(facts.get('fps') or 0):.1f} fps · "
                        f"{facts.get('video_codec')} · rotation {facts.get('rotation', 0)}°"),
            ("audio", audio)]
    if name:
        rows.insert(0, ("clip", name))
    if scene:
        rows.insert(1, ("example", scene))
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f'<table class="stg-facts">{body}</table>'


@dataclasses.dataclass
class Report:
    """One finished analysis: what the page and the API show."""

    result: dict[str, Any]
    player: dict[str, Any]
    overlay: str | None
    timeline: str | None
    downloads: list[str]
    table: pd.DataFrame
    session: Session
    seconds: float


def clip_name(video: str | None) -> str:
    return Path(video).name if video else ""


def read_result(session: Session) -> dict[str, Any] | None:
    """The result.json of the session's last analysis (None before one, or once pruned)."""
    if not session.out_dir:
        return None
    path = Path(session.out_dir, "result.json")
    return json.loads(path.read_text()) if path.exists() else None


def downloads_of(out: Path, result: dict[str, Any]) -> list[str]:
    """The download list of one analysis: the overlay mp4 (once rendered), masks, result.json, timeline."""
    files = result.get("files", {})
    downloads = [files["overlay"]] if "overlay" in files else []
    if files.get("masks"):
        downloads.append(str(out / "masks.zip"))
    return downloads + [str(out / "result.json")] + ([files["timeline"]] if "timeline" in files else [])


class AnalyzeTab:
    """Upload, analyse, look at and download the results."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def build(self) -> None:
        with gr.Row():
            with gr.Column(scale=1):
                self.video = gr.Video(label="Your clip", sources=["upload"], include_audio=True, height=320)
                self.button = gr.Button("Analyze", variant="primary")
                self.gallery = None
                items = [(e.thumbnail(), e.title) for e in self.example_items()]
                if items and all(image is not None for image, _ in items):
                    self.gallery = gr.Gallery(items, label="Example clips (SynthAV): click one to analyse it",
                                              columns=4, height=300, allow_preview=False, object_fit="cover",
                                              interactive=False)
                gr.Markdown(self.ctx.limits.text(), elem_classes=["stg-note"])
                self.facts = gr.HTML()
            with gr.Column(scale=1):
                self.player = build_player(overlay_label())
                gr.HTML(colour_key_html())
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

    def example_items(self) -> list[Any]:
        """The examples in gallery order (``app.examples.Example``)."""
        return list(self.ctx.example_items)

    def pick_example(self, evt: gr.SelectData) -> Any:
        """A click on the gallery: that example becomes the clip (the analysis follows)."""
        items = self.example_items()
        index = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        return items[int(index)].path if 0 <= int(index) < len(items) else gr.skip()

    def outputs(self, session: gr.State) -> list[Any]:
        return [self.player, self.timeline, self.table, self.files, self.facts, self.warnings, session, self.status]

    def run(self, video: str | None, session: Session, progress: Any = None, overlay_video: bool = False) -> Report:
        """Decode and run every loaded task, then write the mask layers, masks, timeline and result.json.

        ``overlay_video``: render the overlay mp4 now (the API); the page gets it from ``finish``.
        """
        if not video:
            raise ValueError("Upload a video or pick an example first.")
        progress = progress or (lambda *a, **k: None)
        holder = self.ctx.holder
        predictor = holder.require(session)
        started = time.perf_counter()
        progress(0.0, desc="Decoding")
        analysis = predictor.analyze(video, progress=lambda f: progress(0.3 * float(f), desc="Decoding"))
        progress(0.35, desc="Drawing the results")
        model_tag = (hashlib.sha1(session.model.encode()).hexdigest()[:8] if session.model
                     else f"model{holder.generation}")
        out = Path(self.ctx.work_dir) / f"{analysis.key[:16]}-{model_tag}"
        name = clip_name(video)
        extras = {"clip": name, "model": holder.model_label(session)}
        result = write_report(predictor, video, analysis, out, extras=extras, explain=False,
                              overlay_video=overlay_video, overlay_layers=not overlay_video,
                              progress=lambda f: progress(0.35 + 0.6 * float(f), desc="Rendering the overlay"))
        prune_results(Path(self.ctx.work_dir), self.ctx.limits.max_results, out)
        files = result["files"]
        if files.get("masks"):  # from the result, not from what a folder listing happens to show
            shutil.make_archive(str(out / "masks"), "zip", out / "masks")
        facts = analysis.facts
        segment_seconds = float(facts.get("segment_seconds", 1.0))
        new_session = dataclasses.replace(session, video=video, key=analysis.key, out_dir=str(out), clip_name=name,
                                          num_segments=int(facts.get("num_segments", 0)),
                                          segment_seconds=segment_seconds, has_audio=bool(facts.get("has_audio", True)),
                                          warnings=list(analysis.warnings), objects=clip_objects(analysis.ave))
        return Report(result, player_value(video, result, segment_seconds), files.get("overlay"),
                      files.get("timeline"), downloads_of(out, result), per_second_table(analysis, segment_seconds),
                      new_session, time.perf_counter() - started)

    def analyze(self, video: str | None, session: Session, progress: Any = PROGRESS) -> tuple[Any, ...]:
        """The Analyze button: every output of one analysis; on failure the old results are marked stale."""
        try:
            report = self.run(video, session, progress)
        except Exception as err:
            message = user_message(err, "AnalyzeTab.analyze")
            gr.Warning(message)
            return (*self.stale(session, clip_name(video)), status_html(message, "error"))
        new = report.session
        for warning in new.warnings:
            gr.Warning(warning)
        tasks = self.ctx.holder.tasks_for(new)
        missing = [t.upper() for t in ("ave", "avs") if t not in tasks]
        note = f" (no {' or '.join(missing)} model loaded)" if missing else ""
        done = status_html(f"Analysed {new.clip_name}: {new.num_segments} seconds in {report.seconds:.1f} s{note}. "
                           "Click a row of the table to jump to that second.", "ok")
        overlay = gr.update(value=report.player, label=overlay_label(new.clip_name, new.has_audio))
        table = gr.update(value=report.table, label=f"{new.clip_name}, per second: click a row to seek the video")
        scene = next((e.label for e in self.example_items() if e.key == new.key), "")
        return (overlay, report.timeline, table, report.downloads,
                facts_html(report.result["facts"], new.clip_name, scene),
                world_html(report.result) + warnings_html(other_warnings(report.result, new.warnings)), new, done)

    def stale(self, session: Session, failed: str) -> tuple[Any, ...]:
        """Every output but the status after a failure: the previous results kept and marked stale."""
        if not session.key:
            return (gr.skip(),) * 7
        previous = session.clip_name or clip_name(session.video)
        return (gr.update(label=f"STALE: {previous} (the previous clip)"), gr.skip(),
                gr.update(label=f"STALE: {previous}, per second"), gr.skip(), gr.skip(),
                stale_html(previous, failed), gr.skip())

    @api_errors
    def api_analyze(self, video: str | None, progress: Any = PROGRESS) -> tuple[dict[str, Any], str | None, str | None]:
        """``/analyze``: a clip in -> (result.json as a dict, overlay mp4, AVE timeline png); errors raise gr.Error."""
        report = self.run(video, Session(), progress, overlay_video=True)
        result = json.loads(Path(report.session.out_dir, "result.json").read_text())
        return result, report.overlay, report.timeline

    @guarded(3)
    def finish(self, session: Session, progress: Any = PROGRESS) -> tuple[Any, ...]:
        """After the results show: render the overlay mp4 for the downloads (and for the player when the clip
        does not play in a browser as it is). Nothing to do when it exists or when nothing was analysed."""
        result = read_result(session)
        if result is None or "overlay" in result.get("files", {}) or not result.get("avs"):
            return gr.skip(), gr.skip(), gr.skip()
        predictor = self.ctx.holder.require(session)
        analysis = predictor.analyze(session.video)  # from the predictor's cache: no decoding, no model
        progress(0.0, desc="Rendering the overlay video")
        write_overlay_video(predictor, session.video, analysis, session.out_dir,
                            progress=lambda f: progress(float(f), desc="Rendering the overlay video"))
        result = read_result(session)
        player = gr.skip() if result.get("browser_playable") else gr.update(
            value=player_value(session.video, result, session.segment_seconds))
        return downloads_of(Path(session.out_dir), result), player, gr.skip()

    @guarded(4)
    def seek(self, session: Session, evt: gr.SelectData) -> tuple[Any, ...]:
        """A click on the table: seek the player to that second and point the viewers at it."""
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        second = int(row)
        result = read_result(session)
        if result is None:
            return gr.skip(), second, second, ""
        value = player_value(session.video, result, session.segment_seconds, seek=second * session.segment_seconds)
        return gr.update(value=value), second, second, ""

    def seconds_range(self, session: Session) -> tuple[Any, Any]:
        """After an analysis: the viewers' second sliders span the clip, and their hint says which clip."""
        if not session.key:
            return gr.skip(), gr.skip()
        top = max(0, session.num_segments - 1)
        hint = f"seconds 0-{top} of {session.clip_name}; clicking a table row in Analyze sets it"
        return (gr.update(maximum=max(1, top), value=0, interactive=session.num_segments > 1, info=hint),) * 2
