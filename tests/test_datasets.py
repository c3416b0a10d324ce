"""Real-dataset classes (AVE, AVSBench S4/MS3, MUSIC-AVQA) on tiny folders in their public layouts,
and the dataset spec parser (stgcma.data.spec)."""

from __future__ import annotations

import json
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stgcma.config import PreprocessConfig
from stgcma.data.ave import AVEDataset
from stgcma.data.avsbench import AVSBenchDataset
from stgcma.data.base import ITEM_KEYS, MissingDataError
from stgcma.data.media_io import pick_segments
from stgcma.data.musicavqa import MusicAVQADataset
from stgcma.data.spec import SYNTHAV_OPTIONS, build_dataset, parse_synthav_spec
from stgcma.data.synthav.dataset import SynthAV
from stgcma.media.encode import write_video

ANNOTATIONS = Path(__file__).resolve().parents[2] / "shared" / "data" / "annotations"
PRE = PreprocessConfig(image_size=32, num_segments=3)
SR = 16000


def tiny_video(path: Path, seconds: int, colour_per_second: bool = True, fps: int = 2) -> None:
    """A small mp4 whose frame brightness encodes the second (10, 30, 50...) with a 440-Hz tone."""
    frames = np.stack([np.full((24, 32, 3), 10 + 20 * (k // fps if colour_per_second else 0), np.uint8)
                       for k in range(seconds * fps)])
    t = np.arange(seconds * SR) / SR
    write_video(path, frames, fps, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), SR)


def tiny_wav(path: Path, seconds: float, rate: int = 22050, channels: int = 2) -> None:
    """16-bit PCM wav (stdlib writer), stereo at 22.05 kHz so decoding must mix and resample."""
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * np.sin(2 * np.pi * 330 * t) * 32767).astype(np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.repeat(samples[:, None], channels, axis=1).tobytes())


def png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def half_mask(size: int = 40) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[:, : size // 2] = 255
    return mask


# AVE ---------------------------------------------------------------------------------------------

@pytest.fixture()
def ave_root(tmp_path: Path) -> Path:
    root = tmp_path / "AVE_Dataset"
    (root / "AVE").mkdir(parents=True)
    categories = ["Church bell", "Male speech, man speaking", "Bark"]
    (root / "categories.txt").write_text("\n".join(categories) + "\n")
    rows = ["Bark&vidA&good&1&2", "Church bell&vidB&good&0&3"]
    (root / "Annotations.txt").write_text("Category&VideoID&Quality&StartTime&EndTime\n" + "\n".join(rows) + "\n")
    (root / "trainSet.txt").write_text("\n".join(rows) + "\n")
    (root / "testSet.txt").write_text(rows[0] + "\n")
    for vid in ("vidA", "vidB"):
        tiny_video(root / "AVE" / f"{vid}.mp4", 3)
    return root


def test_ave_items(ave_root: Path) -> None:
    ds = AVEDataset(ave_root.parent, "train", PRE)  # parent holding AVE_Dataset is found
    assert len(ds) == 2 and ds.num_classes == 4 and ds.class_names[-1] == "background"
    item = ds[0]
    assert set(item) == set(ITEM_KEYS["ave"])
    assert item["id"] == "vidA"
    assert item["label"].tolist() == [3, 2, 3]  # Bark = 2 only in [1, 2); background = 3
    assert item["video"].shape == (3, 3, 32, 32) and item["audio"].shape == (3, 1, 102, 128)
    # frame t is taken at the centre of second t: brightness 10, 30, 50 -> increasing
    means = item["video"].mean((1, 2, 3))
    assert means[0] < means[1] < means[2]
    assert ds[1]["label"].tolist() == [0, 0, 0]


def test_ave_categories_fallback_and_missing_files(ave_root: Path) -> None:
    (ave_root / "categories.txt").unlink()
    ds = AVEDataset(ave_root, "test", PRE)
    assert ds.class_names == ["Bark", "Church bell", "background"]  # order of first appearance
    (ave_root / "AVE" / "vidA.mp4").unlink()
    with pytest.raises(MissingDataError, match=r"missing .*AVE/vidA\.mp4"):
        AVEDataset(ave_root, "train", PRE)
    with pytest.raises(MissingDataError, match="valSet.txt"):
        AVEDataset(ave_root, "val", PRE)


@pytest.mark.skipif(not ANNOTATIONS.is_dir(), reason=f"real annotations not found at {ANNOTATIONS}")
def test_ave_real_annotations_without_videos(tmp_path: Path) -> None:
    shutil.copytree(ANNOTATIONS / "ave", tmp_path / "ave")
    ds = AVEDataset(tmp_path / "ave", "test", check_files=False)
    assert len(ds) == 402 and ds.num_classes == 29
    labels = torch.stack([ds.labels(i) for i in range(len(ds))])
    assert labels.shape == (402, 10) and labels.max() == 28
    with pytest.raises(MissingDataError, match=r"AVE/EsfJpLbBeb4\.mp4 \(and 401 more\)"):
        AVEDataset(tmp_path / "ave", "test")


# AVSBench -----------------------------------------------------------------------------------------

@pytest.fixture()
def s4_root(tmp_path: Path) -> Path:
    root = tmp_path / "Single-source"
    data = root / "s4_data"
    (root).mkdir()
    (root / "s4_meta_data.csv").write_text("name,start,category,split\nclipT,0,dog_barking,train\n"
                                           "clipV,5,playing_piano,test\n")
    for split, name, cat, masks in (("train", "clipT", "dog_barking", [1]),
                                    ("test", "clipV", "playing_piano", [1, 2, 3, 4, 5])):
        for k in range(1, 6):
            png(data / "visual_frames" / split / cat / name / f"{name}_{k}.png", np.full((40, 48, 3), 40 * k, np.uint8))
        for k in masks:
            png(data / "gt_masks" / split / cat / name / f"{name}_{k}.png", half_mask())
        tiny_wav(data / "audio_wav" / split / cat / f"{name}.wav", 5.0)
    return tmp_path


def test_s4_train_has_only_first_mask(s4_root: Path) -> None:
    ds = AVSBenchDataset(s4_root, "train", PRE)
    assert ds.mode == "s4" and ds.categories == ["dog_barking"] and ds.class_names == ["sounding"]
    item = ds[0]
    assert set(item) == set(ITEM_KEYS["avs"])
    assert item["video"].shape == (5, 3, 32, 32) and item["audio"].shape == (5, 1, 102, 128)
    assert item["mask"].shape == (5, 32, 32)
    assert item["mask_valid"].tolist() == [True, False, False, False, False]
    assert item["mask"][0, :, :16].eq(1).all() and item["mask"][0, :, 16:].eq(0).all()
    assert item["mask"][1:].eq(0).all()
    assert item["audio"][:, :, :, :].std() > 0  # the 5-s stereo 22.05-kHz wav was decoded


def test_s4_test_has_five_masks_and_missing_mask_is_named(s4_root: Path) -> None:
    ds = AVSBenchDataset(s4_root / "Single-source", "test", PRE)
    assert ds[0]["mask_valid"].all() and ds[0]["id"] == "clipV"
    missing = s4_root / "Single-source/s4_data/gt_masks/test/playing_piano/clipV/clipV_3.png"
    missing.unlink()
    with pytest.raises(MissingDataError, match=r"clipV_3\.png"):
        AVSBenchDataset(s4_root, "test", PRE)


def test_ms3_layout(tmp_path: Path) -> None:
    (tmp_path / "ms3_meta_data.csv").write_text("video_id,split\nm1,val\nm2,train\n")
    for k in range(1, 6):
        png(tmp_path / "visual_frames" / "m1" / f"m1.mp4_{k}.png", np.full((40, 40, 3), 100, np.uint8))
        mask = half_mask() if k != 2 else np.zeros((40, 40), np.uint8)
        png(tmp_path / "gt_masks" / "val" / "m1" / f"m1_{k}.png", mask)
    tiny_wav(tmp_path / "audio_wav" / "val" / "m1.wav", 5.0, rate=16000, channels=1)
    ds = AVSBenchDataset(tmp_path, "val", PRE)
    assert ds.mode == "ms3" and len(ds) == 1
    item = ds[0]
    assert item["mask_valid"].all() and item["mask"][1].sum() == 0 and item["mask"][0].sum() == 32 * 16
    with pytest.raises(MissingDataError, match=r"visual_frames/m2/m2\.mp4_1\.png"):
        AVSBenchDataset(tmp_path, "train", PRE)


@pytest.mark.skipif(not ANNOTATIONS.is_dir(), reason=f"real annotations not found at {ANNOTATIONS}")
def test_avsbench_real_meta_without_media(tmp_path: Path) -> None:
    shutil.copy(ANNOTATIONS / "avsbench" / "s4_meta_data.csv", tmp_path)
    ds = AVSBenchDataset(tmp_path, "test", check_files=False)
    assert len(ds) == 740 and len(ds.categories) == 23
    assert ds.mask_paths(0)[5].name == f"{ds.name(0)}_5.png"
    with pytest.raises(MissingDataError, match="visual_frames/test/"):
        AVSBenchDataset(tmp_path, "test")


# MUSIC-AVQA ---------------------------------------------------------------------------------------

def avqa_item(video: str, qid: int, qtype: list[str], template: str, values: list[str], answer: str) -> dict:
    return {"video_id": video, "question_id": qid, "type": json.dumps(qtype), "question_content": template,
            "templ_values": json.dumps(values), "question_deleted": 0, "anser": answer}


@pytest.fixture()
def avqa_root(tmp_path: Path) -> Path:
    train = [avqa_item("00000001", 1, ["Audio", "Counting"], "Is there a <Object> sound?", ["cello"], "yes"),
             avqa_item("00000002", 2, ["Audio-Visual", "Location"],
                       "Where is the <LL> instrument?", ["loudest"], "left")]
    test = [avqa_item("00000002", 9, ["Visual", "Location"],
                      "What is the instrument on the <LR> of <Object>?", ["left", "violin"], "piano")]
    (tmp_path / "avqa-train.json").write_text(json.dumps(train))
    (tmp_path / "avqa-test.json").write_text(json.dumps(test))
    (tmp_path / "videos").mkdir()
    for vid in ("00000001", "00000002"):
        tiny_video(tmp_path / "videos" / f"{vid}.mp4", 6)
    if ANNOTATIONS.is_dir():
        shutil.copy(ANNOTATIONS / "music-avqa" / "ans_vocab.txt", tmp_path)
    else:  # without the real samples, a vocabulary file in the same one-answer-per-line format
        (tmp_path / "ans_vocab.txt").write_text("yes\nno\nleft\nright\npiano\ncello\nviolin\n")
    return tmp_path


def test_music_avqa_items(avqa_root: Path) -> None:
    ds = MusicAVQADataset(avqa_root, "test", PRE)
    assert len(ds) == 1 and ds.num_classes == len(ds.answer_vocab)
    item = ds[0]
    assert set(item) == set(ITEM_KEYS["avqa"])
    assert item["qtype"] == "Visual/Location" and ds.answer_vocab[int(item["answer"])] == "piano"
    vocab = ds.question_vocab  # built from the TRAIN questions
    assert vocab.unknown_words("What is the instrument on the left of violin?") == [
        "what", "on", "left", "of", "violin"]
    assert item["question"].shape == (14,) and item["question"].tolist().count(1) == 5
    assert item["question"].tolist()[:2] == [1, vocab.index["is"]]
    assert item["id"] == "00000002/9"
    # 6-s clip, T = 3: seconds 0, 2, 4 are used, so brightness grows across segments
    means = item["video"].mean((1, 2, 3))
    assert means[0] < means[1] < means[2]


def test_music_avqa_vocab_sources_and_errors(avqa_root: Path) -> None:
    expected = 42 if ANNOTATIONS.is_dir() else 7  # the real ans_vocab.txt, or the fixture's stand-in
    assert len(MusicAVQADataset(avqa_root, "test", PRE).answer_vocab) == expected
    (avqa_root / "ans_vocab.txt").unlink()
    train = MusicAVQADataset(avqa_root, "train", PRE)
    assert train.answer_vocab == ["yes", "left"]  # first appearance in avqa-train.json
    assert train[1]["qtype"] == "Audio-Visual/Location"
    with pytest.raises(ValueError, match="piano"):
        MusicAVQADataset(avqa_root, "test", PRE)
    (avqa_root / "videos" / "00000002.mp4").unlink()
    with pytest.raises(MissingDataError, match="00000002.mp4"):
        MusicAVQADataset(avqa_root, "train", PRE)
    with pytest.raises(MissingDataError, match="avqa-val.json"):
        MusicAVQADataset(avqa_root, "val", PRE)


def test_pick_segments() -> None:
    assert pick_segments(60, 10, spread=True).tolist() == [0, 6, 12, 18, 24, 30, 36, 42, 48, 54]
    assert pick_segments(10, 10).tolist() == list(range(10))
    assert pick_segments(3, 5).tolist() == [0, 1, 2, 2, 2]


# Spec --------------------------------------------------------------------------------------------

def test_synthav_spec_typed_options() -> None:
    options = parse_synthav_spec("synthav:seed=3,n=20,mode=s4,segments=5,fresh=false,distractor_prob=0.5")
    assert options == {"seed": 3, "n": 20, "mode": "s4", "segments": 5, "fresh": False, "distractor_prob": 0.5}
    ds = build_dataset("synthav:seed=3,n=20,mode=s4,segments=5", "avs", "val", PRE)
    assert isinstance(ds, SynthAV) and len(ds) == 20 and ds.split == "val" and ds.num_segments == 5
    with pytest.raises(ValueError, match=r"unknown synthav option 'colour'; options: seed, n, mode"):
        parse_synthav_spec("synthav:seed=1,n=2,colour=red")
    with pytest.raises(ValueError, match="expected int"):
        parse_synthav_spec("synthav:seed=one,n=2")
    with pytest.raises(ValueError, match="mode"):
        parse_synthav_spec("synthav:seed=1,n=2,mode=s5")
    with pytest.raises(ValueError, match="lacks n"):
        parse_synthav_spec("synthav:seed=1")
    assert "max_objects" in SYNTHAV_OPTIONS


def test_build_dataset_detects_folders(ave_root: Path, avqa_root: Path, s4_root: Path, tmp_path: Path) -> None:
    assert isinstance(build_dataset(ave_root, "ave", "train", PRE), AVEDataset)
    assert isinstance(build_dataset(avqa_root, "avqa", "test", PRE), MusicAVQADataset)
    assert build_dataset(s4_root, "avs", "test", PRE).mode == "s4"
    with pytest.raises(ValueError, match=r"no avs dataset found; expected s4_meta_data.csv"):
        build_dataset(ave_root, "avs", "train", PRE)
    with pytest.raises(FileNotFoundError, match="not found"):
        build_dataset(tmp_path / "nowhere", "ave")
    with pytest.raises(ValueError, match="unknown task"):
        build_dataset(ave_root, "asr")


def test_vocab_joins_multi_word_names_typed_with_spaces() -> None:
    from stgcma.data.vocab import Vocab

    vocab = Vocab(["is", "the", "acoustic_guitar", "church_bell", "louder", "than", "acoustic", "a_b_c"])
    assert vocab.tokens("Is the acoustic guitar louder than the Church Bell?") == [
        "is", "the", "acoustic_guitar", "louder", "than", "the", "church_bell"]
    assert vocab.ids("the acoustic guitar") == vocab.ids("the acoustic_guitar")
    assert vocab.tokens("acoustic piano") == ["acoustic", "piano"]  # no such name: words stay apart
    assert vocab.tokens("a b c") == ["a_b_c"] and vocab.unknown_words("the acoustic drum") == ["drum"]
