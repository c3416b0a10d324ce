"""SynthAV on disk: write real mp4 clips (H.264 + AAC) with label files, and read such a folder back.

Layout written by :func:`write_synthav`::

    OUT/synthav.json             seed, split, n, world settings, size, fps, class and answer names
    OUT/videos/<id>.mp4          T seconds at ``fps`` with smooth motion, 16-kHz mono audio
    OUT/ave.json                 [{id, video, label (T,), event_class, visible/sounding classes}]
    OUT/avs.json                 [{id, video, masks: [masks/<id>/<id>_1.png, ...], sounding_objects}]
    OUT/masks/<id>/<id>_{1..T}.png   sounding-object masks at the centre of each second (0/255)
    OUT/avqa.json                [{id, video, type: [modality, kind], template, templ_values,
                                   question, answer}]

Labels refer to one-second segments; a mask belongs to the frame at the segment's centre, which is
the frame :mod:`stgcma.media.decode` picks (exactly, when ``fps`` is even).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from stgcma.config import PreprocessConfig
from stgcma.data.base import AVS_CLASS_NAMES, AVDataset, check_task, require
from stgcma.data.media_io import load_mask, load_video_segments
from stgcma.data.synthav.audio import render_audio
from stgcma.data.synthav.clip import answers, make_clip
from stgcma.data.synthav.questions import QTYPES, question_vocabulary
from stgcma.data.synthav.render import render_frames, render_masks, segment_times, video_times
from stgcma.data.synthav.scene import SynthConfig
from stgcma.data.synthav.styles import class_names, class_styles, question_names
from stgcma.data.vocab import Vocab
from stgcma.media.encode import write_video

FORMAT = "synthav-1"
META = "synthav.json"
LAYOUT = "OUT/synthav.json, OUT/<task>.json, OUT/videos/<id>.mp4, OUT/masks/<id>/<id>_<t>.png"


def write_synthav(out: str | Path, n: int, seed: int = 0, *, split: str = "train",
                  tasks: Sequence[str] = ("ave", "avs", "avqa"), config: SynthConfig | None = None,
                  size: int = 224, fps: int = 12, progress: bool = True) -> Path:
    """Generate ``n`` clips and write them with their labels under ``out``.

    Args:
        out: output folder (created).
        n: number of clips.
        seed: world seed (clip ``i`` is the same as ``SynthAV(seed, ...)``'s clip ``i``).
        split: ``"train"``, ``"val"`` or ``"test"``.
        tasks: label files to write.
        config: world settings (segments, classes, mode...).
        size: frame side in pixels.
        fps: video frame rate (the motion is rendered at every frame).
        progress: show a tqdm progress bar.

    Returns:
        The path of ``synthav.json``.
    """
    cfg = config or SynthConfig()
    tasks = [check_task(t) for t in tasks]
    out = Path(out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    styles = class_styles(cfg.num_classes)
    labels: dict[str, list[dict]] = {t: [] for t in tasks}
    centres = segment_times(cfg.num_segments)
    for index in tqdm(range(n), desc="synthav", unit="clip", disable=not progress):
        clip = make_clip(seed, index, cfg, split)
        video = f"videos/{clip.id}.mp4"
        frames = render_frames(clip.scene, video_times(cfg.num_segments, fps), size, styles)
        wave = render_audio(clip.scene, cfg.sample_rate, styles)
        write_video(out / video, frames, fps, wave, cfg.sample_rate)
        facts = clip.labels()
        if "ave" in labels:
            labels["ave"].append({"id": clip.id, "video": video, "label": facts["ave_label"],
                                  "event_class": facts["event_class"],
                                  **{k: facts[k] for k in ("visible_classes", "sounding_classes",
                                                           "audio_visual_classes")}})
        if "avs" in labels:
            masks = render_masks(clip.scene, centres, size, styles)
            (out / "masks" / clip.id).mkdir(parents=True, exist_ok=True)
            names = [f"masks/{clip.id}/{clip.id}_{t + 1}.png" for t in range(cfg.num_segments)]
            for name, mask in zip(names, masks, strict=True):
                Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(out / name)
            labels["avs"].append({"id": clip.id, "video": video, "masks": names,
                                  "sounding_objects": facts["sounding_objects"]})
        if "avqa" in labels:
            q = facts["question"]
            labels["avqa"].append({"id": clip.id, "video": video, "type": q["type"], "template": q["template"],
                                   "templ_values": q["values"], "question": q["question"], "answer": q["answer"]})
    for task, rows in labels.items():
        (out / f"{task}.json").write_text(json.dumps(rows, indent=1))
    meta = {
        "format": FORMAT, "seed": seed, "split": split, "n": n, "size": size, "fps": fps, "tasks": tasks,
        "config": dataclasses.asdict(cfg), "class_names": class_names(cfg.num_classes, cfg.world),
        "question_names": question_names(cfg.num_classes, cfg.world),
        "answer_vocab": answers(cfg),
    }
    path = out / META
    path.write_text(json.dumps(meta, indent=1))
    return path


def is_synthav_folder(path: str | Path) -> bool:
    """True when ``path`` holds a ``synthav.json`` written by :func:`write_synthav`."""
    return (Path(path) / META).is_file()


class SynthAVFolder(AVDataset):
    """A folder written by :func:`write_synthav`, read back through the real decoding path.

    Args:
        root: the folder.
        task: ``"ave"``, ``"avs"`` or ``"avqa"`` (its label file must exist).
        preprocess: tensor preprocessing; ``num_segments`` must not exceed the clips' length.
        question_vocab: vocabulary to encode questions with (e.g. a checkpoint's).
    """

    def __init__(self, root: str | Path, task: str = "ave", preprocess: PreprocessConfig | None = None,
                 question_vocab: Vocab | None = None) -> None:
        self.root = Path(root)
        self.task = check_task(task)
        what = f"SynthAV folder {self.root}"
        require([self.root / META, self.root / f"{task}.json"], what, LAYOUT)
        self.meta = json.loads((self.root / META).read_text())
        if self.meta.get("format") != FORMAT:
            raise ValueError(f"{self.root / META}: unknown format {self.meta.get('format')!r}")
        self.rows = json.loads((self.root / f"{task}.json").read_text())
        self.preprocess = preprocess or PreprocessConfig()
        self.num_segments = int(self.meta["config"]["num_segments"])
        display = list(self.meta["class_names"])
        self.object_names = list(self.meta.get("question_names", display))  # older folders: one name list
        self.answer_vocab = list(self.meta["answer_vocab"])
        self.question_vocab = question_vocab or question_vocabulary(self.object_names)
        self.question_types = list(QTYPES)
        self.class_names = {"ave": [*display, "background"], "avs": list(AVS_CLASS_NAMES),
                            "avqa": self.answer_vocab}[task]
        files = [self.root / r["video"] for r in self.rows]
        if task == "avs":
            files += [self.root / m for r in self.rows for m in r["masks"]]
        require(files, what, LAYOUT)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        row = self.rows[index]
        cfg = self.preprocess
        video, audio = load_video_segments(self.root / row["video"], cfg, self.num_segments)
        item: dict[str, torch.Tensor | str] = {"video": video, "audio": audio, "id": row["id"]}
        if self.task == "ave":
            item["label"] = torch.tensor(row["label"], dtype=torch.long)
        elif self.task == "avs":
            item["mask"] = torch.stack([load_mask(self.root / m, cfg.image_size) for m in row["masks"]])
            item["mask_valid"] = torch.ones(len(row["masks"]), dtype=torch.bool)
        else:
            item["question"] = self.question_vocab.encode(row["question"])
            item["answer"] = torch.tensor(self.answer_vocab.index(row["answer"]), dtype=torch.long)
            item["qtype"] = "/".join(row["type"])
        return item
