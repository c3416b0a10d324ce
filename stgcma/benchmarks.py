"""Speed benchmarks that print ratios (``python -m stgcma bench ...``).

Ratios, not seconds, are what we compare across machines: each benchmark times the thing under
test and its reference in the same process, interleaved, and keeps the minimum over repeats (the
least disturbed run on a shared machine).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def min_time(fns: dict[str, Callable[[], object]], repeats: int = 3, warmup: int = 1) -> dict[str, float]:
    """Minimum wall time of each callable over ``repeats`` interleaved rounds, after ``warmup`` rounds."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def bench_model(preset: str = "clip-b16-tiny", batch: int = 1, repeats: int = 3,
                device: str = "cpu", dtype: torch.dtype = torch.float32) -> dict[str, float]:
    """Forward time of STG-CMA against the bare frozen tower on the same (video, audio) inputs.

    ``frozen_trunk`` is the frozen backbone run over both streams with no adapters (the
    linear-probe encoder: the source model's own modules on the same inputs). As a check that the
    wrapping itself costs nothing, ``source_video``/``trunk_video`` time the source library's own
    image-tower forward and our trunk over the video frames alone.
    """
    from stgcma.backbones import source_forward, source_model
    from stgcma.model import create_model

    model = create_model(preset, {"backbone.pretrained": None}).eval().to(device, dtype)
    probe = create_model(preset, {"backbone.pretrained": None, "adapter.method": "linear_probe"})
    probe = probe.eval().to(device, dtype)
    pre = model.config.preprocess
    T = pre.num_segments
    video = torch.randn(batch, T, 3, pre.image_size, pre.image_size, device=device, dtype=dtype)
    audio = torch.randn(batch, T, 1, pre.target_frames, pre.num_mel_bins, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def run(fn):
        def timed():
            with torch.no_grad():
                fn()
            sync()
        return timed

    fns = {
        "stgcma": run(lambda: model.encoder(video, audio)),
        "frozen_trunk": run(lambda: probe.encoder(video, audio)),
    }
    source = source_model(model.config.backbone).to(device, dtype)
    frames = video.flatten(0, 1)  # (B*T, 3, S, S)
    fns["source_video"] = run(lambda: source_forward(model.config.backbone, source, frames))
    fns["trunk_video"] = run(lambda: model.encoder.trunk(frames))
    times = min_time(fns, repeats=repeats)
    times["ratio_vs_frozen_trunk"] = times["stgcma"] / times["frozen_trunk"]
    times["ratio_trunk_vs_source"] = times["trunk_video"] / times["source_video"]
    return times


def bench_decode_vs_model(preset: str | None = None, repeats: int = 3) -> dict[str, float]:
    """Time to turn a 10-s 720p 30 fps clip (stereo 48 kHz) into model inputs vs one forward pass over them.

    The model is the embedded default's AVE model when present (else ``preset``, default synth-vit,
    randomly initialised): same segments, same preprocessing, CPU, no gradients.
    """
    import tempfile
    from pathlib import Path

    from stgcma.checkpoint import CheckpointError, load_model
    from stgcma.media import load_clip
    from stgcma.media.bench import make_bench_clip
    from stgcma.model import create_model

    try:
        model = load_model("default", task="ave")[0] if preset is None else create_model(preset)
    except CheckpointError:
        model = create_model("synth-vit")
    model.eval()
    pre = model.config.preprocess
    with tempfile.TemporaryDirectory() as tmp:
        path = make_bench_clip(Path(tmp) / "bench.mp4")
        inputs = load_clip(path, pre)
        video, audio = inputs.video[None], inputs.audio[None]  # (1, N, ...)

        def forward():
            with torch.no_grad():
                model(video[:, : pre.num_segments], audio[:, : pre.num_segments])

        times = min_time({"decode_to_inputs": lambda: load_clip(path, pre), "model_forward": forward}, repeats)
    times["segments"] = float(inputs.num_segments)
    times["ratio_decode_vs_forward"] = times["decode_to_inputs"] / times["model_forward"]
    return times


def bench_synth(world: str = "music", size: int = 112, repeats: int = 20, segments: int = 10) -> dict:
    """Time to generate one SynthAV clip (scene, T frames at ``size`` px, masks, audio) on this thread.

    Each repeat draws a NEW clip index (the cost training pays when it draws fresh clips every epoch);
    the minimum and the median over ``repeats`` clips are reported, after one warm-up clip that loads the
    world's bank.
    """
    import numpy as np

    from stgcma.data.synthav.audio import render_audio
    from stgcma.data.synthav.clip import make_clip
    from stgcma.data.synthav.render import render_frames, render_masks, segment_times
    from stgcma.data.synthav.scene import NUM_MUSIC_CLASSES, SynthConfig

    cfg = SynthConfig(num_segments=segments, world=world, num_classes=NUM_MUSIC_CLASSES if world == "music" else 8)
    times = segment_times(segments)

    def one(index: int) -> None:
        scene = make_clip(0, index, cfg).scene
        render_frames(scene, times, size)
        render_masks(scene, times, size)
        render_audio(scene, cfg.sample_rate)

    one(10**6)
    seconds = []
    for index in range(repeats):
        start = time.perf_counter()
        one(index)
        seconds.append(time.perf_counter() - start)
    return {"world": world, "size": size, "segments": segments, "clips": repeats,
            "clip_min": float(min(seconds)), "clip_median": float(np.median(seconds))}


TRAIN_VARIANTS: dict[str, dict[str, object]] = {
    "stgcma": {},
    "stgcma_checkpointing": {"checkpointing": True},
    "lavish": {"adapter.method": "lavish"},
    "linear_probe": {"adapter.method": "linear_probe"},
    "full_finetune": {"adapter.method": "full_finetune"},
}


def _rss_bytes() -> int:
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def train_step_worker(preset: str, overrides: dict[str, object], batch: int, steps: int, device: str) -> dict:
    """In THIS process: seconds per AVE training step (minimum over ``steps``) and peak memory of a step.

    Peak memory: CUDA's max allocated bytes, or on CPU the process's peak RSS above its RSS just before
    the first step (model, optimizer and inputs already built), so one process measures one variant.
    """
    import resource

    from stgcma.model import create_model

    checkpointing = bool(overrides.pop("checkpointing", False))
    model = create_model(preset, {"backbone.pretrained": None, **overrides}).train().to(device)
    model.encoder.checkpointing = checkpointing
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, 1e-4)
    pre = model.config.preprocess
    T = pre.num_segments
    video = torch.randn(batch, T, 3, pre.image_size, pre.image_size, device=device)
    audio = torch.randn(batch, T, 1, pre.target_frames, pre.num_mel_bins, device=device)
    label = torch.zeros(batch * T, dtype=torch.long, device=device)
    cuda = device.startswith("cuda")
    before = _rss_bytes()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    seconds = []
    for _ in range(steps + 1):  # the first step (lazy allocations, Adam state) is not timed
        start = time.perf_counter()
        logits = model(video, audio)["logits"].flatten(0, 1)
        torch.nn.functional.cross_entropy(logits, label).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    if cuda:
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    return {"step_seconds": min(seconds[1:]), "peak_bytes": int(peak), "trainable": sum(p.numel() for p in params)}


def bench_train(preset: str = "synth-vit", batch: int = 2, steps: int = 3, rounds: int = 2,
                device: str = "cpu") -> dict:
    """Training-step time and peak memory of STG-CMA vs LAVISH, the linear probe, full fine-tuning and
    STG-CMA with activation checkpointing: one fresh process per variant and round, rounds interleaved,
    minimum kept. Returns per-variant numbers and the ratios."""
    import json
    import subprocess
    import sys

    rows: dict[str, dict] = {}
    for _ in range(rounds):
        for name, overrides in TRAIN_VARIANTS.items():
            payload = json.dumps({"preset": preset, "overrides": overrides, "batch": batch, "steps": steps,
                                  "device": device})
            done = subprocess.run([sys.executable, "-m", "stgcma.benchmarks", payload], capture_output=True,
                                  text=True, check=True)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            best = rows.setdefault(name, row)
            best["step_seconds"] = min(best["step_seconds"], row["step_seconds"])
            best["peak_bytes"] = min(best["peak_bytes"], row["peak_bytes"])
    s, m = ({k: v[key] for k, v in rows.items()} for key in ("step_seconds", "peak_bytes"))
    return {"preset": preset, "batch": batch, "device": device, "variants": rows,
            "train_step_ratio_vs_lavish": s["stgcma"] / s["lavish"],
            "train_memory_ratio_vs_full_ft": m["stgcma"] / m["full_finetune"],
            "checkpointing_memory_ratio": m["stgcma_checkpointing"] / m["stgcma"],
            "checkpointing_time_ratio": s["stgcma_checkpointing"] / s["stgcma"]}


if __name__ == "__main__":
    import json
    import sys

    args = json.loads(sys.argv[1])
    torch.manual_seed(0)
    print(json.dumps(train_step_worker(args["preset"], dict(args["overrides"]), args["batch"], args["steps"],
                                       args["device"])))
