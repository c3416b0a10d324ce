"""``python -m stgcma bench {model,decode}``: speed benchmarks that print ratios."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=["model", "decode", "synth"], help="model: STG-CMA vs bare frozen tower; "
                        "decode: media decoding vs one small-backbone forward; synth: SynthAV clip generation")
    parser.add_argument("--preset", default=None, help="model preset (model: clip-b16-tiny; decode: embedded default)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--world", default="music", help="synth: SynthAV world (default music)")
    parser.add_argument("--size", type=int, default=112, help="synth: frame side in pixels (default 112)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    import torch

    from stgcma import benchmarks

    if args.what == "model":
        result = benchmarks.bench_model(args.preset or "clip-b16-tiny", batch=args.batch, repeats=args.repeats,
                                        device=args.device, dtype=getattr(torch, args.dtype))
    elif args.what == "synth":
        torch.set_num_threads(1)
        result = benchmarks.bench_synth(args.world, size=args.size, repeats=max(args.repeats, 20))
    else:
        result = benchmarks.bench_decode_vs_model(args.preset, repeats=args.repeats)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            if isinstance(value, str | int):
                print(f"{key:24s} {value}")
                continue
            unit = "" if key.startswith("ratio") or key in ("segments", "clips", "size") else " s"
            print(f"{key:24s} {value:8.4f}{unit}")
    return 0
