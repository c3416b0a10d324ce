"""``python -m stgcma study``: STG-CMA vs LAVISH, linear probe, full fine-tuning and the stage ablation on SynthAV."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from stgcma.train.study import StudyBudget

    b = StudyBudget()
    parser.add_argument("--out", default="runs/study", help="results folder (study.json, study.md); reruns resume")
    parser.add_argument("--tasks", default="ave,avs,avqa", help="comma-separated tasks")
    parser.add_argument("--only", action="append", default=None, help="run only this variant (repeatable)")
    parser.add_argument("--n-train", type=int, default=b.n_train, help="fresh training clips per epoch")
    parser.add_argument("--n-test", type=int, default=b.n_test, help="test clips, the same for every run")
    parser.add_argument("--epochs", type=int, default=b.epochs, help=f"epochs per run (batch {b.batch_size})")
    parser.add_argument("--seeds", type=int, default=b.seeds, help="training seeds per variant (mean +- std)")
    parser.add_argument("--world", default=b.world, help="SynthAV world options, e.g. world=shapes")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers that render the clips")


def run(args: argparse.Namespace) -> int:
    from stgcma.cli import UserError
    from stgcma.train.study import StudyBudget, markdown_table, run_study

    tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    if any(t not in ("ave", "avs", "avqa") for t in tasks):
        raise UserError(f"--tasks takes ave, avs, avqa; got {args.tasks!r}")
    if args.seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {args.seeds}")
    budget = StudyBudget(n_train=args.n_train, n_test=args.n_test, epochs=args.epochs, seeds=args.seeds,
                         world=args.world)
    try:
        results = run_study(args.out, tasks, budget, args.only, args.device, args.workers,
                            log=lambda line: print(line, flush=True))
    except FileNotFoundError as err:
        raise UserError(str(err)) from None
    print(markdown_table(results))
    return 0
