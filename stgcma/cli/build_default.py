"""``python -m stgcma build-default``: rebuild the embedded default (assets/default) from scratch."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stgcma.train.default import DefaultRecipe


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=None, help="where to write (default: assets/default)")
    parser.add_argument("--runs", default="runs/default", help="training run folders")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--recipe", choices=["cpu", "cpu-long", "gpu"], default="cpu",
                        help="cpu: sized for <= 90 min on a 2-core CPU; cpu-long: twice the pretraining and the "
                        "larger settings the shipped heads were refitted with (about 2 h); gpu: ~10x the joint "
                        "steps, bf16")
    parser.add_argument("--tasks", default="ave,avs,avqa", help="comma-separated tasks to (re)train")
    parser.add_argument("--scale", type=float, default=1.0, help="shrink the recipe (e.g. 0.05 for a smoke test)")
    parser.add_argument("--pretrain-epochs", type=int, default=None,
                        help="epochs of the image-only pretraining (each draws new frames; default: the recipe's, 8 "
                        "on cpu); more epochs give a stronger frozen tower, at about 50 s an epoch on 2 CPU cores")
    parser.add_argument("--skip-pretrain", action="store_true", help="reuse an existing pretrained backbone")
    parser.add_argument("--refit-only", action="store_true",
                        help="only the head refit of each task, from the checkpoint already in --out, then the test")
    parser.add_argument("--workers", type=int, default=0, help="data-loading processes (SynthAV is made on the fly)")
    parser.add_argument("--quiet", action="store_true")


def recipe_of(args: argparse.Namespace) -> DefaultRecipe:
    """The recipe the flags name: ``--recipe``, shrunk by ``--scale``, then ``--pretrain-epochs``."""
    from stgcma.cli import UserError
    from stgcma.train.default import RECIPES

    recipe = RECIPES[args.recipe]()
    if args.scale != 1.0:
        recipe = recipe.scaled(args.scale)
    if args.pretrain_epochs is not None:
        if args.pretrain_epochs < 1:
            raise UserError(f"--pretrain-epochs must be at least 1, got {args.pretrain_epochs}")
        if args.skip_pretrain or args.refit_only:
            raise UserError("--pretrain-epochs sets a pretraining that --skip-pretrain and --refit-only leave out")
        recipe = replace(recipe, pretrain_epochs=args.pretrain_epochs)
    return recipe


def run(args: argparse.Namespace) -> int:
    from stgcma.checkpoint import DEFAULT_DIR
    from stgcma.cli import UserError
    from stgcma.config import ConfigError
    from stgcma.train.default import build_default

    tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    unknown = [t for t in tasks if t not in ("ave", "avs", "avqa")]
    if unknown:
        raise UserError(f"unknown task(s) {unknown}; expected ave, avs, avqa")
    recipe = recipe_of(args)
    try:
        report = build_default(args.out or DEFAULT_DIR, args.runs, args.device, recipe, tasks, args.skip_pretrain,
                               progress=not args.quiet, num_workers=args.workers, refit_only=args.refit_only)
    except ConfigError as err:
        raise UserError(str(err)) from None
    print(json.dumps({"seconds": report["seconds"], "test": report["test"]}, indent=2))
    return 0
