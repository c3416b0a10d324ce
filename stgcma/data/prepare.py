"""``prepare``: decode every clip of a dataset folder once into a memory-mapped cache (:mod:`stgcma.data.cache`).

The folder is read by its own loader (AVE, AVSBench S4/MS3, MUSIC-AVQA), so the cache holds exactly
the clips and labels that loader serves: for videos the T frames at the preset's ``image_size`` and
the T fbank segments that :func:`~stgcma.data.media_io.load_video_segments` would compute; for
AVSBench the PNG frames it ships, resized, its wav audio and its masks. A video used by several
items (MUSIC-AVQA's questions, AVE's two-category videos) is decoded once.

Resumable: shards are finished one at a time (arrays first, the shard's JSON last), and a second run
with the same settings continues after the last finished shard. Parallel: ``workers``
spawned processes decode while the main process writes. A clip that fails to decode is listed in the
manifest (``failed``) and its items are left out; it never stops the run.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from stgcma.config import PreprocessConfig
from stgcma.data.ave import AVEDataset
from stgcma.data.avsbench import AVSBenchDataset
from stgcma.data.cache import FORMAT, FORMAT_VERSION, MANIFEST, read_manifest
from stgcma.data.media_io import decode_video_segments, load_mask, read_rgb
from stgcma.data.musicavqa import MusicAVQADataset
from stgcma.media.decode import decode_audio
from stgcma.media.features import segment_fbanks

SPLITS = ("train", "val", "test")
SHARD_SIZE = 256


class PrepareError(RuntimeError):
    """The cache cannot be made (unknown folder, settings differ from an existing cache...)."""


@dataclass
class Job:
    """What to decode for one clip (one cache row)."""

    key: str
    video: str | None = None
    spread: bool = False
    frames: list[str] = field(default_factory=list)
    audio: str | None = None
    masks: dict[int, str] = field(default_factory=dict)


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 (T, H, W, 3) -> uint8 (T, S, S, 3) with the resize of :func:`~stgcma.media.features.frames_to_tensor`."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()  # (T, 3, H, W)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.clamp_(0.0, 255.0).round_().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (T, S, S, 3)


def decode_job(job: Job, cfg: PreprocessConfig, num_segments: int) -> dict[str, np.ndarray]:
    """The cache arrays of one clip: ``video`` uint8 (T, S, S, 3), ``audio`` float32 (T, F, M) raw fbank,
    and for AVSBench ``mask`` uint8 (T, S, S)."""
    T, S = num_segments, cfg.image_size
    if job.video is not None:
        frames, windows = decode_video_segments(job.video, cfg, T, job.spread)
        video = resize_frames(frames, S)
    else:
        video = np.concatenate([resize_frames(read_rgb(p)[None], S) for p in job.frames])  # (T, S, S, 3)
        windows, _ = decode_audio(job.audio, 0.0, T * cfg.segment_seconds, cfg.sample_rate)
        if windows is None:
            raise ValueError(f"{job.audio}: no audio stream")
    out = {"video": video, "audio": segment_fbanks(windows, T, cfg, normalise=False)[:, 0].numpy()}  # (T, F, M)
    if job.masks or job.video is None:
        mask = np.zeros((T, S, S), np.uint8)
        for k, path in job.masks.items():
            mask[k - 1] = load_mask(path, S).numpy().astype(np.uint8)
        out["mask"] = mask
    return out


def _decode_safely(args: tuple[Job, dict[str, Any], int]) -> tuple[str, dict[str, np.ndarray] | None, str | None]:
    """Worker entry point: (key, arrays, None) or (key, None, error) -- a bad clip is reported, not raised."""
    job, cfg, T = args
    try:
        return job.key, decode_job(job, PreprocessConfig(**cfg), T), None
    except Exception as err:  # noqa: BLE001 -- any decoding failure is listed in the manifest
        return job.key, None, f"{type(err).__name__}: {err}"


def _worker_init() -> None:
    torch.set_num_threads(1)
    from stgcma.cli import quiet_ffmpeg

    quiet_ffmpeg()


def open_source(data: str | Path, task: str, split: str, preprocess: PreprocessConfig) -> Any:
    """The folder's own loader for one split (files are not checked: missing ones become failures)."""
    from stgcma.data.spec import build_dataset
    from stgcma.data.synthav.folder import is_synthav_folder

    if str(data).startswith("synthav:") or is_synthav_folder(data):
        raise PrepareError(f"{data}: SynthAV is generated or decoded on the fly; prepare reads AVE, AVSBench or "
                           "MUSIC-AVQA folders (write one with synth --layout)")
    dataset = build_dataset(data, task, split, preprocess, check_files=False)
    if not isinstance(dataset, AVEDataset | AVSBenchDataset | MusicAVQADataset):
        raise PrepareError(f"{data}: prepare reads AVE, AVSBench or MUSIC-AVQA folders, not {type(dataset).__name__}")
    return dataset


def jobs_and_items(dataset: Any) -> tuple[list[Job], list[dict[str, Any]]]:
    """The clips to decode (one per distinct video) and the items, each pointing at its clip's row."""
    jobs: list[Job] = []
    rows: dict[str, int] = {}
    items: list[dict[str, Any]] = []

    def row(job: Job) -> int:
        if job.key not in rows:
            rows[job.key] = len(jobs)
            jobs.append(job)
        return rows[job.key]

    if isinstance(dataset, AVEDataset):
        for i, record in enumerate(dataset.records):
            r = row(Job(record.video_id, video=str(dataset.video_path(record))))
            items.append({"id": record.video_id, "row": r, "label": dataset.labels(i).tolist()})
    elif isinstance(dataset, AVSBenchDataset):
        numbers = set(dataset.mask_numbers())
        for i in range(len(dataset)):
            job = Job(dataset.name(i), frames=[str(p) for p in dataset.frame_paths(i)],
                      audio=str(dataset.audio_path(i)), masks={k: str(p) for k, p in dataset.mask_paths(i).items()})
            items.append({"id": dataset.name(i), "row": row(job),
                          "mask_valid": [k in numbers for k in range(1, dataset.num_segments + 1)]})
    else:
        for record in dataset.records:
            r = row(Job(record.video_id, video=str(dataset.video_path(record.video_id)), spread=True))
            items.append({"id": f"{record.video_id}/{record.question_id}", "row": r, "question": record.question,
                          "answer": record.answer, "qtype": record.qtype})
    return jobs, items


def dataset_meta(dataset: Any) -> dict[str, Any]:
    """Names and vocabularies the cache's items need (the training split's, for AVQA)."""
    meta: dict[str, Any] = {"dataset": type(dataset).__name__, "class_names": list(dataset.class_names)}
    if isinstance(dataset, AVSBenchDataset):
        meta["mode"] = dataset.mode
    if isinstance(dataset, MusicAVQADataset):
        meta.update(answer_vocab=list(dataset.answer_vocab), question_vocab=list(dataset.question_vocab.words),
                    question_max_len=dataset.question_vocab.max_len, question_types=list(dataset.question_types))
    return meta


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _settings(source: Path, task: str, cfg: PreprocessConfig, shard_size: int) -> dict[str, Any]:
    settings = {"source": str(source), "task": task, "preprocess": dataclasses.asdict(cfg), "shard_size": shard_size}
    return json.loads(json.dumps(settings))  # as the manifest holds them (tuples become lists)


def prepare(data: str | Path, out: str | Path, task: str, preprocess: PreprocessConfig,
            splits: tuple[str, ...] = SPLITS, workers: int = 0, shard_size: int = SHARD_SIZE,
            force: bool = False, progress: bool = True) -> dict[str, Any]:
    """Decode every clip of ``data`` once into the cache folder ``out``; returns the manifest.

    Args:
        data: an AVE, AVSBench or MUSIC-AVQA folder in its public layout.
        out: the cache folder (created; an unfinished cache with the same settings is continued).
        task: ``"ave"``, ``"avs"`` or ``"avqa"``.
        preprocess: the model's preprocessing (its preset's): frame size and fbank settings.
        splits: splits to prepare; those the folder does not have are skipped.
        workers: decoding processes (0: decode in this process).
        shard_size: clips per shard file.
        force: start over when ``out`` holds a cache made with other settings.
        progress: show a tqdm progress bar.

    Raises:
        PrepareError: the folder is not a public layout, or ``out`` holds another cache (without ``force``).
    """
    source, out = Path(data).expanduser().resolve(), Path(out)
    sources: dict[str, Any] = {}
    for split in splits:
        try:
            sources[split] = open_source(source, task, split, preprocess)
        except (ValueError, FileNotFoundError) as err:  # e.g. MUSIC-AVQA without avqa-train.json
            sources[split] = err
    opened = {s: d for s, d in sources.items() if not isinstance(d, Exception)}
    if not opened:
        raise PrepareError(f"{source}: no split could be read: " + "; ".join(f"{s}: {e}" for s, e in sources.items()))
    first = next(iter(opened.values()))
    cfg = dataclasses.replace(preprocess, num_segments=int(first.num_segments))
    settings = _settings(source, task, cfg, shard_size)
    if (out / MANIFEST).exists():
        old = read_manifest(out)
        if {k: old.get(k) for k in settings} != settings and not force:
            raise PrepareError(f"{out} holds a cache made with other settings (source, task, preprocessing or "
                               "shard size); pass --force to start over or choose another --out")
        same = {k: old.get(k) for k in settings} == settings
        if same and old.get("complete") and sorted(old["splits"]) == sorted(opened):
            return old
        if not same:  # --force: the old shards are not this cache's
            for split in SPLITS:
                for path in (out / split).glob("*"):
                    path.unlink()
    manifest: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION, **settings,
                                "meta": dataset_meta(opened.get("train", first)), "splits": {}, "failed": [],
                                "skipped_splits": {s: str(e) for s, e in sources.items() if isinstance(e, Exception)},
                                "complete": False, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / MANIFEST, manifest)
    plans = {split: jobs_and_items(ds) for split, ds in opened.items()}
    total = sum(len(jobs) for jobs, _ in plans.values())
    pool = None
    if workers > 0:
        # spawn: a forked child of a process that already ran torch and PyAV threads can deadlock (measured here)
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init)
    try:
        with tqdm(total=total, desc="prepare", unit="clip", disable=not progress) as bar:
            for split, (jobs, items) in plans.items():
                failed = _prepare_split(out / split, jobs, cfg, shard_size, pool, workers, bar)
                manifest["failed"] += [{"split": split, "key": k, "error": e} for k, e in failed.items()]
                kept = [it for it in items if jobs[it["row"]].key not in failed]
                _write_json(out / split / "items.json", kept)
                manifest["splits"][split] = {"clips": len(jobs), "items": len(kept),
                                             "shards": math.ceil(len(jobs) / shard_size)}
    except BrokenProcessPool:
        raise PrepareError("a decoding worker process died (out of memory?); run the same command again to "
                           "continue, or use fewer --workers") from None
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    manifest["complete"] = True
    _write_json(out / MANIFEST, manifest)
    return manifest


def _prepare_split(folder: Path, jobs: list[Job], cfg: PreprocessConfig, shard_size: int, pool: Any,
                   workers: int, bar: tqdm) -> dict[str, str]:
    """Write the shards of one split that are not finished yet; returns key -> error of failed clips."""
    folder.mkdir(parents=True, exist_ok=True)
    T, S = cfg.num_segments, cfg.image_size
    failed: dict[str, str] = {}
    pending: list[int] = []
    for shard in range(math.ceil(len(jobs) / shard_size)):
        done = folder / f"shard-{shard:05d}.json"
        if done.exists():
            failed.update(json.loads(done.read_text())["failed"])
            bar.update(min(shard_size, len(jobs) - shard * shard_size))
        else:
            pending.append(shard)
    args = [(jobs[i], dataclasses.asdict(cfg), T) for s in pending
            for i in range(s * shard_size, min((s + 1) * shard_size, len(jobs)))]
    results = _in_order(pool, args, 4 * workers) if pool is not None else map(_decode_safely, args)
    has_mask = any(j.masks or j.video is None for j in jobs)
    for shard in pending:
        rows = range(shard * shard_size, min((shard + 1) * shard_size, len(jobs)))
        arrays = {"video": np.zeros((len(rows), T, S, S, 3), np.uint8),
                  "audio": np.zeros((len(rows), T, cfg.target_frames, cfg.num_mel_bins), np.float32)}
        if has_mask:
            arrays["mask"] = np.zeros((len(rows), T, S, S), np.uint8)
        shard_failed: dict[str, str] = {}
        for offset, row in enumerate(rows):
            key, out, error = next(results)
            assert key == jobs[row].key, (key, jobs[row].key)
            if error is not None:
                shard_failed[key] = error
            else:
                for kind, value in out.items():
                    arrays[kind][offset] = value
            bar.update()
        for kind, array in arrays.items():
            _save_npy(folder / f"shard-{shard:05d}.{kind}.npy", array)
        _write_json(folder / f"shard-{shard:05d}.json", {"keys": [jobs[r].key for r in rows], "failed": shard_failed})
        failed.update(shard_failed)
    return failed


def _in_order(pool: ProcessPoolExecutor, args: list, window: int) -> Iterator:
    """``map(_decode_safely, args)`` on the pool, in order, with at most ``window`` clips in flight (decoded
    clips waiting for the writer hold memory)."""
    todo = iter(args)
    flight = deque(pool.submit(_decode_safely, a) for a in itertools.islice(todo, window))
    while flight:
        yield flight.popleft().result()
        nxt = next(todo, None)
        if nxt is not None:
            flight.append(pool.submit(_decode_safely, nxt))


def bench_cache(cache: str | Path, split: str = "train", n: int = 8, step_preset: str | None = None,
                batch: int = 2, device: str = "cpu") -> dict[str, float]:
    """Items per second from the cache vs decoding the same items from the source folder on the fly,
    and (``step_preset``) vs one training step of that preset on ``device`` (``batch`` clips).

    One process, no DataLoader workers: the ratio is what one worker delivers either way.
    """
    from stgcma.data.cache import CachedDataset

    cached = CachedDataset(cache, read_manifest(cache)["task"], split)
    source = open_source(cached.manifest["source"], cached.task, split, cached.preprocess)
    n = min(n, len(cached))

    def rate(dataset: Any) -> float:
        start = time.perf_counter()
        for i in range(n):
            dataset[i]
        return n / (time.perf_counter() - start)

    rate(cached)  # warm the page cache: the steady state of epochs 2..20
    result = {"items": float(n), "cache_items_per_s": rate(cached), "decode_items_per_s": rate(source)}
    result["ratio_cache_vs_decode"] = result["cache_items_per_s"] / result["decode_items_per_s"]
    if step_preset:
        result.update(_train_step_rate(step_preset, cached, batch, device))
        result["ratio_cache_vs_step"] = result["cache_items_per_s"] / result["step_items_per_s"]
    return result


def _train_step_rate(preset: str, dataset: Any, batch: int, device: str) -> dict[str, float]:
    """Clips per second one optimizer step of ``preset`` (random trunk) consumes on ``device``."""
    from stgcma.config import load_preset
    from stgcma.model import STGCMAModel
    from stgcma.train.loop import _collate
    from stgcma.train.tasks import TaskLoss, move

    config = load_preset(preset, {"backbone.pretrained": None, "head.task": dataset.task,
                                  "head.num_classes": dataset.num_classes,
                                  "preprocess.num_segments": dataset.num_segments})
    model = STGCMAModel(config).to(device).train()
    loss_fn = TaskLoss(model, dataset.task)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    items = [dataset[i % len(dataset)] for i in range(batch)]
    data = move(_collate(dataset.task)(items), torch.device(device))
    if config.preprocess.image_size != dataset.preprocess.image_size:
        raise PrepareError(f"{preset} needs {config.preprocess.image_size}px frames; the cache holds "
                           f"{dataset.preprocess.image_size}px")
    times = []
    for _ in range(3):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss, _ = loss_fn(data)
        loss.backward()
        optimizer.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    step = min(times[1:])
    return {"step_seconds": step, "step_items_per_s": batch / step}
