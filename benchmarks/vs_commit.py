"""Time this checkout's STG-CMA against another commit's on the same machine, in alternating processes.

    python benchmarks/vs_commit.py 182364d                      # CLIP ViT-B/16 Tiny, AVE, batch 1
    python benchmarks/vs_commit.py HEAD~3 --preset synth-vit --rounds 3
    python benchmarks/vs_commit.py 182364d --compile            # this checkout through torch.compile

Each round starts one process per checkout (the other commit from a temporary ``git worktree``), in
alternating order. A process times the forward pass (eval mode, no gradients) and the forward and
backward pass of a training step (train mode; loss: the mean square of the AVE logits), each the
minimum of ``--repeats`` after one untimed call, with random weights. Printed: each checkout's best
times over the rounds, and this checkout's over the other's (below 1: this checkout is faster).
``--compile``: this checkout's model runs through ``torch.compile`` (the other commit's stays eager); the
untimed first call of each pass pays the compilation. The other commit's ``stgcma.model.create_model``
must take ``(preset, overrides)``, as it has since the first release.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def worker(preset: str, repeats: int, threads: int, compiled: bool = False) -> dict[str, float]:
    """Best forward and forward+backward seconds of the ``stgcma`` on ``sys.path`` (``compiled``: through
    torch.compile)."""
    import torch

    from stgcma.model import create_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model(preset, {"backbone.pretrained": None})
    pre = model.config.preprocess
    video = torch.randn(1, pre.num_segments, 3, pre.image_size, pre.image_size)
    audio = torch.randn(1, pre.num_segments, 1, pre.target_frames, pre.num_mel_bins)
    run = torch.compile(model) if compiled else model

    def forward() -> None:
        model.eval()
        with torch.no_grad():
            run(video, audio)

    def forward_backward() -> None:
        model.train()
        run(video, audio)["logits"].square().mean().backward()

    best = {}
    for name, fn in (("forward", forward), ("forward_backward", forward_backward)):
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        best[name] = min(times)
    return best


def run_worker(checkout: Path, args: argparse.Namespace, compiled: bool = False) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    cmd = [sys.executable, __file__, "--worker", "--preset", args.preset, "--repeats", str(args.repeats),
           "--threads", str(args.threads), *(["--compile"] if compiled else [])]
    done = subprocess.run(cmd, env=env, cwd=checkout, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the timing process in {checkout} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("commit", nargs="?", help="the commit to compare with (any git revision)")
    parser.add_argument("--preset", default="clip-b16-tiny")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="run this checkout's model through torch.compile")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.preset, args.repeats, args.threads, args.compile)))
        return
    if not args.commit:
        parser.error("name the commit to compare with")
    rev = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", args.commit], capture_output=True, text=True)
    if rev.returncode != 0:
        parser.error(f"{args.commit!r} is not a commit of {HERE}")
    with tempfile.TemporaryDirectory() as tmp:
        other = Path(tmp) / "other"
        git = ["git", "-C", str(HERE), "worktree"]
        subprocess.run([*git, "add", "--detach", "-q", str(other), args.commit], check=True)
        try:
            best: dict[str, dict[str, float]] = {"this": {}, "other": {}}
            for round_ in range(args.rounds):
                order = [("this", HERE), ("other", other)]
                for label, checkout in order if round_ % 2 == 0 else order[::-1]:
                    for key, value in run_worker(checkout, args, args.compile and label == "this").items():
                        best[label][key] = min(best[label].get(key, value), value)
        finally:
            subprocess.run([*git, "remove", "--force", str(other)], check=False)
    print(f"preset {args.preset}, batch 1, {args.threads} threads, best of {args.rounds} rounds x {args.repeats}"
          + (", this checkout through torch.compile" if args.compile else ""))
    print(f"{'':<18}{'this checkout':>14}{rev.stdout.strip():>14}{'ratio':>8}")
    for key in ("forward", "forward_backward"):
        this, that = best["this"][key], best["other"][key]
        print(f"{key:<18}{this:>12.3f} s{that:>12.3f} s{this / that:>7.2f}x")


if __name__ == "__main__":
    main()
