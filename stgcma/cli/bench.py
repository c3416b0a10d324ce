"""``python -m stgcma bench {model,train,decode,synth,cache}``: speed benchmarks that print ratios."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=["model", "train", "decode", "synth", "cache"],
                        help="model: STG-CMA vs bare frozen tower; train: training step time and peak memory vs "
                        "LAVISH, linear probe, full fine-tuning and activation checkpointing; decode: media decoding "
                        "vs one small-backbone forward; synth: SynthAV clip generation; cache: items/s of a prepared "
                        "dataset cache (--data) vs decoding its source on the fly, and vs a training step of --preset")
    parser.add_argument("--preset", default=None, help="model preset (model: clip-b16-tiny; decode: embedded default)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--world", default="music", help="synth: SynthAV world (default music)")
    parser.add_argument("--size", type=int, default=112, help="synth: frame side in pixels (default 112)")
    parser.add_argument("--data", help="cache: the cache folder written by prepare")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    import torch

    from stgcma import benchmarks

    if args.what == "model":
        result = benchmarks.bench_model(args.preset or "clip-b16-tiny", batch=args.batch, repeats=args.repeats,
                                        device=args.device, dtype=getattr(torch, args.dtype))
    elif args.what == "cache":
        from stgcma.cli import UserError
        from stgcma.data.prepare import bench_cache

        if not args.data:
            raise UserError("bench cache needs --data CACHE (a folder written by python -m stgcma prepare)")
        result = bench_cache(args.data, n=max(args.repeats, 8), step_preset=args.preset, batch=max(args.batch, 2),
                             device=args.device)
    elif args.what == "train":
        result = benchmarks.bench_train(args.preset or "synth-vit", batch=args.batch, device=args.device)
        variants = result.pop("variants")
        if not args.json:
            for name, row in variants.items():
                print(f"{name:24s} {row['step_seconds']:8.3f} s/step {row['peak_bytes'] / 2**20:9.1f} MiB peak "
                      f"{row['trainable'] / 1e6:8.3f}M trainable")
        else:
            result["variants"] = variants
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
            unit = "" if "ratio" in key or key in ("segments", "clips", "size", "batch") else " s"
            print(f"{key:24s} {value:8.4f}{unit}")
    return 0
