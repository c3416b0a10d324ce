"""``python -m stgcma push``: a checkpoint + generated model card, uploaded to the Hugging Face Hub.

Examples::

    python -m stgcma eval --task ave --checkpoint runs/ave-clip-b16-tiny --data /data/ave-cache --json > test.json
    python -m stgcma push --checkpoint runs/ave-clip-b16-tiny --repo-id me/stgcma-ave-clip-b16-tiny --metrics test.json
    python -m stgcma push --checkpoint default:ave --out shared/ave      # write the folder only (works offline)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stgcma.cli import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True,
                        help="checkpoint or run folder, or default:TASK (the embedded default)")
    parser.add_argument("--repo-id", help="Hub repo owner/name to upload to (created when missing)")
    parser.add_argument("--out", help="also (or, without --repo-id, only) write the shareable folder here")
    parser.add_argument("--metrics", help="JSON file of measured metrics for the card (e.g. from eval --json)")
    parser.add_argument("--metrics-command", help="the command that measured --metrics (default: the eval command)")
    parser.add_argument("--data", help="training data named on the card (default: the run's config.json)")
    parser.add_argument("--license", default="mit", help="licence id of the adapter weights (default mit)")
    parser.add_argument("--private", action="store_true", help="create the Hub repo private")
    parser.add_argument("--message", help="commit message")


def run(args: argparse.Namespace) -> int:
    from stgcma.checkpoint import CheckpointError
    from stgcma.hub import HubError, checkpoint_files, push_to_hub, save_pretrained

    if not (args.repo_id or args.out):
        raise UserError("give --repo-id (upload) and/or --out (write the folder)")
    card: dict = {"license": args.license}
    if args.data:
        card["data"] = args.data
    if args.metrics:
        try:
            metrics = json.loads(Path(args.metrics).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise UserError(f"--metrics {args.metrics}: {err}") from None
        card.update(metrics=metrics, metrics_command=args.metrics_command)
    try:
        if args.repo_id:
            url = push_to_hub(args.checkpoint, args.repo_id, private=args.private, commit_message=args.message,
                              staging=args.out, **card)
            print(f"uploaded {args.checkpoint} to {args.repo_id}: {url}")
        else:
            folder = save_pretrained(args.checkpoint, args.out, **card)
            print(f"wrote {folder}: {', '.join(checkpoint_files(folder))}")
    except (HubError, CheckpointError, ValueError, OSError) as err:
        raise UserError(str(err)) from None
    return 0
