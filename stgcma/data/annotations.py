"""Parsers for the public annotation files of AVE, AVSBench and MUSIC-AVQA (METHOD.md "Dataset formats").

Pure file reading, no media and no torch, so the formats are tested on the real files as they are:
- AVE (Tian et al., ECCV 2018): ``Category&VideoID&Quality&StartTime&EndTime`` rows; some copies of
  ``Annotations.txt`` start with that header line and others do not, so it is detected, never assumed.
  Segment ``t`` shows the event when ``start <= t < end``.
- AVSBench (Zhou et al., ECCV 2022): ``s4_meta_data.csv`` (name,start,category,split) and
  ``ms3_meta_data.csv`` (video_id,split).
- MUSIC-AVQA (Li et al., CVPR 2022): a JSON list whose ``type`` and ``templ_values`` are JSON strings
  inside the JSON; placeholders such as ``<Object>`` or ``<LR>`` in ``question_content`` are filled in
  order from ``templ_values``; the answer is in the misspelt field ``anser``.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

AVE_FIELDS = ("Category", "VideoID", "Quality", "StartTime", "EndTime")
_PLACEHOLDER = re.compile(r"<[^<>\s]+>")


def read_lines(path: str | Path) -> list[str]:
    """Non-empty lines of a text file, stripped (a UTF-8 BOM and CRLF endings are tolerated)."""
    text = Path(path).read_text(encoding="utf-8-sig")
    return [line.strip() for line in text.splitlines() if line.strip()]


@dataclass(frozen=True)
class AVERecord:
    """One AVE annotation row."""

    category: str
    video_id: str
    quality: str
    start: int
    end: int

    def segment_labels(self, class_index: int, background: int, num_segments: int = 10) -> list[int]:
        """Class per one-second segment: ``class_index`` where ``start <= t < end``, else ``background``."""
        return [class_index if self.start <= t < self.end else background for t in range(num_segments)]


def _parse_time(text: str) -> int | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() else None


def read_ave_annotations(path: str | Path) -> list[AVERecord]:
    """Read ``Annotations.txt`` or a split file (``trainSet.txt``...), with or without the header.

    A first line whose start/end fields are not numbers is taken as the header; any later line that
    does not have five ``&``-separated fields with integer times is an error naming the line.
    """
    path = Path(path)
    records = []
    for number, line in enumerate(read_lines(path), start=1):
        fields = [f.strip() for f in line.split("&")]
        times = [_parse_time(f) for f in fields[3:5]] if len(fields) == 5 else [None, None]
        if None in times:
            if number == 1 and len(fields) == 5:
                continue  # header line, e.g. Category&VideoID&Quality&StartTime&EndTime
            raise ValueError(f"{path}:{number}: expected 'Category&VideoID&Quality&Start&End', got {line!r}")
        records.append(AVERecord(fields[0], fields[1], fields[2], times[0], times[1]))
    return records


def read_ave_categories(path: str | Path) -> list[str]:
    """Category names in label-index order (one per line)."""
    return read_lines(path)


def categories_from_records(records: list[AVERecord]) -> list[str]:
    """Category names in order of first appearance (the order of the public ``categories.txt``)."""
    seen: dict[str, None] = {}
    for record in records:
        seen.setdefault(record.category, None)
    return list(seen)


@dataclass(frozen=True)
class S4Record:
    """One row of AVSBench ``s4_meta_data.csv``."""

    name: str
    start: int
    category: str
    split: str


@dataclass(frozen=True)
class MS3Record:
    """One row of AVSBench ``ms3_meta_data.csv``."""

    video_id: str
    split: str


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in required if c not in columns]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; found {columns}")
        return [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]


def read_s4_meta(path: str | Path) -> list[S4Record]:
    """Read AVSBench ``s4_meta_data.csv``."""
    rows = _read_csv(Path(path), ("name", "start", "category", "split"))
    return [S4Record(r["name"], int(float(r["start"] or 0)), r["category"], r["split"]) for r in rows]


def read_ms3_meta(path: str | Path) -> list[MS3Record]:
    """Read AVSBench ``ms3_meta_data.csv``."""
    rows = _read_csv(Path(path), ("video_id", "split"))
    return [MS3Record(r["video_id"], r["split"]) for r in rows]


@dataclass(frozen=True)
class AVQARecord:
    """One MUSIC-AVQA question, decoded.

    Attributes:
        qtype: ``"Modality/Kind"``, e.g. ``"Audio-Visual/Existential"``.
        template: ``question_content`` with its placeholders.
        values: ``templ_values`` in order.
        question: the template with placeholders filled.
        answer: the answer word (from ``anser``).
    """

    video_id: str
    question_id: int
    qtype: str
    template: str
    values: tuple[str, ...]
    question: str
    answer: str
    deleted: bool = False


def _json_field(value: Any) -> Any:
    """``type``/``templ_values`` are JSON strings inside the JSON; accept already decoded lists too."""
    return json.loads(value) if isinstance(value, str) else value


def fill_placeholders(template: str, values: list[str] | tuple[str, ...]) -> str:
    """Replace ``<...>`` placeholders in order by ``values``.

    >>> fill_placeholders("Is the <Object> on the <LR> louder?", ["piano", "left"])
    'Is the piano on the left louder?'
    """
    slots = _PLACEHOLDER.findall(template)
    if len(slots) != len(values):
        raise ValueError(f"{len(slots)} placeholder(s) {slots} but {len(values)} value(s) {list(values)}")
    it = iter(values)
    return _PLACEHOLDER.sub(lambda _: str(next(it)), template)


def parse_avqa_item(item: dict[str, Any]) -> AVQARecord:
    """Decode one MUSIC-AVQA JSON object."""
    qtype = _json_field(item["type"])
    values = tuple(str(v) for v in _json_field(item.get("templ_values", "[]")))
    template = str(item["question_content"])
    try:
        question = fill_placeholders(template, values)
    except ValueError as err:
        raise ValueError(f"question {item.get('question_id')}: {err}") from None
    answer = item["anser"] if "anser" in item else item["answer"]
    return AVQARecord(
        video_id=str(item["video_id"]),
        question_id=int(item["question_id"]),
        qtype="/".join(qtype) if isinstance(qtype, list) else str(qtype),
        template=template,
        values=values,
        question=question,
        answer=str(answer),
        deleted=bool(int(item.get("question_deleted", 0) or 0)),
    )


def read_avqa_json(path: str | Path) -> list[AVQARecord]:
    """Read a MUSIC-AVQA split file (``avqa-train.json``, ``avqa-val.json``, ``avqa-test.json``)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of questions, got {type(data).__name__}")
    return [parse_avqa_item(item) for item in data]
