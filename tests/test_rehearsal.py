"""The whole path a person with a real dataset takes, rehearsed on SynthAV written in each public layout:
``synth --layout`` -> ``prepare`` -> ``train`` (a tiny ViT and a tiny Swin) -> ``eval`` -> Predictor -> analyse."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stgcma.cli import main
from stgcma.data.media_io import read_rgb
from stgcma.data.synthav.layouts import LAYOUTS
from stgcma.inference import Predictor
from stgcma.media.decode import decode_audio
from stgcma.media.encode import write_video

TASK = {"ave": "ave", "avs-s4": "avs", "avs-ms3": "avs", "music-avqa": "avqa"}
SELECT = {"ave": "accuracy", "avs": "miou", "avqa": "accuracy"}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("rehearsal")
    for layout in LAYOUTS:
        assert main(["synth", "--layout", layout, "--out", str(base / layout), "--n", "5", "--seed", "4",
                     "--size", "32", "--fps", "2", "--quiet"]) == 0
    return {layout: base / layout for layout in LAYOUTS}


def clip_to_analyse(folder: Path, layout: str, tmp_path: Path) -> Path:
    """An mp4 of the layout: its own test video, or AVSBench's PNG frames and wav encoded at 1 fps."""
    if layout == "ave":
        return sorted((folder / "AVE_Dataset" / "AVE").glob("*test*.mp4"))[0]
    if layout == "music-avqa":
        return sorted((folder / "MUSIC-AVQA-videos-Real").glob("*.mp4"))[-1]
    frames = sorted(folder.rglob("visual_frames/**/*test*_[1-5].png"))[:5]
    wav = sorted(folder.rglob("audio_wav/test/**/*.wav"))[0]
    wave, _ = decode_audio(wav, 0.0, 5.0, 16000)
    return write_video(tmp_path / "avs.mp4", np.stack([read_rgb(p) for p in frames]), 1, wave, 16000)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["vit-test", "swin-test"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_layout_to_predictor(folders: dict[str, Path], layout: str, preset: str, tmp_path: Path,
                             capsys: pytest.CaptureFixture) -> None:
    task = TASK[layout]
    extra = ["preprocess.num_segments=5"] if task == "avs" else []
    cache, run = tmp_path / "cache", tmp_path / "run"
    assert main(["prepare", "--data", str(folders[layout]), "--out", str(cache), "--preset", preset, "--quiet",
                 *extra]) == 0
    capsys.readouterr()
    assert main(["train", "--task", task, "--preset", preset, "--data", str(cache), "--out", str(run), "--quiet",
                 "epochs=1", "batch_size=2", "lr=1e-3", *extra]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["best_epoch"] == 1 and (run / "best" / "adapter_model.safetensors").exists()
    assert main(["eval", "--task", task, "--checkpoint", str(run), "--data", str(cache), "--json", "--quiet"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= metrics[SELECT[task]] <= 1.0
    predictor = Predictor.from_pretrained(run)
    assert predictor.tasks == [task]
    analysis = predictor.analyze(clip_to_analyse(folders[layout], layout, tmp_path))
    if task == "ave":  # one answer per second of the 10-s video, in the dataset's class names
        assert len(analysis.ave["labels"]) == 10
        assert set(analysis.ave["labels"]) <= set(predictor.meta["ave"]["class_names"])
    elif task == "avs":
        assert analysis.avs["masks"].shape == (5, 32, 32)
    else:
        reply = predictor.ask("How many sounding red_circle in the video?")
        assert reply["answer"] in predictor.meta["avqa"]["answer_vocab"]
