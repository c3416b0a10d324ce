"""``python -m stgcma inspect VIDEO``: a video's media facts and exactly what STG-CMA will see.

Decodes the clip with the preset's preprocessing (METHOD.md "Inputs"): one frame and one fbank per
one-second segment, grouped in windows of the model's T segments. Bad input exits with status 2
and a one-line message.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

DEFAULT_PRESET = "vit-test"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", help="path of the video file")
    parser.add_argument("--preset", default=None,
                        help=f"preset whose preprocessing to apply (default: {DEFAULT_PRESET} if present)")
    parser.add_argument("--max-duration", type=float, default=None, help="longest clip analysed, seconds")
    parser.add_argument("--no-truncate", action="store_true", help="refuse over-long clips instead of cutting")
    parser.add_argument("--json", action="store_true", help="print a JSON object instead of text")


def _preprocess(name: str | None) -> tuple[str, Any]:
    from stgcma.config import PreprocessConfig, list_presets, load_preset

    if name is None:
        if DEFAULT_PRESET not in list_presets():
            return "defaults", PreprocessConfig()
        name = DEFAULT_PRESET
    return name, load_preset(name).preprocess


def describe(inputs: Any, preset: str, cfg: Any) -> dict[str, Any]:
    """Facts + model view of a loaded clip as a JSON-friendly dict."""
    clip = inputs.clip
    plan = inputs.windows(cfg.num_segments)
    return {
        "file": clip.facts(),
        "model": {
            "preset": preset,
            "segments": inputs.num_segments,
            "segment_seconds": cfg.segment_seconds,
            "T": cfg.num_segments,
            "windows": plan.num_windows,
            "padded_positions": int((~plan.mask).sum()),
            "video_shape": list(inputs.video.shape),
            "audio_shape": list(inputs.audio.shape),
            "frame_times": [round(float(t), 3) for t in clip.frame_times],
            "sample_rate": cfg.sample_rate,
            "image_resize": f"plain resize {clip.frames.shape[2]}x{clip.frames.shape[1]} -> "
                            f"{cfg.image_size}x{cfg.image_size}",
        },
        "warnings": list(clip.warnings),
    }


def _text(info: dict[str, Any]) -> str:
    f, m = info["file"], info["model"]
    audio = (f"{f['audio_codec']}, {f['audio_channels']} ch, {f['audio_sample_rate']} Hz -> mono "
             f"{m['sample_rate']} Hz" if f["has_audio"] else f"none (silence at {m['sample_rate']} Hz)")
    times = m["frame_times"]
    shown = ", ".join(f"{t:g}" for t in times[:6]) + (", ..." if len(times) > 6 else "")
    lines = [
        f"file      {f['path']} ({f['file_bytes'] / 1e6:.2f} MB, {f['container']})",
        f"video     {f['video_codec']}, {f['width']}x{f['height']} displayed, rotation {f['rotation']}, "
        f"{f['fps']:.2f} fps, {f['source_duration']:.2f} s",
        f"audio     {audio}",
        f"model     preset {m['preset']}",
        f"segments  {m['segments']} x {m['segment_seconds']:g} s over {f['duration']:.2f} s; "
        f"{m['windows']} window(s) of T={m['T']} ({m['padded_positions']} padded position(s))",
        f"frames    {tuple(m['video_shape'])} ({m['image_resize']}), taken at {shown} s "
        f"({f['decode_mode']} decode)",
        f"audio in  {tuple(m['audio_shape'])} kaldi fbank (segments, 1, time frames, mel bins)",
    ]
    lines += [f"warning   {w}" for w in info["warnings"]]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from stgcma.cli import UserError
    from stgcma.config import ConfigError
    from stgcma.media.clip import load_clip
    from stgcma.media.decode import MediaLimits
    from stgcma.media.errors import MediaError

    try:
        preset, cfg = _preprocess(args.preset)
    except ConfigError as err:
        raise UserError(str(err)) from None
    limits = MediaLimits(truncate=not args.no_truncate)
    if args.max_duration is not None:
        limits.max_duration_s = args.max_duration
    with tqdm(total=100, desc="decode", unit="%", delay=0.5, leave=False) as bar:
        def progress(fraction: float) -> None:
            bar.update(int(fraction * 100) - bar.n)

        try:
            inputs = load_clip(args.video, cfg, limits, progress=progress)
        except MediaError as err:
            raise UserError(str(err)) from None
    info = describe(inputs, preset, cfg)
    print(json.dumps(info, indent=2) if args.json else _text(info))
    return 0
