"""``python -m stgcma eval``: a checkpoint's metrics on a dataset (``--json`` for one JSON object)."""

from __future__ import annotations

import argparse
import json

from stgcma.cli import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, choices=["ave", "avs", "avqa"])
    parser.add_argument("--checkpoint", default="default",
                        help="'default' (embedded), a checkpoint or run folder, or a Hub repo id")
    parser.add_argument("--data", required=True, help="dataset folder or synthav:seed=S,n=N[,...]")
    parser.add_argument("--split", default="test")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--ave-decode", choices=["segment", "clip"], default=None,
                        help="AVE labels from each segment's argmax or one event class per clip "
                             "(default: the checkpoint's head.ave_decode)")
    parser.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from stgcma.checkpoint import CheckpointError, load_model
    from stgcma.data.spec import build_dataset
    from stgcma.data.vocab import Vocab
    from stgcma.train.loop import evaluate

    try:
        model, meta = load_model(args.checkpoint, task=args.task, device=args.device)
        if args.ave_decode is not None:
            model.config.head.ave_decode = args.ave_decode
        extra = {}
        if args.task == "avqa":  # questions are encoded with the checkpoint's own vocabulary
            extra["question_vocab"] = Vocab(meta["question_vocab"][2:], meta.get("question_max_len", 14))
        dataset = build_dataset(args.data, args.task, args.split, model.config.preprocess, **extra)
        if list(dataset.class_names) != list(meta.get("class_names", dataset.class_names)):
            raise UserError(f"the dataset's classes {dataset.class_names[:5]}... differ from the checkpoint's "
                            f"{meta['class_names'][:5]}...")
        metrics = evaluate(model, dataset, args.task, args.batch_size, args.device, progress=not args.quiet)
    except (CheckpointError, ValueError, FileNotFoundError, KeyError) as err:
        raise UserError(str(err)) from None
    metrics.pop("select", None)
    if args.json:
        print(json.dumps(metrics))
    else:
        for key, value in metrics.items():
            print(f"{key:32s} {value:.4f}")
    return 0
