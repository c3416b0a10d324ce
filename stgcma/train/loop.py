"""The training loop: one function, ``fit``, for CPU, one GPU and torchrun DDP, resumable after a kill.

A run folder holds ``config.json`` (resolved train + model config), ``metrics.csv`` (one row per
epoch), ``steps.csv`` (loss per optimizer step), ``state.pt`` (everything needed to resume,
written atomically at the end of each epoch), and adapter-only checkpoints ``last/``, ``best/``
(selected on VALIDATION) and ``averaged/`` (mean weights over epochs ``avg_from``..``epochs``); ``best/`` and
``averaged/`` also hold the statistics of the training world on validation clips (``stgcma.ood``).
TensorBoard logs go to ``tb/`` when tensorboard is installed. While a job runs it holds ``.lock``
(``stgcma.train.lock``): a second job on the same folder fails at once, naming the first one's pid.
"""

from __future__ import annotations

import csv
import json
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from stgcma.checkpoint import atomic_torch_save, atomic_write_bytes, save_checkpoint
from stgcma.config import ModelConfig, apply_overrides, load_preset
from stgcma.model import STGCMAModel
from stgcma.train import distributed as dist_utils
from stgcma.train.config import TrainConfig
from stgcma.train.distributed import GlobalBatchSampler
from stgcma.train.lock import RunLock, RunLockedError
from stgcma.train.tasks import Evaluator, TaskLoss, move

STATE_NAME = "state.pt"


class TrainingError(RuntimeError):
    """A run cannot start or continue; the message says why."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def build_datasets(cfg: TrainConfig, preprocess) -> tuple[Any, Any]:
    """Train and validation datasets from the run's data specs."""
    from stgcma.data.spec import build_dataset

    train = build_dataset(cfg.data, cfg.task, "train", preprocess)
    # AVQA validation questions are encoded with the TRAINING vocabulary, as at inference.
    extra = {"question_vocab": train.question_vocab} if cfg.task == "avqa" else {}
    val = build_dataset(cfg.val_data or cfg.data, cfg.task, cfg.val_split, preprocess, **extra)
    return train, val


def dataset_meta(dataset: Any) -> dict[str, Any]:
    """What a checkpoint must carry to turn outputs back into words."""
    meta: dict[str, Any] = {"task": dataset.task, "class_names": list(dataset.class_names)}
    if dataset.task == "avqa":
        meta["answer_vocab"] = list(dataset.answer_vocab)
        meta["question_vocab"] = list(dataset.question_vocab.words)
        meta["question_max_len"] = dataset.question_vocab.max_len
        meta["question_types"] = list(dataset.question_types)
    return meta


def model_config_for(cfg: TrainConfig, overrides: list[str] | dict[str, Any], dataset: Any) -> ModelConfig:
    """Preset + user overrides, with the head sized by the dataset (classes, answers, vocabulary)."""
    config = load_preset(cfg.preset, overrides)
    head = {"head.task": cfg.task, "head.num_classes": dataset.num_classes}
    if cfg.task == "avqa":
        head.update({"head.avqa_answers": len(dataset.answer_vocab),
                     "head.avqa_vocab_size": len(dataset.question_vocab),
                     "head.avqa_max_len": dataset.question_vocab.max_len})
    return apply_overrides(config, head)


def _param_groups(model: STGCMAModel, cfg: TrainConfig) -> list[dict[str, Any]]:
    head = [p for p in model.head.parameters() if p.requires_grad]
    head_ids = {id(p) for p in head}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
    return [{"params": rest, "lr": cfg.lr}, {"params": head, "lr": cfg.lr * cfg.head_lr_scale}]


def cosine_with_warmup(step: int, warmup: int, total: int, floor: float = 0.0) -> float:
    """Learning-rate factor: linear warm-up to 1, then cosine decay to ``floor`` (per iteration)."""
    if step < warmup:
        return (step + 1) / max(warmup, 1)
    progress = (step - warmup) / max(total - warmup, 1)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def _amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or cfg.amp == "off":
        return None
    if cfg.amp == "fp16" or (cfg.amp == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def worker_init(_: int) -> None:
    """One torch thread per data worker: SynthAV and fbank work is small and threads only contend."""
    torch.set_num_threads(1)


def _collate(task: str):
    from torch.utils.data import default_collate

    def collate(items):
        batch = default_collate([{k: v for k, v in it.items() if k not in ("qtype", "id")} for it in items])
        batch["id"] = [it["id"] for it in items]
        if task == "avqa":
            batch["qtype"] = [it["qtype"] for it in items]
        return batch

    return collate


@torch.no_grad()
def evaluate(model: STGCMAModel, dataset: Any, task: str, batch_size: int = 2, device: str | torch.device = "cpu",
             progress: bool = False, amp_dtype: torch.dtype | None = None, num_workers: int = 0) -> dict[str, float]:
    """Metrics of ``model`` on ``dataset`` (eval mode, no gradients)."""
    from tqdm.auto import tqdm

    model.eval()
    device = torch.device(device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=_collate(task),
                        num_workers=num_workers, worker_init_fn=worker_init if num_workers else None)
    evaluator = Evaluator(task, ave_decode=model.config.head.ave_decode)
    loss_fn = TaskLoss(model, task, match_weight=0.0, layout_weight=0.0)
    for batch in tqdm(loader, desc="eval", disable=not progress, leave=False):
        batch = move(batch, device)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss, logits = loss_fn(batch)
        evaluator.update(logits, batch, loss)
    return evaluator.compute()


class _CsvLog:
    """Append rows to a CSV file, writing the header once (resume appends to the same file)."""

    def __init__(self, path: Path, fields: list[str]) -> None:
        self.path, self.fields = path, fields

    def write(self, row: dict[str, Any]) -> None:
        new = not self.path.exists()
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)


def _tensorboard(run: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run / "tb"))


def _load_run(run: Path) -> tuple[TrainConfig, list[str]]:
    path = run / "config.json"
    if not path.exists():
        raise TrainingError(f"cannot resume: {path} not found (is {run} a run folder?)")
    data = json.loads(path.read_text())
    return TrainConfig.from_dict(data["train"]), list(data.get("model_overrides", []))


def _write_world_stats(model: STGCMAModel, run: Path, names: list[str], val_set: Any, cfg: TrainConfig,
                       device: torch.device) -> None:
    """Store the statistics of its training world (``stgcma.ood``) in each saved checkpoint, from validation clips."""
    from stgcma.checkpoint import load_weights_into
    from stgcma.ood import world_name, write_world_stats

    spec = cfg.val_data or cfg.data
    for name in names:
        load_weights_into(model, run / name)
        write_world_stats(model, run / name, val_set, world_name(spec), cfg.ood_clips, cfg.batch_size, device,
                          source=f"{spec} ({cfg.val_split})")


def fit(cfg: TrainConfig, model_overrides: list[str] | None = None, resume: str | Path | None = None,
        progress: bool = True) -> dict[str, Any]:
    """Train, validate every epoch, keep the best checkpoint; resume from ``resume`` (a run folder).

    Returns a summary: run folder, best epoch, best validation metrics, selected checkpoint.
    """
    from tqdm.auto import tqdm

    if resume is not None:
        run = Path(resume)
        cfg, model_overrides = _load_run(run)
    model_overrides = list(model_overrides or [])
    cfg = cfg.resolve()
    run = Path(cfg.out)
    device, distributed = dist_utils.setup(cfg.device)
    rank, _, world_size = dist_utils.world()
    main = dist_utils.is_main()
    lock = RunLock(run)
    try:
        refused = None
        if main:  # only the main process writes into the run folder, so only it locks it
            try:
                lock.acquire()
            except RunLockedError as err:
                refused = str(err)
        if not dist_utils.all_true(refused is None, device):
            raise TrainingError(refused or f"run folder {run} is in use by another training job (see rank 0)")
        seed_everything(cfg.seed)
        probe_preprocess = load_preset(cfg.preset, model_overrides).preprocess
        train_set, val_set = build_datasets(cfg, probe_preprocess)
        model_config = model_config_for(cfg, model_overrides, train_set)
        seed_everything(cfg.seed)
        model = STGCMAModel(model_config).to(device)
        model.encoder.checkpointing, model.encoder.checkpoint_fraction = cfg.checkpointing, cfg.checkpoint_fraction
        meta = {**dataset_meta(train_set), "init_seed": cfg.seed}
        if cfg.batch_size % (world_size * cfg.accum_steps):
            raise TrainingError(f"batch_size={cfg.batch_size} (samples per optimizer step) must be divisible by "
                                f"processes x accum_steps = {world_size} x {cfg.accum_steps}")
        sampler = GlobalBatchSampler(len(train_set), cfg.batch_size, cfg.seed, rank, world_size,
                                     offset=getattr(train_set, "epoch_offset", None))
        loader = DataLoader(train_set, batch_sampler=sampler, num_workers=cfg.num_workers,
                            worker_init_fn=worker_init if cfg.num_workers else None,
                            persistent_workers=cfg.num_workers > 0,
                            collate_fn=_collate(cfg.task), pin_memory=device.type == "cuda")
        steps_per_epoch = len(sampler)
        if cfg.max_steps_per_epoch is not None:
            steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
        total_steps = steps_per_epoch * cfg.epochs
        optimizer = torch.optim.Adam(_param_groups(model, cfg), betas=(cfg.beta1, cfg.beta2),
                                     weight_decay=cfg.weight_decay)
        warmup = int(cfg.warmup_epochs * steps_per_epoch)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: cosine_with_warmup(step, warmup, total_steps, cfg.min_lr_ratio))
        amp_dtype = _amp_dtype(cfg, device)
        scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
        loss_module = TaskLoss(model, cfg.task, cfg.match_weight, cfg.avs_dice_weight, cfg.layout_weight)
        train_module = loss_module
        if distributed:
            train_module = torch.nn.parallel.DistributedDataParallel(
                loss_module, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=True)
        if cfg.compile:  # the first step pays the compilation; evaluation and checkpoints use the eager model
            train_module = torch.compile(train_module)

        start_epoch, best, avg_sum, avg_count, best_epoch = 1, -math.inf, None, 0, 0
        state_path = run / STATE_NAME
        if resume is not None and state_path.exists():
            state = torch.load(state_path, map_location="cpu", weights_only=False)
            targets = model.trainable_state_dict()
            with torch.no_grad():
                for k, v in state["trainable"].items():
                    targets[k].copy_(v)
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            start_epoch, best, best_epoch = state["epoch"] + 1, state["best"], state["best_epoch"]
            avg_sum, avg_count = state["avg_sum"], state["avg_count"]
            _set_rng_state(state["rng"])
        elif main:
            run.mkdir(parents=True, exist_ok=True)
            document = {"train": cfg.__dict__, "model_overrides": model_overrides, "model": model_config.to_dict(),
                        "world_size": world_size}
            atomic_write_bytes(run / "config.json", json.dumps(document, indent=2).encode())
        dist_utils.barrier()

        epoch_log = _CsvLog(run / "metrics.csv", ["epoch", "train_loss", "lr", "seconds", "val_select",
                                                  "val_loss", "val_metrics"])
        step_log = _CsvLog(run / "steps.csv", ["step", "epoch", "loss", "lr"])
        tb = _tensorboard(run) if main else None
        if main and progress:
            model.print_trainable_parameters()
        for epoch in range(start_epoch, cfg.epochs + 1):
            started = time.time()
            model.train()
            sampler.set_epoch(epoch)
            bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch}/{cfg.epochs}", disable=not (main and progress))
            losses = []
            batches = iter(loader)
            for step in range(steps_per_epoch):
                global_step = (epoch - 1) * steps_per_epoch + step
                batch = move(next(batches), device)
                micro = len(batch["id"]) // cfg.accum_steps
                optimizer.zero_grad(set_to_none=True)
                step_loss = torch.zeros((), device=device)
                for a in range(cfg.accum_steps):
                    part = {k: v[a * micro:(a + 1) * micro] for k, v in batch.items()}
                    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                        loss, _ = train_module(part)
                    scaler.scale(loss / cfg.accum_steps).backward()
                    step_loss += loss.detach() / cfg.accum_steps
                if not torch.isfinite(step_loss):
                    raise TrainingError(f"loss became {float(step_loss)} at epoch {epoch} step {step}; "
                                        "lower the learning rate or turn off fp16 (amp=bf16/off)")
                if cfg.grad_clip > 0:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                mean_loss = float(dist_utils.mean_across(step_loss))
                losses.append(mean_loss)
                lr = optimizer.param_groups[0]["lr"]
                if main and global_step % cfg.log_every == 0:
                    step_log.write({"step": global_step, "epoch": epoch, "loss": f"{mean_loss:.8f}", "lr": lr})
                    if tb:
                        tb.add_scalar("train/loss", mean_loss, global_step)
                bar.set_postfix(loss=f"{mean_loss:.4f}")
                bar.update()
            bar.close()

            val = {}
            if main:
                val = evaluate(model, val_set, cfg.task, cfg.batch_size, device, progress, amp_dtype, cfg.num_workers)
            if main:
                save_checkpoint(model, run / "last", {**meta, "epoch": epoch, "val": val})
                if val["select"] > best:
                    best, best_epoch = val["select"], epoch
                    save_checkpoint(model, run / "best", {**meta, "epoch": epoch, "val": val})
                if cfg.avg_from is not None and epoch >= cfg.avg_from:
                    current = {k: v.detach().cpu().double() for k, v in model.trainable_state_dict().items()}
                    avg_sum = current if avg_sum is None else {k: avg_sum[k] + current[k] for k in current}
                    avg_count += 1
                train_loss = sum(losses) / max(len(losses), 1)
                epoch_log.write({"epoch": epoch, "train_loss": f"{train_loss:.6f}", "lr": lr,
                                 "seconds": f"{time.time() - started:.1f}", "val_select": f"{val['select']:.6f}",
                                 "val_loss": f"{val.get('loss', float('nan')):.6f}",
                                 "val_metrics": json.dumps({k: round(v, 6) for k, v in val.items()})})
                if tb:
                    for k, v in val.items():
                        tb.add_scalar(f"val/{k}", v, epoch)
                state = {"trainable": {k: v.detach().cpu() for k, v in model.trainable_state_dict().items()},
                         "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                         "scaler": scaler.state_dict(), "epoch": epoch, "best": best, "best_epoch": best_epoch,
                         "avg_sum": avg_sum, "avg_count": avg_count, "rng": _rng_state()}
                atomic_torch_save(state, state_path)
            dist_utils.barrier()

        summary: dict[str, Any] = {"run": str(run), "best_epoch": best_epoch, "best_select": best,
                                   "selected": "best"}
        if main and avg_sum is not None and avg_count:
            targets = model.trainable_state_dict()
            with torch.no_grad():
                for k, v in avg_sum.items():
                    targets[k].copy_((v / avg_count).to(targets[k].dtype))
            val = evaluate(model, val_set, cfg.task, cfg.batch_size, device, False, amp_dtype, cfg.num_workers)
            save_checkpoint(model, run / "averaged", {**meta, "epochs": [cfg.avg_from, cfg.epochs], "val": val})
            summary["averaged_select"] = val["select"]
            if val["select"] > best:
                summary["selected"] = "averaged"
        if main and cfg.ood_clips and len(val_set) >= 4:
            saved = ["best"] + (["averaged"] if "averaged_select" in summary else [])
            _write_world_stats(model, run, saved, val_set, cfg, device)
        if main:
            atomic_write_bytes(run / "summary.json", json.dumps(summary, indent=2).encode())
            if tb:
                tb.close()
        return summary
    finally:
        lock.release()
        dist_utils.teardown()
