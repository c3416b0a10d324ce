"""SynthAV rehearsals of the public dataset layouts: AVE, AVSBench S4/MS3 and MUSIC-AVQA.

``write_layout("ave", OUT, n)`` writes ``n`` SynthAV clips laid out EXACTLY like the real dataset
(file names, annotation formats, splits and quirks), so the real loaders (:mod:`stgcma.data.ave`,
:mod:`stgcma.data.avsbench`, :mod:`stgcma.data.musicavqa`), ``prepare``, ``train`` and ``eval`` can be
exercised end to end without the real data:

- ``ave``: ``OUT/AVE_Dataset/{Annotations.txt (WITH the header line), trainSet.txt, valSet.txt,
  testSet.txt (without it), categories.txt, AVE/<VideoID>.mp4}``. An AVE row holds one contiguous
  event interval, so only clips whose SynthAV labels are one non-empty interval are written (the
  others are skipped: the folder's labels are exactly the scenes').
- ``avs-s4``: ``OUT/Single-source/s4_meta_data.csv`` and ``s4_data/{visual_frames, gt_masks,
  audio_wav}`` as in the public release: 5 PNG frames per clip, train with ONE mask (frame 1),
  val/test with five, 5-s wav files per category folder; every second exactly one object sounds.
- ``avs-ms3``: ``OUT/Multi-sources/ms3_meta_data.csv`` and ``ms3_data/`` (frames named
  ``<name>.mp4_<k>.png``, five masks in every split).
- ``music-avqa``: ``OUT/avqa-{train,val,test}.json`` (``type``/``templ_values`` as JSON strings inside
  the JSON, the answer in the misspelt ``anser``, ``question_deleted``), ``OUT/ans_vocab.txt`` and
  ``OUT/MUSIC-AVQA-videos-Real/<video_id>.mp4`` with 8-digit video ids; several questions per video.

Splits come from the seed's independent SynthAV streams (``train``/``val``/``test``). Beside the
layout, ``OUT/synthav-layout.json`` records where every file came from (seed, split, clip index),
which no loader reads; a test rebuilds any clip from it with :func:`stgcma.data.synthav.clip.make_clip`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from stgcma.data.synthav.audio import render_audio
from stgcma.data.synthav.clip import Clip, clip_rng, make_clip
from stgcma.data.synthav.questions import Question, answer_vocabulary, scene_questions
from stgcma.data.synthav.render import render_frames, render_masks, segment_times, video_times
from stgcma.data.synthav.scene import SynthConfig
from stgcma.data.synthav.styles import class_names, class_styles, question_names
from stgcma.media.encode import write_video

LAYOUTS = ("ave", "avs-s4", "avs-ms3", "music-avqa")
PROVENANCE = "synthav-layout.json"
SPLITS = ("train", "val", "test")
AVE_HEADER = "Category&VideoID&Quality&StartTime&EndTime"
AVS_FRAMES = 5


def split_counts(n: int) -> dict[str, int]:
    """Clips per split for ``n`` in all: about 80/10/10 like AVE (3339/402/402), at least one each."""
    if n < 3:
        raise ValueError(f"a layout needs at least 3 clips (one per split), got n={n}")
    held = max(1, round(0.1 * n))
    return {"train": n - 2 * held, "val": held, "test": held}


def layout_root(layout: str, out: str | Path) -> Path:
    """The folder a real loader is pointed at for ``layout`` written under ``out``."""
    out = Path(out)
    return {"ave": out / "AVE_Dataset", "avs-s4": out / "Single-source", "avs-ms3": out / "Multi-sources",
            "music-avqa": out}[check_layout(layout)]


def check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {list(LAYOUTS)}")
    return layout


def layout_config(layout: str, segments: int | None = None, classes: int | None = None,
                  world: str = "music") -> SynthConfig:
    """The SynthAV world of a layout: S4 scenes for ``avs-s4``, 5 s for AVSBench, 10 s otherwise."""
    check_layout(layout)
    T = segments or (AVS_FRAMES if layout.startswith("avs") else 10)
    if layout.startswith("avs") and T != AVS_FRAMES:
        raise ValueError(f"AVSBench clips have {AVS_FRAMES} frames; got segments={T}")
    return SynthConfig(num_segments=T, num_classes=classes, mode="s4" if layout == "avs-s4" else "ms3", world=world)


def ave_interval(labels: list[int], background: int) -> tuple[int, int, int] | None:
    """(class, start, end) when the event segments form ONE non-empty interval, else None (AVE's rows
    cannot express it)."""
    on = [t for t, label in enumerate(labels) if label != background]
    if not on or on[-1] - on[0] + 1 != len(on):
        return None
    return labels[on[0]], on[0], on[-1] + 1


def clip_questions(seed: int, clip: Clip, names: list[str], count: int, split: str) -> list[Question]:
    """The clip's own question, then ``count - 1`` more about its scene (as ``SynthAV(questions=count)``)."""
    if count <= 1:
        return [clip.question]
    return [clip.question, *scene_questions(clip_rng(seed, split, clip.index, stream=2), clip.scene, names, count - 1)]


def write_wav(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM mono wav (stdlib writer)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).round().astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _clips(seed: int, cfg: SynthConfig, counts: dict[str, int], accept=None) -> Iterator[tuple[str, Clip]]:
    """Clips of each split in index order; ``accept(clip)`` False skips one (bounded search)."""
    for split in SPLITS:
        found, index = 0, 0
        while found < counts[split]:
            if index >= 50 * counts[split] + 100:
                raise RuntimeError(f"found only {found} suitable {split} clips in {index} draws")
            clip = make_clip(seed, index, cfg, split)
            index += 1
            if accept is None or accept(clip):
                found += 1
                yield split, clip


class _Writer:
    def __init__(self, out: Path, cfg: SynthConfig, seed: int, size: int, fps: int) -> None:
        self.out, self.cfg, self.seed, self.size, self.fps = out, cfg, seed, size, fps
        self.styles = class_styles(cfg.num_classes) if cfg.world != "music" else None
        self.centres = segment_times(cfg.num_segments)

    def video(self, path: Path, clip: Clip) -> None:
        frames = render_frames(clip.scene, video_times(self.cfg.num_segments, self.fps), self.size, self.styles)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(path, frames, self.fps, render_audio(clip.scene, self.cfg.sample_rate, self.styles),
                    self.cfg.sample_rate)

    def frames(self, clip: Clip) -> np.ndarray:
        return render_frames(clip.scene, self.centres, self.size, self.styles)  # (T, S, S, 3)

    def masks(self, clip: Clip) -> np.ndarray:
        return render_masks(clip.scene, self.centres, self.size, self.styles).astype(np.uint8) * 255  # (T, S, S)

    def audio(self, clip: Clip) -> np.ndarray:
        return render_audio(clip.scene, self.cfg.sample_rate, self.styles)


def _write_ave(w: _Writer, counts: dict[str, int], bar: tqdm) -> dict[str, list[dict]]:
    cfg = w.cfg
    root = w.out / "AVE_Dataset"
    categories = class_names(cfg.num_classes, cfg.world)
    bad = [c for c in categories if "&" in c]
    if bad:
        raise ValueError(f"AVE rows are '&'-separated; class names {bad} cannot be written")
    rows: dict[str, list[str]] = {s: [] for s in SPLITS}
    sources: dict[str, list[dict]] = {s: [] for s in SPLITS}
    accept = lambda clip: ave_interval(clip.scene.ave_labels(), cfg.num_classes) is not None  # noqa: E731
    for split, clip in _clips(w.seed, cfg, counts, accept):
        cls, start, end = ave_interval(clip.scene.ave_labels(), cfg.num_classes)  # type: ignore[misc]
        w.video(root / "AVE" / f"{clip.id}.mp4", clip)
        rows[split].append(f"{categories[cls]}&{clip.id}&good&{start}&{end}")
        sources[split].append({"id": clip.id, "index": clip.index})
        bar.update()
    (root / "categories.txt").write_text("\n".join(categories) + "\n")
    everything = [r for s in SPLITS for r in rows[s]]
    (root / "Annotations.txt").write_text("\n".join([AVE_HEADER, *everything]) + "\n")  # the quirk: a header here
    for split, name in zip(SPLITS, ("trainSet.txt", "valSet.txt", "testSet.txt"), strict=True):
        (root / name).write_text("\n".join(rows[split]) + "\n")  # ... and none in the split files
    return sources


def _s4_category(clip: Clip, names: list[str]) -> str:
    """The class that sounds (visible) for most seconds: the S4 video's category folder."""
    seconds = [sum(o.visible[t] and o.sounding[t] for t in range(clip.scene.num_segments)) for o in clip.scene.objects]
    return names[clip.scene.objects[int(np.argmax(seconds))].cls]


def _write_avs(w: _Writer, counts: dict[str, int], bar: tqdm, mode: str) -> dict[str, list[dict]]:
    cfg = w.cfg
    meta_root = w.out / ("Single-source" if mode == "s4" else "Multi-sources")
    data = meta_root / f"{mode}_data"
    names = question_names(cfg.num_classes, cfg.world)
    meta: list[list[str]] = []
    sources: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for split, clip in _clips(w.seed, cfg, counts):
        name = clip.id
        frames, masks = w.frames(clip), w.masks(clip)
        mask_numbers = [1] if mode == "s4" and split == "train" else list(range(1, AVS_FRAMES + 1))
        if mode == "s4":
            category = _s4_category(clip, names)
            frame_dir = data / "visual_frames" / split / category / name
            frame_names = [frame_dir / f"{name}_{k}.png" for k in range(1, AVS_FRAMES + 1)]
            mask_dir = data / "gt_masks" / split / category / name
            wav = data / "audio_wav" / split / category / f"{name}.wav"
            meta.append([name, "0", category, split])
        else:
            frame_dir = data / "visual_frames" / name
            frame_names = [frame_dir / f"{name}.mp4_{k}.png" for k in range(1, AVS_FRAMES + 1)]
            mask_dir = data / "gt_masks" / split / name
            wav = data / "audio_wav" / split / f"{name}.wav"
            meta.append([name, split])
        for path, frame in zip(frame_names, frames, strict=True):
            write_png(path, frame)
        for k in mask_numbers:
            write_png(mask_dir / f"{name}_{k}.png", masks[k - 1])
        write_wav(wav, w.audio(clip), cfg.sample_rate)
        sources[split].append({"id": name, "index": clip.index})
        bar.update()
    meta_root.mkdir(parents=True, exist_ok=True)
    with open(meta_root / f"{mode}_meta_data.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "start", "category", "split"] if mode == "s4" else ["video_id", "split"])
        writer.writerows(meta)
    return sources


def _write_avqa(w: _Writer, counts: dict[str, int], bar: tqdm, questions: int) -> dict[str, list[dict]]:
    cfg = w.cfg
    video_dir = w.out / "MUSIC-AVQA-videos-Real"
    names = question_names(cfg.num_classes, cfg.world)
    items: dict[str, list[dict]] = {s: [] for s in SPLITS}
    sources: dict[str, list[dict]] = {s: [] for s in SPLITS}
    number, question_id = 0, 0
    for split, clip in _clips(w.seed, cfg, counts):
        number += 1
        video_id = f"{number:08d}"
        w.video(video_dir / f"{video_id}.mp4", clip)
        for q in clip_questions(w.seed, clip, names, questions, split):
            question_id += 1
            items[split].append({
                "video_id": video_id,
                "question_id": question_id,
                "type": json.dumps(q.qtype.split("/")),  # a JSON string inside the JSON, as released
                "question_content": q.template,
                "templ_values": json.dumps(list(q.values)),
                "question_deleted": 0,
                "anser": q.answer,  # sic: the public field name
            })
        sources[split].append({"id": clip.id, "index": clip.index, "video_id": video_id})
        bar.update()
    for split in SPLITS:
        (w.out / f"avqa-{split}.json").write_text(json.dumps(items[split], indent=2))
    (w.out / "ans_vocab.txt").write_text("\n".join(answer_vocabulary(names)) + "\n")
    return sources


def write_layout(layout: str, out: str | Path, n: int, seed: int = 0, *, classes: int | None = None,
                 world: str = "music", segments: int | None = None, size: int = 224, fps: int = 12, questions: int = 3,
                 progress: bool = True) -> Path:
    """Write ``n`` SynthAV clips (split about 80/10/10) in a public dataset layout under ``out``.

    Args:
        layout: ``"ave"``, ``"avs-s4"``, ``"avs-ms3"`` or ``"music-avqa"``.
        out: output folder (created).
        n: clips in all splits together (at least 3).
        seed: SynthAV world seed.
        classes: object classes K (default: the world's).
        world: ``"music"`` (default) or ``"shapes"``.
        segments: seconds per clip (10; AVSBench clips are always 5).
        size: frame side in pixels (videos, PNG frames and masks).
        fps: video frame rate (AVE, MUSIC-AVQA).
        questions: MUSIC-AVQA questions per video.
        progress: show a tqdm progress bar.

    Returns:
        The folder to give the real loader (``layout_root(layout, out)``).
    """
    cfg = layout_config(layout, segments, classes, world)
    counts = split_counts(n)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    w = _Writer(out, cfg, seed, size, fps)
    with tqdm(total=n, desc=f"synth {layout}", unit="clip", disable=not progress) as bar:
        if layout == "ave":
            sources = _write_ave(w, counts, bar)
        elif layout.startswith("avs"):
            sources = _write_avs(w, counts, bar, layout.split("-")[1])
        else:
            sources = _write_avqa(w, counts, bar, questions)
    provenance = {"layout": layout, "seed": seed, "size": size, "fps": fps, "questions": questions,
                  "config": dataclasses.asdict(cfg), "root": str(layout_root(layout, out).relative_to(out)),
                  "splits": sources}
    (out / PROVENANCE).write_text(json.dumps(provenance, indent=1))
    return layout_root(layout, out)


def read_provenance(out: str | Path) -> tuple[dict, SynthConfig]:
    """``synthav-layout.json`` of a rehearsal folder and its world config."""
    data = json.loads((Path(out) / PROVENANCE).read_text())
    return data, SynthConfig(**data["config"])
