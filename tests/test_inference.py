"""Predictor: analyse once, answer many; the embedded default on fresh SynthAV clips; the analyze command."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from stgcma.checkpoint import DEFAULT_DIR, CheckpointError, save_checkpoint
from stgcma.data.synthav.folder import write_synthav
from stgcma.inference import Predictor
from stgcma.model import create_model

ROOT = Path(__file__).resolve().parents[1]
HAS_DEFAULT = all((DEFAULT_DIR / t / "adapter_config.json").exists() for t in ("ave", "avs", "avqa"))
needs_default = pytest.mark.skipif(not HAS_DEFAULT, reason="the embedded default is not in assets/default")


@pytest.fixture(scope="module")
def default_predictor():
    if not HAS_DEFAULT:
        pytest.skip("the embedded default is not in assets/default")
    torch.set_num_threads(2)
    return Predictor.from_pretrained("default")


@pytest.fixture(scope="module")
def fresh_clips(tmp_path_factory):
    """Three SynthAV Music clips (the default's world) of a seed never used in training, as real mp4 files."""
    from stgcma.data.synthav.scene import NUM_MUSIC_CLASSES, SynthConfig

    out = tmp_path_factory.mktemp("fresh")
    write_synthav(out, n=3, seed=777, split="test", size=112, progress=False,
                  config=SynthConfig(world="music", num_classes=NUM_MUSIC_CLASSES))
    return out


def _labels(folder: Path, task: str) -> dict:
    return {item["id"]: item for item in json.loads((folder / f"{task}.json").read_text())}


@needs_default
def test_default_on_fresh_clips_matches_measured_quality(default_predictor, fresh_clips):
    """AVE labels and AVS masks through the whole file path, against the quality in quality.json."""
    from stgcma.metrics import AVSMetrics

    quality = json.loads((DEFAULT_DIR / "quality.json").read_text())["test"]
    ave, avs = _labels(fresh_clips, "ave"), _labels(fresh_clips, "avs")
    correct = total = 0
    avs_metric = AVSMetrics(from_logits=False)
    for clip_id, item in ave.items():
        result = default_predictor.analyze(fresh_clips / item["video"])
        called = set(np.asarray(result.ave["label_ids"]).tolist()) - {result.ave["background_index"]}
        assert len(called) <= 1, called  # the default decodes one event class per 10-s clip
        correct += int((np.asarray(result.ave["label_ids"]) == np.asarray(item["label"])).sum())
        total += len(item["label"])
        masks = np.stack([np.asarray(_read_mask(fresh_clips / p)) for p in avs[clip_id]["masks"]])  # (T, h, w)
        pred = torch.nn.functional.interpolate(torch.as_tensor(result.avs["masks"])[None], size=masks.shape[-2:])[0]
        avs_metric.update(pred, torch.as_tensor(masks, dtype=torch.float32))
    accuracy = correct / total
    # 30 seconds of 3 clips: allow for sampling noise around the measured 1000-clip test accuracy.
    assert accuracy >= quality["ave"]["accuracy"] - 0.25, (accuracy, quality["ave"])
    assert avs_metric.compute()["miou"] >= quality["avs"]["miou"] - 0.3


def _read_mask(path: Path) -> np.ndarray:
    import cv2

    return (cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) > 127).astype(np.float32)


@needs_default
def test_work_is_cached_by_content(default_predictor, fresh_clips, tmp_path, monkeypatch):
    first = sorted((fresh_clips / "videos").glob("*.mp4"))[0]
    copy = tmp_path / "renamed.mp4"
    shutil.copy(first, copy)
    a = default_predictor.analyze(first)
    calls = {"decode": 0, "features": 0}
    import stgcma.inference as inference

    def counting(name, fn):
        def wrapped(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(inference, "decode_clip", counting("decode", inference.decode_clip))
    model = default_predictor.models["avqa"]
    monkeypatch.setattr(model, "forward_features", counting("features", model.forward_features))
    b = default_predictor.analyze(copy)  # same bytes, another name: nothing is decoded again
    assert b.key == a.key and calls["decode"] == 0
    first_answer = default_predictor.ask("How many objects are making sound?")
    default_predictor.ask("Is the red_circle making a sound?")
    assert calls["features"] <= 1  # both questions share the clip's encoder features
    assert 0.0 <= first_answer["probability"] <= 1.0 and len(first_answer["alternatives"]) == 3
    assert first_answer["answer"] in default_predictor.meta["avqa"]["answer_vocab"]


@needs_default
def test_unknown_words_are_reported(default_predictor, fresh_clips):
    default_predictor.analyze(sorted((fresh_clips / "videos").glob("*.mp4"))[0])
    answer = default_predictor.ask("Is the cello louder than the clarinet?")
    assert "cello" in answer["unknown_words"] and "clarinet" in answer["unknown_words"]
    assert any("never saw" in w for w in answer["warnings"])
    with pytest.raises(ValueError, match="ask a question"):
        default_predictor.ask("   ")
    typed = default_predictor.ask("Is the acoustic guitar louder than the church bell?")  # as people type names
    spelled = default_predictor.ask("Is the acoustic_guitar louder than the church_bell?")  # as MUSIC-AVQA spells
    assert typed["unknown_words"] == [] and typed["alternatives"] == spelled["alternatives"]
    assert (typed["answer"], typed["probability"]) == (spelled["answer"], spelled["probability"])


def test_predictor_from_a_hub_cache_folder_with_task_subfolders(tmp_path, monkeypatch):
    snapshot = tmp_path / "hub" / "models--lab--stgcma-toy" / "snapshots" / ("b" * 40)
    for task in ("ave", "avs"):
        torch.manual_seed(1)
        save_checkpoint(create_model("vit-test", {"head.task": task, "head.avs_channels": 16}),
                        snapshot / task, {"init_seed": 1, "class_names": ["x"] * 29})
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("b" * 40)
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    predictor = Predictor.from_pretrained("lab/stgcma-toy")
    assert predictor.tasks == ["ave", "avs"]
    with pytest.raises(CheckpointError):
        Predictor.from_pretrained("lab/absent")


def _run_cli(*args):
    return subprocess.run([sys.executable, "-m", "stgcma", *args], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env={"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize("command", ["analyze", "inspect"])
@pytest.mark.parametrize("content, message", [(b"", "empty"), (b"hello, not a video", "not a video")])
def test_bad_input_is_one_line_without_ffmpeg_noise(tmp_path, command, content, message):
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(content)
    extra = ["--out", str(tmp_path / "out"), "--quiet"] if command == "analyze" else []
    result = _run_cli(command, str(bad), *extra)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr.lower() and "Traceback" not in result.stderr


@needs_default
def test_analyze_command_writes_every_output(tmp_path, fresh_clips):
    video = sorted((fresh_clips / "videos").glob("*.mp4"))[1]
    result = _run_cli("analyze", str(video), "--out", str(tmp_path / "out"), "--question",
                      "How many objects are making sound?", "--quiet")
    assert result.returncode == 0, result.stderr[-2000:]
    out = tmp_path / "out"
    for name in ("result.json", "overlay.mp4", "timeline.png", "attention_frame.png", "attention_spectrogram.png",
                 "attribution_frame.png", "attribution_spectrogram.png"):
        assert (out / name).stat().st_size > 0, name
    assert len(list((out / "masks").glob("*.png"))) == 10
    data = json.loads((out / "result.json").read_text())
    assert len(data["ave"]["labels"]) == 10 and data["answers"][0]["answer"]
    assert 0.0 <= data["files"]["explanations"]["attribution"]["audio_share"] <= 1.0


@pytest.mark.parametrize("question, allowed", [
    ("Is the violin in the video making a sound?", {"yes", "no"}),
    ("Are there violin and piano sound?", {"yes", "no"}),
    ("How many objects are sounding in the video?", {"zero", "one", "two", "three"}),
    ("Where is the first sounding object?", {"left", "middle", "right"}),
    ("Which object makes sounds before the piano?", {"violin", "piano"}),
    ("What kind of object is the leftest object?", {"violin", "piano"}),
    ("Which violin makes the sound first?", {"violin", "piano", "left", "middle", "right"}),
    ("violin?", {"yes", "no", "zero", "one", "two", "three", "left", "middle", "right", "violin", "piano"}),
])
def test_answers_are_restricted_to_what_the_question_admits(question, allowed):
    from stgcma.inference import answer_mask

    answers = ["yes", "no", "zero", "one", "two", "three", "left", "middle", "right", "violin", "piano"]
    mask = answer_mask(question, answers)
    assert {a for a, keep in zip(answers, mask, strict=True) if keep} == allowed
    assert answer_mask("How many drums?", ["violin", "piano"]).all()  # no number in the vocabulary: no restriction
