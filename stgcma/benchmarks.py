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
                device: str = "cpu", dtype: torch.dtype = torch.float32, compile: bool = False) -> dict[str, float]:
    """Forward time of STG-CMA against the bare frozen tower on the same (video, audio) inputs.

    ``frozen_trunk`` is the frozen backbone run over both streams with no adapters (the
    linear-probe encoder: the source model's own modules on the same inputs). As a check that the
    wrapping itself costs nothing, ``source_video``/``trunk_video`` time the source library's own
    image-tower forward and our trunk over the video frames alone. ``compile``: both encoders go
    through ``torch.compile`` first (the warm-up round pays the compilation), and the eager STG-CMA
    forward is timed beside them (``ratio_compiled_vs_eager``).
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

    encoder, probe_encoder = model.encoder, probe.encoder
    if compile:
        encoder, probe_encoder = torch.compile(encoder), torch.compile(probe_encoder)
    fns = {
        "stgcma": run(lambda: encoder(video, audio)),
        "frozen_trunk": run(lambda: probe_encoder(video, audio)),
    }
    if compile:
        fns["stgcma_eager"] = run(lambda: model.encoder(video, audio))
    source = source_model(model.config.backbone).to(device, dtype)
    frames = video.flatten(0, 1)  # (B*T, 3, S, S)
    fns["source_video"] = run(lambda: source_forward(model.config.backbone, source, frames))
    fns["trunk_video"] = run(lambda: model.encoder.trunk(frames))
    times = min_time(fns, repeats=repeats)
    times["ratio_vs_frozen_trunk"] = times["stgcma"] / times["frozen_trunk"]
    times["ratio_trunk_vs_source"] = times["trunk_video"] / times["source_video"]
    if compile:
        times["ratio_compiled_vs_eager"] = times["stgcma"] / times["stgcma_eager"]
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
    "stgcma_checkpointing_3_4": {"checkpointing": True, "checkpoint_fraction": 0.75},
    "lavish": {"adapter.method": "lavish"},
    "linear_probe": {"adapter.method": "linear_probe"},
    "full_finetune": {"adapter.method": "full_finetune"},
}


def _trainable_count(preset: str, overrides: dict[str, object]) -> int:
    """Trainable parameters of ``preset`` with ``overrides`` (built without pretrained weights)."""
    from stgcma.model import create_model

    return create_model(preset, {"backbone.pretrained": None, **overrides}).parameter_counts()["trainable"]


def lavish_matched_overrides(preset: str) -> dict[str, object]:
    """LAVISH widened to at least STG-CMA's trainable parameters on ``preset``.

    With the preset's bottleneck ratio LAVISH trains fewer parameters than STG-CMA (1.88M vs 3.53M on
    CLIP-B/16 Tiny). This scales every stage's ratio by one factor, the first (in steps of 0.2% up from
    just below a linear estimate) that gives LAVISH 1x to 1.05x STG-CMA's trainable parameters: the
    comparison at equal parameters.
    """
    from stgcma.config import load_preset

    ratio = load_preset(preset).adapter.ratio

    def overrides(factor: float) -> dict[str, object]:
        scaled = [r * factor for r in ratio] if isinstance(ratio, list) else ratio * factor
        return {"adapter.method": "lavish", "adapter.ratio": scaled}

    target = _trainable_count(preset, {})
    one, two = _trainable_count(preset, overrides(1.0)), _trainable_count(preset, overrides(2.0))
    # parameters grow about linearly with the ratio, but an odd bottleneck width has ungrouped (twice
    # as large) convolutions: from below the linear estimate, the first factor within 5% above target
    factor = round(0.98 * max(1.0, 1.0 + (target - one) / max(two - one, 1)), 3)
    for _ in range(200):
        count = _trainable_count(preset, overrides(factor))
        if target <= count <= 1.05 * target:
            return overrides(factor)
        factor = round(factor * 1.002 + 0.001, 3)
    raise RuntimeError(f"no LAVISH ratio gives {preset!r} STG-CMA's {target} trainable parameters")


def _status_bytes(*fields: str) -> int:
    """The sum of the given ``/proc/self/status`` fields (kB there), in bytes."""
    total, found = 0, set()
    with open("/proc/self/status") as f:
        for line in f:
            name = line.split(":", 1)[0]
            if name in fields:
                total += int(line.split()[1]) * 1024
                found.add(name)
    if found != set(fields):
        raise RuntimeError(f"no {sorted(set(fields) - found)} in /proc/self/status")
    return total


def _rss_bytes() -> int:
    """VmRSS of this process: its resident memory now."""
    return _status_bytes("VmRSS")


def _reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process to its current RSS (Linux)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak_rss_bytes() -> int:
    """VmHWM of this process: its peak RSS since the last :func:`_reset_peak_rss`."""
    return _status_bytes("VmHWM")


def _file_rss_bytes() -> int:
    """Resident pages mapped from files (the libraries' code among them), which are not the step's memory."""
    return _status_bytes("RssFile", "RssShmem")


def _mallopt(option: int, value: int) -> bool:
    """glibc's ``mallopt`` (False where the C library has none)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    return bool(getattr(libc, "mallopt", lambda *_: 0)(option, value))


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc malloc.h


def train_step_worker(preset: str, overrides: dict[str, object], batch: int, steps: int, device: str) -> dict:
    """In THIS process: seconds per AVE training step (minimum over ``steps``) and peak memory of a step.

    Peak memory is that of the first two steps, which are not timed: the first makes the lazy
    allocations (Adam's state, a compilation), the second runs as every later step does, with that
    state held while the activations peak. It is CUDA's max allocated bytes, or on CPU the process's
    peak RSS above its RSS just before the first step (model, optimizer and inputs already built; the
    kernel's peak mark is reset there through ``/proc/self/clear_refs``), less the growth of its
    file-backed pages over the steps: library code first run by the step, which the page cache's state,
    not the model, decides (20-40 MiB from one checkout to another).

    On CPU those two steps run with glibc's mmap threshold fixed at 64 KiB: every tensor of 64 KiB or
    more is then its own mapping, returned to the kernel when freed, so the peak RSS follows the live
    tensors like CUDA's max allocated. With glibc's default (a threshold that grows to 32 MiB) freed
    tensors stay in the heap and the peak RSS measures the allocator's fragmentation as much as the
    model (the README's performance section gives both measures). The timed steps run with the
    threshold at 32 MiB, where glibc's default settles: a mapping per tensor costs page faults (about a
    third more time per step).
    """

    from stgcma.model import create_model

    cuda = device.startswith("cuda")
    if not cuda:
        _mallopt(M_MMAP_THRESHOLD, 64 * 1024)
    checkpointing = bool(overrides.pop("checkpointing", False))
    fraction = float(overrides.pop("checkpoint_fraction", 1.0))
    compiled = bool(overrides.pop("compile", False))
    model = create_model(preset, {"backbone.pretrained": None, **overrides}).train().to(device)
    model.encoder.checkpointing, model.encoder.checkpoint_fraction = checkpointing, fraction
    forward = torch.compile(model) if compiled else model  # the untimed first step pays the compilation
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, 1e-4)
    pre = model.config.preprocess
    T = pre.num_segments
    video = torch.randn(batch, T, 3, pre.image_size, pre.image_size, device=device)
    audio = torch.randn(batch, T, 1, pre.target_frames, pre.num_mel_bins, device=device)
    label = torch.zeros(batch * T, dtype=torch.long, device=device)

    def step() -> float:
        start = time.perf_counter()
        logits = forward(video, audio)["logits"].flatten(0, 1)
        torch.nn.functional.cross_entropy(logits, label).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step(), step()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        before, files_before = _rss_bytes(), _file_rss_bytes()
        _reset_peak_rss()
        step(), step()
        peak = _peak_rss_bytes() - before - (_file_rss_bytes() - files_before)
        _mallopt(M_MMAP_THRESHOLD, 32 * 2**20)
        _mallopt(M_TRIM_THRESHOLD, 64 * 2**20)
    seconds = [step() for _ in range(steps)]
    return {"step_seconds": min(seconds), "peak_bytes": int(peak), "trainable": sum(p.numel() for p in params)}


TRAIN_RATIOS: dict[str, tuple[str, str, str]] = {  # name -> (variant, over variant, measure)
    "train_step_ratio_vs_lavish": ("stgcma", "lavish", "step_seconds"),
    "train_step_ratio_vs_lavish_matched": ("stgcma", "lavish_matched", "step_seconds"),
    "train_memory_ratio_vs_full_ft": ("stgcma", "full_finetune", "peak_bytes"),
    "checkpointing_memory_ratio": ("stgcma_checkpointing", "stgcma", "peak_bytes"),
    "checkpointing_time_ratio": ("stgcma_checkpointing", "stgcma", "step_seconds"),
    "checkpointing_3_4_memory_ratio": ("stgcma_checkpointing_3_4", "stgcma", "peak_bytes"),
    "checkpointing_3_4_time_ratio": ("stgcma_checkpointing_3_4", "stgcma", "step_seconds"),
    "compiled_step_ratio": ("stgcma_compiled", "stgcma", "step_seconds"),
    "compiled_train_step_ratio_vs_lavish_matched": ("stgcma_compiled", "lavish_matched_compiled", "step_seconds"),
}


def train_variant_names(compile: bool = False) -> list[str]:
    """The variants ``bench_train`` times, in its order."""
    return [*TRAIN_VARIANTS, "lavish_matched", *(["stgcma_compiled", "lavish_matched_compiled"] if compile else [])]


def train_variant_overrides(preset: str, names: list[str]) -> dict[str, dict[str, object]]:
    """Each variant's model overrides (and ``compile``/``checkpointing`` keys) on ``preset``."""
    overrides = {**TRAIN_VARIANTS, "stgcma_compiled": {"compile": True}}
    if "lavish_matched" in names or "lavish_matched_compiled" in names:
        matched = lavish_matched_overrides(preset)
        overrides.update(lavish_matched=matched, lavish_matched_compiled={**matched, "compile": True})
    return {name: overrides[name] for name in names}


def bench_train(preset: str = "synth-vit", batch: int = 2, steps: int = 3, rounds: int = 2,
                device: str = "cpu", compile: bool = False, only: list[str] | None = None) -> dict:
    """Training-step time and peak memory of STG-CMA vs LAVISH (at the preset's ratio, and widened to
    STG-CMA's trainable parameters: :func:`lavish_matched_overrides`), the linear probe, full fine-tuning
    and STG-CMA with activation checkpointing of every block and of 3 blocks in 4 (and, with
    ``compile``, STG-CMA and the widened LAVISH through ``torch.compile``); ``only``: just these variants.

    One fresh process per variant and round; rounds interleaved, every other one in reverse order (so
    a drift of the machine's speed weighs on no variant more than another); the minimum is kept, and
    each round's step time listed (``round_seconds``). Returns per-variant numbers and the ratios
    (:data:`TRAIN_RATIOS`) whose two variants were both timed."""
    import json
    import subprocess
    import sys

    names = train_variant_names(compile)
    unknown = sorted(set(only or ()) - set(names))
    if unknown:
        raise ValueError(f"no training variant {unknown}; options: {names}")
    names = [n for n in names if only is None or n in only]
    overrides = train_variant_overrides(preset, names)
    rows: dict[str, dict] = {}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            payload = json.dumps({"preset": preset, "overrides": overrides[name], "batch": batch, "steps": steps,
                                  "device": device})
            done = subprocess.run([sys.executable, "-m", "stgcma.benchmarks", payload], capture_output=True,
                                  text=True, check=True)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            best = rows.setdefault(name, {**row, "round_seconds": []})
            best["round_seconds"].append(row["step_seconds"])
            best["step_seconds"] = min(best["step_seconds"], row["step_seconds"])
            best["peak_bytes"] = min(best["peak_bytes"], row["peak_bytes"])
    ratios = {key: rows[a][measure] / rows[b][measure] for key, (a, b, measure) in TRAIN_RATIOS.items()
              if a in rows and b in rows}
    return {"preset": preset, "batch": batch, "device": device, "variants": rows, **ratios}


SCALING_LENGTHS = (5, 10, 20, 40, 80)  # clip seconds of the end-to-end scaling fit
QUICK_SCALING_LENGTHS = (5, 10, 20)  # the same for --quick


def _analysis_phases(predictor, path, out, question: str | None, overlay_video: bool = True) -> dict[str, float]:
    """Seconds of each phase of the app's path for one clip not yet in ``predictor``'s cache.

    ``render`` is what the page needs to show the results (mask layers, mask PNGs, timeline,
    result.json); ``overlay_video`` the overlay mp4 the app renders after that, for the downloads.
    """
    from stgcma.report import write_explanations, write_overlay_video, write_report

    start = time.perf_counter()
    analysis = predictor.analyze(path)
    total_model = time.perf_counter() - start
    decode = analysis.timings.get("decode", 0.0)
    start = time.perf_counter()
    write_report(predictor, path, analysis, out, explain=False, overlay_video=False, overlay_layers=True)
    render = time.perf_counter() - start
    phases = {"decode": decode, "model": total_model - decode, "render": render}
    if overlay_video:
        start = time.perf_counter()
        write_overlay_video(predictor, path, analysis, out)
        phases["overlay_video"] = time.perf_counter() - start
    if question is not None:
        start = time.perf_counter()
        predictor.ask(question, analysis.key)
        phases["requery"] = time.perf_counter() - start
        start = time.perf_counter()
        predictor.attention(int(analysis.facts["num_segments"]) // 2, task="ave")
        phases["viewer"] = time.perf_counter() - start
        start = time.perf_counter()
        write_explanations(predictor, analysis, out)
        phases["explanations"] = time.perf_counter() - start
    return phases


def bench_e2e(checkpoint: str = "default", seconds: float = 10.0, size: tuple[int, int] = (1280, 720),
              repeats: int = 2, scaling: tuple[float, ...] = SCALING_LENGTHS,
              scaling_size: tuple[int, int] = (640, 360)) -> dict:
    """The app's path end to end, on synthetic H.264 + AAC clips (:func:`stgcma.media.bench.make_bench_clip`).

    For a ``seconds``-long clip at ``size``: decode, model (every task of ``checkpoint``, AVQA features
    included), rendering what the page shows (mask layers over the original clip, mask PNGs, timeline),
    the overlay mp4 the app renders after the results show (for the downloads and the API), then on
    the analysed clip a second question (``requery``), one attention viewer and the explanations. Each
    repeat uses a new clip (a new seed, so nothing is cached); the minimum per phase is kept. Scaling:
    the analysis (decode + model + render) of clips of each length in ``scaling``, and the exponent of
    a least-squares fit ``seconds_analysis ~ clip_seconds ** k`` (1: linear in the clip's length).
    """
    import math
    import tempfile
    from pathlib import Path

    from stgcma.inference import Predictor
    from stgcma.media.bench import make_bench_clip

    predictor = Predictor.from_pretrained(checkpoint)
    question = "How many instruments are sounding in the video?" if "avqa" in predictor.models else None
    best: dict[str, float] = {}
    scaling_seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        warm = make_bench_clip(tmp / "warm.mp4", seconds=2, size=scaling_size, seed=99)
        _analysis_phases(predictor, warm, tmp / "warm", question)
        for r in range(repeats):
            clip = make_bench_clip(tmp / f"clip{r}.mp4", seconds=seconds, size=size, seed=r)
            for name, value in _analysis_phases(predictor, clip, tmp / f"out{r}", question).items():
                best[name] = min(best.get(name, math.inf), value)
        for length in scaling:
            runs = []
            for r in range(repeats):
                clip = make_bench_clip(tmp / f"s{length}_{r}.mp4", seconds=length, size=scaling_size, seed=100 + r)
                phases = _analysis_phases(predictor, clip, tmp / f"s{length}_{r}", None, overlay_video=False)
                runs.append(phases["decode"] + phases["model"] + phases["render"])
            scaling_seconds[str(length)] = min(runs)
    analysis = best["decode"] + best["model"] + best["render"]
    xs = [math.log(float(k)) for k in scaling_seconds]
    ys = [math.log(v) for v in scaling_seconds.values()]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    exponent = slope / max(sum((x - mx) ** 2 for x in xs), 1e-12)
    result = {"checkpoint": str(checkpoint), "clip_seconds": seconds, "clip_size": f"{size[0]}x{size[1]}",
              "tasks": ",".join(predictor.tasks), **{f"{k}_seconds": v for k, v in best.items()},
              "analysis_seconds": analysis,
              "analysis_ratio_vs_decode_plus_model": analysis / (best["decode"] + best["model"]),
              "overlay_video_ratio_vs_decode_plus_model": best["overlay_video"] / (best["decode"] + best["model"]),
              "scaling_size": f"{scaling_size[0]}x{scaling_size[1]}", "scaling_seconds": scaling_seconds,
              "scaling_exponent": exponent}
    if "requery" in best:
        result["requery_ratio"] = best["requery"] / analysis
        result["viewer_ratio"] = best["viewer"] / analysis
    return result


INFERENCE_PRESETS = ("synth-vit", "clip-b16-tiny", "swin-b-tiny")


def setup() -> dict[str, object]:
    """What the numbers were measured on."""
    import os
    import platform

    import av

    info: dict[str, object] = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                               "threads": torch.get_num_threads(), "torch": torch.__version__,
                               "python": platform.python_version(), "av": av.__version__}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def bench_all(device: str = "cpu", quick: bool = False, checkpoint: str = "default") -> dict:
    """Every benchmark in one run: inference per backbone, training step, end to end and scaling.

    ``quick`` shrinks repeats and the scaling lengths (5, 10, 20 s) for a smoke run; the ratios it
    prints are noisier, not different in kind.
    """
    repeats = 1 if quick else 3
    out: dict[str, object] = {"setup": {**setup(), "device": device, "quick": quick}}
    inference = {}
    for preset in INFERENCE_PRESETS:
        times = bench_model(preset, batch=1, repeats=repeats, device=device)
        inference[preset] = {"stgcma_seconds": times["stgcma"], "backbone_seconds": times["frozen_trunk"],
                             "ratio": times["ratio_vs_frozen_trunk"]}
    out["inference"] = inference
    out["inference_ratio_vs_backbone"] = inference["clip-b16-tiny"]["ratio"]
    out["inference_ratio_vs_backbone_swin"] = inference["swin-b-tiny"]["ratio"]
    train = bench_train("synth-vit", batch=2, steps=2 if quick else 3, rounds=1 if quick else 2, device=device)
    out["train"] = train
    out.update({k: v for k, v in train.items() if k.endswith("_ratio") or "_ratio_" in k})
    if device == "cpu":
        e2e = bench_e2e(checkpoint, repeats=1 if quick else 2,
                        scaling=QUICK_SCALING_LENGTHS if quick else SCALING_LENGTHS)
        out["e2e"] = e2e
        for key in ("requery_ratio", "viewer_ratio", "analysis_ratio_vs_decode_plus_model",
                    "overlay_video_ratio_vs_decode_plus_model", "scaling_seconds", "scaling_exponent"):
            if key in e2e:
                out[key] = e2e[key]
    return out


if __name__ == "__main__":
    import json
    import sys

    args = json.loads(sys.argv[1])
    torch.manual_seed(0)
    print(json.dumps(train_step_worker(args["preset"], dict(args["overrides"]), args["batch"], args["steps"],
                                       args["device"])))
