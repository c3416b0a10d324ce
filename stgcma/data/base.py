"""What every STG-CMA dataset shares: the item format, the metadata and the missing-file error.

Items are dicts of tensors (collated by the default ``DataLoader`` collate):

- all tasks: ``video`` float (T, 3, S, S) and ``audio`` float (T, 1, F, M), normalised by the
  :class:`~stgcma.config.PreprocessConfig`; ``id`` str.
- ``"ave"``: ``label`` long (T,), class per one-second segment, background = ``num_classes - 1``.
- ``"avs"``: ``mask`` float (T, S, S) in {0, 1} at ``preprocess.image_size``; ``mask_valid`` bool
  (T,), False where no ground-truth mask exists (AVSBench S4 train has only the first).
- ``"avqa"``: ``question`` long (max_len,) token ids padded with 0 (1 = ``<unk>``), ``answer`` long
  scalar, ``qtype`` str such as ``"Audio-Visual/Existential"``. (The audio-visual matching loss pairs a
  clip's audio with another clip of the same batch, so items carry no negative frames.) SynthAV's
  items also carry ``class_map`` uint8 (T, S, S), the class each pixel shows (0 backdrop, 1 + k class
  k), ``sound_level`` uint8 (T, K), how loud each class sounds per segment (0 silent), and
  ``side_class`` long (3,), the class at the left, middle and right (-1 empty), for the head's layout
  map; real datasets have none of them, and their items are ``ITEM_KEYS`` exactly.

Metadata: ``num_classes`` is the size of the task head's output and ``class_names`` names those
outputs: the events plus ``"background"`` (AVE), ``["sounding"]`` (AVS, one binary mask) or the
answers (AVQA, which also has ``answer_vocab``, ``question_vocab`` and ``question_types``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import Dataset

from stgcma.config import PreprocessConfig

Task = Literal["ave", "avs", "avqa"]
TASKS = ("ave", "avs", "avqa")
ITEM_KEYS = {
    "ave": ("video", "audio", "id", "label"),
    "avs": ("video", "audio", "id", "mask", "mask_valid"),
    "avqa": ("video", "audio", "id", "question", "answer", "qtype"),
}
AVS_CLASS_NAMES = ["sounding"]


class MissingDataError(FileNotFoundError):
    """A dataset folder lacks a file; the message names the first missing one."""


def first_missing(paths: Iterable[Path]) -> Path | None:
    """The first path that does not exist, or None."""
    for path in paths:
        if not path.exists():
            return path
    return None


def require(paths: Iterable[Path], what: str, layout: str) -> None:
    """Raise :class:`MissingDataError` naming the first missing path of ``paths``.

    Args:
        paths: files to check, in the order a person would fix them.
        what: the dataset and folder, e.g. ``"AVE folder /data/AVE_Dataset"``.
        layout: one line describing the expected layout.
    """
    paths = list(paths)
    missing = first_missing(paths)
    if missing is not None:
        count = sum(1 for p in paths if not p.exists())
        more = f" (and {count - 1} more)" if count > 1 else ""
        raise MissingDataError(f"{what} is incomplete: missing {missing}{more}; expected {layout}")


def check_task(task: str) -> Task:
    """Validate a task name."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {list(TASKS)}")
    return task  # type: ignore[return-value]


class AVDataset(Dataset):
    """Base class: holds the task, preprocessing and metadata common to all datasets."""

    task: Task
    preprocess: PreprocessConfig
    num_segments: int
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        """Size of the task head's output."""
        return len(self.class_names)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        raise NotImplementedError
