"""MUSIC-AVQA audio-visual question answering (Li et al., CVPR 2022) in its public layout.

Layout::

    ROOT/avqa-{train,val,test}.json   (or ROOT/json/...) questions; ``type`` and ``templ_values`` are
                                      JSON strings inside the JSON, the answer is in ``anser``
    ROOT/ans_vocab.txt                the 42 answers (optional: else first appearance in train)
    ROOT/ques_vocab.txt               question words (optional: used only without avqa-train.json)
    ROOT/videos/<video_id>.mp4        (or ROOT/MUSIC-AVQA-videos-Real/ or ROOT/)

The question vocabulary is built from the training questions (placeholders filled), as the AVST
reference does; ids are padded to 14. Clips (about 60 s) are cut into 1-s segments and T of them,
evenly spaced, feed the model (AVST samples every 6th second). ``video_neg`` holds the frames of a
clip with another ``video_id``, picked deterministically per item, for the matching loss.
"""

from __future__ import annotations

from pathlib import Path

import torch

from stgcma.config import PreprocessConfig
from stgcma.data.annotations import AVQARecord, read_avqa_json, read_lines
from stgcma.data.base import AVDataset, MissingDataError, require
from stgcma.data.media_io import load_video_segments
from stgcma.data.vocab import MAX_LEN, Vocab
from stgcma.metrics import AVQA_TYPES

JSON_DIRS = ("", "json", "data/json")
VIDEO_DIRS = ("videos", "MUSIC-AVQA-videos-Real", "")
LAYOUT = "ROOT/avqa-<split>.json, ROOT/ans_vocab.txt (or avqa-train.json), ROOT/videos/<video_id>.mp4"


def find_avqa_root(path: str | Path) -> Path | None:
    """The folder at or below ``path`` holding ``avqa-*.json`` files (directly or in ``json/``)."""
    path = Path(path)
    for sub in JSON_DIRS:
        if any((path / sub).glob("avqa-*.json")):
            return path
    return None


def _json_path(root: Path, split: str) -> Path:
    for sub in JSON_DIRS:
        candidate = root / sub / f"avqa-{split}.json"
        if candidate.is_file():
            return candidate
    return root / f"avqa-{split}.json"


def _video_dir(root: Path) -> Path:
    for sub in VIDEO_DIRS:
        if sub and (root / sub).is_dir():
            return root / sub
    return root


class MusicAVQADataset(AVDataset):
    """One split of MUSIC-AVQA.

    Args:
        root: the dataset folder.
        split: ``"train"``, ``"val"`` or ``"test"``.
        preprocess: how clips become tensors (T = ``num_segments``, 10).
        question_vocab: vocabulary to use (e.g. the one stored with a checkpoint) instead of
            building it from ``avqa-train.json``.
        check_files: verify at construction that every video exists.
    """

    task = "avqa"

    def __init__(self, root: str | Path, split: str = "train", preprocess: PreprocessConfig | None = None,
                 question_vocab: Vocab | None = None, check_files: bool = True) -> None:
        self.root = find_avqa_root(root) or Path(root)
        self.split = split
        self.preprocess = preprocess or PreprocessConfig()
        self.num_segments = self.preprocess.num_segments
        what = f"MUSIC-AVQA folder {self.root}"
        split_json = _json_path(self.root, split)
        require([split_json], what, LAYOUT)
        self.records: list[AVQARecord] = [r for r in read_avqa_json(split_json) if not r.deleted]
        train_json = _json_path(self.root, "train")
        train = read_avqa_json(train_json) if train_json.is_file() else None
        self.answer_vocab = self._answers(train, train_json)
        self.class_names = self.answer_vocab
        self.answer_index = {a: i for i, a in enumerate(self.answer_vocab)}
        unknown = sorted({r.answer for r in self.records} - set(self.answer_index))
        if unknown:
            raise ValueError(f"{split_json}: answers {unknown} are not in the answer vocabulary")
        self.question_vocab = question_vocab or self._questions(train, train_json)
        self.question_types = list(AVQA_TYPES)
        self.video_dir = _video_dir(self.root)
        self.video_ids = sorted({r.video_id for r in self.records})
        if check_files:
            require((self.video_path(v) for v in self.video_ids), what, LAYOUT)

    def _answers(self, train: list[AVQARecord] | None, train_json: Path) -> list[str]:
        if (self.root / "ans_vocab.txt").is_file():
            return read_lines(self.root / "ans_vocab.txt")
        if train is not None:
            return list(dict.fromkeys(r.answer for r in train))
        raise MissingDataError(f"MUSIC-AVQA folder {self.root} is incomplete: missing "
                               f"{self.root / 'ans_vocab.txt'} (or {train_json}); expected {LAYOUT}")

    def _questions(self, train: list[AVQARecord] | None, train_json: Path) -> Vocab:
        if train is not None:
            return Vocab.from_questions((r.question for r in train), MAX_LEN)
        if (self.root / "ques_vocab.txt").is_file():
            return Vocab.from_file(self.root / "ques_vocab.txt", MAX_LEN)
        raise MissingDataError(f"MUSIC-AVQA folder {self.root} is incomplete: missing {train_json} "
                               f"(or {self.root / 'ques_vocab.txt'}) to build the question vocabulary")

    def video_path(self, video_id: str) -> Path:
        return self.video_dir / f"{video_id}.mp4"

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        record = self.records[index]
        T = self.num_segments
        video, audio = load_video_segments(self.video_path(record.video_id), self.preprocess, T, spread=True)
        item: dict[str, torch.Tensor | str] = {
            "video": video,
            "audio": audio,
            "id": f"{record.video_id}/{record.question_id}",
            "question": self.question_vocab.encode(record.question),
            "answer": torch.tensor(self.answer_index[record.answer], dtype=torch.long),
            "qtype": record.qtype,
        }
        return item
