"""Media for STG-CMA Studio: any video file -> aligned one-second (frame, fbank) segments, and back.

The model (METHOD.md "Inputs") sees per one-second segment one RGB frame and one kaldi log-mel
fbank. This package decodes uploads with PyAV (:func:`decode_clip`, typed :class:`MediaError`
subclasses for every bad input, warnings for odd-but-usable ones), turns them into those tensors
with the pure functions shared with training (:func:`load_clip`, :mod:`~stgcma.media.features`),
plans windows of T segments over long clips (:func:`windows`), and writes browser-playable results
(:func:`write_video`, :func:`render_mask_video`, :func:`save_mask_pngs`, :func:`plot_timeline`).

    >>> inputs = load_clip("clip.mp4", preset.preprocess)   # video (N,3,S,S), audio (N,1,F,M)
    >>> plan = inputs.windows(T=10)                         # answers per second via plan.scatter
"""

from stgcma.media.clip import ClipInputs, clip_inputs, load_clip
from stgcma.media.decode import (
    NO_AUDIO_WARNING,
    SILENT_WARNING,
    DecodedClip,
    MediaLimits,
    decode_audio,
    decode_clip,
    probe_file,
)
from stgcma.media.encode import VideoWriter, write_video
from stgcma.media.errors import (
    CorruptFileError,
    EmptyFileError,
    MediaError,
    MissingFileError,
    NotAVideoError,
    NoVideoStreamError,
    TooLargeError,
    TooLongError,
    UnsupportedCodecError,
)
from stgcma.media.features import frames_to_tensor, segment_fbanks, waveform_to_fbank
from stgcma.media.orient import Orientation
from stgcma.media.render import mask_at, overlay, plot_timeline, render_mask_video, save_mask_pngs
from stgcma.media.segments import Windows, count_segments, segment_targets, windows

__all__ = [
    "NO_AUDIO_WARNING", "SILENT_WARNING",
    "ClipInputs", "DecodedClip", "MediaLimits", "Orientation", "VideoWriter", "Windows",
    "clip_inputs", "count_segments", "decode_audio", "decode_clip", "frames_to_tensor", "load_clip",
    "mask_at", "overlay", "plot_timeline", "probe_file", "render_mask_video", "save_mask_pngs", "segment_fbanks",
    "segment_targets", "waveform_to_fbank", "windows", "write_video",
    "CorruptFileError", "EmptyFileError", "MediaError", "MissingFileError", "NotAVideoError",
    "NoVideoStreamError", "TooLargeError", "TooLongError", "UnsupportedCodecError",
]
