"""``python -m stgcma calibrate-ood``: add the statistics of its training world to an existing checkpoint.

The checkpoint's features on ``--n`` held-out clips of ``--data`` (half to fit, half to set the
threshold; see ``stgcma.ood``) are written to ``ood_stats.safetensors`` in its folder, so that
analysis can say when a clip is unlike anything the model was trained on. Use clips of the data the
model was trained on but not its training clips (the default split is ``val``).
"""

from __future__ import annotations

import argparse
import json

from stgcma.cli import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True,
                        help="a checkpoint or run folder, or 'default' (the embedded default; needs --task)")
    parser.add_argument("--task", choices=["ave", "avs", "avqa"], default=None,
                        help="which checkpoint of a multi-task folder such as 'default'")
    parser.add_argument("--data", required=True,
                        help="the training world: a dataset folder or synthav:seed=S,n=N[,...]")
    parser.add_argument("--split", default="val", help="held-out clips of that world (default: val)")
    parser.add_argument("--n", type=int, default=200, help="clips to use: half fit the statistics, half calibrate")
    parser.add_argument("--quantile", type=float, default=0.99,
                        help="the threshold is this quantile of the calibration clips' distances")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from stgcma.checkpoint import CheckpointError
    from stgcma.ood import STATS_NAME, calibrate_checkpoint

    if args.n < 4:
        raise UserError(f"--n must be at least 4 (2 clips to fit, 2 to calibrate); got {args.n}")
    if not 0.5 <= args.quantile < 1.0:
        raise UserError(f"--quantile must lie in [0.5, 1); got {args.quantile}")
    try:
        folder, stats = calibrate_checkpoint(args.checkpoint, args.data, args.task, args.split, args.n,
                                             args.batch_size, args.device, progress=not args.quiet,
                                             quantile=args.quantile)
    except (CheckpointError, ValueError, FileNotFoundError, KeyError) as err:
        raise UserError(str(err).splitlines()[0]) from None
    summary = {"file": str(folder / STATS_NAME), "world": stats.world, "block": stats.block,
               "thresholds": stats.thresholds, "quantile": stats.quantile, **stats.info}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"wrote {summary['file']}: world {stats.world}, {stats.info['clips_fit']} clips fit, "
              f"{stats.info['clips_calibration']} calibrate; thresholds " +
              ", ".join(f"{s} {t:.3f}" for s, t in stats.thresholds.items()))
    return 0
