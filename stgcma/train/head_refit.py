"""Refit a trained model's task head on cached encoder features.

Joint training pays for the encoder (frozen backbone + adapters) on every step, so on a CPU an AVQA head
sees few questions: the CPU recipe's 400 joint steps show each of SynthAV's 28 question templates about 900
times, and a head needs tens of thousands of examples per template to bind question words to what the clip
holds. Here the encoder is frozen: each training clip is encoded ONCE (what its head reads of the final
features, in half precision), and the head alone trains on those features for many epochs, with many
questions per clip. A head step costs a small fraction of a joint step.

Every task's head can be refitted. A head that reads only a few vectors per segment (both AVE heads: the
class tokens and the [mean, max] of the patch tokens) is cached as those vectors (``TaskHead.summarize``):
about 19 kB a 10-segment clip for the embedded default instead of 0.4 MB of tokens, so a refit's clip count
is bounded by encoding time, not memory. AVQA heads read the final tokens; the AVS decoder also reads the
video tokens of its tapped blocks, which are cached beside them with each frame's ground-truth mask (for the
embedded default at 112 px about 0.4 MB a 5-segment clip, so 4000 clips fit in 2 GB), and, for a decoder
with a detail branch (``head.avs_detail``), the input frames (another 0.4 MB). The last block's tap is not
stored: the decoder reads the final (normed) tokens for it instead. The refitted checkpoint keeps the
source's encoder weights and its world statistics (``stgcma.ood`` reads the encoder, not the head), and is
selected on validation like any run.

``cache_dir`` keeps each encoded dataset on disk (``FeatureCache.save``), under a key of everything the
features depend on: the data spec and split, the model's config (for a head that says what its features
depend on, ``TaskHead.reads``, only that instead of the head's config: the AVE heads' summary settings,
for the AVQA head nothing: it reads the final tokens whatever its options), the extra targets the cache
keeps (``extra_targets``), the question vocabulary and a hash of the encoder's weights.
A second refit of the same checkpoint on the same clips (another learning rate, weight decay, number of
epochs, or a head option that changes only what is done with the features) then starts training at once
instead of encoding again: for the embedded default's AVE head, 40000 clips are 55 minutes of encoding on
the 2-core CPU and 0.8 GB on disk. A dataset folder is keyed by its path, not its contents: after
changing the clips in a folder, empty the cache.

``average_last`` (K > 1) also evaluates the mean of the head's weights at the ends of the last K epochs
(stochastic weight averaging, Izmailov et al. 2018), which is selected when it scores higher on validation
than every single epoch: once the validation score has flattened, the epochs' heads differ mostly by the
noise of their last steps, which the mean cancels.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from stgcma.checkpoint import atomic_write_bytes, load_model, save_checkpoint
from stgcma.config import ConfigError
from stgcma.heads import layout_targets
from stgcma.ood import carry_world_stats
from stgcma.train.tasks import Evaluator, move, task_inputs, task_loss

TARGET_KEYS = {"ave": ("label",), "avs": ("mask", "mask_valid"), "avqa": ("question", "answer")}


@dataclass
class RefitConfig:
    """A head refit: where the clips come from, how long the head trains, where the result goes."""

    data: str = "synthav:seed=0,n=64"
    val_data: str | None = None
    out: str = "runs/refit"
    epochs: int = 10
    batch_size: int = 16  # clips per step (each with all of its questions)
    lr: float = 2e-3
    weight_decay: float = 0.01
    min_lr_ratio: float = 0.05
    warmup_steps: int = 50
    match_weight: float = 0.5
    dice_weight: float = 0.0  # AVS: soft Dice beside the per-pixel BCE (the default's AVS recipe uses 1.0)
    layout_weight: float = 0.5  # AVQA with head.avqa_layout_classes: the per-patch class loss on SynthAV class maps,
    # and with its heard loudness and side slots their level and side losses (tasks.sound_loss, tasks.side_loss)
    seed: int = 0
    device: str = "cpu"
    num_workers: int = 0
    head_overrides: list[str] = field(default_factory=list)  # "head.KEY=VALUE"; added modules start fresh
    cache_dir: str | None = None  # encoded datasets kept here and reused (FeatureCache.save / load)
    average_last: int = 0  # > 1: also try the mean of the head's weights over the last K epochs

    def check(self) -> RefitConfig:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"refit {name} must be >= 1, got {getattr(self, name)}")
        for item in self.head_overrides:
            if not item.startswith("head.") or "=" not in item:
                raise ConfigError(f"refit changes only the head's config (head.KEY=VALUE), got {item!r}: "
                                  "the encoder's features are computed with the checkpoint's own settings")
        if self.average_last < 0 or self.average_last > self.epochs:
            raise ConfigError(f"refit average_last must lie in [0, epochs={self.epochs}], got {self.average_last}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"refit min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio}")
        return self


def _release_free_heap() -> None:
    """Hand the C heap's free pages back to the system (glibc's ``malloc_trim``; elsewhere a no-op).

    Encoding thousands of batches frees large temporaries between the small tensors it keeps, and glibc
    keeps the freed pages: before this, a 40000-clip AVE refit peaked at 22 GiB of RSS for 0.8 GB of
    cached vectors (the main process grew about 0.5 MB a clip).
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Any:
    import ctypes

    try:
        return ctypes.CDLL(None).malloc_trim  # the process's own symbols: libc's where it is glibc
    except (AttributeError, OSError):
        return None


class _Rows:
    """Per-clip tensors, batch by batch, written (cast to ``dtype``, on the CPU) into one (N, ...) tensor
    allocated at the first batch: thousands of small chunks kept alive between each batch's large
    temporaries fragment the heap, one allocation per stream does not."""

    def __init__(self, n: int, dtype: torch.dtype | None = None) -> None:
        self.n, self.dtype = n, dtype
        self.data: torch.Tensor | None = None
        self.filled = 0

    def add(self, x: torch.Tensor) -> None:
        if self.data is None:
            self.data = torch.empty((self.n, *x.shape[1:]), dtype=self.dtype or x.dtype)
        self.data[self.filled:self.filled + len(x)] = x
        self.filled += len(x)

    def tensor(self) -> torch.Tensor | None:
        """The rows added, (filled, ...), or None when none was."""
        return None if self.data is None else self.data[:self.filled]


def extra_targets(model: torch.nn.Module) -> list[str]:
    """The supervision beyond the task's labels, which only SynthAV gives, that a cache of this model's head
    keeps: the AVQA layout map's per-patch classes (made once at encoding), with heard loudness its sound
    levels (uint8 (T, K) a clip), with side slots the class at each side (int64 (3,) a clip)."""
    layout = getattr(model.head, "layout", None)
    if layout is None:
        return []
    keys = ["layout_target"]
    if layout.levels:
        keys.append("sound_level")
    if layout.sides:
        keys.append("side_class")
    return keys


class FeatureCache:
    """What the head reads of a dataset's clips, encoded once (half precision), with the task's targets:
    the head's summary vectors where it has one (``TaskHead.summarize``), else the final tokens."""

    def __init__(self, model: torch.nn.Module, dataset: Any, task: str, batch_size: int, device: torch.device,
                 num_workers: int = 0, progress: bool = False) -> None:
        from tqdm.auto import tqdm

        from stgcma.train.loop import _collate, worker_init

        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=_collate(task),
                            num_workers=num_workers, worker_init_fn=worker_init if num_workers else None)
        keys = list(TARGET_KEYS[task])
        optional = extra_targets(model)  # kept when the clips carry them
        layout = getattr(model.head, "layout", None)
        n = len(dataset)
        video, audio, qtypes = _Rows(n, torch.half), _Rows(n, torch.half), []  # final tokens, (N, T, N_v or N_a, D)
        targets = {k: _Rows(n, torch.half if k == "mask" else None) for k in keys + optional}  # AVS masks in half
        summary: dict[str, _Rows] = {}  # head.summarize's tensors, (N, ...) each; features are kept in half precision
        taps: list[_Rows] = []  # per tapped block, (N, T, Nv, D) video tokens (AVS decoder)
        last, tapped = getattr(model.head, "last_block", None), getattr(model.head, "taps", None) or []
        unused = tapped.index(last) if last in tapped else -1  # the AVS decoder's last tap: not stored
        frames_in = _Rows(n, torch.half) if getattr(model.head, "detail", None) is not None else None
        model.eval()
        with torch.no_grad():
            for step, batch in enumerate(tqdm(loader, desc="encode", disable=not progress, leave=False)):
                if step % 25 == 0:
                    _release_free_heap()
                feats = model.forward_features(batch["video"].to(device), batch["audio"].to(device))
                B, T = feats["batch"], feats["frames"]
                vectors = model.head.summarize(feats, model.encoder)
                if vectors is not None:  # the head reads these alone: no token is kept
                    for name, x in vectors.items():
                        summary.setdefault(name, _Rows(n, torch.half)).add(x)
                else:
                    video.add(feats["video"].reshape(B, T, *feats["video"].shape[1:]))  # (B, T, Nv, D)
                    audio.add(feats["audio"].reshape(B, T, *feats["audio"].shape[1:]))  # (B, T, Na, D)
                for k, (xv, _, _) in enumerate(feats["intermediates"] if vectors is None else []):
                    if k == len(taps):
                        taps.append(_Rows(n, torch.half))
                    if k != unused:  # the decoder reads feats["video"] for the last block
                        taps[k].add(xv.reshape(B, T, *xv.shape[1:]))  # (B, T, Nv_k, D_k)
                if frames_in is not None:  # the AVS detail branch reads the input frames: (B, T, 3, S, S)
                    frames_in.add(feats["frames_in"].reshape(B, T, *feats["frames_in"].shape[1:]))
                if layout is not None and "class_map" in batch:  # (B, T, rows, cols) uint8, not (B, T, S, S) pixels
                    batch["layout_target"] = layout_targets(batch["class_map"], feats["grid_v"],
                                                            classes=layout.classes).to(torch.uint8)
                missing = [k for k in keys if k not in batch]
                if missing:
                    raise ValueError(f"the {task} clips carry no {', '.join(missing)}: a head refit needs "
                                     "labelled clips")
                for k in targets:
                    if k in batch:
                        targets[k].add(batch[k])
                qtypes += batch.get("qtype", [])
        _release_free_heap()
        self.task, self.frames = task, T
        self.grid_v, self.grid_a = feats["grid_v"], feats["grid_a"]
        self.tap_grids = [grid for _, _, grid in feats["intermediates"]] if taps else []
        self.summary = {name: rows.tensor() for name, rows in summary.items()}
        self.video, self.audio = video.tensor(), audio.tensor()
        self.count = len(next(iter(self.summary.values()), self.video))
        self.taps = [rows.tensor() for rows in taps]
        self.frames_in = None if frames_in is None else frames_in.tensor()
        self.targets = {k: t for k, rows in targets.items() if (t := rows.tensor()) is not None}
        self.qtypes = qtypes

    def __len__(self) -> int:
        return self.count

    def save(self, path: Path) -> None:
        """Write the cache to one safetensors file, atomically (a killed save leaves no file behind)."""
        from safetensors.torch import save_file

        tensors = {f"summary.{k}": x for k, x in self.summary.items()}
        tensors.update({f"target.{k}": x for k, x in self.targets.items()})
        tensors.update({f"tap.{k}": x for k, x in enumerate(self.taps) if x is not None})
        for name in ("video", "audio", "frames_in"):
            if getattr(self, name) is not None:
                tensors[name] = getattr(self, name)
        meta = {"task": self.task, "frames": self.frames, "count": self.count, "grid_v": self.grid_v,
                "grid_a": self.grid_a, "tap_grids": self.tap_grids, "taps": len(self.taps), "qtypes": self.qtypes}
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(partial), metadata={"cache": json.dumps(meta)})
        os.replace(partial, path)

    @classmethod
    def load(cls, path: Path) -> FeatureCache:
        """A cache written by :meth:`save`."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = json.loads(f.metadata()["cache"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
        cache = cls.__new__(cls)
        cache.task, cache.frames, cache.count = meta["task"], meta["frames"], meta["count"]
        cache.qtypes = meta["qtypes"]
        cache.grid_v, cache.grid_a = tuple(meta["grid_v"]), tuple(meta["grid_a"])
        cache.tap_grids = [tuple(g) for g in meta["tap_grids"]]
        cache.summary = {k.split(".", 1)[1]: x for k, x in tensors.items() if k.startswith("summary.")}
        cache.targets = {k.split(".", 1)[1]: x for k, x in tensors.items() if k.startswith("target.")}
        cache.taps = [tensors.get(f"tap.{k}") for k in range(meta["taps"])]
        cache.video, cache.audio, cache.frames_in = (tensors.get(k) for k in ("video", "audio", "frames_in"))
        return cache

    def batch(self, index: torch.Tensor, device: torch.device) -> tuple[dict[str, Any], dict[str, Any]]:
        """(features as the head reads them, batch of targets) for clip indices ``index``."""
        if self.summary:
            feats = {"summary": {name: x[index].to(device).float() for name, x in self.summary.items()},
                     "batch": len(index), "frames": self.frames}
            return feats, self._targets(index, device)
        v, a = self.video[index].to(device).float(), self.audio[index].to(device).float()
        taps = [(None if x is None else x[index].to(device).float().flatten(0, 1), None, grid)  # (B*T, Nv_k, D_k)
                for x, grid in zip(self.taps, self.tap_grids, strict=True)]  # no audio needed
        feats = {"video": v.flatten(0, 1), "audio": a.flatten(0, 1), "grid_v": self.grid_v, "grid_a": self.grid_a,
                 "intermediates": taps, "batch": len(index), "frames": self.frames}  # tokens (B*T, N, D)
        if self.frames_in is not None:
            feats["frames_in"] = self.frames_in[index].to(device).float().flatten(0, 1)  # (B*T, 3, S, S)
        return feats, self._targets(index, device)

    def _targets(self, index: torch.Tensor, device: torch.device) -> dict[str, Any]:
        batch = move({k: t[index] for k, t in self.targets.items()}, device)
        if "mask" in batch:
            batch["mask"] = batch["mask"].float()
        if self.qtypes:
            batch["qtype"] = [self.qtypes[i] for i in index.tolist()]
        return batch


def _encoder_digest(model: torch.nn.Module) -> str:
    """SHA-256 of the encoder's weights (frozen trunk and adapters): what every cached feature depends on."""
    digest = hashlib.sha256()
    for name, x in sorted(model.encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(x.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _cache_key(model: torch.nn.Module, encoder: str, spec: str, split: str, vocab: Any) -> str:
    """A hash of everything a cached dataset's features depend on (``encoder``: :func:`_encoder_digest`)."""
    config = asdict(model.config)
    reads = model.head.reads()
    if reads is not None:  # only what the head's cached features depend on
        config["head"] = {**reads, "task": config["head"]["task"]}
    about = {"format": 1, "spec": spec, "split": split, "config": config, "targets": extra_targets(model),
             "vocab": None if vocab is None else [vocab.words, vocab.max_len], "encoder": encoder}
    return hashlib.sha256(json.dumps(about, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _encoded(model: torch.nn.Module, spec: str, split: str, dataset: Any, cfg: RefitConfig, device: torch.device,
             progress: bool, vocab: Any, encoder: str | None) -> FeatureCache:
    """The dataset's FeatureCache: read from ``cfg.cache_dir`` when an identical one was saved, else encoded
    (and saved there when ``cache_dir`` is set; ``encoder`` is then the encoder's :func:`_encoder_digest`)."""
    path = None
    if cfg.cache_dir:
        key = _cache_key(model, encoder, spec, split, vocab)
        path = Path(cfg.cache_dir) / f"{model.config.head.task}-{split}-{key}.safetensors"
        if path.is_file():
            if progress:
                print(f"refit: {split} features read from {path}", flush=True)
            return FeatureCache.load(path)
    cache = FeatureCache(model, dataset, model.config.head.task, 8, device, cfg.num_workers, progress)
    if path is not None:
        cache.save(path)
    return cache


def _mean_state(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of state dicts (integer tensors: the last one's)."""
    return {k: torch.stack([s[k].float() for s in states]).mean(0).to(x.dtype) if x.is_floating_point() else x
            for k, x in states[-1].items()}


def _named_right(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """[labelled entries predicted right, labelled entries] where 0 is the unlabelled backdrop or silence."""
    labelled = target > 0
    return torch.tensor([float(((predicted == target) & labelled).sum()), float(labelled.sum())])


def _sides_right(weights: torch.Tensor, side_class: torch.Tensor) -> torch.Tensor:
    """[sides read right, sides]: a side is read as empty when its weights sum below one half, else as
    its heaviest class."""
    read = torch.where(weights.sum(-1) < 0.5, -1, weights.argmax(-1))  # (B, 3)
    return torch.tensor([float((read == side_class).sum()), float(side_class.numel())])


def _evaluate(model: torch.nn.Module, cache: FeatureCache, device: torch.device, batch_size: int) -> dict[str, float]:
    model.eval()
    evaluator = Evaluator(cache.task, ave_decode=model.config.head.ave_decode)
    hits = torch.zeros(6)  # object patches named right, object patches; sounding levels heard right,
    # sounding; sides read right, sides
    with torch.no_grad():
        for start in range(0, len(cache), batch_size):
            feats, batch = cache.batch(torch.arange(start, min(start + batch_size, len(cache))), device)
            out = model.forward_head(feats, **task_inputs(cache.task, batch))
            loss = task_loss(cache.task, out, batch, match_weight=0.0, layout_weight=0.0)
            evaluator.update(out["logits"], batch, loss)
            if "layout_logits" in out and "layout_target" in batch:  # (B, T, rows, cols) both
                hits[:2] += _named_right(out["layout_logits"].argmax(2), batch["layout_target"].long())
            if "sound_logits" in out and "sound_level" in batch:  # (B, T, K) both
                hits[2:4] += _named_right(out["sound_logits"].argmax(-1), batch["sound_level"].long())
            if "side_weights" in out and "side_class" in batch:  # (B, 3, K), (B, 3)
                hits[4:] += _sides_right(out["side_weights"], batch["side_class"])
    metrics = evaluator.compute()
    if hits[1]:
        metrics["layout_object_accuracy"] = float(hits[0] / hits[1])
    if hits[3]:
        metrics["sound_level_accuracy"] = float(hits[2] / hits[3])  # of the sounding (segment, class) pairs
    if hits[5]:
        metrics["side_accuracy"] = float(hits[4] / hits[5])  # of the sides, held or empty
    return metrics


def refit_head(source: str | Path, cfg: RefitConfig, progress: bool = True) -> dict[str, Any]:
    """Train the head of checkpoint ``source`` on cached features; write the best epoch (on validation)
    to ``cfg.out`` as a checkpoint, with ``metrics.csv``; returns a summary."""
    from stgcma.data.spec import build_dataset
    from stgcma.data.vocab import Vocab

    cfg = cfg.check()
    device = torch.device(cfg.device)
    model, meta = load_model(source, device=device, overrides=cfg.head_overrides or None,
                             fresh_prefix="head." if cfg.head_overrides else None)
    task = model.config.head.task
    extra = {}
    if task == "avqa":  # the checkpoint's vocabulary, so its word ids keep their meaning
        extra["question_vocab"] = Vocab(meta["question_vocab"], meta["question_max_len"])
    preprocess = model.config.preprocess
    train_set = build_dataset(cfg.data, task, "train", preprocess, **extra)
    val_set = build_dataset(cfg.val_data or cfg.data, task, "val", preprocess, **extra)
    if task == "avqa" and list(train_set.answer_vocab) != list(meta["answer_vocab"]):
        raise ConfigError(f"{cfg.data} answers in another vocabulary than {source}; refit needs the same answers")
    layout = getattr(model.head, "layout", None)
    world_classes = getattr(getattr(train_set, "config", None), "num_classes", None)
    if layout is not None and world_classes is not None and world_classes != layout.classes:
        raise ConfigError(f"{cfg.data} has {world_classes} object classes, the head's layout map "
                          f"{layout.classes} (head.avqa_layout_classes)")
    world_levels = getattr(train_set, "sound_levels", None)
    if layout is not None and layout.levels and world_levels is not None and world_levels != layout.levels:
        raise ConfigError(f"{cfg.data} sounds at {world_levels} loudness levels, the head hears "
                          f"{layout.levels} (head.avqa_sound_levels)")
    start = time.time()
    vocab = extra.get("question_vocab")
    encoder = _encoder_digest(model) if cfg.cache_dir else None  # once for both datasets' keys
    train = _encoded(model, cfg.data, "train", train_set, cfg, device, progress, vocab, encoder)
    val = _encoded(model, cfg.val_data or cfg.data, "val", val_set, cfg, device, progress, vocab, encoder)
    encode_seconds = time.time() - start
    torch.manual_seed(cfg.seed)
    head = model.head
    params = [p for p in head.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(len(train) // cfg.batch_size, 1)
    total = cfg.epochs * steps_per_epoch

    def lr_at(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress_ = (step - cfg.warmup_steps) / max(total - cfg.warmup_steps, 1)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress_, 1.0)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, best, best_state = [], -math.inf, None
    first = _evaluate(model, val, device, cfg.batch_size)
    rows.append({"epoch": 0, "steps": 0, "train_loss": None, **first})  # no step taken yet
    best, best_state = first["select"], copy.deepcopy(head.state_dict())
    last_states: list[dict[str, torch.Tensor]] = []  # the head at the ends of the last average_last epochs
    for epoch in range(1, cfg.epochs + 1):
        head.train()
        order = torch.randperm(len(train))
        losses = []
        for s in range(steps_per_epoch):
            feats, batch = train.batch(order[s * cfg.batch_size:(s + 1) * cfg.batch_size], device)
            out_ = model.forward_head(feats, **task_inputs(task, batch))
            loss = task_loss(task, out_, batch, cfg.match_weight, cfg.dice_weight, cfg.layout_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
        metrics = _evaluate(model, val, device, cfg.batch_size)
        rows.append({"epoch": epoch, "steps": epoch * steps_per_epoch, "train_loss": sum(losses) / len(losses),
                     **metrics})
        if progress:
            print(f"refit epoch {epoch}/{cfg.epochs}: train loss {rows[-1]['train_loss']:.3f}, "
                  f"val {metrics['select']:.4f}", flush=True)
        if metrics["select"] > best:
            best, best_state = metrics["select"], copy.deepcopy(head.state_dict())
        if cfg.average_last > 1 and epoch > cfg.epochs - cfg.average_last:
            last_states.append(copy.deepcopy(head.state_dict()))
    best_epoch = max(range(len(rows)), key=lambda i: (rows[i]["select"], -i))
    weights, averaged = f"epoch {rows[best_epoch]['epoch']}", None
    if last_states:
        head.load_state_dict(_mean_state(last_states))
        averaged = {"epochs": [cfg.epochs - len(last_states) + 1, cfg.epochs],
                    **_evaluate(model, val, device, cfg.batch_size)}
        if progress:
            print(f"refit: mean of epochs {averaged['epochs'][0]}-{cfg.epochs}: val {averaged['select']:.4f}",
                  flush=True)
        if averaged["select"] > best:
            best, best_state = averaged["select"], head.state_dict()
            weights = f"mean of epochs {averaged['epochs'][0]}-{cfg.epochs}"
    head.load_state_dict(best_state)
    refit_meta = {**asdict(cfg), "source": str(source), "fresh": meta.pop("fresh", []), "clips": len(train),
                  "best_epoch": rows[best_epoch]["epoch"], "weights": weights, "averaged": averaged,
                  "val_select": best, "encode_seconds": encode_seconds, "seconds": time.time() - start}
    folder = save_checkpoint(model, out / "best", {**meta, "refit": refit_meta})
    carry_world_stats(meta["source"], folder)  # the encoder is unchanged, so are its world statistics
    fields = sorted({k for r in rows for k in r}, key=lambda k: (k not in ("epoch", "steps", "train_loss"), k))
    lines = [",".join(fields)] + [",".join("" if r.get(k) is None else str(r[k]) for k in fields) for r in rows]
    atomic_write_bytes(out / "metrics.csv", ("\n".join(lines) + "\n").encode())
    summary = {"run": str(out), "selected": "best", **refit_meta, "curve": rows}
    atomic_write_bytes(out / "summary.json", json.dumps(summary, indent=2, default=str).encode())
    return summary
