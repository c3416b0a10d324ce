"""The SynthAV study: STG-CMA against its baselines and its own stage ablation, on one frozen small backbone.

A miniature of the paper's claims (``python -m stgcma study``): on the embedded default's backbone
(``synth-vit``, pretrained on SynthAV frames only), train every variant below with the same budget,
then evaluate once on a fresh test seed:

- STG-CMA with the tiny and base adapter ratios;
- the LAVISH-style adapter (parallel adapters, latent-token exchange; K per task as in LAVISH);
- a linear probe (frozen backbone + task head) and full fine-tuning;
- the stage ablation T, S, G, T+S, T+G, S+G (T+S+G is STG-CMA base).

Results go to ``OUT/study.json`` and ``OUT/study.md`` (a table with trainable parameters and the
task metric per variant).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stgcma.checkpoint import DEFAULT_DIR, atomic_write_bytes, load_model
from stgcma.train.config import TrainConfig
from stgcma.train.loop import evaluate, fit

TASK_SETUP: dict[str, dict[str, Any]] = {
    "ave": {"world": "", "overrides": [], "metric": "accuracy", "lavish_tokens": 2, "train": {}},
    "avs": {"world": ",mode=s4", "overrides": ["preprocess.num_segments=5", "head.avs_channels=64"],
            "metric": "miou", "lavish_tokens": 16, "train": {"avs_dice_weight": 1.0}},
    "avqa": {"world": "", "overrides": ["head.hidden=256", "head.avqa_embed=128"], "metric": "accuracy",
             "lavish_tokens": 64, "train": {}},
}


def variants(lavish_tokens: int) -> dict[str, list[str]]:
    """Variant name -> model overrides (on top of the synth-vit preset, ratio 0.25 = base)."""
    stages = {"T": "adapter.temporal", "S": "adapter.spatial", "G": "adapter.global_"}

    def ablation(on: str) -> list[str]:
        return [f"{key}={'true' if s in on else 'false'}" for s, key in stages.items()]

    table = {
        "stgcma-tiny (T+S+G)": ["adapter.ratio=0.125"],
        "stgcma-base (T+S+G)": ["adapter.ratio=0.25"],
        "lavish": ["adapter.method=lavish", "adapter.ratio=0.25", f"adapter.lavish_tokens={lavish_tokens}"],
        "linear-probe": ["adapter.method=linear_probe"],
        "full-finetune": ["adapter.method=full_finetune"],
    }
    for on in ("T", "S", "G", "TS", "TG", "SG"):
        table[f"ablation {'+'.join(on)}"] = ["adapter.ratio=0.25", *ablation(on)]
    return table


@dataclass
class StudyBudget:
    n_train: int = 200
    n_val: int = 50
    n_test: int = 100
    epochs: int = 3
    batch_size: int = 8
    lr: float = 2e-3
    full_finetune_lr: float = 1e-4


def run_study(out: str | Path = "runs/study", tasks: tuple[str, ...] = ("ave", "avs", "avqa"),
              budget: StudyBudget | None = None, only: list[str] | None = None, device: str = "cpu",
              num_workers: int = 0, progress: bool = False) -> dict[str, Any]:
    """Train and test every variant for every task; returns (and writes) the results."""
    budget = budget or StudyBudget()
    out = Path(out)
    backbone = DEFAULT_DIR / "backbone" / "model.safetensors"
    if not backbone.exists():
        raise FileNotFoundError(f"{backbone} is missing: run `python -m stgcma build-default` first")
    results_path = out / "study.json"
    results: dict[str, Any] = json.loads(results_path.read_text()) if results_path.exists() else {}
    results["budget"] = budget.__dict__
    for task in tasks:
        setup = TASK_SETUP[task]
        for name, overrides in variants(setup["lavish_tokens"]).items():
            if only and name not in only:
                continue
            if name in results.get(task, {}):
                continue  # finished earlier: the study resumes where it stopped
            start = time.time()
            full = "full_finetune" in " ".join(overrides)
            cfg = TrainConfig(task=task, preset="synth-vit",
                              data=f"synthav:seed=400,n={budget.n_train}{setup['world']}",
                              val_data=f"synthav:seed=401,n={budget.n_val}{setup['world']}",
                              out=str(out / task / name.replace(" ", "_").replace("+", "")),
                              epochs=budget.epochs, batch_size=budget.batch_size,
                              lr=budget.full_finetune_lr if full else budget.lr, head_lr_scale=1.0,
                              warmup_epochs=0.5, seed=0, device=device, num_workers=num_workers, **setup["train"])
            summary = fit(cfg, [f"backbone.pretrained={backbone.resolve()}", *setup["overrides"], *overrides],
                          progress=progress)
            model, _ = load_model(Path(summary["run"]) / summary["selected"], device=device)
            from stgcma.data.spec import build_dataset

            test = build_dataset(f"synthav:seed=402,n={budget.n_test}{setup['world']}", task, "test",
                                 model.config.preprocess)
            metrics = evaluate(model, test, task, batch_size=8, device=device, num_workers=num_workers)
            counts = model.parameter_counts()
            results.setdefault(task, {})[name] = {
                "trainable": counts["trainable"], "total": counts["total"], "metric": setup["metric"],
                "test": metrics[setup["metric"]], "seconds": time.time() - start, "overrides": overrides,
            }
            atomic_write_bytes(results_path, json.dumps(results, indent=2).encode())
    atomic_write_bytes(out / "study.md", markdown_table(results).encode())
    return results


def markdown_table(results: dict[str, Any]) -> str:
    """One row per variant, one column pair (trainable, metric) per task."""
    tasks = [t for t in TASK_SETUP if t in results]
    names: list[str] = []
    for t in tasks:
        names += [n for n in results[t] if n not in names]
    header = "| variant | " + " | ".join(f"{t} trainable | {t} {TASK_SETUP[t]['metric']}" for t in tasks) + " |"
    lines = [header, "|---" * (1 + 2 * len(tasks)) + "|"]
    for name in names:
        cells = []
        for t in tasks:
            row = results[t].get(name)
            cells += [f"{row['trainable'] / 1e6:.3f}M", f"{row['test']:.3f}"] if row else ["", ""]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
