"""A decode-once dataset cache: memory-mapped shards of model inputs, written by ``prepare``.

Training AVE for 20 epochs would otherwise decode its 4,143 mp4 files twenty times.
:mod:`stgcma.data.prepare` decodes every clip of a dataset folder ONCE and this module serves the
result as a dataset with the same items as the folder's own loader. Layout::

    CACHE/manifest.json                  format, source folder, task, the preprocessing the cache was made
                                         with, dataset metadata (class names, vocabularies), splits,
                                         failed clips, complete
    CACHE/<split>/shard-00000.video.npy  uint8 (n, T, S, S, 3) frames already resized to image_size
    CACHE/<split>/shard-00000.audio.npy  float32 (n, T, F, M) log-mel fbanks, NOT normalised
    CACHE/<split>/shard-00000.mask.npy   uint8 (n, T, S, S) AVS ground-truth masks (0/1)
    CACHE/<split>/shard-00000.json       the clips of the shard and those that failed (written last:
                                         a shard with its .json is finished, so prepare resumes)
    CACHE/<split>/items.json             the items: clip row, id and labels

What the cache stores is fixed by the preprocessing fields in :data:`CONTENT_FIELDS`; a model whose
preprocessing differs in any of them is refused with the fields named. Normalisation (image mean/std,
fbank mean/std) is applied when an item is read, so a cache serves CLIP- and ImageNet-normalised
models alike. Frames are rounded to uint8 after the resize: an item differs from the on-the-fly
loader's by at most half a grey level before normalisation; fbanks are identical.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stgcma.config import PreprocessConfig
from stgcma.data.base import AVDataset, check_task
from stgcma.data.vocab import Vocab
from stgcma.media.features import frames_to_tensor, normalise_fbank

FORMAT = "stgcma-cache"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CONTENT_FIELDS = ("image_size", "sample_rate", "num_mel_bins", "frame_shift_ms", "frame_length_ms",
                  "target_frames", "segment_seconds", "num_segments")


class CacheMismatchError(ValueError):
    """The cache was made with other preprocessing than the model needs; the message says which."""


def is_cache(path: str | Path) -> bool:
    """True when ``path`` holds a ``manifest.json`` written by ``prepare``."""
    manifest = Path(path) / MANIFEST
    if not manifest.is_file():
        return False
    try:
        return json.loads(manifest.read_text()).get("format") == FORMAT
    except (json.JSONDecodeError, OSError):
        return False


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of a cache folder (``ValueError`` when it is not one)."""
    manifest = Path(path) / MANIFEST
    try:
        data = json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{manifest}: not a readable dataset cache ({err})") from None
    if data.get("format") != FORMAT:
        raise ValueError(f"{manifest}: not a dataset cache (format {data.get('format')!r})")
    if data.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{manifest}: cache format {data['format_version']} is newer than this code reads")
    return data


def preprocess_mismatch(cached: dict[str, Any], wanted: PreprocessConfig) -> dict[str, tuple[Any, Any]]:
    """Fields of :data:`CONTENT_FIELDS` where the cache's preprocessing differs: name -> (cache, wanted)."""
    wanted_d = dataclasses.asdict(wanted)
    return {k: (cached.get(k), wanted_d[k]) for k in CONTENT_FIELDS
            if not np.isclose(float(cached.get(k, np.nan)), float(wanted_d[k]))}


class CachedDataset(AVDataset):
    """One split of a dataset cache, with the same items as the source folder's loader.

    Args:
        root: the cache folder.
        task: must be the task the cache was prepared for.
        split: ``"train"``, ``"val"`` or ``"test"``.
        preprocess: the MODEL's preprocessing: refused unless :data:`CONTENT_FIELDS` match the cache's;
            its normalisation statistics are applied here.
        question_vocab: AVQA vocabulary to encode questions with (default: the training split's, stored
            in the manifest).
        mode: AVSBench ``"s4"``/``"ms3"``: refused when the cache holds the other one.
        check_files: accepted for the folder loaders' signature (shards are checked when opened).
    """

    def __init__(self, root: str | Path, task: str, split: str = "train", preprocess: PreprocessConfig | None = None,
                 question_vocab: Vocab | None = None, mode: str | None = None, check_files: bool = True) -> None:
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        self.task = check_task(task)
        if self.manifest["task"] != task:
            raise ValueError(f"{self.root} is a {self.manifest['task']} cache, not {task}")
        if not self.manifest.get("complete"):
            raise ValueError(f"{self.root} is an unfinished cache: run the same prepare command again to finish it")
        if mode and self.manifest.get("meta", {}).get("mode") not in (None, mode):
            raise ValueError(f"{self.root} holds AVSBench {self.manifest['meta']['mode']}, not {mode}")
        splits = self.manifest["splits"]
        if split not in splits:
            raise ValueError(f"{self.root} has no {split!r} split (prepared: {', '.join(splits) or 'none'})")
        self.preprocess = preprocess or PreprocessConfig(**_plain(self.manifest["preprocess"]))
        diff = preprocess_mismatch(self.manifest["preprocess"], self.preprocess)
        if diff:
            fields = ", ".join(f"{k}: cache {a} vs model {b}" for k, (a, b) in diff.items())
            raise CacheMismatchError(f"{self.root} was prepared with other preprocessing than the model's ({fields}); "
                                     "prepare it again with the model's preset (python -m stgcma prepare --preset ...)")
        self.split = split
        self.num_segments = int(self.manifest["preprocess"]["num_segments"])
        meta = self.manifest["meta"]
        self.class_names = list(meta["class_names"])
        self.shard_size = int(self.manifest["shard_size"])
        self.items: list[dict[str, Any]] = json.loads((self.root / split / "items.json").read_text())
        if self.task == "avqa":
            self.answer_vocab = list(meta["answer_vocab"])
            self.answer_index = {a: i for i, a in enumerate(self.answer_vocab)}
            self.question_vocab = question_vocab or Vocab(meta["question_vocab"][2:], int(meta["question_max_len"]))
            self.question_types = list(meta["question_types"])
        self._maps: dict[tuple[int, str], np.ndarray] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_maps"] = {}  # memory maps are reopened in each DataLoader worker, never pickled
        return state

    def __len__(self) -> int:
        return len(self.items)

    def _array(self, shard: int, kind: str) -> np.ndarray:
        key = (shard, kind)
        if key not in self._maps:
            self._maps[key] = np.load(self.root / self.split / f"shard-{shard:05d}.{kind}.npy", mmap_mode="r")
        return self._maps[key]

    def row(self, row: int, kind: str) -> np.ndarray:
        """The cached array ``kind`` (``video``/``audio``/``mask``) of clip ``row`` of this split."""
        return np.array(self._array(row // self.shard_size, kind)[row % self.shard_size])  # a copy: writable

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        it = self.items[index]
        row = int(it["row"])
        video = frames_to_tensor(self.row(row, "video"), self.preprocess)  # (T, 3, S, S)
        audio = normalise_fbank(torch.from_numpy(self.row(row, "audio")), self.preprocess)[:, None]  # (T, 1, F, M)
        item: dict[str, torch.Tensor | str] = {"video": video, "audio": audio, "id": it["id"]}
        if self.task == "ave":
            item["label"] = torch.tensor(it["label"], dtype=torch.long)
        elif self.task == "avs":
            item["mask"] = torch.from_numpy(self.row(row, "mask").astype(np.float32))  # (T, S, S)
            item["mask_valid"] = torch.tensor(it["mask_valid"], dtype=torch.bool)
        else:
            item["question"] = self.question_vocab.encode(it["question"])
            item["answer"] = torch.tensor(self.answer_index[it["answer"]], dtype=torch.long)
            item["qtype"] = it["qtype"]
        return item


def _plain(preprocess: dict[str, Any]) -> dict[str, Any]:
    """JSON lists back to the tuples :class:`PreprocessConfig` holds."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in preprocess.items()}
