"""Write browser-playable videos: H.264 (libx264) yuv420p in mp4 with AAC audio.

Used by SynthAV (PRODUCT.md) to write its clips and by :mod:`stgcma.media.render` for mask
overlays. The moov atom is moved to the front (``movflags=+faststart``) so browsers start playing
before the whole file has arrived. yuv420p needs even dimensions: odd frames are padded by
repeating the last row/column.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np

LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 8: "7.1"}
_TIME_BASE = Fraction(1, 90000)


def even_frames(frames: np.ndarray) -> np.ndarray:
    """Pad (..., H, W, 3) frames by edge replication so that H and W are even."""
    pad_h = frames.shape[-3] % 2
    pad_w = frames.shape[-2] % 2
    if not (pad_h or pad_w):
        return frames
    pad = [(0, 0)] * (frames.ndim - 3) + [(0, pad_h), (0, pad_w), (0, 0)]
    return np.pad(frames, pad, mode="edge")


class VideoWriter:
    """Streaming H.264/AAC mp4 writer (frames one at a time, audio frames as they come).

    Args:
        path: output ``.mp4``.
        width: frame width (rounded up to even).
        height: frame height (rounded up to even).
        fps: nominal frame rate; frames without a timestamp are spaced ``1 / fps`` apart.
        audio_rate: audio sample rate, or None for no audio track.
        audio_channels: number of audio channels.
        crf: x264 quality (lower is better).
        preset: x264 speed preset.
        audio_bitrate: AAC bitrate in bits per second.
    """

    def __init__(self, path: str | Path, width: int, height: int, fps: float, *,
                 audio_rate: int | None = None, audio_channels: int = 2, crf: int = 23,
                 preset: str = "veryfast", audio_bitrate: int = 128_000) -> None:
        self.path = Path(path)
        self.width, self.height = width + width % 2, height + height % 2
        self.fps = float(fps)
        self._container = av.open(str(self.path), mode="w", format="mp4", options={"movflags": "+faststart"})
        self._video = self._container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
        self._video.width, self._video.height, self._video.pix_fmt = self.width, self.height, "yuv420p"
        self._video.time_base = _TIME_BASE
        self._video.codec_context.time_base = _TIME_BASE
        self._video.options = {"crf": str(crf), "preset": preset}
        self._frames = 0
        self._last_pts = -1
        self._audio = None
        if audio_rate is not None:
            if audio_channels not in LAYOUTS:
                raise ValueError(f"unsupported number of audio channels: {audio_channels}")
            layout = LAYOUTS[audio_channels]
            self._audio = self._container.add_stream("aac", rate=int(audio_rate), layout=layout)
            self._audio.bit_rate = audio_bitrate
            self._resampler = av.AudioResampler(format="fltp", layout=layout, rate=int(audio_rate))
            self._samples = 0

    def write(self, image: np.ndarray, time_s: float | None = None) -> None:
        """Add one uint8 RGB frame (H, W, 3), shown at ``time_s`` seconds (default: next slot)."""
        image = even_frames(np.ascontiguousarray(image, dtype=np.uint8))
        if image.shape[:2] != (self.height, self.width):
            raise ValueError(f"frame is {image.shape[:2]}, writer expects {(self.height, self.width)}")
        self._encode(av.VideoFrame.from_ndarray(image, format="rgb24"), time_s)

    def _encode(self, frame: av.VideoFrame, time_s: float | None) -> None:
        t = self._frames / self.fps if time_s is None else time_s
        pts = max(int(round(t / _TIME_BASE)), self._last_pts + 1)
        frame.pts, frame.time_base = pts, _TIME_BASE
        self._container.mux(self._video.encode(frame))
        self._frames += 1
        self._last_pts = pts

    def write_yuv420p(self, y: np.ndarray, u: np.ndarray, v: np.ndarray, time_s: float | None = None) -> None:
        """Add one frame given as uint8 planes Y (H, W) and U, V (H/2, W/2), with no colour conversion."""
        chroma = (self.height // 2, self.width // 2)
        if y.shape != (self.height, self.width) or u.shape != chroma or v.shape != chroma:
            raise ValueError(f"planes {y.shape}, {u.shape}, {v.shape} do not fit a {self.width}x{self.height} writer")
        packed = np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)])  # Y, then U, then V
        self._encode(av.VideoFrame.from_ndarray(packed.reshape(self.height * 3 // 2, self.width), format="yuv420p"),
                     time_s)

    def write_audio(self, frame: av.AudioFrame | np.ndarray, sample_rate: int | None = None) -> None:
        """Add audio: a decoded ``av.AudioFrame`` (any format/layout/rate) or float32 (C, S) samples."""
        if self._audio is None:
            raise ValueError("this writer was opened without an audio track")
        if isinstance(frame, np.ndarray):
            data = np.ascontiguousarray(np.clip(frame, -1.0, 1.0), dtype=np.float32)
            data = data[None] if data.ndim == 1 else data  # (C, S)
            frame = av.AudioFrame.from_ndarray(data, format="fltp", layout=LAYOUTS[data.shape[0]])
            frame.sample_rate = int(sample_rate or self._audio.rate)
        frame.pts = None
        for out in self._resampler.resample(frame):
            self._mux_audio(out)

    def _mux_audio(self, frame: av.AudioFrame) -> None:
        frame.pts, frame.time_base = self._samples, Fraction(1, self._audio.rate)
        self._samples += frame.samples
        self._container.mux(self._audio.encode(frame))

    def close(self) -> None:
        """Flush the encoders and finish the file."""
        if self._container is None:
            return
        self._container.mux(self._video.encode(None))
        if self._audio is not None:
            for out in self._resampler.resample(None):
                self._mux_audio(out)
            self._container.mux(self._audio.encode(None))
        self._container.close()
        self._container = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


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
        fps: frame rate (fractional rates such as 29.97 are kept as n/1001).
        audio: float32 samples in [-1, 1], (C, S) or mono (S,); ``None`` writes no audio track.
        sample_rate: audio sample rate in Hz.
        crf: x264 quality (lower is better).
        preset: x264 speed preset.
        audio_bitrate: AAC bitrate in bits per second.

    Returns:
        The path written.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"frames must be a non-empty (N, H, W, 3) array, got {frames.shape}")
    channels = None
    if audio is not None:
        audio = np.asarray(audio, dtype=np.float32)
        audio = audio[None] if audio.ndim == 1 else audio  # (C, S)
        channels = audio.shape[0]
    with VideoWriter(path, frames.shape[2], frames.shape[1], fps,
                     audio_rate=sample_rate if audio is not None else None, audio_channels=channels or 2,
                     crf=crf, preset=preset, audio_bitrate=audio_bitrate) as writer:
        for image in frames:
            writer.write(image)
        if audio is not None and audio.shape[1] > 0:
            for start in range(0, audio.shape[1], 4096):
                writer.write_audio(audio[:, start:start + 4096], sample_rate)
    return Path(path)
