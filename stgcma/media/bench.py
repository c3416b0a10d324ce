"""Decode speed benchmark: a 10-s 720p 30 fps clip with 48 kHz stereo -> STG-CMA model inputs.

``python -m stgcma.media.bench`` prints the median seconds of :func:`~stgcma.media.clip.load_clip`
(decode + fbank + frame tensors) with automatic seeking and with forced sequential decode, for an
x264 default GOP (one keyframe) and a phone-like 1 s / 0.5 s GOP. :func:`bench_decode` returns the
number the project compares with the small backbone's forward pass.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from stgcma.config import PreprocessConfig
from stgcma.media.clip import load_clip


def make_bench_clip(path: str | Path, *, seconds: float = 10.0, size: tuple[int, int] = (1280, 720),
                    fps: int = 30, gop: int | None = None, seed: int = 0) -> Path:
    """Write a synthetic moving-pattern clip (H.264 + AAC stereo 48 kHz) for timing."""
    width, height = size
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8)
    base = np.kron(texture, np.ones((8, 8, 1), np.uint8))  # (H, W, 3) blocky texture, codec friendly
    options = {"preset": "veryfast", "crf": "23"}
    if gop is not None:
        options["x264-params"] = f"keyint={gop}:min-keyint={gop}:scenecut=0"
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as c:
        vs = c.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt, vs.options = width, height, "yuv420p", options
        a_s = c.add_stream("aac", rate=48000, layout="stereo")
        for i in range(int(seconds * fps)):
            image = np.roll(base, shift=4 * i, axis=1)  # pans right: every frame differs
            c.mux(vs.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        c.mux(vs.encode(None))
        t = np.arange(int(seconds * 48000)) / 48000
        audio = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t)]).astype(np.float32) * 0.3
        for start in range(0, audio.shape[1], 48000):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[:, start:start + 48000]),
                                               format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = 48000, start
            c.mux(a_s.encode(frame))
        c.mux(a_s.encode(None))
    return Path(path)


def time_load(path: str | Path, cfg: PreprocessConfig, runs: int = 3, allow_seek: bool = True) -> float:
    """Median wall seconds of decoding ``path`` into model inputs."""
    from stgcma.media.clip import clip_inputs
    from stgcma.media.decode import decode_clip

    times = []
    for _ in range(runs):
        start = time.perf_counter()
        clip_inputs(decode_clip(path, cfg.sample_rate, allow_seek=allow_seek), cfg)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_decode(cfg: PreprocessConfig | None = None, runs: int = 3, gop: int | None = None,
                 workdir: str | Path | None = None) -> float:
    """Seconds (median of ``runs``) to turn a 10-s 720p 30 fps stereo 48 kHz clip into model inputs.

    Args:
        cfg: preprocessing (default: ``PreprocessConfig()``, 224 px and 128 mel bins).
        runs: timed repetitions after one warm-up.
        gop: x264 keyframe interval in frames (None: x264 default, one keyframe in 10 s).
        workdir: where to write the clip (default: a temporary folder, removed afterwards).
    """
    cfg = cfg or PreprocessConfig()
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = make_bench_clip(Path(tmp) / "bench.mp4", gop=gop)
        load_clip(path, cfg)  # warm-up: imports, codec initialisation, page cache
        return time_load(path, cfg, runs)


def main() -> None:
    cfg = PreprocessConfig()
    with tempfile.TemporaryDirectory() as tmp:
        for gop, label in ((None, "x264 default GOP"), (30, "1-s GOP"), (15, "0.5-s GOP")):
            path = make_bench_clip(Path(tmp) / f"bench_{gop}.mp4", gop=gop)
            load_clip(path, cfg)
            auto = time_load(path, cfg)
            seq = time_load(path, cfg, allow_seek=False)
            mode = load_clip(path, cfg).clip.decode_mode
            print(f"10 s 720p30 + 48 kHz stereo, {label:17s}: load_clip {auto:.3f} s ({mode}); "
                  f"sequential only {seq:.3f} s")


if __name__ == "__main__":
    main()
