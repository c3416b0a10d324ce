"""The decode-once dataset cache (stgcma.data.prepare, stgcma.data.cache, ``prepare``): same items as the
folder loaders, refused on other preprocessing, resumable after an interruption, bad clips listed."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

from stgcma.cli import main
from stgcma.config import PreprocessConfig
from stgcma.data import prepare as prepare_module
from stgcma.data.cache import CachedDataset, CacheMismatchError, read_manifest
from stgcma.data.prepare import bench_cache, prepare
from stgcma.data.spec import build_dataset
from stgcma.data.synthav.layouts import write_layout

SIZE = 32
PRE = PreprocessConfig(image_size=SIZE, num_segments=4, num_mel_bins=32, target_frames=32)
# uint8 rounding after the resize: half a grey level, normalised by the smallest std
VIDEO_TOL = 0.5 / 255 / min(PRE.image_std) + 1e-5


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("prep")
    for layout in ("ave", "avs-s4", "music-avqa"):  # frames at 48 px: the cache resizes them to 32
        write_layout(layout, base / layout, 5, seed=1, size=48, fps=2, progress=False)
    return {layout: base / layout for layout in ("ave", "avs-s4", "music-avqa")}


def assert_same_items(cached, source) -> None:
    assert len(cached) == len(source)
    for i in range(len(source)):
        a, b = cached[i], source[i]
        assert a.keys() == b.keys()
        for key, value in b.items():
            if key == "video":
                assert (a[key] - value).abs().max() <= VIDEO_TOL
            elif torch.is_tensor(value):
                assert a[key].dtype == value.dtype and torch.allclose(a[key], value, atol=1e-6), key
            else:
                assert a[key] == value


def test_ave_cache_serves_the_loaders_items(folders: dict[str, Path], tmp_path: Path) -> None:
    manifest = prepare(folders["ave"], tmp_path / "c", "ave", PRE, shard_size=2, progress=False)
    assert manifest["complete"] and manifest["failed"] == []
    assert manifest["splits"]["train"] == {"clips": 3, "items": 3, "shards": 2}
    assert (tmp_path / "c" / "train" / "shard-00001.video.npy").exists()
    for split in ("train", "val", "test"):
        cached = build_dataset(tmp_path / "c", "ave", split, PRE)  # the spec sees the cache
        assert isinstance(cached, CachedDataset)
        assert cached.class_names == build_dataset(folders["ave"], "ave", split, PRE).class_names
        assert_same_items(cached, build_dataset(folders["ave"], "ave", split, PRE))
    # normalisation is applied when reading, so other statistics are fine; other content is refused
    other_norm = dataclasses.replace(PRE, image_mean=(0.5, 0.5, 0.5), fbank_mean=-5.0)
    item = CachedDataset(tmp_path / "c", "ave", "test", other_norm)[0]
    assert_same_items([item], [build_dataset(folders["ave"], "ave", "test", other_norm)[0]])
    with pytest.raises(CacheMismatchError, match="image_size: cache 32 vs model 64"):
        CachedDataset(tmp_path / "c", "ave", "train", dataclasses.replace(PRE, image_size=64))
    with pytest.raises(CacheMismatchError, match="frame_shift_ms"):
        build_dataset(tmp_path / "c", "ave", "train", dataclasses.replace(PRE, frame_shift_ms=4.4))
    with pytest.raises(ValueError, match="is a ave cache, not avs"):
        CachedDataset(tmp_path / "c", "avs", "train", PRE)


def test_avs_and_avqa_caches_with_workers(folders: dict[str, Path], tmp_path: Path) -> None:
    pre5 = dataclasses.replace(PRE, num_segments=5)
    prepare(folders["avs-s4"], tmp_path / "avs", "avs", pre5, progress=False)
    cached = CachedDataset(tmp_path / "avs", "avs", "train", pre5)
    assert cached[0]["mask_valid"].tolist() == [True, False, False, False, False]
    assert_same_items(cached, build_dataset(folders["avs-s4"], "avs", "train", pre5))
    with pytest.raises(CacheMismatchError, match="num_segments: cache 5 vs model 4"):
        CachedDataset(tmp_path / "avs", "avs", "train", PRE)  # AVSBench clips have 5 frames
    manifest = prepare(folders["music-avqa"], tmp_path / "avqa", "avqa", PRE, workers=2, progress=False)
    assert manifest["splits"]["train"]["clips"] == 3 and manifest["splits"]["train"]["items"] == 9  # decoded once
    source = build_dataset(folders["music-avqa"], "avqa", "val", PRE)
    cached = build_dataset(tmp_path / "avqa", "avqa", "val", PRE, question_vocab=source.question_vocab)
    assert cached.answer_vocab == source.answer_vocab and cached.question_vocab.words == source.question_vocab.words
    assert_same_items(cached, source)


def test_prepare_resumes_after_an_interruption(folders: dict[str, Path], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    real = prepare_module.decode_job
    calls = {"n": 0}

    def dies_on_the_third(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # a kill in the middle of the train split's second shard
        return real(*args, **kwargs)

    monkeypatch.setattr(prepare_module, "decode_job", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        prepare(folders["ave"], tmp_path / "c", "ave", PRE, shard_size=2, progress=False)
    assert not read_manifest(tmp_path / "c")["complete"]
    with pytest.raises(ValueError, match="unfinished cache"):
        CachedDataset(tmp_path / "c", "ave", "train", PRE)
    first = tmp_path / "c" / "train" / "shard-00000.video.npy"
    stamp = first.stat().st_mtime_ns
    assert not (tmp_path / "c" / "train" / "shard-00001.json").exists()
    calls["n"] = -100
    manifest = prepare(folders["ave"], tmp_path / "c", "ave", PRE, shard_size=2, progress=False)
    assert manifest["complete"] and first.stat().st_mtime_ns == stamp  # the finished shard was kept
    assert calls["n"] == -100 + 3  # only the 3 clips not yet cached were decoded: 1 train, 1 val, 1 test
    source = build_dataset(folders["ave"], "ave", "train", PRE)
    assert_same_items(CachedDataset(tmp_path / "c", "ave", "train", PRE), source)
    with pytest.raises(prepare_module.PrepareError, match="other settings"):
        prepare(folders["ave"], tmp_path / "c", "ave", dataclasses.replace(PRE, image_size=16), progress=False)


def test_a_clip_that_fails_to_decode_is_listed_not_fatal(folders: dict[str, Path], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "ave"
    shutil.copytree(folders["ave"], root)
    bad = sorted((root / "AVE_Dataset" / "AVE").glob("*train*.mp4"))[1]
    bad.write_bytes(b"not a video at all")
    out = tmp_path / "c"
    args = ["prepare", "--data", str(root), "--out", str(out), "--preset", "vit-test", "--quiet"]
    assert main(args) == 0  # the task is detected from the folder
    assert "1 clip(s) failed to decode" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert [f["key"] for f in manifest["failed"]] == [bad.stem] and manifest["failed"][0]["split"] == "train"
    cached = CachedDataset(out, "ave", "train", PRE)
    assert len(cached) == 2 and bad.stem not in [it["id"] for it in cached.items]
    assert main(["prepare", "--data", str(root), "--out", str(out), "--preset", "swin-test", "--quiet"]) == 2
    assert "other settings" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_cache_reports_rates(folders: dict[str, Path], tmp_path: Path) -> None:
    prepare(folders["ave"], tmp_path / "c", "ave", PRE, progress=False)
    result = bench_cache(tmp_path / "c", "train", n=2, step_preset="vit-test")
    assert result["cache_items_per_s"] > 0 and result["decode_items_per_s"] > 0 and result["step_items_per_s"] > 0
    assert result["ratio_cache_vs_decode"] == pytest.approx(result["cache_items_per_s"] / result["decode_items_per_s"])
