"""STG-CMA Studio app: the Blocks build, handlers return what the UI shows, bad input never raises, jobs run.

Handlers are called directly (no server) with a tiny checkpoint set: untrained ``vit-test`` models
for AVE, AVS and AVQA saved as real adapter checkpoints (about a second to build). The embedded
default's recipe, even at ``DefaultRecipe().scaled(0.02)``, took 4.5 min on the 2 shared CPU cores
(measured), too slow for a fixture; handlers do not depend on what the weights learned. The browser
test at the end is marked slow and needs Debian's Chromium and the ``playwright`` package.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from urllib.parse import quote

import gradio as gr
import numpy as np
import pandas as pd
import pytest

from app import jobs as jobs_module
from app.errors import GENERIC_MESSAGE
from app.jobs import JobError, JobManager, JobSpec, checkpoint_of, log_tail, read_curves
from app.main import build_demo, make_context
from app.player import FILE_ROUTE
from app.state import AppContext, Session
from app.tabs.analyze import AnalyzeTab
from app.tabs.ask import AskTab
from app.tabs.attention import A2V, BOTH, V2A, AttentionTab
from app.tabs.attribution import AttributionTab
from app.tabs.model import ModelPanel, default_available
from app.tabs.train import TrainTab
from stgcma.checkpoint import CheckpointError
from stgcma.media.render import DEFAULT_COLOR
from tests.conftest import save_task_checkpoints

ROOT = Path(__file__).resolve().parent.parent
# gr.Warning outside a request is a Python warning: expected here, where handlers run without a server.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:gradio.helpers")
TASKS = ("ave", "avs", "avqa")


def noop(*args, **kwargs) -> None:
    """Stands in for gr.Progress outside a request."""


def _served(url: str) -> Path:
    """The file behind a player URL (``gradio_api/file=<quoted path>``)."""
    from urllib.parse import unquote

    return Path(unquote(url[len(FILE_ROUTE):]))


def _png(path: Path) -> np.ndarray:
    """An RGBA PNG as an (H, W, 4) RGBA array."""
    import cv2

    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[..., [2, 1, 0, 3]]


def is_skip(value) -> bool:
    """gr.skip(): the output keeps what it showed."""
    return isinstance(value, dict) and value == {"__type__": "update"}


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> Path:
    return save_task_checkpoints(tmp_path_factory.mktemp("tiny_checkpoints"))


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, Path]:
    from stgcma.data.synthav.folder import write_synthav
    from stgcma.data.synthav.scene import SynthConfig
    from stgcma.media import write_video

    root = tmp_path_factory.mktemp("clips")
    write_synthav(root / "synth", 1, seed=7, config=SynthConfig(num_segments=6), size=64, fps=8, progress=False)
    frames = np.random.default_rng(0).integers(0, 255, (24, 48, 64, 3), dtype=np.uint8)
    silent = write_video(root / "no_audio.mp4", frames, fps=8)
    text = root / "notes.mp4"
    text.write_text("this is not a video")
    empty = root / "empty.mp4"
    empty.write_bytes(b"")
    return {"good": next((root / "synth" / "videos").glob("*.mp4")), "no_audio": Path(silent), "text": text,
            "empty": empty, "missing": root / "missing.mp4"}


@pytest.fixture(scope="session")
def ctx(tiny_checkpoints, clips, tmp_path_factory) -> AppContext:
    runs = tmp_path_factory.mktemp("runs")
    return make_context(str(tiny_checkpoints), "cpu", runs=runs, examples=clips["good"].parent,
                        work_dir=tmp_path_factory.mktemp("work"), training=True)


@pytest.fixture(scope="session")
def analysed(ctx, clips) -> Session:
    out = AnalyzeTab(ctx).analyze(str(clips["good"]), Session(), progress=noop)
    return out[6]


def test_build_demo_constructs_without_launching(ctx):
    demo = build_demo(ctx)
    assert isinstance(demo, gr.Blocks)
    labels = {b.label for b in demo.blocks.values() if isinstance(b, gr.Tab)}
    assert {"Analyze", "Ask", "Attention", "Attribution", "Train"} <= labels
    assert "No model" not in ctx.holder.status_html()
    assert any(isinstance(b, gr.Dropdown) and b.label == "Model (for you only)" for b in demo.blocks.values())
    assert any(isinstance(b, gr.Accordion) and b.label == "About this model" for b in demo.blocks.values())


def test_app_starts_without_a_model_and_says_how_to_get_one(tmp_path, clips):
    ctx = make_context(str(tmp_path / "nowhere"), "cpu", runs=tmp_path / "runs", work_dir=tmp_path / "work")
    assert ctx.holder.predictor is None
    banner = ctx.holder.status_html()
    assert "No model is loaded" in banner and "build-default" in banner and "--checkpoint" in banner
    assert str(tmp_path) not in banner and "nowhere" in banner  # the folder's name, not the server's path
    assert isinstance(build_demo(ctx), gr.Blocks)
    out = AnalyzeTab(ctx).analyze(str(clips["good"]), Session(), progress=noop)
    assert "No model is loaded" in out[-1] and all(is_skip(o) for o in out[:-1])
    assert TrainTab(ctx).poll(None)[-2] == ""


def test_analyze_returns_player_timeline_table_and_downloads(ctx, clips, analysed):
    tab = AnalyzeTab(ctx)
    out = tab.analyze(str(clips["good"]), Session(), progress=noop)
    overlay, timeline, table, files, facts, warnings, session, status = out
    player = overlay["value"]  # the clip as uploaded, one mask layer per second over it
    assert player["mode"] == "layers" and player["src"].startswith(FILE_ROUTE) and len(player["layers"]) == 6
    assert _served(player["src"]).read_bytes() == clips["good"].read_bytes()
    for layer, mask in zip(player["layers"], json.loads(Path(session.out_dir, "result.json").read_text())["files"][
            "masks"], strict=True):
        rgba = _png(_served(layer))
        assert rgba.shape[2] == 4 and (rgba[..., :3] == DEFAULT_COLOR).all() and rgba[..., 3].max() <= 128
        assert Path(mask).exists()
    assert Path(timeline).suffix == ".png"
    table = table["value"]
    assert isinstance(table, pd.DataFrame) and len(table) == session.num_segments == 6
    assert list(table["second"]) == list(range(6))
    assert {"event", "prob.", "background", "mask area"} <= set(table.columns)
    assert {Path(f).name for f in files} == {"masks.zip", "result.json", "timeline.png"}  # before finish()
    downloads, same_player, banner = tab.finish(session, progress=noop)  # then the overlay mp4 is rendered
    assert is_skip(same_player) and is_skip(banner)  # the page keeps playing the original
    overlay_mp4 = Path(downloads[0])
    assert overlay_mp4.name == "overlay.mp4" and overlay_mp4.stat().st_size > 0
    assert {Path(f).name for f in downloads} == {"overlay.mp4", "masks.zip", "result.json", "timeline.png"}
    assert not list(overlay_mp4.parent.glob(".overlay-*"))  # no partial file left behind
    assert json.loads(Path(session.out_dir, "result.json").read_text())["files"]["overlay"] == str(overlay_mp4)
    assert all(is_skip(o) for o in tab.finish(session, progress=noop))  # rendered once
    files = downloads
    with zipfile.ZipFile(next(f for f in files if f.endswith("masks.zip"))) as z:
        assert len([n for n in z.namelist() if n.endswith(".png")]) == 6
    result = json.loads(Path(next(f for f in files if f.endswith("result.json"))).read_text())
    assert result["ave"]["labels"] and result["warnings"] == []
    assert session.key and session.video == str(clips["good"]) and "stg-ok" in status
    assert "6 seconds analysed" in facts and warnings == ""
    name = clips["good"].name
    assert session.clip_name == name and name in status and name in facts and name in overlay["label"]
    assert result["clip"] == name and "original audio" in overlay["label"]


def _remux(src: Path, dst: Path, fmt: str) -> Path:
    """The same streams in another container (no re-encoding)."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w", format=fmt) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams if s.type in ("video", "audio")}
        for packet in inp.demux():
            if packet.dts is not None and packet.stream.index in streams:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    return dst


def test_player_urls_reuse_cache_copies_until_the_file_changes(tmp_path, monkeypatch):
    """A seek rebuilds the player's URLs: unchanged files are not copied (hashed) into Gradio's cache again."""
    from app import player

    cache = tmp_path / "cache"
    monkeypatch.setattr(player, "get_upload_folder", lambda: str(cache))
    copies = []

    def save(path, folder):
        copies.append(Path(path).name)
        target = Path(folder) / f"copy{len(copies)}" / Path(path).name
        target.parent.mkdir(parents=True)
        shutil.copy(path, target)
        return str(target)

    monkeypatch.setattr(player, "save_file_to_cache", save)
    layer = tmp_path / "layer.png"
    layer.write_bytes(b"one")
    first = player.file_url(layer)
    assert player.file_url(layer) == first and copies == ["layer.png"]  # remembered
    layer.write_bytes(b"changed")  # new size: a new copy
    second = player.file_url(layer)
    assert second != first and _served(second).read_bytes() == b"changed" and len(copies) == 2
    _served(second).unlink()  # the cache was cleaned: copied again
    assert _served(player.file_url(layer)).read_bytes() == b"changed" and len(copies) == 3
    inside = cache / "copy1" / "layer.png"
    assert player.file_url(inside) == FILE_ROUTE + quote(str(inside.resolve())) and len(copies) == 3


def test_a_clip_browsers_cannot_play_is_shown_as_the_rendered_overlay(ctx, clips, tmp_path):
    tab = AnalyzeTab(ctx)
    out = tab.analyze(str(_remux(clips["good"], tmp_path / "clip.mkv", "matroska")), Session(), progress=noop)
    player, session = out[0]["value"], out[6]
    assert session.num_segments == 6 and "stg-ok" in out[-1]
    assert player["mode"] == "pending" and player["src"] is None and "does not play in a browser" in player["message"]
    downloads, shown, banner = tab.finish(session, progress=noop)
    assert shown["value"]["mode"] == "baked" and not shown["value"]["layers"] and is_skip(banner)
    assert _served(shown["value"]["src"]).read_bytes() == Path(downloads[0]).read_bytes()  # the overlay mp4
    seek = tab.seek(session, gr.SelectData(None, {"index": [2, 0], "value": "x", "row_value": [2]}))[0]["value"]
    assert seek["mode"] == "baked" and seek["seek"][0] == 2.0


def test_reanalysing_a_cached_clip_keeps_every_download(ctx, clips, analysed):
    tab = AnalyzeTab(ctx)
    session = tab.analyze(str(clips["good"]), Session(), progress=noop)[6]
    tab.finish(session, progress=noop)
    first = {Path(f).name for f in tab.analyze(str(clips["good"]), Session(), progress=noop)[3]}
    copy = Path(analysed.out_dir).parent / "same-content.mp4"
    shutil.copy(clips["good"], copy)  # another upload of the same clip: decoded and analysed from the cache
    second = {Path(f).name for f in tab.analyze(str(copy), analysed, progress=noop)[3]}
    third = {Path(f).name for f in tab.analyze(str(clips["good"]), analysed, progress=noop)[3]}
    assert first == second == third == {"overlay.mp4", "masks.zip", "result.json", "timeline.png"}


def test_overlay_title_says_when_a_clip_is_silent_and_has_a_colour_key(ctx):
    from app.tabs.analyze import colour_key_html, overlay_label
    from stgcma.media.render import DEFAULT_COLOR

    assert "original audio" in overlay_label("a.mp4", True) and "a.mp4" in overlay_label("a.mp4", True)
    silent = overlay_label("b.mp4", False)
    assert "original audio" not in silent and "no audio" in silent
    assert "rgba({},{},{},0.5)".format(*DEFAULT_COLOR) in colour_key_html()
    demo = build_demo(ctx)
    assert any(isinstance(b, gr.HTML) and "Colour key" in str(b.value) for b in demo.blocks.values())


def test_no_audio_track_is_said_prominently(ctx, clips):
    out = AnalyzeTab(ctx).analyze(str(clips["no_audio"]), Session(), progress=noop)
    assert "original audio" not in out[0]["label"] and "no audio track" in out[0]["label"]
    warnings, session = out[5], out[6]
    assert "stg-warn" in warnings and "analysed with silence" in warnings
    assert any("silence" in w for w in session.warnings)
    result = json.loads(Path(session.out_dir, "result.json").read_text())
    assert any("silence" in w for w in result["warnings"])


@pytest.mark.parametrize("name, words", [("text", "not a video"), ("empty", "empty"), ("missing", "not found")])
def test_bad_uploads_give_a_message_and_mark_the_previous_results_stale(ctx, clips, analysed, name, words):
    out = AnalyzeTab(ctx).analyze(str(clips[name]), analysed, progress=noop)
    assert "stg-error" in out[-1] and words in out[-1].lower()
    overlay, timeline, table, files, facts, warnings, session = out[:-1]
    previous = clips["good"].name
    assert all(is_skip(o) for o in (timeline, files, facts, session))  # the results are kept...
    assert "Stale" in warnings and previous in warnings and clips[name].name in warnings  # ...and said to be old
    assert overlay["label"].startswith("STALE") and previous in overlay["label"] and "value" not in overlay
    assert table["label"].startswith("STALE") and "value" not in table
    first = AnalyzeTab(ctx).analyze(str(clips[name]), Session(), progress=noop)
    assert all(is_skip(o) for o in first[:-1])  # nothing analysed before: nothing to mark


def test_no_upload_asks_for_one(ctx):
    out = AnalyzeTab(ctx).analyze(None, Session(), progress=noop)
    assert "Upload a video" in out[-1]


def test_unexpected_errors_are_logged_not_shown(ctx, clips, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("CUDA kernel exploded at 0xdeadbeef")

    monkeypatch.setattr(ctx.holder.predictor, "analyze", broken)
    out = AnalyzeTab(ctx).analyze(str(clips["good"]), Session(), progress=noop)
    assert GENERIC_MESSAGE.split("(")[0] in out[-1] and "deadbeef" not in out[-1]
    assert "deadbeef" in caplog.text


def test_clicking_a_second_seeks_the_video_and_the_viewers(ctx, analysed):
    event = gr.SelectData(None, {"index": [3, 2], "value": "x", "row_value": [3]})
    video, second_a, second_b, status = AnalyzeTab(ctx).seek(analysed, event)
    assert video["value"]["seek"][0] == 3.0 and second_a == second_b == 3 and status == ""
    again = AnalyzeTab(ctx).seek(analysed, event)[0]["value"]["seek"]
    assert again[0] == 3.0 and again[1] != video["value"]["seek"][1]  # a second click on the row seeks again
    assert video["value"]["src"] and len(video["value"]["layers"]) == 6  # the same clip: the page keeps it
    first, second = AnalyzeTab(ctx).seconds_range(analysed)
    assert first["maximum"] == 5 and first["interactive"]
    for hint in (first["info"], second["info"]):  # the Second hint of Attention and Attribution
        assert "analyse a clip first" not in hint and "0-5" in hint and analysed.clip_name in hint
    assert all(is_skip(u) for u in AnalyzeTab(ctx).seconds_range(Session()))


def test_ask_answers_with_confidence_alternatives_and_flags_unknown_words(ctx, analysed):
    tab = AskTab(ctx)
    history, box, session, status = tab.ask("How many objects are sounding in the video?", [], analysed, None)
    answer = history[-1]
    assert history[0] == {"role": "user", "content": "How many objects are sounding in the video?"}
    assert answer["role"] == "assistant" and "confidence" in answer["content"] and "Alternatives" in answer["content"]
    assert box == "" and status == "" and session.last_question.startswith("How many")
    history2, *_ = tab.ask("Is the zorblax playing?", history, analysed, None)
    assert len(history2) == 4 and "never saw" in history2[-1]["content"] and "zorblax" in history2[-1]["content"]
    assert any("violin" in q or "How many" in q for q in tab.example_questions())


@pytest.mark.parametrize("question, kind", [
    ("How many objects are sounding in the video?", {"zero", "one", "two", "three", "four", "five"}),
    ("Where is the first sounding object?", {"left", "middle", "right"}),
    ("Is the violin in the video making a sound?", {"yes", "no"}),
    ("Which object makes sounds before the violin?", None),
])
def test_answers_are_of_the_kind_the_question_admits(ctx, analysed, question, kind):
    result = AskTab(ctx).answer(question, analysed, None)
    answers = ctx.holder.meta("avqa")["answer_vocab"]
    objects = set(answers) - {"yes", "no", "zero", "one", "two", "three", "four", "five", "left", "middle", "right"}
    allowed = kind or objects
    assert result["answer"] in allowed and {a for a, _ in result["alternatives"]} <= allowed
    assert len(result["alternatives"]) == min(3, len(allowed) - 1)


def test_suggested_questions_name_only_objects_of_the_clip(ctx, analysed, tmp_path):
    tab = AskTab(ctx)
    names = [a.replace("_", " ") for a in ctx.holder.meta("avqa")["answer_vocab"] if "_" in a]  # two-word classes
    assert not any(n in q for q in tab.example_questions(Session()) for n in names)  # nothing analysed: generic
    session = dataclasses.replace(analysed, objects=["acoustic_guitar"])
    questions = tab.example_questions(session)
    assert any("acoustic guitar" in q for q in questions) and not any("_" in q for q in questions)  # as people write
    assert not any(n in q for q in questions for n in names if n != "acoustic guitar")
    assert not any(n in q for q in tab.example_questions(dataclasses.replace(analysed, objects=[]))
                   for n in names)
    assert tab.suggest(session).raw_samples == [[q] for q in questions]


def test_an_example_clip_offers_its_own_questions_from_the_manifest(tiny_checkpoints, clips, tmp_path):
    from app.examples import load_examples

    folder = tmp_path / "examples"
    folder.mkdir()
    shutil.copy(clips["good"], folder / "duet.mp4")
    shutil.copy(clips["no_audio"], folder / "silent.mp4")
    (folder / "examples.json").write_text(json.dumps({"examples": [
        {"file": "silent.mp4", "title": "Silent", "caption": "No sound at all.", "questions": ["Is it quiet?"]},
        {"file": "duet.mp4", "title": "Duet", "caption": "Two objects take turns.",
         "questions": [{"question": "Is the acoustic_guitar in the video making a sound?", "answer": "yes"},
                       "Where is the loudest object?"]},
        {"file": "gone.mp4", "title": "Not on disk"}]}))
    items = load_examples(folder)
    assert [e.title for e in items] == ["Silent", "Duet"] and items[1].caption == "Two objects take turns."
    ctx = make_context(str(tiny_checkpoints), "cpu", runs=tmp_path / "runs", examples=folder,
                       work_dir=tmp_path / "work")
    assert ctx.examples == [str(folder / "silent.mp4"), str(folder / "duet.mp4")]
    out = AnalyzeTab(ctx).analyze(str(clips["good"]), Session(), progress=noop)  # same content, other path
    session = out[6]
    assert "Duet: Two objects take turns." in out[4]  # the facts say what happens in the example
    assert AskTab(ctx).example_questions(session) == ["Is the acoustic guitar in the video making a sound?",
                                                      "Where is the loudest object?"]  # ask() joins the name
    history, *_ = AskTab(ctx).ask_chip(1, [], session, None)
    assert history[0]["content"] == "Where is the loudest object?" and "confidence" in history[1]["content"]


def test_examples_gallery_shows_captions_and_a_click_picks_the_clip(ctx, clips):
    demo = build_demo(ctx)
    gallery = next(b for b in demo.blocks.values() if isinstance(b, gr.Gallery))
    tab = AnalyzeTab(ctx)
    assert [item["caption"] for item in gallery.value] == [e.title for e in ctx.example_items]
    assert ctx.example_items[0].title == clips["good"].stem  # no manifest: named after the file
    event = gr.SelectData(None, {"index": 0, "value": None})
    assert tab.pick_example(event) == str(clips["good"])


def test_ask_failures_keep_the_chat_and_the_question(ctx, analysed):
    tab = AskTab(ctx)
    out = tab.ask("   ", [{"role": "user", "content": "hi"}], analysed, None)
    assert all(is_skip(o) for o in out[:-1]) and "Type a question" in out[-1]
    out = tab.ask("Is it loud?", [], Session(), None)
    assert "Upload a clip" in out[-1]


def test_attention_viewer_draws_frame_and_spectrogram(ctx, analysed):
    tab = AttentionTab(ctx)
    frame, spec, blocks, info, status = tab.show("ave", 2, "aggregate", "spatial", BOTH, "", analysed, None)
    assert frame.dtype == np.uint8 and frame.ndim == 3 and min(frame.shape[:2]) >= 320
    assert spec.ndim == 3 and spec.shape[2] == 3
    assert blocks["choices"][0] == "aggregate" and len(blocks["choices"]) > 1 and status == ""
    assert "gate" in info
    plain, *_ = tab.show("ave", 2, "0", "global", V2A, "", analysed, None)
    heated, *_ = tab.show("ave", 2, "0", "global", A2V, "", analysed, None)
    assert plain.shape == heated.shape and not np.array_equal(plain, heated)
    out = tab.show("avs", 99, "aggregate", "spatial", BOTH, "", analysed, None)
    assert "outside the clip" in out[-1]


def test_attribution_viewer_ig_occlusion_and_avqa(ctx, analysed):
    tab = AttributionTab(ctx)
    frame, spec, share, info, status = tab.explain("ave", "predicted", "", 1, "ig", "fast", analysed, None,
                                                   progress=noop)
    assert frame.dtype == np.uint8 and spec.ndim == 3 and status == ""
    assert set(share) == {"audio", "visual"} and abs(sum(share.values()) - 1) < 1e-6
    assert "IG completeness" in info
    out = tab.explain("avs", "predicted", "", 2, "occlusion", "fast", analysed, None, progress=noop)
    assert out[-1] == "" and "mask" in out[3]
    out = tab.explain("avqa", "predicted", "", 0, "ig", "fast", Session(video=analysed.video), None, progress=noop)
    assert "need a question" in out[-1]
    out = tab.explain("avqa", "1", "How many objects are sounding in the video?", 0, "ig", "fast", analysed, None,
                      progress=noop)
    assert out[-1] == ""
    targets, question = tab.on_task("avqa")
    assert targets["choices"][0][1] == "predicted" and question["visible"]


def test_attribution_says_when_the_completeness_error_is_large():
    from app.tabs.attribution import completeness

    assert "large" not in completeness(-0.0099, -0.1013, "detailed")  # 32 steps: 10% of the change
    fast = completeness(-0.3297, -0.1013, "fast")  # 8 steps on the same logit: 3x the change
    assert "-3.30e-01" in fast and "large" in fast and "detailed (32 steps)" in fast
    assert "rough" in completeness(50.0, 100.0, "detailed")
    assert "large" in completeness(1e-3, 0.0, "fast")  # no change to compare with: any error is large


def test_job_spec_checks_and_commands(tmp_path):
    spec = JobSpec("ave", "vit-test", "synthav:seed=0,n=8", str(tmp_path / "r"), epochs=2, batch_size=4, lr=1e-3,
                   adapter_ratio=0.125, gpus=0)
    spec.check()
    cmd = spec.command()
    assert cmd[:4] == [sys.executable, "-m", "stgcma", "train"]
    assert {"epochs=2", "batch_size=4", "lr=0.001", "adapter.ratio=0.125", "device=cpu"} <= set(cmd)
    assert "checkpointing=true" not in cmd
    memory = JobSpec("ave", "vit-test", "synthav:seed=0,n=8", "r", checkpointing=True)
    assert "checkpointing=true" in memory.command()  # the Train tab's memory mode, a TrainConfig key
    from stgcma.config import apply_overrides
    from stgcma.train.config import TrainConfig

    assert apply_overrides(TrainConfig(), ["checkpointing=true"]).checkpointing  # what the train CLI parses
    multi = JobSpec("avs", "vit-test", "synthav:seed=0,n=8", "r", batch_size=4, gpus=2).command()
    assert multi[1:4] == ["-m", "torch.distributed.run", "--standalone"] and "--nproc_per_node=2" in multi
    bad = [JobSpec("ave", "vit-test", str(tmp_path / "nope"), "r"), JobSpec("ave", "vit-test", "synthav:n=8", "r",
           batch_size=3, gpus=2), JobSpec("xyz", "vit-test", "synthav:n=8", "r"),
           JobSpec("ave", "vit-test", "synthav:n=8", "r", adapter_ratio=2.0),
           JobSpec("ave", "vit-test", "synthav:n=8", "r", settings=["checkpointing=true"])]  # the form's checkbox
    for spec in bad:
        with pytest.raises(JobError):
            spec.check()


def test_curves_survive_resume_duplicates_and_half_written_lines(tmp_path):
    (tmp_path / "steps.csv").write_text("step,epoch,loss,lr\n0,1,2.0,0.1\n1,1,1.5,0.1\n1,1,1.4,0.1\n2,1,1.")
    (tmp_path / "metrics.csv").write_text(
        "epoch,train_loss,lr,seconds,val_select,val_loss,val_metrics\n"
        '1,1.7,0.1,3.0,0.5,1.6,"{""accuracy"": 0.5, ""loss"": 1.6, ""select"": 0.5}"\n')
    curves = read_curves(tmp_path)
    assert [s["loss"] for s in curves.steps] == [2.0, 1.4]
    assert curves.epochs[0]["val_loss"] == 1.6
    assert curves.val_metrics == [{"epoch": 1, "metric": "accuracy", "value": 0.5}]
    (tmp_path / "train.log").write_text("start\nepoch 1:  10%\repoch 1:  50%\repoch 1: 100%\ndone\n")
    assert log_tail(tmp_path) == "start\nepoch 1: 100%\ndone"


def test_train_tab_runs_a_tiny_job_and_loads_it_into_one_session_only(ctx, analysed, monkeypatch):
    tab = TrainTab(ctx)
    toasts = []
    monkeypatch.setattr(gr, "Warning", lambda message, *a, **k: toasts.append(message))
    run_update, timer, status = tab.start("ave", "vit-test", "default", "synthav:seed=0,n=8", 1, 4, None, 0,
                                          "", "tiny-ave")
    assert timer.active and "running" not in status and "tiny-ave" not in status  # the run line says it, once
    run = run_update["value"]
    line = tab.poll(run)[4]
    assert "tiny-ave" in line and "running" in line
    busy = tab.start("ave", "vit-test", "default", "synthav:seed=0,n=8", 1, 4, None, 0, "", "second")
    assert "still training" in busy[-1] and "tiny-ave" in busy[-1]  # one job at a time
    assert not (ctx.jobs.runs_root / "second").exists()
    assert toasts == []  # the banner is the only place an error shows
    assert ctx.jobs.wait(run, timeout=300) == "finished", log_tail(run)
    loss, val, epochs, log, state, timer = tab.poll(run)
    assert loss.axes[0].lines and list(epochs["epoch"]) == [1] and "epoch" in log
    legend = [t.get_text() for t in val.axes[0].get_legend().get_texts()]
    assert legend == ["accuracy", "event_detection", "event_class"]  # AVE: the metric, then when and what
    assert "finished" in state and not timer.active
    assert checkpoint_of(run).name == "best"
    before, app_model = ctx.holder.generation, ctx.holder.predictor
    session, banner, status = tab.load_run(run, analysed)
    assert ctx.holder.generation == before and ctx.holder.predictor is app_model  # other visitors keep theirs
    assert session.model and ctx.holder.predictor_for(session) is not app_model
    assert set(ctx.holder.tasks_for(session)) == set(TASKS)
    assert "tiny-ave" in banner and "this session only" in banner and "Loaded" in status
    for text in (banner, status, ctx.holder.status_html()):
        assert str(ctx.jobs.runs_root) not in text and "/" not in text.replace("</", "")  # no server paths
    assert "this session only" not in ctx.holder.status_html(analysed)
    again = tab.start("ave", "vit-test", "default", "synthav:seed=0,n=8", 1, 4, None, 0, "", "tiny-ave")
    assert "already exists" in again[-1]
    mine = AnalyzeTab(ctx).analyze(analysed.video, session, progress=noop)
    theirs = AnalyzeTab(ctx).analyze(analysed.video, analysed, progress=noop)
    assert mine[6].model == session.model and theirs[6].model is None
    assert Path(mine[6].out_dir) != Path(theirs[6].out_dir)
    assert "tiny-ave" in json.loads(Path(mine[6].out_dir, "result.json").read_text())["model"]


def test_cancel_stops_the_whole_process_group_and_resume_continues(tmp_path):
    manager = JobManager(tmp_path)
    run = manager.start(JobSpec("ave", "vit-test", "synthav:seed=0,n=8", str(tmp_path / "long"), epochs=500,
                                batch_size=4))
    deadline = time.monotonic() + 120
    while not read_curves(run).epochs and time.monotonic() < deadline:
        time.sleep(0.2)
    assert manager.status(run)["state"] == "running", log_tail(run)
    pid = manager._procs[str(run.resolve())].pid
    assert manager.cancel(run, grace_s=10) == "cancelled"
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    done = len(read_curves(run).epochs)
    assert done >= 1 and manager.status(run)["epochs_done"] == done
    with pytest.raises(JobError):
        manager.cancel(run)
    manager.resume(run)
    assert manager.status(run)["state"] == "running"
    assert manager.cancel(run) == "cancelled"
    assert JobManager(tmp_path).status(run)["state"] == "cancelled"
    assert run in JobManager(tmp_path).list_runs()


def test_status_of_a_run_started_elsewhere(tmp_path):
    run = tmp_path / "elsewhere"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / jobs_module.JOB_NAME).write_text(json.dumps({"pid": 2 ** 22 + 7, "returncode": None}))
    assert JobManager(tmp_path).status(run)["state"] == "stopped"
    (run / "summary.json").write_text("{}")
    assert JobManager(tmp_path).status(run)["state"] == "finished"


ABSOLUTE_PATH = re.compile(r"(?<![\w.~:/<-])/[\w.@+-]+")  # not </b>, a/b, 1/16, URLs


def finished_run(ctx: AppContext, tiny_checkpoints: Path, name: str, task: str = "ave") -> Path:
    """A finished run under the app's runs root (as the trainer leaves it), holding a copy of a tiny checkpoint."""
    run = ctx.jobs.runs_root / name
    shutil.copytree(tiny_checkpoints / task, run / "best", dirs_exist_ok=True)
    (run / "config.json").write_text(json.dumps({"train": {"task": task, "data": "synthav:seed=0,n=8"}}))
    (run / "summary.json").write_text(json.dumps({"selected": "best"}))
    return run


def test_model_picker_lists_the_default_the_runs_and_the_models_folder(ctx, tiny_checkpoints, tmp_path):
    finished_run(ctx, tiny_checkpoints, "picker-ave")
    (ctx.jobs.runs_root / "no-epoch-yet").mkdir(exist_ok=True)
    (ctx.jobs.runs_root / "no-epoch-yet" / "config.json").write_text("{}")  # started, no checkpoint yet
    choices, value = ModelPanel(ctx).choices(Session())
    values = [v for _, v in choices]
    assert values[0] == value == "app"  # the app's model (here the tiny set), shown for a fresh session
    assert ("default" in values) == default_available()  # the embedded default, when it is built
    assert "run:picker-ave" in values and "run:no-epoch-yet" not in values
    for label, _ in choices:
        assert not ABSOLUTE_PATH.search(label), label  # names, never server paths
    models = tmp_path / "models"
    shutil.copytree(tiny_checkpoints / "avs", models / "my-avs")  # one checkpoint
    shutil.copytree(tiny_checkpoints, models / "all-three")  # a folder of task folders
    (models / "notes").mkdir()
    other = make_context(str(tiny_checkpoints), "cpu", runs=tmp_path / "runs", work_dir=tmp_path / "work",
                         models=models)
    values = [v for _, v in ModelPanel(other).choices()[0]]
    assert "models:my-avs" in values and "models:all-three" in values and "models:notes" not in values
    assert not any(v.startswith("run:") for v in values)  # its runs folder is empty


def test_picking_a_run_switches_only_that_session(ctx, tiny_checkpoints):
    finished_run(ctx, tiny_checkpoints, "picker-ave")
    app_model, generation = ctx.holder.predictor, ctx.holder.generation
    panel, visitor = ModelPanel(ctx), Session()
    picker, session, banner, status = panel.pick("run:picker-ave", Session())
    mine = ctx.holder.predictor_for(session)
    assert session.model and mine is not app_model and picker["value"] == "run:picker-ave"
    assert ctx.holder.predictor is app_model and ctx.holder.generation == generation  # the app's model is untouched
    assert ctx.holder.predictor_for(visitor) is app_model  # ...and so is every other session's
    assert mine.models["ave"] is not app_model.models["ave"]  # the run's AVE model...
    assert mine.models["avs"] is app_model.models["avs"] and set(mine.tasks) == set(TASKS)  # ...over the app's
    assert "picker-ave" in banner and "this session only" in banner and "stg-ok" in status
    assert "this session only" not in ctx.holder.status_html(visitor)
    for text in (banner, status):
        assert str(ctx.jobs.runs_root) not in text and not ABSOLUTE_PATH.search(text), text
    picker, back, banner, status = panel.pick("app", session)  # one click back to the app's model
    assert back.model is None and ctx.holder.predictor_for(back) is app_model and picker["value"] == "app"


def test_a_failing_pick_keeps_the_previous_model_and_says_why_without_a_path(ctx, tiny_checkpoints):
    finished_run(ctx, tiny_checkpoints, "picker-ave")
    panel = ModelPanel(ctx)
    _, session, _, _ = panel.pick("run:picker-ave", Session())
    mine = ctx.holder.predictor_for(session)
    broken = finished_run(ctx, tiny_checkpoints, "picker-broken")
    (broken / "best" / "adapter_model.safetensors").write_bytes(b"not tensors")
    picker, kept, banner, status = panel.pick("run:picker-broken", session)
    assert is_skip(kept) and is_skip(banner) and picker["value"] == "run:picker-ave"  # the list shows the kept model
    assert ctx.holder.predictor_for(session) is mine
    assert "stg-error" in status and "Could not load run picker-broken" in status and "hash" in status
    assert "You keep" in status and "picker-ave" in status
    assert str(ctx.jobs.runs_root) not in status and not ABSOLUTE_PATH.search(status), status
    assert "Traceback" not in status and len(status.splitlines()) == 1
    picker, kept, banner, status = panel.load_hub("someone/not-in-the-cache", session)  # tests run offline
    assert is_skip(kept) and ctx.holder.predictor_for(session) is mine
    assert "offline" in status and "Could not load someone/not-in-the-cache" in status and "You keep" in status
    for typed, words in ((str(broken), "not a Hub repo id"), ("../../etc", "not a Hub repo id"),
                         ("", "type a Hub repo id")):
        picker, kept, banner, status = panel.load_hub(typed, session)
        assert is_skip(kept) and words in status and str(ctx.jobs.runs_root) not in status, status
    assert "no longer in the list" in panel.pick("run:never-existed", session)[-1]


def test_about_shows_the_card_parameter_counts_quality_and_the_limitation(ctx, tiny_checkpoints, tmp_path):
    from app.about import OTHER_LIMITATION, about_markdown
    from stgcma.inference import Predictor

    panel = ModelPanel(ctx)
    about = panel.about_text(Session())
    for task in TASKS:
        counts = ctx.holder.predictor.models[task].parameter_counts()
        assert f"{counts['trainable']:,} trainable of {counts['total']:,} in all" in about, task
    assert counts["trainable"] < counts["total"]
    assert "`vit-test`" in about and "RANDOM weights" in about and "not recorded" in about
    assert OTHER_LIMITATION in about and "synthetic world" not in about  # its training data is unknown
    assert str(tiny_checkpoints) not in about and not ABSOLUTE_PATH.search(about)
    finished_run(ctx, tiny_checkpoints, "picker-ave")
    _, session, _, _ = panel.pick("run:picker-ave", Session())
    mine = panel.about_text(session)
    assert "synthav:seed=0,n=8" in mine and "knows its own synthetic world, not real footage" in mine
    assert "**Limitation** (AVE)" in mine and "**Limitation** (AVS, AVQA)" in mine
    assert panel.about_text(Session()) == about  # the other sessions' About is unchanged
    assert panel.refresh_list(session)[1] == mine
    graded = tmp_path / "graded"  # a model folder with a quality report, as build-default writes one
    shutil.copytree(tiny_checkpoints / "avqa", graded / "avqa")
    (graded / "quality.json").write_text(json.dumps({
        "recipe": {"world": "world=music,classes=14", "tasks": {"avqa": {"n_train": 400, "epochs": 8, "world": "",
                                                                        "refit": {"n_train": 3000, "epochs": 14,
                                                                                  "questions": 16}}}},
        "test": {"avqa": {"data": "synthav:seed=300,n=1000", "accuracy": 0.373}},
        "bounds": {"avqa": {"ceiling": 1.0, "floor": 0.353}}, "note": "Measured with python -m stgcma eval."}))
    text = about_markdown(Predictor.from_pretrained(str(graded)), "graded")
    assert "overall accuracy **37.3%** (ceiling 100.0%, question-only floor 35.3%)" in text
    assert "SynthAV `world=music,classes=14`: 400 fresh clips per epoch for 8 epochs" in text
    assert "then the head alone refitted on the frozen encoder's features of 3000 clips x 16 questions" in text
    assert "knows its own synthetic world, not real footage" in text and "Measured with" in text


def test_model_holder_keeps_the_old_model_when_a_load_fails(ctx, tmp_path):
    predictor, generation = ctx.holder.predictor, ctx.holder.generation
    with pytest.raises(CheckpointError):
        ctx.holder.load_checkpoint(tmp_path / "not-a-checkpoint")
    assert ctx.holder.predictor is predictor and ctx.holder.generation == generation


def test_app_py_flags():
    entry = _load_app_py()
    args = entry.parse_args([])
    assert (args.checkpoint, args.device, args.port, args.share) == ("default", "auto", None, False)
    assert entry.parse_args(["--checkpoint", "x", "--port", "7999", "--share"]).share
    assert args.models is None and entry.parse_args(["--models", "shelf"]).models == "shelf"
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"


def test_readme_front_matter_makes_a_gradio_space():
    text = (ROOT / "README.md").read_text()
    assert text.startswith("---\n")
    meta = dict(line.split(": ", 1) for line in text.split("---\n")[1].strip().splitlines())
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == gr.__version__ and meta["app_file"] == "app.py"
    assert (ROOT / meta["app_file"]).exists() and meta["title"] and meta["emoji"] and meta["license"]
    assert 0 < len(meta["short_description"]) <= 60  # the Hub's limit
    major, minor = map(int, meta["python_version"].strip('"').split("."))
    assert (major, minor) >= (3, 10)  # what requirements.txt was measured with (README: Python 3.10+)
    assert "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt && .venv/bin/python app.py" in text


def test_app_package_never_imports_torch():
    for path in [*(ROOT / "app").rglob("*.py"), ROOT / "app.py"]:
        text = path.read_text()
        assert "import torch" not in text and "from torch" not in text, path


def _dependencies(demo: gr.Blocks) -> list:
    return list(demo.fns.values())


def test_model_work_shares_one_bounded_queue_and_shows_one_progress(ctx):
    from app.main import MODEL_QUEUE, queue_settings

    demo = build_demo(ctx)
    model_fns = {"analyze", "ask", "ask_chip", "show", "explain", "api_analyze", "api_ask"}
    deps = [d for d in _dependencies(demo) if d.name in model_fns]
    assert {d.name for d in deps} == model_fns
    for dep in deps:
        assert dep.concurrency_id == MODEL_QUEUE and dep.concurrency_limit == ctx.limits.concurrency, dep.name
    others = [d for d in _dependencies(demo) if d.name not in model_fns]
    assert others and all(d.concurrency_id != MODEL_QUEUE for d in others)
    overlay = next(b for b in demo.blocks.values() if isinstance(b, gr.HTML) and "AVS overlay" in str(b.label))
    analyses = [d for d in deps if d.name == "analyze"]
    assert len(analyses) == 2  # the Analyze button and a click on the examples gallery
    for analyze in analyses:
        assert [b._id for b in analyze.show_progress_on] == [overlay._id]  # one progress display, not eight
        after = [d for d in _dependencies(demo) if d.trigger_after == analyze._id]
        assert after and all(d.show_progress == "hidden" for d in after)
    assert queue_settings(ctx.limits)["max_size"] == ctx.limits.queue_size
    text = ctx.limits.text()
    assert f"{ctx.limits.max_file_mb} MB" in text and "10 min" in text and "busy, try again" in text
    assert any(isinstance(b, gr.Markdown) and text in str(b.value) for b in demo.blocks.values())


def test_the_duration_limit_cuts_the_analysis_and_the_overlay(tiny_checkpoints, clips, tmp_path):
    import av

    from app.state import AppLimits

    short = make_context(str(tiny_checkpoints), "cpu", runs=tmp_path / "runs", work_dir=tmp_path / "work",
                         limits=AppLimits(max_duration_s=3))
    assert "3 s" in short.limits.text()
    tab = AnalyzeTab(short)
    out = tab.analyze(str(clips["good"]), Session(), progress=noop)  # a 6-second clip
    session = out[6]
    assert session.num_segments == 3 and any("3" in w for w in session.warnings), session.warnings
    assert len(out[0]["value"]["layers"]) == 3  # the page shows no mask after the analysed part
    with av.open(tab.finish(session, progress=noop)[0][0]) as container:
        assert float(container.duration / av.time_base) <= 3.5


def test_only_analyze_and_ask_are_public_api_endpoints(ctx):
    demo = build_demo(ctx)
    public = {d.api_name for d in _dependencies(demo) if d.api_visibility == "public"}
    assert public == {"analyze", "ask"}


def test_api_handlers_raise_gr_error_with_the_one_line_message(ctx, clips):
    tab, ask = AnalyzeTab(ctx), AskTab(ctx)
    result, overlay, timeline = tab.api_analyze(str(clips["good"]), progress=noop)
    assert result["clip"] == clips["good"].name and len(result["ave"]["labels"]) == 6
    assert Path(overlay).name == "overlay.mp4" and Path(timeline).name == "timeline.png"
    answer, confidence, alternatives = ask.api_ask("How many objects are sounding in the video?", str(clips["good"]))
    assert answer in {"zero", "one", "two", "three", "four", "five"} and 0 < confidence <= 1
    assert [set(a) for a in alternatives] == [{"answer", "probability"}] * len(alternatives)
    with pytest.raises(gr.Error, match="not a video"):
        tab.api_analyze(str(clips["text"]), progress=noop)
    with pytest.raises(gr.Error, match="not a video"):
        ask.api_ask("Is it loud?", str(clips["text"]))
    with pytest.raises(gr.Error, match="Type a question"):
        ask.api_ask(" ", str(clips["good"]))


def test_training_is_off_unless_enabled(tiny_checkpoints, clips, tmp_path):
    off = make_context(str(tiny_checkpoints), "cpu", runs=tmp_path / "runs", work_dir=tmp_path / "work")
    assert not off.training
    demo = build_demo(off)
    buttons = {b.value for b in demo.blocks.values() if isinstance(b, gr.Button)}
    assert "Launch" not in buttons and "Load into demo" not in buttons
    assert any(isinstance(b, gr.HTML) and "--enable-training" in str(b.value) for b in demo.blocks.values())
    assert "Training is off" in TrainTab(off).start("ave", "vit-test", "default", "synthav:n=8", 1, 4, None, 0,
                                                    "", "x")[-1]
    assert not (tmp_path / "runs" / "x").exists()


def test_gpu_control_only_with_cuda(ctx, monkeypatch):
    from app.tabs import train as train_module

    def gpu_slider(demo):
        return next(b for b in demo.blocks.values() if isinstance(b, gr.Slider) and b.label == "GPUs")

    monkeypatch.setattr(train_module, "available_devices", lambda: {"cuda": 0, "names": []})
    assert gpu_slider(build_demo(ctx)).visible is False
    monkeypatch.setattr(train_module, "available_devices", lambda: {"cuda": 2, "names": ["a", "b"]})
    slider = gpu_slider(build_demo(ctx))
    assert slider.visible is True and slider.maximum == 2


def test_training_curves_have_integer_steps_markers_and_a_legend_only_with_names():
    from matplotlib.ticker import MaxNLocator

    from app.tabs.train import loss_figure, val_figure

    loss = loss_figure([{"step": s, "loss": 1.0 / (s + 1)} for s in range(7)])
    ax = loss.axes[0]
    assert isinstance(ax.xaxis.get_major_locator(), MaxNLocator)
    loss.canvas.draw()
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert ax.get_legend() is None
    one = val_figure([{"epoch": 1, "metric": "accuracy", "value": 0.5}])
    line = one.axes[0].lines[0]
    assert len(line.get_xdata()) == 1 and line.get_marker() == "o"  # a single point is drawn
    two = val_figure([{"epoch": e, "metric": m, "value": 0.1 * e} for e in (1, 2) for m in ("accuracy", "f1")])
    assert sorted(t.get_text() for t in two.axes[0].get_legend().get_texts()) == ["accuracy", "f1"]
    assert val_figure([]).axes[0].get_legend() is None and not val_figure([]).axes[0].lines


@pytest.mark.parametrize("settings, words", [
    (["--out=/etc"], "key=value"), (["out=/tmp/elsewhere"], "with the form"), (["device=cuda"], "with the form"),
    (["warmup_epochs=1; rm -rf /"], "key=value"), (["adapter.temporal"], "key=value"),
])
def test_job_settings_are_plain_key_values(tmp_path, settings, words):
    spec = JobSpec("ave", "vit-test", "synthav:seed=0,n=8", str(tmp_path / "r"), settings=settings)
    with pytest.raises(JobError, match=words):
        spec.check()


def test_job_values_are_checked_and_the_command_is_an_argument_list(tmp_path):
    ok = JobSpec("ave", "vit-test", "synthav:seed=0,n=8", str(tmp_path / "r"),
                 settings=["warmup_epochs=1", "adapter.temporal=false"])
    ok.check()
    assert isinstance(ok.command(), list) and ok.command()[-2:] == ["warmup_epochs=1", "adapter.temporal=false"]
    for bad in (JobSpec("ave", "../../etc/passwd", "synthav:n=8", "r"), JobSpec("ave", "vit-test", "synthav:n=8", "r",
                epochs=10 ** 6), JobSpec("ave", "vit-test", "synthav:n=8", "r", gpus=-1)):
        with pytest.raises(JobError):
            bad.check()
    with pytest.raises(JobError, match="plain folder name"):
        JobManager(tmp_path).new_run_dir("ave", "vit-test", "a b;c")


def test_resume_after_a_cancel_before_the_first_epoch(ctx):
    tab = TrainTab(ctx)
    run = tab.start("ave", "vit-test", "default", "synthav:seed=0,n=8", 1, 4, None, 0, "", "early-cancel")[0]["value"]
    timer, note = tab.cancel_run(run)  # at once: the trainer has not written its config.json yet
    assert not (Path(run) / "config.json").exists()
    assert "starts the run again" in note and "continues" not in note  # no promise it cannot keep
    timer, note = tab.resume_run(run)
    assert timer.active and "stg-error" not in note
    assert ctx.jobs.wait(run, timeout=300) == "finished", log_tail(run)
    assert checkpoint_of(run) is not None


def _load_app_py():
    import importlib.util

    spec = importlib.util.spec_from_file_location("app_entry", ROOT / "app.py")
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)
    return entry


def test_training_on_a_public_address_needs_a_login(tmp_path):
    entry = _load_app_py()
    local = entry.parse_args(["--enable-training"])
    public = entry.parse_args(["--enable-training", "--host", "0.0.0.0"])
    assert entry.access(local, {}) == (True, [])
    assert entry.access(entry.parse_args([]), {}) == (False, [])
    assert entry.access(entry.parse_args([]), {"STGCMA_ENABLE_TRAINING": "1"})[0]
    with pytest.raises(SystemExit, match="Refusing to enable training"):
        entry.access(public, {})
    with pytest.raises(SystemExit, match="without a login"):
        entry.access(entry.parse_args(["--enable-training", "--share"]), {})
    with pytest.raises(SystemExit, match="without a login"):
        entry.access(entry.parse_args([]), {"STGCMA_ENABLE_TRAINING": "1", "SPACE_ID": "me/studio",
                                            "GRADIO_SERVER_NAME": "0.0.0.0"})
    assert entry.access(public, {"STGCMA_AUTH": "ana:s3cret, bo:pw:with:colons"}) == (
        True, [("ana", "s3cret"), ("bo", "pw:with:colons")])
    logins = tmp_path / "logins"
    logins.write_text("# who may train\nana:s3cret,with,commas\n\n")
    assert entry.access(public, {"STGCMA_AUTH_FILE": str(logins)}) == (True, [("ana", "s3cret,with,commas")])
    with pytest.raises(SystemExit, match="user:password"):
        entry.read_auth({"STGCMA_AUTH": "nopassword"})
    assert not entry.is_public(entry.parse_args([]), {}) and entry.is_public(entry.parse_args([]), {"SPACE_ID": "x"})
    assert "s3cret" not in (ROOT / "app.py").read_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(tiny_checkpoints: Path, clips: dict[str, Path], folder: Path,
              *flags: str) -> tuple[subprocess.Popen, str]:
    """``python app.py`` on a free port, its output in ``folder/app.log`` (not a pipe that can fill); its URL."""
    port = _free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    log = open(folder / "app.log", "w")
    server = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--checkpoint", str(tiny_checkpoints),
                               "--port", str(port), "--runs", str(folder / "runs"),
                               "--examples", str(clips["good"].parent), *flags],
                              cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 180
    while url not in (folder / "app.log").read_text():
        if server.poll() is not None or time.monotonic() > deadline:
            stop_app(server)
            pytest.fail(f"app.py did not start:\n{(folder / 'app.log').read_text()[-3000:]}")
        time.sleep(0.5)
    return server, url


def stop_app(server: subprocess.Popen) -> None:
    try:
        os.killpg(server.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def live_app(tiny_checkpoints, clips, tmp_path_factory):
    """The real launch path (app.py, queue, limits, API endpoints) with a queue of one waiting request."""
    folder = tmp_path_factory.mktemp("live_app")
    server, url = start_app(tiny_checkpoints, clips, folder, "--queue-size", "1", "--concurrency", "1")
    yield url
    stop_app(server)


def _file(value) -> Path:
    """A file output as gradio_client returns it (a path, or a dict holding one)."""
    if isinstance(value, dict):
        value = value.get("video") or value.get("path") or value.get("value")
    return Path(value)


def test_gradio_client_analyze_ask_and_a_bad_upload(live_app, clips):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(live_app, verbose=False)
    assert {"/analyze", "/ask"} <= set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    result, overlay, timeline = client.predict(handle_file(str(clips["good"])), api_name="/analyze")
    assert result["clip"] == clips["good"].name and len(result["ave"]["labels"]) == 6 and result["warnings"] == []
    assert _file(overlay).suffix == ".mp4" and _file(overlay).stat().st_size > 0
    assert _file(timeline).suffix == ".png"
    answer, confidence, alternatives = client.predict("How many objects are sounding in the video?",
                                                      handle_file(str(clips["good"])), api_name="/ask")
    assert answer in {"zero", "one", "two", "three", "four", "five"} and 0 < confidence <= 1
    assert all(a["answer"] in {"zero", "one", "two", "three", "four", "five"} for a in alternatives)
    with pytest.raises(AppError, match="not a video"):
        client.predict(handle_file(str(clips["text"])), api_name="/analyze")
    with pytest.raises(AppError, match="not a video"):
        client.predict("Is it loud?", handle_file(str(clips["text"])), api_name="/ask")


def test_every_bad_upload_through_the_api_is_one_clear_error_and_the_app_keeps_serving(live_app, clips, corpus):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(live_app, verbose=False)
    for path in sorted(corpus.iterdir()):
        started = time.monotonic()
        with pytest.raises(AppError) as error:
            client.predict(handle_file(str(path)), api_name="/analyze")
        message = str(error.value)
        assert message and "\n" not in message.strip() and "Traceback" not in message, (path.name, message)
        assert time.monotonic() - started < 60, path.name
    result = client.predict(handle_file(str(clips["good"])), api_name="/analyze")[0]  # still serving
    assert result["clip"] == clips["good"].name


def test_the_api_reads_no_file_it_was_not_sent(live_app):
    """Server paths, traversal, file:// and URLs in place of an upload: every call ends in an error event
    (Gradio refuses to move a file no user uploaded), and the file route refuses paths outside its folders."""
    import httpx

    hostile = ["/etc/passwd", "../../etc/passwd", str(ROOT / "assets" / "default" / "quality.json"),
               "file:///etc/passwd", "http://127.0.0.1:9/clip.mp4"]
    for path in hostile:
        started = httpx.post(f"{live_app}/gradio_api/call/analyze", timeout=30,
                             json={"data": [{"path": path, "meta": {"_type": "gradio.FileData"}}]})
        assert started.status_code == 200, started.text
        events = httpx.get(f"{live_app}/gradio_api/call/analyze/{started.json()['event_id']}", timeout=120).text
        assert events.startswith("event: error") and "root:" not in events, (path, events[:200])
    for route in ("/gradio_api/file=/etc/passwd", "/gradio_api/file=" + str(ROOT / "app.py")):
        response = httpx.get(live_app + route, timeout=30)
        assert response.status_code == 403 and "root:" not in response.text, (route, response.status_code)


def test_beyond_the_queue_bound_the_client_is_told_to_try_again(live_app, clips):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(live_app, verbose=False)
    jobs = [client.submit(handle_file(str(clips["good"])), api_name="/analyze") for _ in range(4)]
    outcomes = []
    for job in jobs:
        try:
            outcomes.append(job.result(timeout=300)[0]["clip"])
        except AppError:
            raise
        except Exception as err:  # gradio_client's QueueError: "Queue is full! Please try again."
            outcomes.append(str(err))
    assert clips["good"].name in outcomes  # the first is served...
    busy = [o for o in outcomes if o != clips["good"].name]
    assert busy and all("try again" in o.lower() for o in busy), outcomes  # ...the ones beyond the bound hear why


PLAYER_STATE = """() => {
    const video = document.querySelector('.stg-player video');
    const layers = Array.from(document.querySelectorAll('.stg-player img.stg-layer'));
    return {mode: document.querySelector('.stg-player').dataset.mode, ready: video ? video.readyState : -1,
            time: video ? video.currentTime : -1, opacity: layers.map(l => Number(l.style.opacity || 0)),
            loaded: layers.map(l => Boolean(l.getAttribute('src')))};
}"""


@pytest.mark.slow
def test_browser_upload_analyze_and_screenshot(tiny_checkpoints, clips, tmp_path):
    """Launch ``python app.py``, upload a clip, Analyze, seek the player, wait for the overlay mp4, take screenshots."""
    if os.environ.get("CI") != "true":  # .ci/run installs both: in CI a missing one is a failure, not a skip
        if not Path("/usr/bin/chromium").exists():
            pytest.skip("needs Debian's Chromium: apt-get install -y chromium")
        pytest.importorskip("playwright.sync_api", reason="needs pip install -r requirements-dev.txt")
    import playwright.sync_api as playwright
    server, url = start_app(tiny_checkpoints, clips, tmp_path, "--enable-training")
    shots = Path(os.environ.get("STGCMA_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    try:
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch_persistent_context(
                str(tmp_path / "profile"), executable_path="/usr/bin/chromium", args=flags, headless=True,
                viewport={"width": 1400, "height": 1000})
            page = browser.new_page()
            page.goto(url, wait_until="domcontentloaded")
            page.get_by_role("button", name="Analyze", exact=True).wait_for(timeout=60_000)
            page.locator("input[type=file]").first.set_input_files(str(clips["good"]))
            page.wait_for_timeout(1500)
            page.get_by_role("button", name="Analyze", exact=True).click()
            page.locator(".stg-ok", has_text="Analysed").wait_for(timeout=120_000)
            page.wait_for_timeout(1500)
            page.screenshot(path=str(shots / "analyze.png"), full_page=True)
            player = page.evaluate(PLAYER_STATE)
            assert player["mode"] == "layers" and player["ready"] >= 1 and len(player["opacity"]) == 6, player
            assert player["loaded"] == [True] * 4 + [False] * 2, player  # at 0:00 only the layers near the playhead
            page.get_by_text("0:03", exact=True).first.click()
            page.wait_for_timeout(1000)
            player = page.evaluate(PLAYER_STATE)  # t = 3 s: halfway between the centres of seconds 2 and 3
            assert abs(player["time"] - 3.0) < 0.05, player
            assert player["opacity"] == pytest.approx([0, 0, 0.5, 0.5, 0, 0], abs=0.05), player
            assert all(player["loaded"]), player
            page.wait_for_function("document.body.innerText.replace(/\\s+/g, '').includes('overlay.mp4')",
                                   timeout=120_000)  # the rendered overlay joins the downloads
            page.get_by_role("tab", name="Ask").click()
            page.get_by_placeholder("Is the violin playing?").fill("How many objects are sounding in the video?")
            page.get_by_role("button", name="Ask", exact=True).click()
            page.get_by_text("confidence").first.wait_for(timeout=60_000)
            page.get_by_text("How many types of sounds were heard throughout the video?").first.click()  # a chip
            page.get_by_text("confidence").nth(1).wait_for(timeout=60_000)
            page.screenshot(path=str(shots / "ask.png"), full_page=True)
            page.get_by_role("tab", name="Attention").click()
            page.get_by_role("button", name="Show attention").click()
            page.get_by_text("attention on the class token").wait_for(timeout=60_000)
            page.screenshot(path=str(shots / "attention.png"), full_page=True)
            page.get_by_role("tab", name="Attribution").click()
            page.get_by_role("button", name="Explain").click()
            page.get_by_text("audio share (whole window)").wait_for(timeout=120_000)
            page.screenshot(path=str(shots / "attribution.png"), full_page=True)
            page.get_by_role("tab", name="Train").click()
            page.wait_for_timeout(500)
            page.screenshot(path=str(shots / "train.png"), full_page=True)
            page.set_viewport_size({"width": 390, "height": 844})  # a phone
            for tab in ("Analyze", "Ask"):
                page.get_by_role("tab", name=tab).click()
                page.wait_for_timeout(800)
                page.screenshot(path=str(shots / f"phone-{tab.lower()}.png"), full_page=True)
                width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
                assert width[0] <= width[1], (tab, width)  # nothing wider than the screen
            browser.close()
    finally:
        stop_app(server)


def test_the_work_folder_keeps_only_the_latest_analyses(tiny_checkpoints, tmp_path):
    from app.state import AppLimits
    from stgcma.media import write_video

    work = tmp_path / "work"
    ctx = make_context(str(tiny_checkpoints), "cpu", runs=tmp_path / "runs", examples=tmp_path / "none",
                       work_dir=work, limits=AppLimits(max_results=2))
    tab, outs = AnalyzeTab(ctx), []
    for seed in range(4):  # four different clips: four result folders written
        frames = np.random.default_rng(seed).integers(0, 255, (16, 48, 64, 3), dtype=np.uint8)
        clip = write_video(tmp_path / f"clip{seed}.mp4", frames, fps=8)
        session = tab.analyze(str(clip), Session(), progress=noop)[6]
        outs.append(Path(session.out_dir))
    assert sorted(p.name for p in work.iterdir()) == sorted(p.name for p in outs[-2:])  # the two newest stay
    assert (outs[-1] / "result.json").is_file()


@pytest.mark.slow
def test_eight_clients_five_analyses_each_all_answered_with_bounded_memory(tiny_checkpoints, clips, tmp_path):
    """One app process, 8 gradio_client users at once, 5 analyses each of two different clips: every answer is
    the right clip's and the server's peak RSS stays bounded."""
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client, handle_file

    from stgcma.media import write_video

    other = write_video(tmp_path / "other.mp4", np.random.default_rng(3).integers(0, 255, (40, 48, 64, 3),
                                                                               dtype=np.uint8), fps=8)
    videos = {clips["good"].name: 6, Path(other).name: 5}  # clip -> its number of seconds
    server, url = start_app(tiny_checkpoints, clips, tmp_path, "--queue-size", "8")
    try:
        def user(index: int) -> list[tuple[str, int]]:
            client = Client(url, verbose=False)
            out = []
            for k in range(5):
                path = clips["good"] if (index + k) % 2 else Path(other)
                result = client.predict(handle_file(str(path)), api_name="/analyze")[0]
                out.append((result["clip"] == path.name, len(result["ave"]["labels"]) == videos[path.name]))
            return out

        with ThreadPoolExecutor(8) as pool:
            answers = [a for rows in pool.map(user, range(8)) for a in rows]
        assert len(answers) == 40 and all(ok for pair in answers for ok in pair), answers
        status = Path(f"/proc/{server.pid}/status").read_text()
        peak_mb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024
        print(f"server peak RSS after 40 analyses by 8 clients: {peak_mb:.0f} MB")
        assert peak_mb < 4000, peak_mb  # measured: 1.2 GB with the tiny models
    finally:
        stop_app(server)


def test_chat_answers_read_as_people_write_them():
    from app.tabs.ask import answer_markdown

    text = answer_markdown({"answer": "church_bell", "probability": 0.4, "alternatives": [("acoustic_guitar", 0.2)],
                            "unknown_words": [], "warnings": []}, "clip.mp4")
    assert text.startswith("**church bell** (confidence") and "acoustic guitar (" in text and "_" not in text


def test_a_background_second_where_another_class_tops_says_so():
    from types import SimpleNamespace

    from app.tabs.analyze import per_second_table

    ave = {"labels": ["Flute", "background", "background"], "label_ids": [0, 2, 2], "background_index": 2,
           "class_names": ["Flute", "Bell", "background"], "confidence": [0.9, 0.9, 0.01],
           "probs": [[0.9, 0.05, 0.05], [0.05, 0.05, 0.9], [0.01, 0.98, 0.01]]}  # second 2: a Bell, not the event
    table = per_second_table(SimpleNamespace(ave=ave, avs=None))
    assert list(table["event"]) == ["Flute", "background (no event)",
                                    "background: not the clip's event (top: Bell, 98%)"]
