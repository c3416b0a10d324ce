"""AVE, Audio-Visual Event localisation (Tian et al., ECCV 2018), in its public folder layout.

Layout (METHOD.md "Dataset formats")::

    ROOT/trainSet.txt, valSet.txt, testSet.txt   Category&VideoID&Quality&StartTime&EndTime rows
    ROOT/categories.txt                          label order (optional: else first appearance
                                                 in Annotations.txt, which is the same order)
    ROOT/Annotations.txt                         all rows; header line present or not
    ROOT/AVE/<VideoID>.mp4                       10-s videos

Items: ``video``, ``audio``, ``id`` (the VideoID) and ``label`` long (T,), the event class where
``start <= t < end``, else background (index 28 = ``num_classes - 1``). A video annotated with two
categories (the speech pairs) gives two items.
"""

from __future__ import annotations

from pathlib import Path

import torch

from stgcma.config import PreprocessConfig
from stgcma.data.annotations import (
    AVERecord,
    categories_from_records,
    read_ave_annotations,
    read_ave_categories,
)
from stgcma.data.base import AVDataset, MissingDataError, require
from stgcma.data.media_io import load_video_segments

SPLIT_FILES = {"train": "trainSet.txt", "val": "valSet.txt", "test": "testSet.txt"}
LAYOUT = ("ROOT/{trainSet,valSet,testSet}.txt, ROOT/categories.txt or ROOT/Annotations.txt, "
          "ROOT/AVE/<VideoID>.mp4")
BACKGROUND = "background"


def find_ave_root(path: str | Path) -> Path | None:
    """The AVE root at or just below ``path`` (a folder holding the split or annotation files)."""
    path = Path(path)
    for root in (path, path / "AVE_Dataset"):
        if any((root / name).is_file() for name in (*SPLIT_FILES.values(), "Annotations.txt")):
            return root
    return None


def ave_categories(root: Path) -> list[str]:
    """Category names in label order: ``categories.txt``, else first appearance in ``Annotations.txt``."""
    if (root / "categories.txt").is_file():
        return read_ave_categories(root / "categories.txt")
    if (root / "Annotations.txt").is_file():
        return categories_from_records(read_ave_annotations(root / "Annotations.txt"))
    raise MissingDataError(f"AVE folder {root} is incomplete: missing {root / 'categories.txt'} "
                           f"(or {root / 'Annotations.txt'}); expected {LAYOUT}")


class AVEDataset(AVDataset):
    """One split of AVE.

    Args:
        root: the AVE folder (or its parent holding ``AVE_Dataset``).
        split: ``"train"``, ``"val"`` or ``"test"``.
        preprocess: how clips become tensors (``num_segments`` is T, 10 for AVE).
        check_files: verify at construction that every video exists (first missing one named).
    """

    task = "ave"

    def __init__(self, root: str | Path, split: str = "train", preprocess: PreprocessConfig | None = None,
                 check_files: bool = True) -> None:
        if split not in SPLIT_FILES:
            raise ValueError(f"unknown AVE split {split!r}; expected one of {list(SPLIT_FILES)}")
        found = find_ave_root(root)
        self.root = found or Path(root)
        self.split = split
        self.preprocess = preprocess or PreprocessConfig()
        self.num_segments = self.preprocess.num_segments
        what = f"AVE folder {self.root}"
        require([self.root / SPLIT_FILES[split]], what, LAYOUT)
        self.events = ave_categories(self.root)
        self.class_names = [*self.events, BACKGROUND]
        self.records: list[AVERecord] = read_ave_annotations(self.root / SPLIT_FILES[split])
        unknown = sorted({r.category for r in self.records} - set(self.events))
        if unknown:
            raise ValueError(f"{self.root / SPLIT_FILES[split]}: categories {unknown} are not in the category list")
        self.video_dir = self.root / "AVE"
        if check_files:
            require((self.video_path(r) for r in self.records), what, LAYOUT)

    def video_path(self, record: AVERecord) -> Path:
        return self.video_dir / f"{record.video_id}.mp4"

    def __len__(self) -> int:
        return len(self.records)

    def labels(self, index: int) -> torch.Tensor:
        """Segment labels of item ``index`` without decoding its video: long (T,)."""
        record = self.records[index]
        labels = record.segment_labels(self.events.index(record.category), len(self.events), self.num_segments)
        return torch.tensor(labels, dtype=torch.long)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        record = self.records[index]
        video, audio = load_video_segments(self.video_path(record), self.preprocess, self.num_segments)
        return {"video": video, "audio": audio, "id": record.video_id, "label": self.labels(index)}
