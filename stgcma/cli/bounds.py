"""``python -m stgcma bounds``: the floors and ceilings a SynthAV test set puts around any model.

Ceilings (:mod:`stgcma.data.synthav.bounds`): AVE segment accuracy of a perfect-perception Bayes
oracle; AVS S4 mIoU / F of an oracle that knows the sounding class, and of the true masks seen through
a ViT's patch grid (7 x 7 at 112 px) and finer ones, with the sounding objects' sizes. Floors: the AVQA blind baselines
(majority answer per type / template / question), which a model must beat to show it used the clip.
The test sets are those of ``eval --data synthav:seed=S,n=N`` (AVS: ``,mode=s4``, five segments).
"""

from __future__ import annotations

import argparse
import json

from stgcma.cli import UserError
from stgcma.data.synthav.bounds import measure_ave_ceiling, measure_avqa_ceiling, measure_avs_ceiling
from stgcma.data.synthav.clip import format_baseline, measure_blind_baseline
from stgcma.data.synthav.scene import WORLDS, SynthConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=300, help="world seed of the test set (default 300)")
    parser.add_argument("--n", type=int, default=200, help="number of test clips (default 200)")
    parser.add_argument("--split", choices=("train", "val", "test"), default="test", help="split (default test)")
    parser.add_argument("--size", type=int, default=112, help="AVS mask side in pixels (default 112)")
    parser.add_argument("--world", choices=WORLDS, default="music", help="SynthAV world (default music)")
    parser.add_argument("--classes", type=int, default=None,
                        help="number of classes K (default: the world's, 14 music, 8 shapes)")
    parser.add_argument("--json", action="store_true", help="print one JSON object: "
                        '{"ave": {"ceiling"}, "avs": {"ceiling", "fscore", "grid", "area"}, '
                        '"avqa": {"ceiling", "floor", "types"}}')


def run(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise UserError(f"--n must be at least 1, got {args.n}")
    if args.size < 16:
        raise UserError(f"--size must be at least 16, got {args.size}")
    try:
        cfg = SynthConfig(world=args.world, num_classes=args.classes)
    except ValueError as err:
        raise UserError(str(err)) from None
    args.classes = cfg.num_classes
    spec = f"synthav:seed={args.seed},n={args.n},world={args.world},classes={args.classes}"
    ave = measure_ave_ceiling(args.n, args.seed, cfg, args.split)
    grids = (args.size // 16, args.size // 8, args.size // 4)  # a 16-px patch grid, and 2x and 4x finer
    avs = measure_avs_ceiling(args.n, args.seed, size=args.size, split=args.split, world=args.world,
                              classes=args.classes, grids=grids)
    avqa = measure_avqa_ceiling(args.n, args.seed, cfg, args.split)
    floors = measure_blind_baseline(args.n, args.seed, cfg, args.split)
    if args.json:
        types = {q: {"ceiling": avqa[q], "floor": row["template"]} for q, row in floors.items()
                 if q != "overall" and q in avqa}
        qa = {"ceiling": avqa["overall"], "floor": floors["overall"]["template"], "types": types}
        print(json.dumps({"spec": spec, "split": args.split, "ave": {"ceiling": ave},
                          "avs": {"ceiling": avs["miou"], "fscore": avs["fscore"], "grid": avs["grid"],
                                  "area": avs["area"]}, "avqa": qa}))
        return 0
    print(f"{spec} ({args.split} split)")
    print(f"AVE  ceiling, perfect-perception oracle: segment accuracy {100 * ave:.1f}%")
    print(f"AVS  ceiling, sounding-class oracle ({spec},mode=s4, 5 segments, {args.size} px): "
          f"mIoU {avs['miou']:.3f}, F {avs['fscore']:.3f}")
    area = avs["area"]
    print(f"AVS  the true masks through a coarse grid (16-px patches: {grids[0]} x {grids[0]}): "
          + ", ".join(f"{g} x {g} mIoU {m:.3f}" for g, m in avs["grid"].items())
          + f"; sounding objects cover {100 * area['p50']:.1f}% of a frame (median; 10-90%: "
          f"{100 * area['p10']:.1f}-{100 * area['p90']:.1f}%)")
    print(f"AVQA ceiling, perfect-perception oracle: accuracy {100 * avqa['overall']:.1f}%")
    print("AVQA floors, blind baselines (majority answers counted on the next seed), accuracy in %:")
    print(format_baseline(floors))
    return 0
