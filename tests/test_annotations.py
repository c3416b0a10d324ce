"""Annotation parsers (stgcma.data.annotations, stgcma.data.vocab) on the real files, read as they are."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from stgcma.data.annotations import (
    AVERecord,
    categories_from_records,
    fill_placeholders,
    parse_avqa_item,
    read_ave_annotations,
    read_ave_categories,
    read_avqa_json,
    read_lines,
    read_ms3_meta,
    read_s4_meta,
)
from stgcma.data.vocab import Vocab, tokenize
from stgcma.metrics import AVQA_TYPES

ANNOTATIONS = Path(__file__).resolve().parents[2] / "shared" / "data" / "annotations"
needs_annotations = pytest.mark.skipif(
    not ANNOTATIONS.is_dir(), reason=f"real annotation samples not found at {ANNOTATIONS} (shared/ beside the repo)")
AVE = ANNOTATIONS / "ave"
AVS = ANNOTATIONS / "avsbench"
AVQA = ANNOTATIONS / "music-avqa"


@needs_annotations
def test_ave_annotations_with_header_line() -> None:
    assert (AVE / "Annotations.txt").read_text().startswith("Category&VideoID")
    records = read_ave_annotations(AVE / "Annotations.txt")
    assert len(records) == 4143
    assert records[0] == AVERecord("Church bell", "RUhOCu3LNXM", "good", 0, 10)


@needs_annotations
def test_ave_header_is_detected_not_assumed(tmp_path: Path) -> None:
    lines = (AVE / "Annotations.txt").read_text().splitlines()
    (tmp_path / "no_header.txt").write_text("\n".join(lines[1:]) + "\n")
    assert read_ave_annotations(tmp_path / "no_header.txt") == read_ave_annotations(AVE / "Annotations.txt")
    train = (AVE / "trainSet.txt").read_text()
    (tmp_path / "with_header.txt").write_text("Category&VideoID&Quality&StartTime&EndTime\r\n" + train)
    assert read_ave_annotations(tmp_path / "with_header.txt") == read_ave_annotations(AVE / "trainSet.txt")


@needs_annotations
def test_ave_splits_and_categories() -> None:
    sizes = {s: len(read_ave_annotations(AVE / f"{s}Set.txt")) for s in ("train", "val", "test")}
    assert sizes == {"train": 3339, "val": 402, "test": 402}
    categories = read_ave_categories(AVE / "categories.txt")
    assert len(categories) == 28 and categories[0] == "Church bell"
    records = read_ave_annotations(AVE / "Annotations.txt")
    assert categories_from_records(records) == categories
    assert {r.category for r in records} == set(categories)


def test_ave_segment_rule_and_bad_rows(tmp_path: Path) -> None:
    record = AVERecord("Bark", "x", "good", 6, 8)
    assert record.segment_labels(2, 28) == [28] * 6 + [2, 2] + [28] * 2
    assert AVERecord("Bark", "x", "good", 0, 0).segment_labels(2, 28) == [28] * 10
    (tmp_path / "bad.txt").write_text("Bark&a&good&0&10\nBark&b&good&zero&10\n")
    with pytest.raises(ValueError, match=r"bad.txt:2"):
        read_ave_annotations(tmp_path / "bad.txt")


@needs_annotations
def test_avsbench_meta() -> None:
    s4 = read_s4_meta(AVS / "s4_meta_data.csv")
    assert len(s4) == 4932
    assert Counter(r.split for r in s4) == {"train": 3452, "val": 740, "test": 740}
    assert len({r.category for r in s4}) == 23
    assert s4[0].name == "-_wznbUu3DY" and s4[0].category == "helicopter" and s4[0].start == 0
    ms3 = read_ms3_meta(AVS / "ms3_meta_data.csv")
    assert len(ms3) == 424
    assert Counter(r.split for r in ms3) == {"train": 296, "val": 64, "test": 64}


def test_avsbench_meta_missing_column(tmp_path: Path) -> None:
    (tmp_path / "s4.csv").write_text("name,category,split\na,dog,train\n")
    with pytest.raises(ValueError, match="start"):
        read_s4_meta(tmp_path / "s4.csv")


@needs_annotations
def test_music_avqa_json_in_json_and_misspelt_answer() -> None:
    raw = json.loads((AVQA / "avqa-val.json").read_text())
    assert isinstance(raw[0]["type"], str) and isinstance(raw[0]["templ_values"], str) and "anser" in raw[0]
    val = read_avqa_json(AVQA / "avqa-val.json")
    test = read_avqa_json(AVQA / "avqa-test.json")
    assert (len(val), len(test)) == (4595, 9185)
    first = val[0]
    assert first.qtype == "Audio-Visual/Existential"
    assert first.question == "Is the ukulele in the video always playing?"
    assert first.answer == "yes" and first.video_id == "00000028" and first.question_id == 7
    assert set(Counter(r.qtype for r in test)) == set(AVQA_TYPES)
    answers = read_lines(AVQA / "ans_vocab.txt")
    assert len(answers) == 42 == len(set(answers))
    assert {r.answer for r in val + test} <= set(answers)
    assert all("<" not in r.question for r in val + test)


@needs_annotations
def test_music_avqa_placeholders_filled_in_order() -> None:
    records = read_avqa_json(AVQA / "avqa-val.json")
    two = next(r for r in records if r.template == "Is the <Object> on the <LR> louder than the <Object> on the <LR>?")
    words = two.question.split()
    assert [words[2], words[5], words[9], words[12].rstrip("?")] == list(two.values)
    location = next(r for r in records if r.template == "What is the instrument on the <LR> of <Object>?")
    assert location.question == f"What is the instrument on the {location.values[0]} of {location.values[1]}?"


@needs_annotations
def test_question_vocab_from_file_and_questions() -> None:
    lines = read_lines(AVQA / "ques_vocab.txt")
    assert len(lines) == 186 and len(set(lines)) == 93  # the sample file lists its words twice
    vocab = Vocab.from_file(AVQA / "ques_vocab.txt")
    assert vocab.words[:2] == ["<pad>", "<unk>"]
    records = read_avqa_json(AVQA / "avqa-val.json")
    built = Vocab.from_questions(r.question for r in records)
    assert max(len(tokenize(r.question)) for r in records) == 14
    assert all(not built.unknown_words(r.question) for r in records)
    assert set(built.words) <= set(vocab.words)  # both lower-cased


def test_vocab_encode_pad_unknown_and_fill() -> None:
    vocab = Vocab.from_questions(["How many instruments are sounding?", "Is the piano louder?"], max_len=6)
    ids = vocab.encode("how many PIANO drums are there？")
    assert ids.tolist() == [2, 3, vocab.index["piano"], 1, 5, 1]
    assert vocab.encode("Is the piano").tolist()[3:] == [0, 0, 0]
    assert vocab.unknown_words("Are the drums and drums there?") == ["drums", "and", "there"]
    assert fill_placeholders("Is the <Object> on the <LR>?", ["cello", "left"]) == "Is the cello on the left?"
    with pytest.raises(ValueError, match="placeholder"):
        fill_placeholders("Is the <Object> louder than the <Object>?", ["cello"])
    item = {"video_id": 5, "question_id": "9", "type": ["Audio", "Counting"],
            "question_content": "Is there a <Object> sound?", "templ_values": "[\"flute\"]",
            "question_deleted": 0, "anser": "no"}
    record = parse_avqa_item(item)
    assert (record.qtype, record.question, record.answer, record.video_id) == (
        "Audio/Counting", "Is there a flute sound?", "no", "5")
