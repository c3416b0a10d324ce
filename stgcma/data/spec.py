"""One string names a dataset: a folder in a public layout, or ``synthav:seed=S,n=N[,option=value...]``.

``build_dataset(spec, task, split, preprocess)`` detects per task:

- ``ave``: an AVE folder (split files / ``Annotations.txt``, see :mod:`stgcma.data.ave`);
- ``avs``: an AVSBench folder (``s4_meta_data.csv`` or ``ms3_meta_data.csv``; ``mode=`` picks one
  when both exist);
- ``avqa``: a MUSIC-AVQA folder (``avqa-<split>.json``);
- any task: a folder written by ``python -m stgcma synth`` (``synthav.json``), or a dataset cache
  written by ``python -m stgcma prepare`` (``manifest.json``; refused when its preprocessing is not the
  model's).

SynthAV options are typed from :class:`SynthAV`'s arguments and :class:`SynthConfig`; an unknown
option is a ``ValueError`` that lists the valid ones.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

from stgcma.config import PreprocessConfig
from stgcma.data.ave import AVEDataset, find_ave_root
from stgcma.data.avsbench import AVSBenchDataset, detect_avs_mode
from stgcma.data.base import AVDataset, check_task
from stgcma.data.cache import CachedDataset, is_cache
from stgcma.data.musicavqa import MusicAVQADataset, find_avqa_root
from stgcma.data.synthav.dataset import SynthAV
from stgcma.data.synthav.folder import SynthAVFolder, is_synthav_folder
from stgcma.data.synthav.scene import SynthConfig

PREFIX = "synthav:"


def _option_type(hint: Any) -> type:
    """``float | None`` (an option whose default depends on the world) -> ``float``."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint

SYNTHAV_OPTIONS: dict[str, type] = {
    "seed": int,
    "n": int,
    "mode": str,
    "segments": int,
    "classes": int,
    "size": int,
    "fresh": bool,
    "questions": int,
    **{f.name: _option_type(typing.get_type_hints(SynthConfig)[f.name]) for f in dataclasses.fields(SynthConfig)
       if f.name not in ("num_segments", "num_classes", "mode", "sample_rate", "decidable_event")},
}
MODES = ("ms3", "s4")


def _convert(key: str, text: str, kind: type) -> Any:
    text = text.strip()
    try:
        if kind is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
    except ValueError:
        raise ValueError(f"synthav option {key}={text!r}: expected {kind.__name__}") from None
    if key == "mode" and text not in MODES:
        raise ValueError(f"synthav option mode={text!r}: expected one of {list(MODES)}")
    return text


def synthav_spec(seed: int, n: int, *options: str) -> str:
    """``synthav_spec(3, 10, "world=music,classes=14", "", "mode=s4")`` -> ``"synthav:seed=3,n=10,world=music,..."``
    (empty options are skipped)."""
    return ",".join([f"{PREFIX}seed={seed},n={n}", *filter(None, options)])


def parse_synthav_spec(spec: str) -> dict[str, Any]:
    """``"synthav:seed=0,n=100,mode=s4"`` -> ``{"seed": 0, "n": 100, "mode": "s4"}`` (typed).

    Raises:
        ValueError: not a SynthAV spec, malformed, an unknown option (the message lists the valid
            ones), a badly typed value, or ``seed``/``n`` missing.
    """
    if not spec.startswith(PREFIX):
        raise ValueError(f"not a SynthAV spec (expected {PREFIX}seed=S,n=N[,...]): {spec!r}")
    options: dict[str, Any] = {}
    body = spec[len(PREFIX):].strip()
    for part in filter(None, (p.strip() for p in body.split(","))):
        if "=" not in part:
            raise ValueError(f"synthav option {part!r} must look like key=value")
        key, value = (s.strip() for s in part.split("=", 1))
        if key not in SYNTHAV_OPTIONS:
            raise ValueError(f"unknown synthav option {key!r}; options: {', '.join(SYNTHAV_OPTIONS)}")
        options[key] = _convert(key, value, SYNTHAV_OPTIONS[key])
    missing = [k for k in ("seed", "n") if k not in options]
    if missing:
        raise ValueError(f"synthav spec {spec!r} lacks {', '.join(missing)} (e.g. synthav:seed=0,n=1000)")
    return options


def build_dataset(spec: str | Path, task: str, split: str = "train",
                  preprocess: PreprocessConfig | None = None, **kw: Any) -> AVDataset:
    """Build a dataset from a folder path or a ``synthav:`` spec.

    Args:
        spec: folder in a public layout, a SynthAV folder, or ``synthav:seed=S,n=N[,...]``.
        task: ``"ave"``, ``"avs"`` or ``"avqa"``.
        split: ``"train"``, ``"val"`` or ``"test"`` (for SynthAV, an independent stream of clips).
        preprocess: tensor preprocessing.
        **kw: passed to the dataset class (e.g. ``check_files=False``, ``mode="ms3"``).

    Raises:
        ValueError: unknown spec option, or a folder whose layout fits no dataset of the task.
        FileNotFoundError: the folder does not exist or lacks a file (the first missing one named).
    """
    task = check_task(task)
    preprocess = preprocess or PreprocessConfig()
    text = str(spec)
    if text.startswith(PREFIX):
        options = parse_synthav_spec(text)
        return SynthAV(task=task, preprocess=preprocess, split=split, **{**options, **kw})
    path = Path(text).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {path} (or use {PREFIX}seed=S,n=N)")
    if is_cache(path):
        return CachedDataset(path, task, split, preprocess, **kw)
    if is_synthav_folder(path):
        return SynthAVFolder(path, task, preprocess, **kw)
    if task == "ave" and find_ave_root(path) is not None:
        return AVEDataset(path, split, preprocess, **kw)
    if task == "avs" and (kw.get("mode") or detect_avs_mode(path)):
        return AVSBenchDataset(path, split, preprocess, **kw)
    if task == "avqa" and find_avqa_root(path) is not None:
        return MusicAVQADataset(path, split, preprocess, **kw)
    expected = {
        "ave": "trainSet.txt/valSet.txt/testSet.txt or Annotations.txt (AVE)",
        "avs": "s4_meta_data.csv or ms3_meta_data.csv (AVSBench)",
        "avqa": "avqa-<split>.json (MUSIC-AVQA)",
    }[task]
    raise ValueError(f"{path}: no {task} dataset found; expected {expected} or synthav.json (SynthAV)")
