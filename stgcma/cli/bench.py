"""``python -m stgcma bench {all,model,train,e2e,decode,synth,cache}``: speed benchmarks that print ratios."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", nargs="?", default="all",
                        choices=["all", "model", "train", "e2e", "decode", "synth", "cache"],
                        help="all (default): model for three backbones, train and e2e in one run, one JSON with "
                        "every ratio; model: STG-CMA vs bare frozen tower; e2e: a 10-s clip through the app's path "
                        "(decode, model, rendering, the overlay mp4, explanations, a second question) and analysis "
                        "time vs clip "
                        "length (5-80 s) with the fit's exponent; train: training step time and peak memory vs "
                        "LAVISH, linear probe, full fine-tuning and activation checkpointing; decode: media decoding "
                        "vs one small-backbone forward; synth: SynthAV clip generation; cache: items/s of a prepared "
                        "dataset cache (--data) vs decoding its source on the fly, and vs a training step of --preset")
    parser.add_argument("--preset", default=None, help="model preset (model: clip-b16-tiny; decode: embedded default)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2,
                        help="train: fresh processes per variant, interleaved; the minimum is kept (default 2)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--world", default="music", help="synth: SynthAV world (default music)")
    parser.add_argument("--size", type=int, default=112, help="synth: frame side in pixels (default 112)")
    parser.add_argument("--data", help="cache: the cache folder written by prepare")
    parser.add_argument("--checkpoint", default="default", help="e2e/all: the checkpoint analysed end to end")
    parser.add_argument("--compile", action="store_true",
                        help="model: torch.compile both encoders (the eager forward timed beside them); "
                             "train: add torch.compile'd STG-CMA and widened-LAVISH steps")
    parser.add_argument("--variants", default=None,
                        help="train: only these variants, comma-separated (stgcma, stgcma_checkpointing, "
                             "stgcma_checkpointing_3_4, lavish, linear_probe, full_finetune, lavish_matched, "
                             "and with --compile stgcma_compiled, lavish_matched_compiled); "
                             "the ratios of the pairs timed")
    parser.add_argument("--quick", action="store_true", help="all/e2e: fewer repeats and clip lengths (smoke run)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    import torch

    from stgcma import benchmarks

    if args.what == "all":
        result = benchmarks.bench_all(args.device, quick=args.quick, checkpoint=args.checkpoint)
        if not args.json:
            _print_all(result)
            return 0
    elif args.what == "e2e":
        result = benchmarks.bench_e2e(args.checkpoint, repeats=1 if args.quick else 2,
                                      scaling=benchmarks.QUICK_SCALING_LENGTHS if args.quick
                                      else benchmarks.SCALING_LENGTHS)
    elif args.what == "model":
        result = benchmarks.bench_model(args.preset or "clip-b16-tiny", batch=args.batch, repeats=args.repeats,
                                        device=args.device, dtype=getattr(torch, args.dtype), compile=args.compile)
    elif args.what == "cache":
        from stgcma.cli import UserError
        from stgcma.data.prepare import bench_cache

        if not args.data:
            raise UserError("bench cache needs --data CACHE (a folder written by python -m stgcma prepare)")
        result = bench_cache(args.data, n=max(args.repeats, 8), step_preset=args.preset, batch=max(args.batch, 2),
                             device=args.device)
    elif args.what == "train":
        from stgcma.cli import UserError

        only = [v.strip() for v in args.variants.split(",") if v.strip()] if args.variants else None
        try:
            result = benchmarks.bench_train(args.preset or "synth-vit", batch=args.batch, device=args.device,
                                            compile=args.compile, rounds=args.rounds, only=only)
        except ValueError as err:
            raise UserError(str(err)) from None
        variants = result.pop("variants")
        if not args.json:
            for name, row in variants.items():
                rounds = ", ".join(f"{t:.3f}" for t in row["round_seconds"])
                print(f"{name:24s} {row['step_seconds']:8.3f} s/step {row['peak_bytes'] / 2**20:9.1f} MiB peak "
                      f"{row['trainable'] / 1e6:8.3f}M trainable   rounds: {rounds}")
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
        width = max(24, *(len(k) for k in result))
        for key, value in result.items():
            if isinstance(value, dict):
                print(f"{key:{width}s} " + ", ".join(f"{k}: {v:.2f}" for k, v in value.items()))
                continue
            if isinstance(value, str | int):
                print(f"{key:{width}s} {value}")
                continue
            unit = "" if "ratio" in key or key in ("segments", "clips", "size", "batch") else " s"
            print(f"{key:{width}s} {value:8.4f}{unit}")
    return 0


def _print_all(result: dict) -> None:
    """The table README's performance section shows."""
    print("setup: " + ", ".join(f"{k} {v}" for k, v in result["setup"].items()))
    print("\ninference (forward, batch 1, no gradients)   STG-CMA s   frozen backbone s   ratio")
    for preset, row in result["inference"].items():
        print(f"  {preset:40s} {row['stgcma_seconds']:9.3f} {row['backbone_seconds']:19.3f} {row['ratio']:7.2f}x")
    print("\ntraining step (synth-vit, AVE, batch 2)       s/step   peak MiB   trainable")
    for name, row in result["train"]["variants"].items():
        mib, millions = row["peak_bytes"] / 2**20, row["trainable"] / 1e6
        print(f"  {name:40s} {row['step_seconds']:8.3f} {mib:10.1f} {millions:10.3f}M")
    e2e = result.get("e2e")
    if e2e:
        clip = f"{e2e['clip_seconds']:.0f}-s {e2e['clip_size']} clip"
        print(f"\nend to end ({clip}, {e2e['checkpoint']}: {e2e['tasks']})")
        names = {"render": "render (what the page shows)", "overlay_video": "overlay mp4 (after, for downloads)"}
        for phase in ("decode", "model", "render", "overlay_video", "explanations", "requery", "viewer"):
            if f"{phase}_seconds" in e2e:
                print(f"  {names.get(phase, phase):40s} {e2e[phase + '_seconds']:8.3f} s")
        print("  scaling (" + e2e["scaling_size"] + "): " + ", ".join(
            f"{k} s -> {v:.2f} s" for k, v in e2e["scaling_seconds"].items()))
    print("\nratios")
    for key, value in result.items():
        if isinstance(value, float):
            print(f"  {key:40s} {value:8.3f}")
