"""Paper recipes: one ``prepare`` + ``train`` command per row of the STG-CMA paper this project can train.

Settings follow the reference recipe (METHOD.md "Reference recipe"): Adam betas (0.95, 0.999), weight
decay 5e-7 (the :class:`~stgcma.train.TrainConfig` defaults), per-iteration cosine with warm-up (2 epochs;
5 for AVS), 20 epochs, batches of 2, mixed precision; AVE lr 5e-5 (Swin-B 1e-4) with the head at x0.1
and weight averaging over epochs 8-20; AVS lr 3e-4 on T = 5 frames; AVQA lr 2.5e-5. Model selection is
on the validation split (the reference selected on test), so a reproduced number is the test metric
of the selected checkpoint, measured once.

``measure(recipe, data)`` times optimizer steps of a recipe on the current device and reports the peak
memory and the expected hours of the whole recipe; the README table holds what was measured.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

# Sizes of the public training splits (items per epoch), from the annotation files.
TRAIN_ITEMS = {"ave": 3339, "avs-s4": 3452, "avs-ms3": 296}


@dataclass(frozen=True)
class Recipe:
    """One paper row: the model, its data, the reference settings and the paper's number."""

    name: str
    task: str
    preset: str
    dataset: str  # "ave", "avs-s4", "avs-ms3", "music-avqa"
    paper: float | None  # the paper's metric, percent
    metric: str
    settings: tuple[str, ...]
    overrides: tuple[str, ...] = field(default=())
    note: str = ""

    @property
    def cache(self) -> str:
        return f"caches/{self.dataset}-{self.preset.split('-')[0]}"

    def prepare_command(self, data: str = "DATA") -> str:
        extra = [o for o in self.overrides if o.startswith("preprocess.")]
        return " ".join(["python -m stgcma prepare", f"--data {data}", f"--out {self.cache}", f"--preset {self.preset}",
                         "--workers 8", *extra])

    def train_command(self, data: str | None = None) -> str:
        return " ".join(["python -m stgcma train", f"--task {self.task}", f"--preset {self.preset}",
                         f"--data {data or self.cache}", f"--out runs/{self.name}", *self.overrides, *self.settings])

    def eval_command(self, data: str | None = None) -> str:
        return (f"python -m stgcma eval --task {self.task} --checkpoint runs/{self.name} --data {data or self.cache} "
                "--split test --json")


_AVE = ("epochs=20", "batch_size=2", "warmup_epochs=2", "head_lr_scale=0.1", "avg_from=8", "amp=auto")
_AVS = ("epochs=20", "batch_size=2", "lr=3e-4", "warmup_epochs=5", "amp=auto")
_AVQA = ("epochs=20", "batch_size=2", "lr=2.5e-5", "warmup_epochs=2", "amp=auto")
_CLIP = ("backbone.pretrained=openai",)
_SWIN = ("backbone.pretrained=in22k",)
_T5 = ("preprocess.num_segments=5",)


def _ave(preset: str, paper: float, lr: str, weights: tuple[str, ...], note: str = "") -> Recipe:
    return Recipe(f"ave-{preset}", "ave", preset, "ave", paper, "accuracy", (f"lr={lr}", *_AVE), weights, note)


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    _ave("clip-b16-tiny", 76.3, "5e-5", _CLIP),
    _ave("clip-b16-base", 78.7, "5e-5", _CLIP,
         "the reference ran the frozen attention with 8 of 12 heads: add backbone.frozen_attn_heads=8 to copy it"),
    _ave("clip-l14-tiny", 82.2, "5e-5", _CLIP),
    _ave("clip-l14-base", 83.3, "5e-5", _CLIP),
    _ave("swin-b-tiny", 81.1, "1e-4", _SWIN),
    _ave("swin-b-base", 81.4, "1e-4", _SWIN),
    _ave("swin-l-tiny", 82.0, "5e-5", _SWIN),
    _ave("swin-l-large", 82.5, "5e-5", _SWIN),
    Recipe("avs-s4-swin-b-base", "avs", "swin-b-base", "avs-s4", 81.0, "mIoU", _AVS, (*_SWIN, *_T5)),
    Recipe("avs-s4-swin-l-large", "avs", "swin-l-large", "avs-s4", 81.8, "mIoU", _AVS, (*_SWIN, *_T5)),
    Recipe("avs-ms3-swin-b-base", "avs", "swin-b-base", "avs-ms3", None, "mIoU", _AVS, (*_SWIN, *_T5),
           "MS3 numbers are not in this project's notes of the paper"),
    Recipe("avs-ms3-swin-l-large", "avs", "swin-l-large", "avs-ms3", None, "mIoU", _AVS, (*_SWIN, *_T5),
           "MS3 numbers are not in this project's notes of the paper"),
    Recipe("avqa-swin-l-large", "avqa", "swin-l-large", "music-avqa", 76.2, "accuracy (avg)", _AVQA, _SWIN,
           "paper: STG-CMA-L (83.1M trainable); STG-CMA-B is 74.5% with 26.9M; `params` counts ours"),
)}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise KeyError(f"unknown recipe {name!r}; recipes: {', '.join(RECIPES)}")
    return RECIPES[name]


def markdown_table(measured: dict[str, dict[str, Any]] | None = None) -> str:
    """The README table: recipe, paper number, reference settings, GPU hours and memory (when measured)."""
    measured = measured or {}
    lines = ["| recipe | task / data | paper | settings (after the preset) | GPU h, memory |", "|---|---|---|---|---|"]
    for r in RECIPES.values():
        m = measured.get(r.name)
        cost = f"{m['hours']:.1f} h, {m['peak_gib']:.0f} GiB ({m['device']})" if m else "not measured"
        paper = f"{r.paper:.1f} {r.metric}" if r.paper is not None else "-"
        shared = ("epochs=", "batch_size=", "amp=")  # the same in every row: said once under the table
        settings = " ".join(s for s in (*r.overrides, *r.settings) if not s.startswith(shared))
        lines.append(f"| `{r.name}` | {r.task} / {r.dataset} | {paper} | `{settings}` | {cost} |")
    return "\n".join(lines)


def measure(recipe: Recipe, data: str, device: str = "cuda", steps: int = 5) -> dict[str, Any]:
    """Time ``steps`` optimizer steps of ``recipe`` (random trunk weights: the same cost) on ``device``.

    Returns seconds per step, peak accelerator memory (GiB, CUDA only) and the expected hours of the whole
    recipe (steps per epoch from ``data``'s training split, times epochs; evaluation not included).
    """
    import torch

    from stgcma.cli.train import split_settings
    from stgcma.config import apply_overrides, load_preset
    from stgcma.data.spec import build_dataset
    from stgcma.model import STGCMAModel
    from stgcma.train.config import TrainConfig
    from stgcma.train.loop import _amp_dtype, _collate, model_config_for
    from stgcma.train.tasks import TaskLoss, move

    train_keys, model_overrides = split_settings([*recipe.overrides, *recipe.settings])
    model_overrides = [o for o in model_overrides if not o.startswith("backbone.pretrained=")]
    cfg = apply_overrides(TrainConfig(task=recipe.task, preset=recipe.preset, data=data),
                          [f"{k}={v}" for k, v in train_keys.items()]).resolve()
    dataset = build_dataset(data, recipe.task, "train", load_preset(recipe.preset, model_overrides).preprocess)
    config = model_config_for(cfg, model_overrides, dataset)
    dev = torch.device(device)
    model = STGCMAModel(config).to(dev).train()
    loss_fn = TaskLoss(model, recipe.task, cfg.match_weight)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    batch = move(_collate(recipe.task)([dataset[i % len(dataset)] for i in range(cfg.batch_size)]), dev)
    amp = _amp_dtype(cfg, dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
            loss, _ = loss_fn(batch)
        loss.backward()
        optimizer.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - start)
    step = sorted(times[1:])[len(times[1:]) // 2]  # median after one warm-up step
    items = TRAIN_ITEMS.get(recipe.dataset, len(dataset))
    total_steps = -(-items // cfg.batch_size) * cfg.epochs
    peak = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else float("nan")
    return {"recipe": recipe.name, "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
            "step_seconds": step, "peak_gib": peak, "train_items": items, "steps": total_steps,
            "hours": step * total_steps / 3600}
