"""``python -m stgcma synth``: write a SynthAV dataset (mp4 clips + label files) to a folder.

Example::

    python -m stgcma synth --out data/synthav --n 200 --seed 0 --task all --segments 10 --size 224
    python -m stgcma synth --layout ave --out data/ave-rehearsal --n 40   # laid out like the real AVE
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stgcma.cli import UserError
from stgcma.data.synthav.clip import SPLITS
from stgcma.data.synthav.folder import META, write_synthav
from stgcma.data.synthav.layouts import LAYOUTS, PROVENANCE, write_layout
from stgcma.data.synthav.scene import WORLDS, SynthConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the command's options."""
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--n", type=int, required=True, help="number of clips")
    parser.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    parser.add_argument("--task", choices=("ave", "avs", "avqa", "all"), default="all",
                        help="which label files to write (default all)")
    parser.add_argument("--split", choices=tuple(SPLITS), default="train",
                        help="independent clip stream of the seed (default train)")
    parser.add_argument("--segments", type=int, default=None,
                        help="seconds per clip, T (default 10; 5 when --task avs)")
    parser.add_argument("--size", type=int, default=224, help="frame side in pixels (default 224)")
    parser.add_argument("--fps", type=int, default=12, help="video frame rate (default 12)")
    parser.add_argument("--classes", type=int, default=None,
                        help="number of object classes K (default: the world's, 14 music, 8 shapes)")
    parser.add_argument("--world", choices=WORLDS, default="music",
                        help="music (default): OpenMoji pictures and SoundFont notes; shapes: coloured shapes "
                             "and tones")
    parser.add_argument("--mode", choices=("ms3", "s4"), default="ms3",
                        help="ms3: several objects may sound; s4: exactly one sounds (default ms3)")
    parser.add_argument("--force", action="store_true", help="overwrite a SynthAV dataset already in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--layout", choices=LAYOUTS, default=None,
                        help="write the clips in a public dataset's layout (file names, annotation formats, "
                             "splits ~80/10/10) instead of SynthAV's own, so the real loaders read them")
    parser.add_argument("--questions", type=int, default=3, help="MUSIC-AVQA questions per video (--layout music-avqa)")
    parser.add_argument("--sheet", action="store_true",
                        help="also write OUT/contact_sheet.png: frames of the first clips with their AVS masks")


def run(args: argparse.Namespace) -> int:
    """Generate the clips; input problems become a one-line :class:`UserError`."""
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    if (out / META).exists() and not args.force:
        raise UserError(f"{out} already holds a SynthAV dataset; pass --force to overwrite it")
    if args.n < 1:
        raise UserError(f"--n must be at least 1, got {args.n}")
    if args.size < 16 or args.fps < 1:
        raise UserError(f"--size must be >= 16 and --fps >= 1, got {args.size} and {args.fps}")
    if args.layout:
        return _run_layout(args, out)
    segments = args.segments or (5 if args.task == "avs" else 10)
    try:
        config = SynthConfig(num_segments=segments, num_classes=args.classes, mode=args.mode, world=args.world)
    except ValueError as err:
        raise UserError(str(err)) from None
    tasks = ("ave", "avs", "avqa") if args.task == "all" else (args.task,)
    try:
        meta = write_synthav(out, args.n, args.seed, split=args.split, tasks=tasks, config=config,
                             size=args.size, fps=args.fps, progress=not args.quiet)
    except OSError as err:
        raise UserError(f"cannot write to {out}: {err}") from None
    if args.sheet:
        from PIL import Image

        from stgcma.data.synthav.sheet import contact_sheet

        sheet = contact_sheet(config, args.seed, args.split, clips=min(args.n, 8))
        Image.fromarray(sheet).save(out / "contact_sheet.png")
        print(f"contact sheet: {out / 'contact_sheet.png'}")
    print(f"wrote {args.n} clips ({segments} s, {args.size}px, {args.fps} fps) and {', '.join(tasks)} labels; "
          f"see {meta}")
    return 0


def _run_layout(args: argparse.Namespace, out: Path) -> int:
    """``--layout``: a rehearsal folder in a public layout."""
    if (out / PROVENANCE).exists() and not args.force:
        raise UserError(f"{out} already holds a SynthAV layout rehearsal; pass --force to overwrite it")
    try:
        root = write_layout(args.layout, out, args.n, args.seed, classes=args.classes, world=args.world,
                            segments=args.segments, size=args.size, fps=args.fps, questions=args.questions,
                            progress=not args.quiet)
    except ValueError as err:
        raise UserError(str(err)) from None
    except OSError as err:
        raise UserError(f"cannot write to {out}: {err}") from None
    print(f"wrote {args.n} clips in the {args.layout} layout; point --data at {root}")
    return 0
