"""Write browser-playable videos: H.264 (libx264) yuv420p in mp4 with AAC audio.

Used by SynthAV (PRODUCT.md) to write its clips and by :mod:`stgcma.media.render` for mask
overlays. The moov atom is moved to the front (``movflags=+faststart``) so browsers start playing
before the whole file has arrived. yuv420p needs even dimensions: odd frames are padded by
repeating the last row/column.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 8: "7.1"}


def even_frames(frames: np.ndarray) -> np.ndarray:
    """Pad (N, H, W, 3) frames by edge replication so that H and W are even."""
    pad_h = frames.shape[1] % 2
    pad_w = frames.shape[2] % 2
    if not (pad_h or pad_w):
        return frames
    return np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")


def _fps_fraction(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    *,
    crf: int = 23,
    preset: str = "veryfast",
    audio_bitrate: int = 128_000,
) -> Path:
    """Encode frames (and optional audio) to an mp4 that plays in Chrome, Firefox and Safari.

    Args:
        path: output file (``.mp4``).
        frames: uint8 RGB frames (N, H, W, 3); odd sizes are padded to even.
        fps: frame rate (fractional rates such as 29.97 are kept exactly as n/1001).
        audio: float32 samples in [-1, 1], (C, S) or mono (S,); ``None`` writes no audio track.
        sample_rate: audio sample rate in Hz.
        crf: x264 quality (lower is better).
        preset: x264 speed preset.
        audio_bitrate: AAC bitrate in bits per second.

    Returns:
        The path written.
    """
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"frames must be a non-empty (N, H, W, 3) array, got {frames.shape}")
    frames = even_frames(frames.astype(np.uint8, copy=False))
    _, height, width, _ = frames.shape
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        vstream = container.add_stream("libx264", rate=_fps_fraction(fps))
        vstream.width = width
        vstream.height = height
        vstream.pix_fmt = "yuv420p"
        vstream.options = {"crf": str(crf), "preset": preset}
        astream = None
        if audio is not None:
            audio = np.asarray(audio, dtype=np.float32)
            audio = audio[None, :] if audio.ndim == 1 else audio  # (C, S)
            channels = audio.shape[0]
            if channels not in _LAYOUTS:
                raise ValueError(f"unsupported number of audio channels: {channels}")
            astream = container.add_stream("aac", rate=int(sample_rate), layout=_LAYOUTS[channels])
            astream.bit_rate = audio_bitrate
        for image in frames:
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            container.mux(vstream.encode(frame))
        container.mux(vstream.encode(None))
        if astream is not None and audio.shape[1] > 0:
            _encode_audio(container, astream, audio, int(sample_rate))
    return path


def _encode_audio(container: av.container.OutputContainer, stream: av.audio.AudioStream,
                  audio: np.ndarray, sample_rate: int) -> None:
    """Encode planar float audio (C, S) in chunks; PyAV re-frames to the AAC frame size."""
    audio = np.clip(audio, -1.0, 1.0)
    layout = _LAYOUTS[audio.shape[0]]
    chunk = 4096
    for start in range(0, audio.shape[1], chunk):
        block = np.ascontiguousarray(audio[:, start:start + chunk])  # (C, chunk)
        frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=layout)
        frame.sample_rate = sample_rate
        frame.pts = start
        frame.time_base = Fraction(1, sample_rate)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
