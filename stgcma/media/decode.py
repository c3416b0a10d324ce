"""Decode any uploaded video into one frame per one-second segment plus a mono waveform.

STG-CMA (METHOD.md "Inputs") sees, per one-second segment, one RGB frame and the fbank of that
second of audio. :func:`decode_clip` produces exactly that material with PyAV:

- frames are picked by presentation timestamp (variable frame rate safe): for each segment the
  frame nearest ``position`` inside it (its centre by default); only picked frames are converted to
  RGB, scaled so the long side is at most ``MediaLimits.max_frame_side``, then turned upright from
  the display matrix (:mod:`stgcma.media.orient`);
- decoding is sequential, except that when the keyframe before the next target lies beyond the
  current position by more than ``seek_gap_s`` (a whole GOP or more to skip) the demuxer seeks to
  it; clips whose GOP is longer than the segment spacing therefore decode sequentially;
- audio: all channels mixed to mono and resampled with ``av.AudioResampler``; a missing track
  becomes silence with a warning every output should carry;
- every unusual input ends in a :class:`~stgcma.media.errors.MediaError` subclass or a warning.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from stgcma.media.errors import (
    CorruptFileError,
    EmptyFileError,
    MissingFileError,
    NotAVideoError,
    NoVideoStreamError,
    TooLargeError,
    TooLongError,
    UnsupportedCodecError,
)
from stgcma.media.orient import Orientation, orientation_of
from stgcma.media.segments import count_segments, segment_targets

NO_AUDIO_WARNING = "no audio track: the clip was analysed with silence"
SILENT_WARNING = "the audio track is silent: predictions rely on the picture alone"
SILENCE_PEAK = 1e-4
_CONTAINER_MAGIC = (b"ftyp", b"\x1a\x45\xdf\xa3", b"RIFF", b"OggS", b"FLV", b"\x00\x00\x01\xba", b"\x47")
_STILL_FORMATS = ("image2", "_pipe")  # still-image demuxers; animated GIF/APNG decode as video


@dataclass
class MediaLimits:
    """What an upload may be; the defaults suit a Hugging Face Space.

    Attributes:
        max_duration_s: longest clip analysed; longer clips are cut (``truncate``) or refused.
        max_file_bytes: largest file accepted (500 MB by default).
        truncate: cut over-long clips to ``max_duration_s`` with a warning instead of refusing them.
        max_frame_side: long side (pixels) of the frames kept per segment; the model resizes anyway.
    """

    max_duration_s: float = 600.0
    max_file_bytes: int = 500_000_000
    truncate: bool = True
    max_frame_side: int = 512


@dataclass
class DecodedClip:
    """One frame per segment, a mono waveform, and the facts a person (and the app) needs.

    ``frames`` are upright uint8 RGB (N, h, w, 3); ``frame_times`` (N,) are the seconds (from the
    clip start) of the frames picked; ``waveform`` is float32 mono (S,) at ``sample_rate``, covering
    ``duration`` seconds. ``width``/``height`` are the displayed (rotated) size of the source.
    """

    path: str
    frames: np.ndarray
    frame_times: np.ndarray
    waveform: np.ndarray
    sample_rate: int
    duration: float
    source_duration: float
    num_segments: int
    segment_seconds: float
    fps: float
    width: int
    height: int
    rotation: int
    container: str
    video_codec: str
    audio_codec: str | None
    audio_channels: int
    audio_sample_rate: int | None
    has_audio: bool
    file_bytes: int
    decode_mode: str
    truncated: bool = False
    damaged: bool = False
    warnings: list[str] = field(default_factory=list)
    pixel_format: str | None = None

    def facts(self) -> dict[str, object]:
        """JSON-friendly summary (everything except the arrays)."""
        skip = {"frames", "frame_times", "waveform"}
        return {k: v for k, v in self.__dict__.items() if k not in skip}


def check_file(path: str | Path, limits: MediaLimits) -> int:
    """Size checks before opening; returns the size in bytes."""
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(f"file not found: {p}")
    size = p.stat().st_size
    if size == 0:
        raise EmptyFileError(f"{p.name} is empty (0 bytes); the upload may not have completed")
    if size > limits.max_file_bytes:
        raise TooLargeError(
            f"{p.name} is {size / 1e6:.0f} MB; the limit is {limits.max_file_bytes / 1e6:.0f} MB")
    return size


def probe_file(path: str | Path, limits: MediaLimits | None = None) -> None:
    """The checks :func:`decode_clip` makes before it decodes anything (file, size, container, video stream).

    Cheap (no frame is decoded), so a command can refuse a bad upload before it loads a model.

    Raises:
        MediaError: the same typed error :func:`decode_clip` would raise for these problems.
    """
    p = Path(path)
    check_file(p, limits or MediaLimits())
    with open_media(p) as container:
        video_stream(container, p.name)


def _looks_like_container(path: Path) -> bool:
    head = path.open("rb").read(16)
    return any(head.startswith(m) or head[4:8] == m for m in _CONTAINER_MAGIC)


def open_media(path: str | Path) -> av.container.InputContainer:
    """``av.open`` with FFmpeg errors turned into typed media errors."""
    p = Path(path)
    try:
        return av.open(str(p), mode="r")
    except av.error.FileNotFoundError as err:
        raise MissingFileError(f"file not found: {p}") from err
    except (av.error.FFmpegError, ValueError, OSError) as err:
        if _looks_like_container(p):
            raise CorruptFileError(
                f"{p.name} looks like a video but cannot be read; it may be damaged") from err
        raise NotAVideoError(f"{p.name} is not a video file FFmpeg can read") from err


def video_stream(container: av.container.InputContainer, name: str) -> av.video.stream.VideoStream:
    """The first real video stream (cover art excluded), or a typed error explaining its absence."""
    fmt = container.format.name
    if any(tag in fmt for tag in _STILL_FORMATS):
        raise NotAVideoError(f"{name} is a still image ({fmt.split('_')[0]}), not a video")
    pictures = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not pictures:
        if container.streams.audio:
            raise NoVideoStreamError(f"{name} has audio but no video stream; upload a video with picture")
        raise CorruptFileError(f"{name} has no readable video or audio stream; it may be damaged")
    stream = pictures[0]
    if stream.codec_context is None:
        raise UnsupportedCodecError(f"{name} uses a video codec the bundled FFmpeg cannot decode")
    return stream


def stream_duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float:
    """Video duration in seconds from the stream, the container, or (last resort) the packets."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    last = None
    for packet in container.demux(stream):
        if packet.pts is not None and packet.time_base:
            end = float((packet.pts + (packet.duration or 0)) * packet.time_base)
            last = end if last is None else max(last, end)
    container.seek(0)
    return float(last - _start_time(stream)) if last is not None else 0.0


def _start_time(stream: av.stream.Stream) -> float:
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0


def _fps(stream: av.video.stream.VideoStream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0


def _keyframe_times(stream: av.video.stream.VideoStream) -> np.ndarray | None:
    """Seconds of the indexed keyframes (decode timestamps, a safe lower bound), if indexed."""
    try:
        entries = stream.index_entries
        stamps = [e.timestamp for e in entries if e.is_keyframe]
    except (AttributeError, av.error.FFmpegError):
        return None
    if len(stamps) < 2:
        return None
    return np.asarray(stamps, dtype=np.float64) * float(stream.time_base)


@dataclass
class _Picker:
    """Walks the video once (seeking forward over whole GOPs) keeping the frame nearest each target."""

    container: av.container.InputContainer
    stream: av.video.stream.VideoStream
    keyframes: np.ndarray | None
    seek_gap_s: float
    damaged: bool = False
    seeks: int = 0

    def __post_init__(self) -> None:
        self._it: Iterator[av.VideoFrame] | None = None
        self._prev: av.VideoFrame | None = None
        self._cur: av.VideoFrame | None = None
        self._done = False

    def _frame_time(self, frame: av.VideoFrame) -> float:
        return float(frame.time) if frame.time is not None else -math.inf

    def _maybe_seek(self, target: float) -> None:
        if self.keyframes is None or self._done:
            return
        before = self.keyframes[self.keyframes <= target]
        if before.size == 0:
            return
        keyframe = float(before[-1])
        here = self._frame_time(self._cur) if self._cur is not None else float(self.keyframes[0])
        if keyframe - here > self.seek_gap_s:
            offset = int(math.floor(target / float(self.stream.time_base)))
            self.container.seek(offset, stream=self.stream, backward=True)
            self._it, self._prev, self._cur = None, None, None
            self.seeks += 1

    def _advance(self) -> bool:
        if self._it is None:
            self._it = self.container.decode(self.stream)
        try:
            frame = next(self._it)
        except StopIteration:
            self._done = True
            return False
        except (av.error.FFmpegError, ValueError):
            self.damaged, self._done = True, True
            return False
        self._prev, self._cur = self._cur, frame
        return True

    def pick(self, target: float) -> av.VideoFrame | None:
        """The decoded frame nearest ``target`` (absolute stream seconds); None if nothing decodes."""
        self._maybe_seek(target)
        while not self._done and (self._cur is None or self._frame_time(self._cur) < target):
            if not self._advance():
                break
        candidates = [f for f in (self._prev, self._cur) if f is not None]
        if not candidates:
            return None
        return min(candidates, key=lambda f: abs(self._frame_time(f) - target))


def _scaled_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height))
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


def decode_frames(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    targets: np.ndarray,
    max_side: int,
    *,
    seek_gap_s: float = 0.3,
    allow_seek: bool = True,
    progress: Callable[[float], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, Orientation, dict[str, object]]:
    """Pick and convert one frame per target time (seconds from the stream start).

    Returns:
        frames uint8 (N, h, w, 3) upright, their times (N,), the orientation, and decode facts
        (``mode``, ``seeks``, ``damaged``, ``last_time``).
    """
    stream.thread_type = "AUTO"
    start = _start_time(stream)
    keyframes = _keyframe_times(stream) if allow_seek else None
    picker = _Picker(container, stream, keyframes, seek_gap_s)
    ctx = stream.codec_context
    out_w, out_h = _scaled_size(ctx.width or max_side, ctx.height or max_side, max_side)
    images: list[np.ndarray] = []
    times: list[float] = []
    orientation: Orientation | None = None
    for i, target in enumerate(targets):
        frame = picker.pick(float(target) + start)
        if frame is None:
            break
        if orientation is None:
            orientation = orientation_of(frame)
        rgb = frame.reformat(width=out_w, height=out_h, format="rgb24", interpolation="AREA").to_ndarray()
        images.append(orientation.apply(rgb))  # (h, w, 3) upright
        times.append(float(frame.time or 0.0) - start)
        if progress is not None:
            progress((i + 1) / len(targets))
    if not images:
        raise CorruptFileError("no video frame could be decoded; the file may be damaged")
    last = picker._frame_time(picker._cur) - start if picker._cur is not None else times[-1]
    info = {"mode": "seek" if picker.seeks else "sequential", "seeks": picker.seeks,
            "damaged": picker.damaged, "last_time": last}
    return np.stack(images), np.asarray(times), orientation or Orientation(), info


def decode_audio(path: str | Path, start: float, duration: float,
                 sample_rate: int) -> tuple[np.ndarray | None, dict[str, object]]:
    """Mono float32 waveform at ``sample_rate`` covering ``[start, start + duration)`` stream seconds.

    Returns ``(None, facts)`` when the file has no decodable audio track.
    """
    facts: dict[str, object] = {"codec": None, "channels": 0, "rate": None, "damaged": False}
    with open_media(path) as container:
        if not container.streams.audio:
            return None, facts
        stream = container.streams.audio[0]
        if stream.codec_context is None:
            facts["codec"] = "unknown"
            return None, facts
        facts.update(codec=stream.codec_context.codec.canonical_name, channels=stream.channels, rate=stream.rate)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        first: float | None = None
        end = start + duration
        try:
            for frame in container.decode(stream):
                if first is None:
                    first = float(frame.time) if frame.time is not None else _start_time(stream)
                chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
                if frame.time is not None and frame.time > end + 0.5:
                    break
        except (av.error.FFmpegError, ValueError):
            facts["damaged"] = True
        chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    wave = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    offset = int(round(((first if first is not None else start) - start) * sample_rate))
    wave = np.pad(wave, (offset, 0)) if offset > 0 else wave[-offset:]
    length = int(round(duration * sample_rate))
    wave = np.pad(wave, (0, max(0, length - wave.size)))[:length]
    return wave, facts


def decode_clip(
    path: str | Path,
    sample_rate: int = 16000,
    limits: MediaLimits | None = None,
    *,
    segment_seconds: float = 1.0,
    position: float = 0.5,
    allow_seek: bool = True,
    progress: Callable[[float], None] | None = None,
) -> DecodedClip:
    """Decode a video file into per-segment frames and a mono waveform.

    Args:
        path: the uploaded file.
        sample_rate: waveform rate (the preprocessing config's ``sample_rate``).
        limits: size/duration limits; defaults to :class:`MediaLimits()`.
        segment_seconds: segment length (1 s in STG-CMA).
        position: where inside each segment to take the frame (0.5 = centre).
        allow_seek: let the decoder skip whole GOPs by seeking (False forces sequential decode).
        progress: called with the fraction of frames done (for a progress bar).

    Raises:
        MediaError: a typed subclass with a one-line message for every input that cannot be used.
    """
    limits = limits or MediaLimits()
    p = Path(path)
    size = check_file(p, limits)
    warnings: list[str] = []
    with open_media(p) as container:
        stream = video_stream(container, p.name)
        source_duration = stream_duration(container, stream)
        duration, truncated = _apply_duration_limit(source_duration, limits, p.name, warnings)
        num = count_segments(duration, segment_seconds)
        targets = segment_targets(num, duration, segment_seconds, position)
        try:
            frames, times, orientation, info = decode_frames(
                container, stream, targets, limits.max_frame_side, allow_seek=allow_seek, progress=progress)
        except av.error.DecoderNotFoundError as err:
            raise UnsupportedCodecError(
                f"{p.name} uses a video codec the bundled FFmpeg cannot decode") from err
        fps = _fps(stream)
        video_codec = stream.codec_context.codec.canonical_name
        pixel_format = stream.codec_context.format.name if stream.codec_context.format is not None else None
        coded = (stream.codec_context.width, stream.codec_context.height)
        fmt = container.format.name
        start = _start_time(stream)
    damaged = bool(info["damaged"]) or float(info["last_time"]) < duration - segment_seconds
    if damaged:
        decoded_end = float(info["last_time"]) + (1.0 / fps if fps else 0.0)
        warnings.append(f"the file seems damaged or cut short: picture stops at {decoded_end:.1f} s "
                        f"of {duration:.1f} s; only that part was analysed")
        duration = max(min(duration, decoded_end), 1e-3)
        num = count_segments(duration, segment_seconds)
        frames, times = frames[:num], times[:num]
    wave, audio = decode_audio(p, start, duration, sample_rate)
    has_audio = wave is not None
    if wave is None:
        wave = np.zeros(int(round(duration * sample_rate)), np.float32)
        warnings.append(NO_AUDIO_WARNING if audio["codec"] is None
                        else "the audio codec cannot be decoded: the clip was analysed with silence")
    elif float(np.abs(wave).max(initial=0.0)) < SILENCE_PEAK:
        warnings.append(SILENT_WARNING)
    if audio["damaged"] and not damaged:
        warnings.append("the audio track is damaged: the missing part was analysed as silence")
    width, height = coded[::-1] if orientation.swaps_axes else coded
    if not orientation.exact:
        warnings.append(f"rotation of {orientation.rotation} degrees is not a right angle and was ignored")
    return DecodedClip(
        path=str(p), frames=frames, frame_times=times, waveform=wave, sample_rate=sample_rate,
        duration=duration, source_duration=source_duration, num_segments=num,
        segment_seconds=segment_seconds, fps=fps, width=int(width), height=int(height),
        rotation=orientation.rotation, container=fmt, video_codec=video_codec,
        audio_codec=audio["codec"], audio_channels=int(audio["channels"] or 0),
        audio_sample_rate=audio["rate"], has_audio=has_audio,
        file_bytes=size, decode_mode=str(info["mode"]), truncated=truncated, damaged=damaged,
        warnings=warnings, pixel_format=pixel_format,
    )


def _apply_duration_limit(duration: float, limits: MediaLimits, name: str,
                          warnings: list[str]) -> tuple[float, bool]:
    if duration <= limits.max_duration_s:
        return duration, False
    if not limits.truncate:
        raise TooLongError(f"{name} is {duration:.0f} s long; the limit is {limits.max_duration_s:.0f} s")
    warnings.append(f"the clip is {duration:.0f} s long: only the first {limits.max_duration_s:.0f} s "
                    "were analysed")
    return limits.max_duration_s, True
