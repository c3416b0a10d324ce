"""Command-line interface: one module per sub-command, each with ``add_arguments`` and ``run``.

``python -m stgcma --help`` lists the commands. A command that fails on bad input prints one line
(``error: ...``) to stderr and exits with status 2; it never shows a traceback for an input problem.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

# command name -> (module under stgcma.cli, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "params": ("params", "parameter counts of the named presets next to the paper's"),
    "inspect": ("inspect_cmd", "print a video's media facts and exactly what the model will see"),
    "synth": ("synth", "write a SynthAV dataset (mp4 clips + labels) to a folder, or in a public dataset's layout"),
    "prepare": ("prepare", "decode a dataset folder once into a memory-mapped cache that train/eval read"),
    "analyze": ("analyze", "analyse a video: AVS overlay, AVE timeline, AVQA answers, result.json"),
    "train": ("train", "fine-tune STG-CMA on a task (CPU, one GPU, or under torchrun)"),
    "eval": ("eval", "a checkpoint's metrics on a dataset"),
    "refit": ("refit", "train a checkpoint's head again on cached encoder features (many more head steps)"),
    "calibrate-ood": ("calibrate_ood", "add the statistics of its training world to a checkpoint (out-of-world check)"),
    "build-default": ("build_default", "rebuild the embedded default (assets/default) from scratch"),
    "study": ("study", "STG-CMA vs baselines and its stage ablation on SynthAV (a table)"),
    "bench": ("bench", "speed benchmarks that print ratios"),
    "recipes": ("recipes", "the paper rows this project can train: prepare, train and eval commands per row"),
    "push": ("push", "a checkpoint + generated model card, uploaded to the Hugging Face Hub (or written to --out)"),
    "bounds": ("bounds", "what any model can score on a SynthAV test set: AVE and AVS ceilings, AVQA floors"),
}


DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)  # a full or read-only disk: one line, not a traceback


class UserError(Exception):
    """An input problem to report as one line, without a traceback."""


def quiet_ffmpeg() -> None:
    """FFmpeg prints its own diagnostics (e.g. "moov atom not found") to stderr; commands report problems
    themselves in one line, so only FFmpeg panics may reach the terminal."""
    import logging

    import av.logging

    av.logging.set_level(av.logging.PANIC)
    logging.getLogger("libav").setLevel(logging.CRITICAL)  # PyAV forwards FFmpeg's messages to this logger


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stgcma",
        description="STG-CMA Studio: parameter-efficient audio-visual learning with one frozen image transformer.",
        epilog="Run 'python -m stgcma COMMAND --help' for a command's options.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(f"stgcma.cli.{module_name}")
        except ModuleNotFoundError as err:
            if err.name != f"stgcma.cli.{module_name}":
                raise
            continue
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    args = parser.parse_args(argv)
    quiet_ffmpeg()
    try:
        return int(args._run(args) or 0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as err:
        if err.errno not in DISK_ERRORS:
            raise
        where = f" ({err.filename})" if err.filename else ""
        print(f"error: {os.strerror(err.errno).lower()}{where}; what was saved before stays as it was", file=sys.stderr)
        return 2
