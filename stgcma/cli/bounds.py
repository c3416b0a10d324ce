"""``python -m stgcma bounds``: the floors and ceilings a SynthAV test set puts around any model.

AVE: the segment accuracy of a perfect-perception Bayes oracle (:mod:`stgcma.data.synthav.bounds`),
an upper bound; AVQA: the blind baselines (majority answer per type / template / question), lower
bounds that a model must beat to show it looked at the clip.
"""

from __future__ import annotations

import argparse

from stgcma.cli import UserError
from stgcma.data.synthav.bounds import measure_ave_ceiling
from stgcma.data.synthav.clip import format_baseline, measure_blind_baseline
from stgcma.data.synthav.scene import SynthConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=300, help="world seed of the test set (default 300)")
    parser.add_argument("--n", type=int, default=200, help="number of test clips (default 200)")
    parser.add_argument("--split", choices=("train", "val", "test"), default="test", help="split (default test)")
    parser.add_argument("--mode", choices=("ms3", "s4"), default="ms3", help="SynthAV mode (default ms3)")


def run(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise UserError(f"--n must be at least 1, got {args.n}")
    cfg = SynthConfig(mode=args.mode)
    spec = f"synthav:seed={args.seed},n={args.n}" + (",mode=s4" if args.mode == "s4" else "")
    ceiling = measure_ave_ceiling(args.n, args.seed, cfg, args.split)
    print(f"{spec} ({args.split})")
    print(f"AVE segment accuracy of a perfect-perception Bayes oracle (ceiling): {100 * ceiling:.1f}%")
    print("AVQA blind baselines (majority answers counted on the next seed), accuracy in %:")
    print(format_baseline(measure_blind_baseline(args.n, args.seed, cfg, args.split)))
    return 0
