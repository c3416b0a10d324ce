"""``python -m stgcma params``: parameter counts of the named presets next to the paper's.

Models are built with pretrained weights off, so this runs offline. "total" counts the frozen
trunk once (it is shared by both streams), the frozen audio patch embedding and the trainable part;
not CLIP's text tower or projection, nor the backbone's own classifier.
"""

from __future__ import annotations

import argparse
import gc
import json

# name -> (trainable M, total M, AVE accuracy %) as reported (total of clip-l14-tiny corrected: the
# paper prints 324.1M, a misprint for frozen 303.4M + 10.68M).
REFERENCE: dict[str, tuple[float, float, float]] = {
    "clip-b16-tiny": (3.53, 89.6, 76.3),
    "clip-b16-base": (11.50, 97.5, 78.7),
    "clip-l14-tiny": (10.68, 314.1, 82.2),
    "clip-l14-base": (20.12, 323.6, 83.3),
    "swin-b-tiny": (5.60, 92.3, 81.1),
    "swin-b-base": (10.07, 96.8, 81.4),
    "swin-l-tiny": (11.74, 206.7, 82.0),
    "swin-l-large": (19.03, 214.0, 82.5),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("presets", nargs="*", help="preset names (default: the eight paper presets)")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")


def count(name: str) -> dict:
    """Build preset ``name`` without pretrained weights and count its parameters."""
    from stgcma.model import create_model

    model = create_model(name, {"backbone.pretrained": None})
    counts = model.parameter_counts()
    del model
    gc.collect()
    ref = REFERENCE.get(name)
    row = {"name": name, "trainable": counts["trainable"], "total": counts["total"]}
    if ref:
        row.update(paper_trainable=int(ref[0] * 1e6), paper_total=int(ref[1] * 1e6), paper_ave_accuracy=ref[2])
    return row


def run(args: argparse.Namespace) -> int:
    from stgcma.cli import UserError
    from stgcma.config import ConfigError

    names = args.presets or list(REFERENCE)
    try:
        rows = [count(n) for n in names]
    except ConfigError as err:
        raise UserError(str(err)) from None
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'preset':15s} {'trainable':>10s} {'paper':>7s} {'diff':>7s} {'total':>9s} {'paper':>7s} {'diff':>7s}")
    for r in rows:
        t, tot = r["trainable"] / 1e6, r["total"] / 1e6
        if "paper_trainable" in r:
            pt, ptot = r["paper_trainable"] / 1e6, r["paper_total"] / 1e6
            print(f"{r['name']:15s} {t:9.2f}M {pt:6.2f}M {100 * (t / pt - 1):+6.2f}% "
                  f"{tot:8.1f}M {ptot:6.1f}M {100 * (tot / ptot - 1):+6.2f}%")
        else:
            print(f"{r['name']:15s} {t:9.3f}M {'':>7s} {'':>7s} {tot:8.3f}M")
    return 0
