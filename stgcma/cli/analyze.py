"""``python -m stgcma analyze VIDEO --out DIR``: every output for one clip, with a progress bar.

Writes result.json, overlay.mp4 (AVS masks over the video, original audio), masks/*.png,
timeline.png (AVE), attention_*.png and attribution_*.png (one explained prediction) and, with
``--question``, the AVQA answers. A clip unlike anything the model was trained on is reported
first, in plain words (``out_of_world`` in result.json; ``stgcma.ood``). Bad input exits with
status 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", help="a video file (any common container/codec)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--checkpoint", default="default",
                        help="'default' (embedded), a folder with ave/avs/avqa checkpoints, one checkpoint, "
                             "or a Hub repo id")
    parser.add_argument("--question", action="append", default=[], help="an AVQA question (repeatable)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-duration", type=float, default=None, help="seconds to analyse at most")
    parser.add_argument("--no-explain", action="store_true",
                        help="skip the attention and attribution images (IG is the slow part on CPU)")
    parser.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from stgcma.checkpoint import CheckpointError
    from stgcma.cli import UserError
    from stgcma.inference import Predictor
    from stgcma.media import MediaError, MediaLimits, probe_file
    from stgcma.report import write_report

    limits = MediaLimits(max_duration_s=args.max_duration) if args.max_duration else None
    bar = tqdm(total=100, desc="analyse", disable=args.quiet, bar_format="{l_bar}{bar}| {elapsed}")

    def stage(start: float, span: float):
        def update(fraction: float) -> None:
            bar.n = int(start + span * min(max(fraction, 0.0), 1.0))
            bar.refresh()
        return update

    try:
        probe_file(args.video, limits)  # a file that is no video is refused before the models load
        predictor = Predictor.from_pretrained(args.checkpoint, device=args.device, limits=limits)
        analysis = predictor.analyze(args.video, progress=stage(0, 40))
        stage(40, 0)(1.0)
        result = write_report(predictor, args.video, analysis, args.out, args.question, progress=stage(50, 40),
                              explain=not args.no_explain)
    except (MediaError, CheckpointError, ValueError, OSError) as err:
        bar.close()
        raise UserError(str(err).splitlines()[0]) from None
    bar.n = 100
    bar.close()
    summary = {"out": args.out, "out_of_world": result.get("out_of_world"), "warnings": result["warnings"],
               "files": result["files"]}
    world = result.get("ood") or {}
    if result.get("out_of_world"):
        print(f"OUT OF WORLD: {world['message']} (distance {result['ood_distance']:.2f}, "
              f"threshold {result['ood_threshold']:.2f})")
    elif result.get("out_of_world") is None and world.get("note"):
        print(f"note: {world['note']}")
    if result.get("ave"):
        summary["ave_labels"] = result["ave"]["labels"]
    for answer in result.get("answers", []):
        print(f"Q: {answer['question']}\nA: {answer['answer']} ({answer['probability']:.0%})")
    print(json.dumps(summary, indent=2))
    return 0
