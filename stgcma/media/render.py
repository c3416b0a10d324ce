"""Results back onto the video: mask overlays, mask PNGs and the per-second event timeline.

For AVS (METHOD.md "Task heads") the model gives one mask per one-second segment at model
resolution; :func:`render_mask_video` blends them over EVERY frame of the original clip (each frame
takes its segment's mask, optionally cross-faded between segment centres), upright (display
rotation applied, as the model saw the frames), and writes a browser-playable H.264/AAC mp4 with the
original audio re-encoded. It blends in the encoder's own YUV 4:2:0 planes (the colour converted
once, BT.601), so no frame goes through RGB and back: the blend is linear, so this is the RGB blend
up to the chroma subsampling that H.264 applies anyway. :func:`save_mask_pngs` and
:func:`plot_timeline` give the downloadable masks and the AVE probabilities per second (background
shown; matplotlib ``Figure`` with the Agg canvas, no pyplot, so no global backend is touched).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path

import av
import cv2
import numpy as np

from stgcma.media.decode import MediaLimits, check_file, open_media, video_stream
from stgcma.media.encode import VideoWriter
from stgcma.media.orient import Orientation, orientation_of

DEFAULT_COLOR = (255, 64, 32)


def mask_at(masks: np.ndarray, t: float, segment_seconds: float = 1.0, crossfade: bool = True) -> np.ndarray:
    """The mask to show at time ``t`` (seconds from the clip start).

    Args:
        masks: float (T, h, w) in [0, 1], one per segment.
        t: time in seconds.
        segment_seconds: segment length.
        crossfade: blend linearly between the masks of neighbouring segment centres; otherwise
            every frame takes the mask of its own segment.

    Returns:
        float32 (h, w).
    """
    count = masks.shape[0]
    if not crossfade:
        return masks[int(np.clip(np.floor(t / segment_seconds), 0, count - 1))].astype(np.float32)
    pos = float(np.clip(t / segment_seconds - 0.5, 0.0, count - 1))  # in units of segment centres
    lo = int(np.floor(pos))
    hi = min(lo + 1, count - 1)
    w = pos - lo
    return ((1.0 - w) * masks[lo] + w * masks[hi]).astype(np.float32)


def overlay(image: np.ndarray, mask: np.ndarray, color: Sequence[int] = DEFAULT_COLOR,
            alpha: float = 0.5) -> np.ndarray:
    """Alpha-blend a colour over ``image`` (H, W, 3) uint8 where ``mask`` (h, w) in [0, 1] is on."""
    return _blend(image, _opacity(mask, alpha), tuple(int(c) for c in color))


def _opacity(mask: np.ndarray, alpha: float) -> np.ndarray:
    """float32 (h, w): ``alpha`` where the mask is 1, at the mask's size."""
    return np.clip(np.asarray(mask, dtype=np.float32), 0.0, 1.0) * np.float32(alpha)


def _blend(image: np.ndarray, weight: np.ndarray, color: tuple[int, ...] | int) -> np.ndarray:
    """``color`` over an image (H, W, 3) or plane (H, W) uint8 with opacity ``weight``, resized to it."""
    h, w = image.shape[:2]
    if weight.shape != (h, w):
        weight = cv2.resize(weight, (w, h), interpolation=cv2.INTER_LINEAR)  # (H, W)
    return cv2.blendLinear(image, _solid(image.shape, color), 1.0 - weight, weight)


@functools.lru_cache(maxsize=8)
def _solid(shape: tuple[int, ...], color: tuple[int, ...] | int) -> np.ndarray:
    """A uint8 image (H, W, 3) or plane (H, W) of one colour, made once per size (read-only)."""
    solid = np.empty(shape, np.uint8)
    solid[:] = np.asarray(color, np.uint8)
    solid.flags.writeable = False
    return solid


def render_mask_video(
    src: str | Path,
    masks: np.ndarray,
    out: str | Path,
    *,
    segment_seconds: float = 1.0,
    color: Sequence[int] = DEFAULT_COLOR,
    alpha: float = 0.5,
    crossfade: bool = True,
    max_side: int = 854,
    limits: MediaLimits | None = None,
    progress: Callable[[float], None] | None = None,
) -> Path:
    """Write ``src`` with ``masks`` blended over all its frames, keeping the original audio.

    Args:
        src: the original video.
        masks: float (T, h, w) in [0, 1], one per segment, in upright (model) coordinates.
        out: output ``.mp4`` (H.264 yuv420p + AAC, faststart).
        segment_seconds: segment length.
        color: RGB overlay colour.
        alpha: overlay opacity where the mask is 1.
        crossfade: smooth masks between segment centres (see :func:`mask_at`).
        max_side: long side of the output video (the source is never upscaled). 854 (480p) by default:
            encoding every frame is most of an analysis's time (``python -m stgcma bench e2e``), and a
            720p overlay costs about 1.6x a 480p one for a preview of 112-px masks.
        limits: the same limits as analysis; frames after ``max_duration_s`` are not rendered.
        progress: called with the fraction of the clip rendered.

    Returns:
        The output path.
    """
    masks = np.asarray(masks, dtype=np.float32)
    if masks.ndim != 3 or masks.shape[0] == 0:
        raise ValueError(f"masks must be (T, h, w), got {masks.shape}")
    limits = limits or MediaLimits()
    src = Path(src)
    check_file(src, limits)
    with open_media(src) as container:
        vs = video_stream(container, src.name)
        vs.thread_type = "AUTO"
        astream = container.streams.audio[0] if container.streams.audio else None
        if astream is not None and astream.codec_context is None:
            astream = None
        start = float(vs.start_time * vs.time_base) if vs.start_time is not None else 0.0
        end = min(masks.shape[0] * segment_seconds, limits.max_duration_s)
        fps = float(vs.average_rate or vs.guessed_rate or 25)
        writer: VideoWriter | None = None
        pending_audio: list[av.AudioFrame] = []  # audio demuxed before the first picture
        orientation = Orientation()
        streams = [vs] if astream is None else [vs, astream]
        try:
            for packet in container.demux(streams):
                for frame in _decode(packet):
                    t = (frame.time if frame.time is not None else start) - start
                    if t >= end or t < -1e-3:
                        continue
                    if isinstance(frame, av.AudioFrame):
                        if writer is None:
                            pending_audio.append(frame)
                        else:
                            writer.write_audio(frame)
                        continue
                    if writer is None:
                        orientation = orientation_of(frame)
                        writer = _open_writer(out, frame, orientation, fps, max_side, astream)
                        for early in pending_audio:
                            writer.write_audio(early)
                    planes = _upright_yuv(frame, orientation, writer)
                    writer.write_yuv420p(*overlay_yuv(planes, mask_at(masks, t, segment_seconds, crossfade),
                                                      color, alpha), time_s=t)
                    if progress is not None:
                        progress(min(1.0, t / end))
        finally:
            if writer is not None:
                writer.close()
    if writer is None:
        raise ValueError(f"{src.name}: no video frame could be decoded")
    return Path(out)


def _decode(packet: av.Packet) -> list[av.frame.Frame]:
    try:
        return list(packet.decode())
    except (av.error.FFmpegError, ValueError):
        return []


def _open_writer(out: str | Path, frame: av.VideoFrame, orientation: Orientation, fps: float,
                 max_side: int, astream: av.audio.stream.AudioStream | None) -> VideoWriter:
    scale = min(1.0, max_side / max(frame.width, frame.height))
    w, h = int(round(frame.width * scale / 2)) * 2, int(round(frame.height * scale / 2)) * 2
    if orientation.swaps_axes:
        w, h = h, w
    channels = min(astream.channels, 6) if astream is not None else 2
    rate = astream.rate if astream is not None and astream.rate <= 96000 else 48000
    writer = VideoWriter(out, w, h, fps, audio_rate=rate if astream is not None else None,
                         audio_channels=channels if channels in (1, 2, 6) else 2)
    return writer


def _upright_yuv(frame: av.VideoFrame, orientation: Orientation,
                 writer: VideoWriter) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The frame scaled to the writer's size (before rotation) as upright Y (H, W), U and V (H/2, W/2)."""
    w, h = (writer.height, writer.width) if orientation.swaps_axes else (writer.width, writer.height)
    packed = frame.reformat(width=w, height=h, format="yuv420p", interpolation="BILINEAR").to_ndarray()  # (3h/2, w)
    y = packed[:h]
    u = packed[h:h + h // 4].reshape(h // 2, w // 2)  # each chroma plane: h/4 rows of w bytes
    v = packed[h + h // 4:].reshape(h // 2, w // 2)
    return orientation.apply(y), orientation.apply(u), orientation.apply(v)


def rgb_to_yuv(color: Sequence[int]) -> tuple[int, int, int]:
    """An RGB colour in limited-range BT.601 Y'CbCr, the encoder's (and swscale's default) conversion."""
    r, g, b = (float(c) for c in color)
    y = 16.0 + 0.2568 * r + 0.5041 * g + 0.0979 * b
    u = 128.0 - 0.1482 * r - 0.2910 * g + 0.4392 * b
    v = 128.0 + 0.4392 * r - 0.3678 * g - 0.0714 * b
    return tuple(int(np.clip(round(c), 0, 255)) for c in (y, u, v))


def overlay_yuv(planes: tuple[np.ndarray, np.ndarray, np.ndarray], mask: np.ndarray,
                color: Sequence[int] = DEFAULT_COLOR, alpha: float = 0.5) -> tuple[np.ndarray, ...]:
    """:func:`overlay` on YUV 4:2:0 planes: Y (H, W) and U, V (H/2, W/2) uint8, ``mask`` (h, w) in [0, 1]."""
    weight = _opacity(mask, alpha)
    return tuple(_blend(plane, weight, value) for plane, value in zip(planes, rgb_to_yuv(color), strict=True))


def save_mask_pngs(masks: np.ndarray, out_dir: str | Path, size: tuple[int, int] | None = None,
                   prefix: str = "mask") -> list[Path]:
    """Save one 8-bit grayscale PNG per segment (``{prefix}_{t:04d}.png``, 255 = sounding).

    Args:
        masks: float (T, h, w) in [0, 1].
        out_dir: folder to write into (created).
        size: optional (width, height) to resize to, e.g. the displayed video size.
        prefix: file name prefix.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for t, mask in enumerate(np.asarray(masks, dtype=np.float32)):
        if size is not None:
            mask = cv2.resize(mask, size, interpolation=cv2.INTER_LINEAR)
        path = out_dir / f"{prefix}_{t:04d}.png"
        cv2.imwrite(str(path), np.clip(mask * 255.0 + 0.5, 0, 255).astype(np.uint8))
        paths.append(path)
    return paths


def plot_timeline(probs: np.ndarray, class_names: Sequence[str], out: str | Path, *,
                  background: str | int | None = "background", title: str | None = None,
                  segment_seconds: float = 1.0, labels: Sequence[int] | None = None) -> Path:
    """Heatmap of per-second class probabilities (AVE), background row at the bottom, saved as PNG.

    Args:
        probs: (T, C) probabilities, one row per segment.
        class_names: C names, in label-index order.
        out: PNG path.
        background: name or index of the background class (drawn last, separated), or None.
        title: figure title.
        segment_seconds: segment length, for the time axis.
        labels: the T decoded class indices to mark (a clip-level decode can differ from each
            second's most probable class); None marks each second's most probable class.
    """
    from matplotlib.figure import Figure  # no pyplot: no global backend state, Agg canvas for PNG

    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 2 or probs.shape[1] != len(class_names):
        raise ValueError(f"probs must be (T, {len(class_names)}), got {probs.shape}")
    names = list(class_names)
    order = list(range(len(names)))
    bg = names.index(background) if isinstance(background, str) and background in names else background
    if isinstance(bg, int):
        order = [i for i in order if i != bg] + [bg]
    grid = probs[:, order].T  # (C, T)
    steps = probs.shape[0]
    fig = Figure(figsize=(max(6.0, 0.35 * steps + 3.0), max(3.0, 0.22 * len(names) + 1.2)))
    ax = fig.subplots()
    image = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest",
                      extent=(0, steps * segment_seconds, len(order) - 0.5, -0.5))
    top = np.argmax(probs, axis=1) if labels is None else np.asarray(labels)
    if top.shape != (steps,):
        raise ValueError(f"labels must hold one class per segment ({steps}), got shape {top.shape}")
    rows = [order.index(int(k)) for k in top]
    ax.scatter((np.arange(steps) + 0.5) * segment_seconds, rows, marker="o", s=12, c="red",
               label="top class" if labels is None else "decoded event")
    if isinstance(bg, int):
        ax.axhline(len(order) - 1.5, color="white", linewidth=1.0)
    ax.set_yticks(range(len(order)))
    ax.set_yticklabels([names[i] for i in order], fontsize=7)
    ax.set_xlabel("time (s)")
    ax.set_title(title or "event probability per second")
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.01, label="probability")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=100)
    return out
