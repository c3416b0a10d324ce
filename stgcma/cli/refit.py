"""``python -m stgcma refit``: train a checkpoint's head again on cached encoder features.

Each clip of ``--data`` is encoded once by the checkpoint's frozen encoder; the head alone then trains
for ``--epochs`` on those features (``stgcma.train.head_refit``). For AVQA, ask many questions per
clip (``synthav:...,questions=32``): a head step costs little, so the head sees far more questions
than joint training can afford. For AVS the decoder's tapped blocks are cached too (``--dice-weight``
adds the soft Dice loss the default's AVS recipe trains with). ``--set head.KEY=VALUE`` changes the
head's config first (modules it adds start from their initialisation). The best epoch on
``--val-data`` (or, with ``--average-last K``, the mean of the last K epochs' heads when it scores higher)
is written to ``OUT/best``. ``--cache DIR`` keeps the encoded clips, so that a second refit of the same
checkpoint on the same clips skips the encoding.
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
    parser.add_argument("--data", required=True, help="training clips: a dataset folder or synthav:seed=S,n=N[,...]")
    parser.add_argument("--val-data", default=None, help="validation clips (default: the val split of --data)")
    parser.add_argument("--out", required=True, help="run folder; the refitted checkpoint goes to OUT/best")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16, help="clips per step, each with all its questions")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--dice-weight", type=float, default=0.0,
                        help="AVS: weight of the soft Dice loss beside the per-pixel BCE (the default's recipe: 1.0)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers that render/decode clips")
    parser.add_argument("--cache", default=None, metavar="DIR",
                        help="keep the encoded clips in DIR and reuse them: a second refit of the same checkpoint on "
                             "the same --data/--val-data skips the encoding")
    parser.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay of the head")
    parser.add_argument("--average-last", type=int, default=0, metavar="K",
                        help="also try the mean of the head's weights over the last K epochs; kept when it scores "
                             "higher on --val-data than every single epoch")
    parser.add_argument("--set", dest="head_overrides", action="append", default=[], metavar="head.KEY=VALUE",
                        help="change the head's config (repeatable), e.g. head.avqa_readout=true; modules it adds "
                             "start from their initialisation, the rest from the checkpoint")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def run(args: argparse.Namespace) -> int:
    from stgcma.checkpoint import CheckpointError, resolve_source
    from stgcma.config import ConfigError
    from stgcma.train.head_refit import RefitConfig, refit_head

    try:
        source = resolve_source(args.checkpoint, args.task)
        cfg = RefitConfig(data=args.data, val_data=args.val_data, out=args.out, epochs=args.epochs,
                          batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                          dice_weight=args.dice_weight, seed=args.seed, device=args.device,
                          num_workers=args.workers, head_overrides=list(args.head_overrides),
                          cache_dir=args.cache, average_last=args.average_last)
        summary = refit_head(source, cfg, progress=not args.quiet)
    except (CheckpointError, ConfigError, ValueError, FileNotFoundError, KeyError) as err:
        raise UserError(str(err).splitlines()[0]) from None
    summary.pop("curve")
    if args.json:
        print(json.dumps(summary, default=str))
    else:
        print(f"wrote {summary['run']}/best: {summary['weights']} of {summary['epochs']}, "
              f"val {summary['val_select']:.4f} ({summary['clips']} clips, {summary['seconds']:.0f} s)")
    return 0
