"""The SynthAV study: STG-CMA against its baselines and its own stage ablation, on one frozen small backbone.

A miniature of the paper's claims (``python -m stgcma study``): on the embedded default's backbone
(``synth-vit``, pretrained on SynthAV Music frames only), train every variant below with the same
budget and several training seeds (fresh clips every epoch), then evaluate each run once on the same
large fresh test set (rendered once per task and kept in memory):

- STG-CMA with the tiny and base adapter ratios;
- the LAVISH-style adapter (parallel adapters, latent-token exchange; K per task as in LAVISH);
- a linear probe (frozen backbone + task head) and full fine-tuning;
- the stage ablation T, S, G, T+S, T+G, S+G (T+S+G is STG-CMA base).

Results go to ``OUT/study.json`` (every run) and ``OUT/study.md`` (mean +- std over seeds and the
trainable parameters per variant). Runs go seed by seed (every variant's seed 0 first), and reruns
resume: finished (variant, seed) runs are kept.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stgcma.checkpoint import DEFAULT_DIR, atomic_write_bytes, load_model
from stgcma.data.spec import synthav_spec as _spec
from stgcma.train.config import TrainConfig
from stgcma.train.loop import evaluate, fit

TASK_SETUP: dict[str, dict[str, Any]] = {
    "ave": {"world": "", "overrides": [], "metric": "accuracy", "lavish_tokens": 2, "train": {}},
    "avs": {"world": "mode=s4", "overrides": ["preprocess.num_segments=5", "head.avs_channels=32",
                                              "head.avs_match=true", "head.avs_mask_width=32"],
            "metric": "miou", "lavish_tokens": 16, "train": {"avs_dice_weight": 1.0}},
    "avqa": {"world": "", "overrides": ["head.hidden=256", "head.avqa_embed=128"],
             "metric": "accuracy", "lavish_tokens": 64, "train": {}, "questions": 8},
}
BASE = "stgcma-base (T+S+G)"  # T+S+G at the base ratio: the variant the others are compared with
PAPER_ABLATION = "T+S+G 81.8 > T+G 81.5 > T+S 81.4 > T 80.8 > S+G 77.0 > S 76.5 > G 76.1 (AVS mIoU, paper Table 5)"


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
    """Per run: ``epochs`` x ``n_train`` fresh clips; every run is tested on the same ``n_test`` clips."""

    n_train: int = 200
    n_val: int = 50
    n_test: int = 1000
    epochs: int = 3
    seeds: int = 3
    batch_size: int = 8
    lr: float = 2e-3  # adapters and heads
    full_finetune_lr: float = 1e-4  # the backbone's weights in full fine-tuning (its head still trains at lr)
    world: str = "world=music,classes=14"


def _cached_test_set(task: str, budget: StudyBudget, preprocess: Any) -> list[dict[str, Any]]:
    """The task's test clips rendered once (a list of items works as a map-style dataset)."""
    from stgcma.data.spec import build_dataset

    data = build_dataset(_spec(402, budget.n_test, budget.world, TASK_SETUP[task]["world"]), task, "test", preprocess)
    return [data[i] for i in range(len(data))]


def summarise(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Mean and sample standard deviation of the runs' test metric."""
    return _mean_std([r["test"] for r in runs])


def _mean_std(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one value) and count."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def run_study(out: str | Path = "runs/study", tasks: tuple[str, ...] = ("ave", "avs", "avqa"),
              budget: StudyBudget | None = None, only: list[str] | None = None, device: str = "cpu",
              num_workers: int = 0, progress: bool = False,
              log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train and test every variant x seed for every task; returns (and writes) the results.

    ``progress`` shows the training bars; ``log`` (e.g. ``print``) gets one line per finished run.
    """
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
        questions = f"questions={setup['questions']}" if "questions" in setup else ""  # training only
        test = None
        table = {name: o for name, o in variants(setup["lavish_tokens"]).items() if not only or name in only}
        for seed in range(budget.seeds):  # seed-major: a study stopped early has every variant at fewer seeds
            for name, overrides in table.items():
                entry = results.setdefault(task, {}).setdefault(name, {"metric": setup["metric"], "runs": []})
                if seed in {r["seed"] for r in entry["runs"]}:
                    continue  # finished earlier: the study resumes where it stopped
                start = time.time()
                full = "full_finetune" in " ".join(overrides)
                cfg = TrainConfig(task=task, preset="synth-vit",
                                  data=_spec(400, budget.n_train, budget.world, setup["world"], questions, "fresh=1"),
                                  val_data=_spec(401, budget.n_val, budget.world, setup["world"]),
                                  out=str(out / task / name.replace(" ", "_").replace("+", "") / f"seed{seed}"),
                                  epochs=budget.epochs, batch_size=budget.batch_size,
                                  lr=budget.full_finetune_lr if full else budget.lr,
                                  head_lr_scale=budget.lr / budget.full_finetune_lr if full else 1.0,  # same head lr
                                  warmup_epochs=0.5, seed=seed, device=device, num_workers=num_workers,
                                  ood_clips=0, **setup["train"])
                summary = fit(cfg, [f"backbone.pretrained={backbone.resolve()}", *setup["overrides"], *overrides],
                              progress=progress)
                model, _ = load_model(Path(summary["run"]) / summary["selected"], device=device)
                if test is None:
                    test = _cached_test_set(task, budget, model.config.preprocess)
                metrics = evaluate(model, test, task, batch_size=8, device=device)
                counts = model.parameter_counts()
                entry.update(trainable=counts["trainable"], total=counts["total"], overrides=overrides)
                seconds = time.time() - start
                entry["runs"].append({"seed": seed, "test": metrics[setup["metric"]], "seconds": seconds})
                if log:
                    log(f"{task} {name} seed {seed}: test {setup['metric']} {metrics[setup['metric']]:.4f} "
                        f"({seconds:.0f} s)")
                entry.update(summarise(entry["runs"]))
                atomic_write_bytes(results_path, json.dumps(results, indent=2).encode())
    atomic_write_bytes(out / "study.md", markdown_table(results).encode())
    return results


def markdown_table(results: dict[str, Any]) -> str:
    """One row per variant; per task: trainable parameters, the metric's mean +- std over seeds, and the
    difference to STG-CMA base trained with the same seed (mean +- std over the shared seeds)."""
    tasks = [t for t in TASK_SETUP if t in results]
    names = [n for n in variants(0) if any(n in results[t] for t in tasks)]  # the study's order, not the file's
    for t in tasks:
        names += [n for n in results[t] if n not in names]
    header = "| variant | " + " | ".join(f"{t} trainable | {t} {TASK_SETUP[t]['metric']} | {t} vs base, same seed"
                                         for t in tasks) + " |"
    lines = [header, "|---" * (1 + 3 * len(tasks)) + "|"]
    for name in names:
        cells = []
        for t in tasks:
            row = results[t].get(name)
            if row and row.get("runs"):
                cells += [f"{row['trainable'] / 1e6:.3f}M", f"{row['mean']:.3f} +- {row['std']:.3f} (n={row['n']})",
                          paired_difference(results[t], name)]
            else:
                cells += ["", "", ""]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    runs = {t: [r for row in results[t].values() for r in row.get("runs", [])] for t in tasks}
    lines += ["", "Time (training and testing, summed over runs): " + ", ".join(
        f"{t} {sum(r['seconds'] for r in runs[t]) / 60:.1f} min over {len(runs[t])} runs" for t in tasks)]
    orders = [f"- {t}: {order}" for t in tasks if (order := ablation_order(results[t]))]
    if orders:
        lines += ["", "Stage ablation, best first (mean over seeds):", *orders, f"- paper: {PAPER_ABLATION}"]
    return "\n".join(lines) + "\n"


def paired_difference(rows: dict[str, Any], name: str) -> str:
    """Mean +- std over seeds of (variant - STG-CMA base) trained with the same seed; "" for base or no shared seed.

    Every run trains on the same clips; runs of one seed also see them in the same order, so the pairing
    removes the part of the seed-to-seed spread that comes from the order.
    """
    base = {r["seed"]: r["test"] for r in rows.get(BASE, {}).get("runs", [])}
    diffs = [r["test"] - base[r["seed"]] for r in rows.get(name, {}).get("runs", []) if r["seed"] in base]
    if name == BASE or not diffs:
        return ""
    stats = _mean_std(diffs)
    return f"{stats['mean']:+.3f} +- {stats['std']:.3f}"


def ablation_order(rows: dict[str, Any]) -> str:
    """The seven stage combinations of one task, best mean first ("" until all seven have runs)."""
    names = {BASE: "T+S+G", **{n: n.removeprefix("ablation ") for n in variants(0) if n.startswith("ablation ")}}
    means = {short: rows[name]["mean"] for name, short in names.items() if rows.get(name, {}).get("runs")}
    if len(means) < len(names):
        return ""
    return " > ".join(f"{k} {v:.3f}" for k, v in sorted(means.items(), key=lambda kv: -kv[1]))
