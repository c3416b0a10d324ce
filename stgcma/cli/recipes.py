"""``python -m stgcma recipes``: the paper rows this project can train, each as prepare/train/eval commands.

Examples::

    python -m stgcma recipes                                   # the table
    python -m stgcma recipes ave-clip-b16-tiny --data /data/AVE_Dataset   # its three commands
    python -m stgcma recipes ave-clip-b16-tiny --measure --data caches/ave-clip --device cuda   # GPU h, memory
"""

from __future__ import annotations

import argparse
import json

from stgcma.cli import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="a recipe: print its prepare, train and eval commands")
    parser.add_argument("--data", help="dataset folder for the commands (with --measure: any data spec or cache)")
    parser.add_argument("--markdown", action="store_true", help="print the README table")
    parser.add_argument("--measure", action="store_true",
                        help="time optimizer steps of the recipe on --device: s/step, peak memory, expected hours")
    parser.add_argument("--device", default="cuda", help="device for --measure (default cuda)")
    parser.add_argument("--steps", type=int, default=5, help="steps timed by --measure (default 5)")


def run(args: argparse.Namespace) -> int:
    from stgcma.recipes import RECIPES, get_recipe, markdown_table, measure

    if args.markdown:
        print(markdown_table())
        return 0
    if not args.name:
        print(f"{'recipe':22s} {'task':5s} {'data':11s} {'paper':>6s}  metric")
        for r in RECIPES.values():
            paper = f"{r.paper:.1f}" if r.paper is not None else "-"
            print(f"{r.name:22s} {r.task:5s} {r.dataset:11s} {paper:>6s}  {r.metric}")
        return 0
    try:
        recipe = get_recipe(args.name)
    except KeyError as err:
        raise UserError(str(err.args[0])) from None
    if args.measure:
        if not args.data:
            raise UserError("--measure needs --data (a cache, dataset folder or synthav: spec of the recipe's task)")
        try:
            print(json.dumps(measure(recipe, args.data, args.device, args.steps)))
        except (ValueError, FileNotFoundError, RuntimeError) as err:
            raise UserError(str(err)) from None
        return 0
    data = args.data or "DATA"
    print(f"# {recipe.name}: paper {recipe.paper if recipe.paper is not None else '-'} {recipe.metric}"
          + (f" ({recipe.note})" if recipe.note else ""))
    print(recipe.prepare_command(data))
    print(recipe.train_command())
    print(recipe.eval_command())
    return 0
