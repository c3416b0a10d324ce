"""SynthAV rehearsals of the public layouts (stgcma.data.synthav.layouts, ``synth --layout``): the real
loaders read them, and what they read equals the SynthAV scenes the folders were drawn from."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stgcma.cli import main
from stgcma.config import PreprocessConfig
from stgcma.data.annotations import read_ave_annotations
from stgcma.data.ave import AVEDataset
from stgcma.data.avsbench import AVSBenchDataset
from stgcma.data.musicavqa import MusicAVQADataset
from stgcma.data.spec import build_dataset
from stgcma.data.synthav.clip import make_clip
from stgcma.data.synthav.layouts import (
    PROVENANCE,
    ave_interval,
    clip_questions,
    read_provenance,
    split_counts,
    write_layout,
)
from stgcma.data.synthav.render import render_masks, segment_times
from stgcma.data.synthav.styles import question_names

SIZE = 32
PRE = PreprocessConfig(image_size=SIZE, num_segments=10, num_mel_bins=32, target_frames=32)


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("layouts")
    out = {}
    for layout in ("ave", "avs-s4", "avs-ms3", "music-avqa"):
        write_layout(layout, base / layout, 5, seed=3, size=SIZE, fps=2, questions=3, progress=False)
        out[layout] = base / layout
    return out


def _scene_clip(out: Path, split: str, clip_id: str):
    provenance, cfg = read_provenance(out)
    index = {s["id"]: s["index"] for s in provenance["splits"][split]}[clip_id]
    return make_clip(provenance["seed"], index, cfg, split)


def test_split_counts() -> None:
    assert split_counts(5) == {"train": 3, "val": 1, "test": 1}
    assert split_counts(40) == {"train": 32, "val": 4, "test": 4}
    with pytest.raises(ValueError, match="at least 3"):
        split_counts(2)


def test_ave_interval() -> None:
    assert ave_interval([8, 3, 3, 8], 8) == (3, 1, 3)
    assert ave_interval([3, 8, 3, 8], 8) is None  # two intervals: not an AVE row
    assert ave_interval([8, 8], 8) is None


def test_ave_layout_reads_back_with_the_scenes_labels(layouts: dict[str, Path]) -> None:
    out = layouts["ave"]
    root = out / "AVE_Dataset"
    lines = (root / "Annotations.txt").read_text().splitlines()
    assert lines[0] == "Category&VideoID&Quality&StartTime&EndTime"  # the header quirk...
    assert (root / "trainSet.txt").read_text().splitlines()[0].count("&") == 4
    assert not (root / "trainSet.txt").read_text().startswith("Category")  # ...absent from the split files
    every = read_ave_annotations(root / "Annotations.txt")
    seen = 0
    for split in ("train", "val", "test"):
        ds = AVEDataset(out, split, PRE)  # found through OUT/AVE_Dataset, as for the real folder
        assert ds.class_names[-1] == "background" and len(ds.events) == read_provenance(out)[1].num_classes
        for i, record in enumerate(ds.records):
            scene = _scene_clip(out, split, record.video_id).scene
            assert ds.labels(i).tolist() == scene.ave_labels()
            seen += 1
    assert seen == len(every) == 5
    item = AVEDataset(out, "test", PRE)[0]
    assert item["video"].shape == (10, 3, SIZE, SIZE) and item["audio"].shape == (10, 1, 32, 32)


@pytest.mark.parametrize("layout", ["avs-s4", "avs-ms3"])
def test_avsbench_layouts_read_back_with_the_scenes_masks(layouts: dict[str, Path], layout: str) -> None:
    out = layouts[layout]
    mode = layout.split("-")[1]
    meta_root = out / ("Single-source" if mode == "s4" else "Multi-sources")
    with open(meta_root / f"{mode}_meta_data.csv") as f:
        header = next(csv.reader(f))
    assert header == (["name", "start", "category", "split"] if mode == "s4" else ["video_id", "split"])
    for split in ("train", "test"):
        ds = build_dataset(out, "avs", split, PRE)
        assert isinstance(ds, AVSBenchDataset) and ds.mode == mode and ds.data_root.name == f"{mode}_data"
        item = ds[0]
        clip = _scene_clip(out, split, ds.name(0))
        masks = render_masks(clip.scene, segment_times(5), SIZE)
        valid = item["mask_valid"].tolist()
        assert valid == ([True, False, False, False, False] if (mode, split) == ("s4", "train") else [True] * 5)
        for t in range(5):
            expected = masks[t] if valid[t] else np.zeros_like(masks[t])
            assert torch.equal(item["mask"][t], torch.from_numpy(expected.astype(np.float32)))
        assert item["video"].shape == (5, 3, SIZE, SIZE) and item["audio"].shape == (5, 1, 32, 32)
    if mode == "s4":  # exactly one object sounds each second, and the category folder names the sounding class
        clip = _scene_clip(out, "test", ds.name(0))
        assert all(len(clip.scene.sounding_objects(t)) <= 1 for t in range(5))
        cfg = read_provenance(out)[1]
        names = question_names(cfg.num_classes, cfg.world)
        assert ds.records[0].category in {names[o.cls] for o in clip.scene.objects}
    else:
        assert ds.frame_paths(0)[0].name.endswith(".mp4_1.png")


def test_music_avqa_layout_raw_format_and_answers(layouts: dict[str, Path]) -> None:
    out = layouts["music-avqa"]
    raw = json.loads((out / "avqa-val.json").read_text())
    assert {"video_id", "question_id", "type", "question_content", "templ_values", "question_deleted", "anser"} \
        == set(raw[0])
    assert isinstance(raw[0]["type"], str) and isinstance(json.loads(raw[0]["type"]), list)  # JSON inside JSON
    assert len(raw[0]["video_id"]) == 8 and raw[0]["video_id"].isdigit()
    provenance, cfg = read_provenance(out)
    names = question_names(cfg.num_classes, cfg.world)
    ids = set()
    for split in ("train", "val", "test"):
        ds = MusicAVQADataset(out, split, PRE)
        assert ds.video_dir.name == "MUSIC-AVQA-videos-Real"
        by_video = {s["video_id"]: s for s in provenance["splits"][split]}
        for record in ds.records:
            source = by_video[record.video_id]
            clip = make_clip(provenance["seed"], source["index"], cfg, split)
            asked = {(q.text, q.answer) for q in clip_questions(provenance["seed"], clip, names, 3, split)}
            assert (record.question, record.answer) in asked
            ids.add(record.question_id)
        assert len(ds) == 3 * len(by_video)  # three questions per video
    assert len(ids) == 15
    item = MusicAVQADataset(out, "test", PRE)[0]
    assert item["answer"].item() == MusicAVQADataset(out, "test", PRE).answer_index[ds.records[0].answer]


def test_synth_cli_writes_a_layout(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "ave"
    args = ["synth", "--layout", "ave", "--out", str(out), "--n", "3", "--size", "32", "--fps", "2", "--quiet"]
    assert main(args) == 0
    assert "AVE_Dataset" in capsys.readouterr().out and (out / PROVENANCE).exists()
    assert len(build_dataset(out / "AVE_Dataset", "ave", "train", PRE)) == 1
    assert main(args) == 2  # refuses to overwrite without --force
    assert "--force" in capsys.readouterr().err
    assert main(["synth", "--layout", "music-avqa", "--out", str(tmp_path / "q"), "--n", "2", "--quiet"]) == 2
    assert "at least 3" in capsys.readouterr().err
