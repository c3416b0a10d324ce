"""``python -m stgcma train``: fine-tune STG-CMA on a task (CPU, one GPU, or under torchrun).

Positional ``key=value`` settings: a training key (``epochs=5``, ``lr=1e-4``, ``batch_size=4``...)
sets the run; a dotted key (``adapter.ratio=0.125``, ``adapter.temporal=false``) overrides the
model preset. Unknown keys are refused with the list of valid ones.
"""

from __future__ import annotations

import argparse
import json

from stgcma.cli import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", choices=["ave", "avs", "avqa"], help="task to train")
    parser.add_argument("--preset", help="model preset name or JSON path (python -m stgcma params lists them)")
    parser.add_argument("--data", help="dataset folder or synthav:seed=S,n=N[,option=value...]")
    parser.add_argument("--val-data", help="validation dataset (default: --data's validation split)")
    parser.add_argument("--out", help="run folder (default runs/TASK-PRESET)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a run after a crash or a kill")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("settings", nargs="*", metavar="key=value",
                        help="training keys (epochs=, lr=, batch_size=, ...) or dotted model overrides")


def split_settings(settings: list[str]) -> tuple[dict[str, str], list[str]]:
    """Separate training keys from dotted model overrides; refuse unknown plain keys."""
    from stgcma.train.config import TRAIN_KEYS

    train, model = {}, []
    for item in settings:
        if "=" not in item:
            raise UserError(f"setting {item!r} must look like key=value")
        key, value = item.split("=", 1)
        if "." in key:
            model.append(item)
        elif key in TRAIN_KEYS:
            train[key] = value
        else:
            raise UserError(f"unknown setting {key!r}; training keys: {', '.join(sorted(TRAIN_KEYS))}; "
                            "model overrides look like adapter.ratio=0.125")
    return train, model


def run(args: argparse.Namespace) -> int:
    from stgcma.checkpoint import CheckpointError
    from stgcma.config import ConfigError, apply_overrides
    from stgcma.train import TrainConfig, fit
    from stgcma.train.loop import TrainingError

    try:
        if args.resume:
            summary = fit(TrainConfig(), resume=args.resume, progress=not args.quiet)
        else:
            if not (args.task and args.preset and args.data):
                raise UserError("train needs --task, --preset and --data (or --resume RUN_DIR)")
            train_keys, model_overrides = split_settings(args.settings)
            cfg = TrainConfig(task=args.task, preset=args.preset, data=args.data, val_data=args.val_data,
                              out=args.out or f"runs/{args.task}-{args.preset}")
            cfg = apply_overrides(cfg, [f"{k}={v}" for k, v in train_keys.items()])
            summary = fit(cfg, model_overrides, progress=not args.quiet)
    except (ConfigError, TrainingError, CheckpointError, ValueError, FileNotFoundError) as err:
        raise UserError(str(err)) from None
    print(json.dumps(summary))
    return 0
