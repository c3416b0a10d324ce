"""AVSBench audio-visual segmentation (Zhou et al., ECCV 2022): S4 (single source) and MS3 (multi).

Layout (METHOD.md "Dataset formats"), ROOT being the folder of the meta CSV, with the media folders
either beside it or in ``s4_data``/``ms3_data`` as in the public release::

    S4  ROOT/s4_meta_data.csv                                   name,start,category,split
        visual_frames/<split>/<category>/<name>/<name>_{1..5}.png
        gt_masks/<split>/<category>/<name>/<name>_{k}.png       train: k = 1 only; val/test: 1..5
        audio_wav/<split>/<category>/<name>.wav
    MS3 ROOT/ms3_meta_data.csv                                  video_id,split
        visual_frames/<name>/<name>.mp4_{1..5}.png
        gt_masks/<split>/<name>/<name>_{1..5}.png
        audio_wav/<split>/<name>.wav

Items: ``video``, ``audio``, ``id``, ``mask`` float (T, S, S) and ``mask_valid`` bool (T,) (False
for the S4 train frames 2-5, which have no mask). T is 5.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch

from stgcma.config import PreprocessConfig
from stgcma.data.annotations import MS3Record, S4Record, read_ms3_meta, read_s4_meta
from stgcma.data.base import AVS_CLASS_NAMES, AVDataset, require
from stgcma.data.media_io import load_mask, load_png_frames, load_wav_segments

AVSMode = Literal["s4", "ms3"]
META = {"s4": "s4_meta_data.csv", "ms3": "ms3_meta_data.csv"}
DATA_DIRS = {"s4": ("Single-source", "s4_data"), "ms3": ("Multi-sources", "ms3_data")}
NUM_FRAMES = 5
LAYOUTS = {
    "s4": ("ROOT/s4_meta_data.csv and visual_frames/<split>/<category>/<name>/<name>_{1..5}.png, "
           "gt_masks/<split>/<category>/<name>/<name>_{k}.png, audio_wav/<split>/<category>/<name>.wav"),
    "ms3": ("ROOT/ms3_meta_data.csv and visual_frames/<name>/<name>.mp4_{1..5}.png, "
            "gt_masks/<split>/<name>/<name>_{1..5}.png, audio_wav/<split>/<name>.wav"),
}


def find_avs_root(path: str | Path, mode: AVSMode) -> Path | None:
    """The folder holding ``{mode}_meta_data.csv`` at ``path`` or in its ``Single-source``/``Multi-sources``."""
    path = Path(path)
    for root in (path, path / DATA_DIRS[mode][0]):
        if (root / META[mode]).is_file():
            return root
    return None


def detect_avs_mode(path: str | Path) -> AVSMode | None:
    """``"s4"`` or ``"ms3"`` from the meta file found (S4 first when both are present)."""
    for mode in ("s4", "ms3"):
        if find_avs_root(path, mode) is not None:
            return mode  # type: ignore[return-value]
    return None


class AVSBenchDataset(AVDataset):
    """One split of AVSBench S4 or MS3.

    Args:
        root: a folder holding the meta CSV (or the AVSBench root with ``Single-source``...).
        split: ``"train"``, ``"val"`` or ``"test"``.
        preprocess: how frames and audio become tensors (T = 5 frames).
        mode: ``"s4"``, ``"ms3"`` or None to detect from the meta file present.
        check_files: verify at construction that every frame, mask and wav exists.
    """

    task = "avs"

    def __init__(self, root: str | Path, split: str = "train", preprocess: PreprocessConfig | None = None,
                 mode: AVSMode | None = None, check_files: bool = True) -> None:
        mode = mode or detect_avs_mode(root)
        if mode not in META:
            raise FileNotFoundError(f"{root}: no s4_meta_data.csv or ms3_meta_data.csv (AVSBench layout)")
        self.mode: AVSMode = mode
        self.meta_root = find_avs_root(root, mode) or Path(root)
        layout = LAYOUTS[mode]
        what = f"AVSBench {mode.upper()} folder {self.meta_root}"
        require([self.meta_root / META[mode]], what, layout)
        data = self.meta_root / DATA_DIRS[mode][1]
        self.data_root = data if data.is_dir() else self.meta_root
        self.split = split
        self.preprocess = preprocess or PreprocessConfig()
        self.num_segments = NUM_FRAMES
        self.class_names = list(AVS_CLASS_NAMES)
        if mode == "s4":
            rows: list[S4Record | MS3Record] = [r for r in read_s4_meta(self.meta_root / META[mode])
                                               if r.split == split]
            self.categories = sorted({r.category for r in rows})
        else:
            rows = [r for r in read_ms3_meta(self.meta_root / META[mode]) if r.split == split]
            self.categories = []
        if not rows:
            raise ValueError(f"{self.meta_root / META[mode]}: no rows for split {split!r}")
        self.records = rows
        if check_files:
            require((p for i in range(len(rows)) for p in self.files(i)), what, layout)

    def __len__(self) -> int:
        return len(self.records)

    def name(self, index: int) -> str:
        r = self.records[index]
        return r.name if isinstance(r, S4Record) else r.video_id

    def mask_numbers(self) -> list[int]:
        """1-based frame numbers that have a ground-truth mask in this split."""
        return [1] if self.mode == "s4" and self.split == "train" else list(range(1, NUM_FRAMES + 1))

    def frame_paths(self, index: int) -> list[Path]:
        r, d = self.records[index], self.data_root
        if isinstance(r, S4Record):
            folder = d / "visual_frames" / self.split / r.category / r.name
            return [folder / f"{r.name}_{k}.png" for k in range(1, NUM_FRAMES + 1)]
        folder = d / "visual_frames" / r.video_id
        return [folder / f"{r.video_id}.mp4_{k}.png" for k in range(1, NUM_FRAMES + 1)]

    def mask_paths(self, index: int) -> dict[int, Path]:
        """1-based frame number -> mask file."""
        r, d = self.records[index], self.data_root
        folder = (d / "gt_masks" / self.split / r.category / r.name if isinstance(r, S4Record)
                  else d / "gt_masks" / self.split / r.video_id)
        name = self.name(index)
        return {k: folder / f"{name}_{k}.png" for k in self.mask_numbers()}

    def audio_path(self, index: int) -> Path:
        r, d = self.records[index], self.data_root
        if isinstance(r, S4Record):
            return d / "audio_wav" / self.split / r.category / f"{r.name}.wav"
        return d / "audio_wav" / self.split / f"{r.video_id}.wav"

    def files(self, index: int) -> list[Path]:
        """Every file item ``index`` needs, frames first."""
        return [*self.frame_paths(index), *self.mask_paths(index).values(), self.audio_path(index)]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        size = self.preprocess.image_size
        video = load_png_frames(self.frame_paths(index), self.preprocess)  # (T, 3, S, S)
        audio = load_wav_segments(self.audio_path(index), self.preprocess, NUM_FRAMES)  # (T, 1, F, M)
        mask = torch.zeros(NUM_FRAMES, size, size)
        valid = torch.zeros(NUM_FRAMES, dtype=torch.bool)
        for k, path in self.mask_paths(index).items():
            mask[k - 1] = load_mask(path, size)
            valid[k - 1] = True
        return {"video": video, "audio": audio, "id": self.name(index), "mask": mask, "mask_valid": valid}
