"""``python -m stgcma prepare``: decode a dataset folder once into a memory-mapped cache for train/eval.

Example::

    python -m stgcma prepare --data /data/AVE_Dataset --out /data/ave-cache --preset clip-b16-tiny --workers 8
    python -m stgcma train --task ave --preset clip-b16-tiny --data /data/ave-cache backbone.pretrained=openai

Positional ``preprocess.KEY=VALUE`` settings override the preset's preprocessing (e.g.
``preprocess.num_segments=5``); train/eval refuse a cache whose preprocessing is not the model's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stgcma.cli import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="AVE, AVSBench (S4/MS3) or MUSIC-AVQA folder, public layout")
    parser.add_argument("--out", required=True, help="cache folder (created; an unfinished one is continued)")
    parser.add_argument("--preset", default="clip-b16-tiny",
                        help="model preset whose preprocessing the cache holds (default clip-b16-tiny)")
    parser.add_argument("--task", choices=["ave", "avs", "avqa"], default=None,
                        help="task (default: detected from the folder's annotation files)")
    parser.add_argument("--splits", default="train,val,test", help="comma-separated splits (default train,val,test)")
    parser.add_argument("--workers", type=int, default=0, help="decoding processes (default 0: this process)")
    parser.add_argument("--shard-size", type=int, default=256, help="clips per shard file (default 256)")
    parser.add_argument("--force", action="store_true", help="start over when --out holds a cache with other settings")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("settings", nargs="*", metavar="preprocess.KEY=VALUE", help="preprocessing overrides")


def detect_task(path: Path) -> str:
    """The task of a public-layout folder, from its annotation files."""
    from stgcma.data.ave import find_ave_root
    from stgcma.data.avsbench import detect_avs_mode
    from stgcma.data.musicavqa import find_avqa_root

    found = [task for task, hit in (("ave", find_ave_root(path)), ("avs", detect_avs_mode(path)),
                                    ("avqa", find_avqa_root(path))) if hit]
    if len(found) != 1:
        raise UserError(f"{path}: " + ("pass --task: the folder fits " + " and ".join(found) if found else
                                       "no AVE, AVSBench or MUSIC-AVQA annotation files found"))
    return found[0]


def run(args: argparse.Namespace) -> int:
    from stgcma.config import ConfigError, load_preset
    from stgcma.data.prepare import PrepareError, prepare

    data = Path(args.data).expanduser()
    if not data.is_dir():
        raise UserError(f"--data {data} is not a folder")
    bad = [s for s in args.settings if not s.startswith("preprocess.")]
    if bad:
        raise UserError(f"only preprocess.KEY=VALUE settings apply to a cache, got {bad}")
    if args.workers < 0 or args.shard_size < 1:
        raise UserError("--workers must be >= 0 and --shard-size >= 1")
    task = args.task or detect_task(data)
    try:
        preprocess = load_preset(args.preset, args.settings).preprocess
        manifest = prepare(data, args.out, task, preprocess, tuple(s for s in args.splits.split(",") if s),
                           workers=args.workers, shard_size=args.shard_size, force=args.force,
                           progress=not args.quiet)
    except (ConfigError, PrepareError, ValueError, FileNotFoundError) as err:
        raise UserError(str(err)) from None
    except OSError as err:
        raise UserError(f"cannot write to {args.out}: {err}") from None
    splits = ", ".join(f"{s} {v['items']} items / {v['clips']} clips" for s, v in manifest["splits"].items())
    print(f"{args.out}: {task} cache ({splits}); {len(manifest['failed'])} clip(s) failed to decode"
          + (" (listed in manifest.json)" if manifest["failed"] else ""))
    for split, why in manifest.get("skipped_splits", {}).items():
        print(f"skipped split {split}: {why}")
    return 0
